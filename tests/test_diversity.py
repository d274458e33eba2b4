"""Diversity of the base models: pairwise disagreement beside correlation (diversity.csv)."""

from __future__ import annotations

import numpy as np
import pytest

from stacking.evaluate import Entry
from stacking.metrics import pairwise_correlation, pairwise_disagreement
from stacking.results import diversity_frame


def test_disagreement_of_a_hand_example():
    # a vs b differ on rows 1 and 3 (2 of 5); a vs c on rows 0, 1, 2, 4 (4 of 5);
    # b vs c on rows 0, 2, 3, 4 (4 of 5).
    a, b, c = np.array([0, 1, 2, 0, 1]), np.array([0, 2, 2, 1, 1]), np.array([1, 2, 0, 0, 0])
    got = pairwise_disagreement([a, b, c])
    np.testing.assert_allclose(got, [[0, 0.4, 0.8], [0.4, 0, 0.8], [0.8, 0.8, 0]])


def test_multilabel_disagreement_counts_a_row_once_whatever_labels_differ():
    a = np.array([[1, 0], [1, 1], [0, 0]])
    b = np.array([[1, 1], [0, 0], [0, 0]])  # row 0 one label differs, row 1 both
    assert pairwise_disagreement([a, b])[0, 1] == pytest.approx(2 / 3)


def _base(name, oof):
    return Entry(name, "base", 1, oof)


def test_diversity_frame_equals_a_hand_count_on_probabilities():
    rng = np.random.default_rng(0)
    blocks = [rng.dirichlet(np.ones(3), 200) for _ in range(3)]
    table = diversity_frame([_base(n, b) for n, b in zip("xyz", blocks, strict=True)], "multiclass")
    assert list(zip(table.model_a, table.model_b, strict=True)) == [
        ("x", "y"),
        ("x", "z"),
        ("y", "z"),
    ]
    labels = [b.argmax(axis=1) for b in blocks]
    for row in table.itertuples():
        i, j = "xyz".index(row.model_a), "xyz".index(row.model_b)
        differ = sum(int(labels[i][r] != labels[j][r]) for r in range(200))
        assert row.disagreement == differ / 200
        corr = np.mean([np.corrcoef(blocks[i][:, k], blocks[j][:, k])[0, 1] for k in range(3)])
        assert row.correlation == pytest.approx(corr)


def test_correlated_models_can_still_disagree():
    # Two binary models whose probabilities move together (correlation ~1) but sit on
    # either side of 0.5: they disagree on every row the small shift crosses.
    p = np.linspace(0.4, 0.6, 101)
    a, b = np.column_stack([1 - p, p]), np.column_stack([1 - p - 0.05, p + 0.05])
    table = diversity_frame([_base("a", a), _base("b", b)], "binary")
    assert table.correlation[0] == pytest.approx(1.0)
    crossing = ((p < 0.5) & (p + 0.05 >= 0.5)) | ((p >= 0.5) & (p + 0.05 < 0.5))
    assert table.disagreement[0] == pytest.approx(crossing.mean())
    assert 0.2 < table.disagreement[0] < 0.3


def test_regression_diversity_has_correlation_and_no_disagreement():
    rng = np.random.default_rng(1)
    x = rng.normal(size=50)
    bases = [_base("a", x), _base("b", 2 * x + 1), _base("c", -x)]
    table = diversity_frame(bases, "regression")
    np.testing.assert_allclose(table.correlation, [1.0, -1.0, -1.0])
    assert table.disagreement.isna().all()


def test_constant_predictions_give_nan_correlation_without_a_warning():
    const = np.tile([0.5, 0.5], (10, 1))
    other = np.column_stack([np.linspace(0, 1, 10), np.linspace(1, 0, 10)])
    assert np.isnan(pairwise_correlation([const, other])[0, 1])


# The run that checks diversity.csv end to end is in test_calibration.py: one run for both.
