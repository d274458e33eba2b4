"""The linear defaults (``logistic``, ``ridge``) standardise their level-1 columns first:
lbfgs converges in a fraction of the iterations on log-probability features, user params
still reach the learner, data weights reach both steps, and the weights table stays in
the units of the level-1 features."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

from stacking.config import CandidateConfig
from stacking.folds import FoldPlan
from stacking.level1 import _transform
from stacking.meta import cross_fit, make_candidate, refit
from stacking.meta.weights import weights_table
from stacking.numeric import softmax

N_CLASSES = 4


def _log_proba_level1(n=1200, models=3, seed=0):
    """Log-probability features of base models with very different confidence."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, N_CLASSES, n)
    blocks = []
    for m, temperature in enumerate([1.0, 8.0, 15.0][:models]):
        logits = temperature * (np.eye(N_CLASSES)[y] * (1 + 0.3 * m) + rng.normal(size=(n, 4)))
        blocks.append(_transform(softmax(logits), "logit", "multiclass", None))
    return np.hstack(blocks), y


@pytest.mark.parametrize(
    ("short", "task", "last"),
    [
        ("logistic", "multiclass", "LogisticRegression"),
        ("default", "binary", "LogisticRegression"),
        ("logistic", "multilabel", "MultiOutputClassifier"),
        ("ridge", "regression", "Ridge"),
        ("default", "regression", "Ridge"),
    ],
)
def test_meta_scaling_linear_defaults_are_scaled_pipelines(short, task, last):
    estimator = make_candidate(short, task=task).estimator
    assert isinstance(estimator, Pipeline)
    assert isinstance(estimator[0], StandardScaler)
    assert type(estimator[-1]).__name__ == last


def test_meta_scaling_params_reach_the_learner_and_others_stay_unscaled():
    spec = CandidateConfig(estimator="logistic", params={"C": 0.1})
    estimator = make_candidate(spec, task="multiclass").estimator
    assert estimator[-1].C == 0.1 and estimator[-1].max_iter == 1000
    path = CandidateConfig(estimator="sklearn.linear_model.LogisticRegression")
    assert isinstance(make_candidate(path, task="multiclass").estimator, LogisticRegression)


def test_meta_scaling_converges_in_far_fewer_iterations_on_log_probabilities():
    X, y = _log_proba_level1()
    unscaled = LogisticRegression(max_iter=1000).fit(X, y)
    scaled = refit(make_candidate("logistic", task="multiclass"), X, y)
    assert scaled[-1].n_iter_[0] * 4 < unscaled.n_iter_[0], (scaled[-1].n_iter_, unscaled.n_iter_)
    # Same model family and penalty strength: the fits agree closely on these rows.
    agree = (scaled.predict(X) == unscaled.predict(X)).mean()
    assert agree > 0.98


def test_meta_scaling_sample_weight_reaches_scaler_and_learner():
    X, y = _log_proba_level1(n=600)
    w = np.random.default_rng(1).uniform(0.1, 3.0, len(y))
    got = refit(make_candidate("logistic", task="multiclass"), X, y, sample_weight=w)
    scaler = StandardScaler().fit(X, sample_weight=w)
    want = LogisticRegression(max_iter=1000).fit(scaler.transform(X), y, sample_weight=w)
    np.testing.assert_allclose(got[0].mean_, scaler.mean_)
    np.testing.assert_allclose(got[-1].coef_, want.coef_, rtol=1e-6, atol=1e-8)
    unweighted = refit(make_candidate("logistic", task="multiclass"), X, y)
    assert not np.allclose(unweighted[-1].coef_, got[-1].coef_)


def test_meta_scaling_weights_table_is_in_level1_units():
    """Weights times the raw features reproduce the scaled model's decision function up to
    one constant per class (the intercept)."""
    X, y = _log_proba_level1(n=600, models=2)
    model = refit(make_candidate("logistic", task="multiclass"), X, y)
    features = [f"m{m}__{k}" for m in range(2) for k in range(N_CLASSES)]
    outputs = [str(k) for k in range(N_CLASSES)]
    table = weights_table({"logistic": model}, {"logistic": ([], features)}, outputs)
    assert len(table) == N_CLASSES * len(features)
    assert set(table.base_model) == {"m0", "m1"}
    W = table.pivot(index="output", columns="feature", values="weight").loc[outputs, features]
    offset = model.decision_function(X) - X @ W.to_numpy().T
    np.testing.assert_allclose(offset, np.broadcast_to(offset[0], offset.shape), atol=1e-8)


def test_meta_scaling_cross_fit_multilabel_and_weighted_regression():
    rng = np.random.default_rng(2)
    Y = rng.integers(0, 2, (300, 2))
    X = np.hstack([np.clip(Y + rng.normal(0, 0.3, Y.shape), 0.01, 0.99) for _ in range(2)])
    plan = FoldPlan(ids=np.arange(300), folds=np.arange(300) % 3)
    oof = cross_fit(
        make_candidate("logistic", task="multilabel"), X, Y, plan, task="multilabel", n_outputs=2
    )
    assert oof.shape == (300, 2) and ((oof > 0.5) == Y).mean() > 0.9
    y = X[:, 0] + rng.normal(0, 0.1, 300)
    w = rng.uniform(0.5, 2.0, 300)
    pred = cross_fit(
        make_candidate("ridge", task="regression"),
        X,
        y,
        plan,
        task="regression",
        n_outputs=1,
        sample_weight=w,
    )
    assert np.corrcoef(pred, y)[0, 1] > 0.9


def test_meta_scaling_small_level1_is_fitted_with_one_blas_thread(monkeypatch):
    """A small level 1 is fitted with one BLAS thread (threads waiting on each other made
    a 4,500-row logistic take minutes); a large one keeps the library's threads."""
    from threadpoolctl import threadpool_info

    from stacking.meta import _candidates

    seen = []

    class Spy(LogisticRegression):
        def fit(self, X, y, sample_weight=None):
            seen.append(max(p["num_threads"] for p in threadpool_info() if p["user_api"] == "blas"))
            return super().fit(X, y, sample_weight=sample_weight)

    X, y = _log_proba_level1(n=300)
    X = StandardScaler().fit_transform(X)  # converges within the spy's 100 iterations
    plan = FoldPlan(ids=np.arange(300), folds=np.arange(300) % 3)
    spy = _candidates.Candidate("spy", Spy(), False)
    cross_fit(spy, X, y, plan, task="multiclass", n_outputs=N_CLASSES)
    refit(spy, X, y)
    assert seen == [1] * 4
    monkeypatch.setattr(_candidates, "SMALL_LEVEL1", X.size - 1)  # now "large"
    seen.clear()
    refit(spy, X, y)
    library = max(p["num_threads"] for p in threadpool_info() if p["user_api"] == "blas")
    assert seen == [library]
