"""CombinerClassifier / CombinerRegressor: hand-computed outputs, layouts, errors, conformance."""

from __future__ import annotations

import numpy as np
import pytest
from numpy.testing import assert_allclose, assert_array_equal
from sklearn.base import clone, is_classifier
from sklearn.utils._param_validation import InvalidParameterError
from sklearn.utils.estimator_checks import parametrize_with_checks

from stacking.errors import ConfigError, DataError
from stacking.meta._combiners import (
    LAYOUT_REFUSED_CHECKS,
    CombinerClassifier,
    CombinerRegressor,
)

# Binary: two models, one column each (P(class 1)), three rows.
X_BIN = np.array([[0.9, 0.6], [0.2, 0.4], [0.6, 0.3]])
Y_BIN = np.array([1, 0, 1])

# Multiclass: two models, three classes, block = [P(0), P(1), P(2)].
X_MC = np.array(
    [
        [0.7, 0.2, 0.1, 0.2, 0.5, 0.3],
        [0.1, 0.5, 0.4, 0.3, 0.2, 0.5],
        [0.1, 0.1, 0.8, 0.2, 0.2, 0.6],
    ]
)
Y_MC = np.array([0, 1, 2])


@pytest.mark.parametrize(
    ("method", "expected_p1", "expected_pred"),
    [
        # mean of the two columns
        ("mean", [0.75, 0.30, 0.45], [1, 0, 0]),
        # sqrt(p_a p_b) / (sqrt(p_a p_b) + sqrt((1-p_a)(1-p_b))); row 0: .7348/(.7348+.2)
        ("geometric", [0.786061, 0.289898, 0.444994], [1, 0, 0]),
        # votes: row 0 both 1; row 1 both 0; row 2 one each -> tie broken by the mean .45 < .5
        ("vote", [1.0, 0.0, 0.5], [1, 0, 0]),
        # ranks among the 3 training rows (share <= each): a [1, 1/3, 2/3], b [1, 2/3, 1/3]
        ("rank", [1.0, 0.5, 0.5], [1, 0, 0]),
    ],
)
def test_combiner_classifier_binary_hand_computed(method, expected_p1, expected_pred):
    clf = CombinerClassifier(method=method).fit(X_BIN, Y_BIN)
    proba = clf.predict_proba(X_BIN)
    assert_allclose(proba[:, 1], expected_p1, atol=1e-6)
    assert_allclose(proba.sum(axis=1), 1.0)
    assert_array_equal(clf.predict(X_BIN), expected_pred)
    assert_allclose(clf.weights_, [0.5, 0.5])
    assert (clf.n_models_, clf.columns_per_model_) == (2, 1)


@pytest.mark.parametrize(
    ("X", "y", "weights", "expected"),
    [
        # [3, 1] -> [.75, .25]; P(1), row 0: .75 * .9 + .25 * .6 = .825
        (X_BIN, Y_BIN, [3, 1], [[0.175, 0.825], [0.75, 0.25], [0.475, 0.525]]),
        # [1, 3] -> [.25, .75]; row 0: .25 * [.7, .2, .1] + .75 * [.2, .5, .3]
        (
            X_MC,
            Y_MC,
            [1, 3],
            [[0.325, 0.425, 0.25], [0.25, 0.275, 0.475], [0.175, 0.175, 0.65]],
        ),
    ],
)
def test_combiner_classifier_weighted_hand_computed(X, y, weights, expected):
    clf = CombinerClassifier("weighted", weights=weights).fit(X, y)
    assert_allclose(clf.weights_, np.array(weights) / sum(weights))
    assert_allclose(clf.predict_proba(X), expected)


@pytest.mark.parametrize(
    ("method", "expected", "expected_pred"),
    [
        ("mean", [[0.45, 0.35, 0.2], [0.2, 0.35, 0.45], [0.15, 0.15, 0.7]], [0, 2, 2]),
        # row 0: sqrt([.14, .10, .03]) = [.3742, .3162, .1732], / .8636
        (
            "geometric",
            [
                [0.433263, 0.366174, 0.200562],
                [0.18492, 0.337617, 0.477463],
                [0.144949] * 2 + [0.710102],
            ],
            [0, 2, 2],
        ),
        # row 0: a says 0, b says 1, the mean prefers 0; row 1: 1 vs 2, the mean prefers 2
        ("vote", [[0.5, 0.5, 0.0], [0.0, 0.5, 0.5], [0.0, 0.0, 1.0]], [0, 2, 2]),
        # ranks among the training rows, per model and class, averaged over the models:
        # c0 a [1, 2/3, 2/3] b [2/3, 1, 2/3] -> [5/6, 5/6, 2/3]; c1 -> [5/6, 5/6, 1/2];
        # c2 -> [1/3, 2/3, 1]; then per-row normalisation, row 0: [5, 5, 2] / 12
        (
            "rank",
            [[5 / 12, 5 / 12, 2 / 12], [5 / 14, 5 / 14, 4 / 14], [4 / 13, 3 / 13, 6 / 13]],
            [0, 0, 2],
        ),
    ],
)
def test_combiner_classifier_multiclass_hand_computed(method, expected, expected_pred):
    clf = CombinerClassifier(method=method).fit(X_MC, Y_MC)
    assert_allclose(clf.predict_proba(X_MC), expected, atol=1e-6)
    assert_array_equal(clf.predict(X_MC), expected_pred)
    assert (clf.n_models_, clf.columns_per_model_) == (2, 3)


def test_combiner_classifier_rank_places_new_rows_among_the_training_rows():
    # model a's training scores [.9, .2, .6], b's [.6, .4, .3]: a new row's rank is the share
    # of training scores <= its own, whatever else is predicted with it.
    clf = CombinerClassifier("rank").fit(X_BIN, Y_BIN)
    new = np.array([[0.5, 0.5], [0.1, 0.95], [0.95, 0.1]])
    expected = [(1 / 3 + 2 / 3) / 2, (0 + 1) / 2, (1 + 0) / 2]
    assert_allclose(clf.predict_proba(new)[:, 1], expected)
    for i, row in enumerate(new):
        assert_allclose(clf.predict_proba(row[None, :])[:, 1], [expected[i]])


def test_combiner_classifier_rank_sample_weight_counts_training_rows():
    # A weight of 2 ranks like the row given twice; a weight of 0 like the row left out.
    w = np.array([2.0, 0.0, 1.0])
    rank = CombinerClassifier("rank", columns_per_model=3)  # class 1 absent from repeated y
    weighted = clone(rank).fit(X_MC, Y_MC, sample_weight=w)
    repeated = clone(rank).fit(X_MC[[0, 0, 2]], Y_MC[[0, 0, 2]])
    assert_allclose(weighted.predict_proba(X_MC), repeated.predict_proba(X_MC))
    unweighted = CombinerClassifier("rank").fit(X_MC, Y_MC)
    assert not np.allclose(weighted.predict_proba(X_MC), unweighted.predict_proba(X_MC))


def test_combiner_classifier_rank_without_reference_is_refused():
    clf = CombinerClassifier("rank").fit(X_BIN, Y_BIN)
    del clf.rank_reference_  # as unpickled from a version that ranked within the batch
    with pytest.raises(
        ConfigError,
        match=r"^this rank combiner was fitted without a training reference \(saved by an "
        r"older tf-stacking that ranked within each batch\); re-run the experiment to refit it$",
    ):
        clf.predict_proba(X_BIN)


def test_combiner_classifier_string_labels_follow_classes_order():
    clf = CombinerClassifier().fit(X_BIN, np.array(["yes", "no", "yes"]))
    assert_array_equal(clf.classes_, ["no", "yes"])
    assert_array_equal(clf.predict(X_BIN), ["yes", "no", "no"])


def test_combiner_classifier_dropped_first_class_layout_matches_full_blocks():
    # Blocks holding classes 1..C-1 only imply P(0) = 1 - sum, as a binary block does.
    dropped = X_MC[:, [1, 2, 4, 5]]
    full = CombinerClassifier("geometric").fit(X_MC, Y_MC).predict_proba(X_MC)
    for columns in ("auto", 2):
        clf = CombinerClassifier("geometric", columns_per_model=columns).fit(dropped, Y_MC)
        assert clf.columns_per_model_ == 2
        assert_allclose(clf.predict_proba(dropped), full)


def test_combiner_classifier_explicit_width_keeps_classes_absent_from_y():
    # A meta-level training fold without class 1: the blocks still hold classes 0, 1, 2.
    clf = CombinerClassifier(columns_per_model=3).fit(X_MC, np.array([0, 2, 2]))
    assert_array_equal(clf.classes_, [0, 1, 2])
    assert_allclose(clf.predict_proba(X_MC)[0], [0.45, 0.35, 0.2])


@pytest.mark.parametrize("method", ["mean", "geometric", "vote", "rank"])
def test_combiner_classifier_out_of_range_values_give_probabilities(method):
    X = np.array([[-3.0, 2.0, 0.5, 7.0, -1.0, 0.0], [0.0, 0.0, 0.0, -2.0, -2.0, -2.0]])
    proba = CombinerClassifier(method).fit(X, [0, 1]).predict_proba(X)
    assert np.all((proba >= 0) & (proba <= 1))
    assert_allclose(proba.sum(axis=1), 1.0)


def test_combiner_classifier_multilabel_mean_and_geometric():
    # Two labels, two models; block = [P(label 0), P(label 1)].
    X = np.array([[0.9, 0.2, 0.7, 0.4], [0.1, 0.8, 0.3, 0.6]])
    Y = np.array([[1, 0], [0, 1]])
    clf = CombinerClassifier().fit(X, Y)
    assert_allclose(clf.predict_proba(X), [[0.8, 0.3], [0.2, 0.7]])
    assert_array_equal(clf.predict(X), Y)
    # label 0, row 0: sqrt(.63) / (sqrt(.63) + sqrt(.03)) = .7937 / (.7937 + .1732)
    geo = CombinerClassifier("geometric").fit(X, Y).predict_proba(X)
    assert_allclose(geo[0, 0], 0.820871, atol=1e-6)


@pytest.mark.parametrize(
    ("method", "weights", "X", "expected"),
    [
        ("mean", None, [[1.0, 2.0, 6.0], [3.0, 3.0, 0.0]], [3.0, 2.0]),
        ("median", None, [[1.0, 2.0, 6.0], [3.0, 3.0, 0.0]], [2.0, 3.0]),
        # [1, 1, 2] -> [.25, .25, .5]; row 0: .25 + .5 + 3
        ("weighted", [1, 1, 2], [[1.0, 2.0, 6.0], [3.0, 3.0, 0.0]], [3.75, 1.5]),
    ],
)
def test_combiner_regressor_hand_computed(method, weights, X, expected):
    reg = CombinerRegressor(method, weights=weights).fit(X, [0.0, 1.0])
    assert_allclose(reg.predict(X), expected)
    assert reg.n_models_ == 3


@pytest.mark.parametrize(
    ("estimator", "X", "y", "error", "match"),
    [
        (CombinerClassifier("foo"), X_BIN, Y_BIN, InvalidParameterError, "'method'.*'foo'"),
        (CombinerRegressor("vote"), X_BIN, Y_BIN, InvalidParameterError, "'method'.*'vote'"),
        (
            CombinerClassifier("weighted"),
            X_BIN,
            Y_BIN,
            ConfigError,
            "^method='weighted' needs one weight per base model. Received: weights=None$",
        ),
        (
            CombinerRegressor("weighted", weights=[1, 2, 3]),
            X_BIN,
            Y_BIN,
            ConfigError,
            r"X has 2 base-model blocks. Received: weights=\[1, 2, 3\]",
        ),
        (
            CombinerClassifier("weighted", weights=[1, -1]),
            X_BIN,
            Y_BIN,
            ConfigError,
            "non-negative",
        ),
        (
            CombinerClassifier("mean", weights=[1, 1]),
            X_BIN,
            Y_BIN,
            ConfigError,
            "only used by method='weighted'. Received: method='mean'",
        ),
        (
            CombinerClassifier(),
            X_MC[:, :5],
            Y_MC,
            DataError,
            r"X has 5 feature\(s\), which is not a whole number of base-model blocks of 3 or 2",
        ),
        (
            CombinerClassifier(columns_per_model=3),
            X_MC[:, :4],
            Y_MC,
            DataError,
            r"X has 4 feature\(s\).*Received: columns_per_model=3",
        ),
        (
            CombinerClassifier(columns_per_model=5),
            X_MC,
            ["a", "b", "c"],
            ConfigError,
            "holds 3 or 2 columns for 3 classes/labels. Received: columns_per_model=5",
        ),
        (
            CombinerClassifier("vote"),
            X_BIN,
            np.array([[1, 0], [0, 1], [1, 1]]),
            ConfigError,
            "method='vote' is not defined for multilabel",
        ),
        (CombinerClassifier(), X_BIN, [1, 1, 1], DataError, "at least 2 classes"),
        (CombinerClassifier(), X_BIN, [0.5, 1.5, 2.2], ValueError, "Unknown label type"),
    ],
)
def test_combiner_errors(estimator, X, y, error, match):
    with pytest.raises(error, match=match):
        estimator.fit(X, y)


def _expected_failed_checks(estimator):
    return dict(LAYOUT_REFUSED_CHECKS) if is_classifier(estimator) else {}


# method="weighted" is covered above: its weights fix the number of base models, which
# the conformance suite's arbitrary X varies.
@parametrize_with_checks(
    [CombinerClassifier(method=m) for m in ("mean", "vote", "rank", "geometric")]
    + [CombinerRegressor(), CombinerRegressor("median")],
    expected_failed_checks=_expected_failed_checks,
    xfail_strict=True,
)
def test_combiner_sklearn_conformance(estimator, check):
    check(estimator)


# ------------------------------------------------------------- edge values, by independent math


def test_combiner_classifier_all_zero_row_is_uniform():
    # Every model's block clipped to zeros: no evidence, so each class gets 1/C.
    X = np.array([[-1.0, -2.0, 0.0, 0.0, -0.5, 0.0], X_MC[0].tolist()])
    proba = CombinerClassifier(columns_per_model=3).fit(X, [0, 2]).predict_proba(X)
    assert_allclose(proba[0], [1 / 3, 1 / 3, 1 / 3], rtol=1e-15)
    assert_allclose(proba[1], (X_MC[0, :3] + X_MC[0, 3:]) / 2, rtol=1e-15)


@pytest.mark.parametrize(
    ("weights", "expected_p1"),
    [
        ([1, 0], [0.9, 0.2, 0.6]),
        ([0.5, 0.5], [0.75, 0.3, 0.45]),
        ([0.2, 0.6], [0.675, 0.35, 0.375]),
    ],
)
def test_combiner_classifier_weights_zero_or_fractional_are_accepted(weights, expected_p1):
    clf = CombinerClassifier("weighted", weights=weights).fit(X_BIN, Y_BIN)
    assert_allclose(clf.predict_proba(X_BIN)[:, 1], expected_p1, rtol=1e-12)
    assert_allclose(clf.weights_, np.asarray(weights) / np.sum(weights), rtol=1e-15)


@pytest.mark.parametrize("weights", [[2, -1], [0, 0], [1, np.nan], [np.inf, 1]])
def test_combiner_weights_negative_zero_or_not_finite_are_refused(weights):
    with pytest.raises(
        ConfigError,
        match=r"^weights must be finite, non-negative and not all zero. Received: weights=",
    ):
        CombinerRegressor("weighted", weights=weights).fit(X_BIN, [0.0, 1.0, 2.0])


def test_combiner_negative_sample_weight_is_refused():
    with pytest.raises(ValueError, match="Negative values in data passed to `sample_weight`"):
        CombinerClassifier().fit(X_BIN, Y_BIN, sample_weight=[1.0, -1.0, 1.0])


def test_combiner_classifier_binary_two_column_blocks_equal_positive_columns():
    full = np.column_stack([1 - X_BIN[:, 0], X_BIN[:, 0], 1 - X_BIN[:, 1], X_BIN[:, 1]])
    clf = CombinerClassifier(columns_per_model=2).fit(full, Y_BIN)
    assert clf.columns_per_model_ == 2
    assert_allclose(clf.predict_proba(full)[:, 1], X_BIN.mean(axis=1), rtol=1e-15)


def test_combiner_classifier_multilabel_blocks_hold_every_label():
    # Three labels: 4 columns are not blocks of 3, and no 2-column layout exists for labels.
    Y = np.array([[1, 0, 1], [0, 1, 0], [1, 1, 0]])
    with pytest.raises(DataError, match=r"X has 4 feature\(s\).* blocks of 3 columns"):
        CombinerClassifier().fit(np.full((3, 4), 0.5), Y)
    with pytest.raises(ConfigError, match="a multilabel block holds 3 columns"):
        CombinerClassifier(columns_per_model=2).fit(np.full((3, 4), 0.5), Y)


def test_combiner_classifier_multilabel_predict_is_integer_and_half_is_positive():
    X = np.array([[0.5, 0.2, 0.5, 0.4], [0.4, 0.8, 0.6, 0.6]])  # label 0 of row 0: exactly .5
    pred = CombinerClassifier().fit(X, [[1, 0], [0, 1]]).predict(X)
    assert pred.dtype.kind == "i"
    assert_array_equal(pred, [[1, 0], [1, 1]])


def test_combiner_classifier_dropped_first_class_is_clipped_when_the_rest_exceeds_one():
    # Blocks of classes 1 and 2: a row whose two columns sum above 1 implies P(0) = 0, not
    # a negative probability; columns above 1 or below 0 are clipped first.
    X = np.array([[0.7, 0.6, 0.2, 0.3], [1.4, -0.2, 0.1, 0.1], [0.1, 0.2, 0.3, 0.3]])
    full = []
    for block in (X[:, :2], X[:, 2:]):
        rest = np.clip(block, 0, 1)
        full.append(np.column_stack([np.clip(1 - rest.sum(axis=1), 0, 1), rest]))
    mean = (full[0] + full[1]) / 2
    proba = CombinerClassifier(columns_per_model=2).fit(X, [0, 1, 2]).predict_proba(X)
    assert_allclose(proba, mean / mean.sum(axis=1, keepdims=True), rtol=1e-12)


def test_combiner_classifier_rank_ranks_raw_scores_not_clipped_ones():
    # Scores outside [0, 1] (logits passed by mistake, or margins) are ranked as they are:
    # 1.3 lies between the training scores 1.2 and 1.5.
    X = np.array([[0.2, 0.1], [1.2, 0.3], [1.5, 0.9], [-0.4, 0.5]])
    clf = CombinerClassifier("rank").fit(X, [0, 1, 1, 0])
    new = np.array([[1.3, 0.4], [-1.0, 2.0]])
    rank_a = [(X[:, 0] <= v).mean() for v in new[:, 0]]  # [.75, 0]
    rank_b = [(X[:, 1] <= v).mean() for v in new[:, 1]]  # [.5, 1]
    expected = (np.array(rank_a) + np.array(rank_b)) / 2
    assert_allclose(clf.predict_proba(new)[:, 1], expected, rtol=1e-15)


def test_combiner_classifier_rank_multiclass_with_implied_first_class():
    # Dropped-first-class blocks: the implied P(0) = 1 - sum is ranked unclipped too, each
    # class column against its training column, then ranks are averaged over models and
    # normalised per row.
    rng = np.random.default_rng(0)
    X = rng.uniform(0.1, 0.9, size=(12, 4))  # most rows imply a negative P(0)
    y = np.arange(12) % 3
    clf = CombinerClassifier("rank", columns_per_model=2).fit(X, y)
    new = rng.uniform(0.1, 0.9, size=(5, 4))

    def full(a):
        return [np.column_stack([1 - b.sum(axis=1), b]) for b in (a[:, :2], a[:, 2:])]

    ranks = [
        np.column_stack([(t[:, k][None, :] <= n[:, k][:, None]).mean(axis=1) for k in range(3)])
        for t, n in zip(full(X), full(new), strict=True)
    ]
    mean = (ranks[0] + ranks[1]) / 2
    assert_allclose(clf.predict_proba(new), mean / mean.sum(axis=1, keepdims=True), rtol=1e-12)


def test_combiner_classifier_geometric_multilabel_certain_model():
    # A block value of exactly 1 (or 0) is clipped to 1e-15 away before its log: a model
    # that is certain does not produce log(0) and still lets the other model speak.
    X = np.array([[1.0, 0.0, 0.5, 0.5]])
    proba = CombinerClassifier("geometric").fit(X, [[1, 0]]).predict_proba(X)
    p = np.sqrt(1.0 * 0.5)
    q = np.sqrt(1e-15 * 0.5)
    assert_allclose(proba[0, 0], p / (p + q), rtol=1e-12)
    assert_allclose(proba[0, 1], q / (p + q), rtol=1e-6)


def test_combiner_float32_input_is_computed_in_float64():
    X32 = np.array([[0.91, 0.33, 0.62], [0.17, 0.42, 0.58]], dtype=np.float32)
    X64 = X32.astype(np.float64)  # the same values, exactly
    geo = CombinerClassifier("geometric").fit(X64, [1, 0])
    assert geo.predict_proba(X32).dtype == np.float64
    assert_array_equal(geo.predict_proba(X32), geo.predict_proba(X64))
    med = CombinerRegressor("median").fit(X64[:, :2], [0.0, 1.0])
    assert_array_equal(med.predict(X32[:, :2]), np.median(X64[:, :2], axis=1))


@pytest.mark.parametrize(("method", "multi"), [("mean", True), ("rank", True), ("vote", False)])
def test_combiner_classifier_multilabel_tags(method, multi):
    tags = CombinerClassifier(method).__sklearn_tags__()
    assert tags.classifier_tags.multi_label is multi
    assert tags.target_tags.multi_output is multi
    assert tags.classifier_tags.poor_score is True


@pytest.mark.parametrize(
    ("estimator", "y", "error", "match"),
    [
        (
            CombinerClassifier(),
            [[0, 2], [1, 0], [2, 1]],
            DataError,
            r"^a 2-D target must be a 0/1 multilabel indicator matrix. Received: y of type "
            r"'multiclass-multioutput' and shape \(3, 2\)$",
        ),
        (
            CombinerClassifier(),
            [1, 1, 1],
            DataError,
            r"^a classifier needs at least 2 classes in y to combine class probabilities. "
            r"Received: y with 1 class np.int64\(1\)$",
        ),
        # Labels 0 and 3 are no class indices of 3-column blocks: a binary target.
        (
            CombinerClassifier(columns_per_model=3),
            [0, 3, 3],
            ConfigError,
            r"^a binary block holds 1 or 2 columns for 2 classes/labels",
        ),
    ],
)
def test_combiner_target_errors_by_message(estimator, y, error, match):
    with pytest.raises(error, match=match):
        estimator.fit(X_MC if len(np.shape(y)) == 1 else X_MC[:, :4], y)


def test_combiner_classifier_explicit_width_one_is_binary():
    clf = CombinerClassifier(columns_per_model=1).fit(X_BIN, Y_BIN)
    assert_array_equal(clf.classes_, [0, 1])
    assert_allclose(clf.predict_proba(X_BIN)[:, 1], X_BIN.mean(axis=1), rtol=1e-15)
