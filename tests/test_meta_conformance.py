"""One conformance suite for the meta-learner family: every registered short name, every
task it claims, resolved, cross-fitted on a fold plan and refitted like the experiment does.
(Each of tf-stacking's own estimators also passes scikit-learn's own checks elsewhere.)

:class:`MetaLearnerContract` is the reusable suite, run by ``TestMetaLearnerContract`` over
every registered name, each with its parameters in ``SAMPLES``; a registered name without
one fails ``test_meta_every_registered_learner_has_a_sample``."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from stacking.config import FoldsConfig
from stacking.folds import make_fold_plan
from stacking.meta import cross_fit, get_meta_learner, make_candidate, predict_output, refit
from stacking.meta import short_names as registered

N, N_MODELS = 90, 3
WIDTH = {"binary": 1, "multiclass": 3, "multilabel": 2, "regression": 1}
N_OUT = {"binary": 2, "multiclass": 3, "multilabel": 2, "regression": 1}
# Every registered short name -> its parameters in this suite (Keras learners: a few
# epochs; a weighted mean needs its weights). A name without a sample fails below.
SAMPLES: dict[str, dict] = {
    "convex": {"epochs": 10, "random_state": 0},
    "geometric": {},
    "logistic": {},
    "mean": {},
    "median": {},
    "mlp": {"epochs": 60, "random_state": 0},
    "nnls": {},
    "rank": {},
    "ridge": {},
    "selection": {},
    "vote": {},
    "weighted": {"weights": [1, 2, 1]},
}


def names_without_sample() -> set[str]:
    return set(registered()) - {"default"} - set(SAMPLES)


def _cases():
    for name in registered():
        if name == "default":
            continue
        for task in ("binary", "multiclass", "multilabel", "regression"):
            if get_meta_learner(name).for_task(task) is not None:
                yield name, task


def _level1(task: str, rng):
    """Level-1 blocks of N_MODELS base models that are noisy copies of the truth."""
    if task == "regression":
        y = rng.normal(size=N)
        blocks = np.column_stack([y + rng.normal(0, 0.5, N) for _ in range(N_MODELS)])
        return blocks, y
    if task == "multilabel":
        y = rng.integers(0, 2, size=(N, 2))
        noisy = [np.clip(y + rng.normal(0, 0.3, y.shape), 0.01, 0.99) for _ in range(N_MODELS)]
        return np.hstack(noisy), y
    n_classes = N_OUT[task]
    y = np.arange(N) % n_classes
    probas = []
    for _ in range(N_MODELS):
        logits = np.eye(n_classes)[y] * 2 + rng.normal(0, 1, (N, n_classes))
        p = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
        probas.append(p[:, 1:] if task == "binary" else p)
    return np.hstack(probas), y


class MetaLearnerContract:
    """What every meta-learner does in an experiment: resolved by its short name,
    cross-fitted on a fold plan, refitted, its outputs shaped and better than a constant.
    A subclass is parametrized with ``(name, task)`` and sets ``samples`` (name -> params)."""

    samples: dict[str, dict] = SAMPLES

    def test_conforms(self, name, task):
        rng = np.random.default_rng(0)
        X, y = _level1(task, rng)
        spec = {"estimator": name, "params": self.samples[name]}
        from stacking.config import CandidateConfig

        candidate = make_candidate(CandidateConfig(**spec), task=task)
        assert candidate.name == name
        if "columns_per_model" in candidate.estimator.get_params():
            candidate.estimator.set_params(columns_per_model=WIDTH[task])
        frame = pd.DataFrame({"row_id": np.arange(N), "y": y if y.ndim == 1 else y[:, 0]})
        plan = make_fold_plan(FoldsConfig(kind="kfold", n_splits=3), _Data(frame))
        kw = {"task": task, "n_outputs": N_OUT[task]}

        oof = cross_fit(candidate, X, y, plan, **kw)
        model = refit(candidate, X, y)
        out = predict_output(model, X, **kw)

        expected = (N,) if task == "regression" else (N, N_OUT[task])
        assert oof.shape == expected and out.shape == expected
        assert np.isfinite(oof).all() and np.isfinite(out).all()
        if task in ("binary", "multiclass"):
            np.testing.assert_allclose(out.sum(axis=1), 1.0, atol=1e-6)
        if task != "regression":
            assert out.min() >= -1e-9 and out.max() <= 1 + 1e-9
        # Every learner beats a constant on these informative inputs (the suite can fail).
        if task == "regression":
            assert np.mean((oof - y) ** 2) < np.var(y)
        elif task == "multilabel":
            assert ((oof >= 0.5) == y).mean() > 0.55
        else:
            assert (oof.argmax(axis=1) == y).mean() > 1.0 / N_OUT[task] + 0.05


@pytest.mark.parametrize(("name", "task"), list(_cases()))
class TestMetaLearnerContract(MetaLearnerContract):
    pass


def test_meta_every_registered_learner_has_a_sample():
    missing = names_without_sample()
    assert not missing, f"add a sample to SAMPLES for {sorted(missing)}"


def test_meta_a_learner_registered_without_a_sample_is_caught(monkeypatch):
    from stacking.meta import _base, register_meta_learner

    monkeypatch.setattr(_base, "_REGISTRY", dict(_base._REGISTRY))
    register_meta_learner("unsampled", regressor="sklearn.linear_model.Ridge")
    assert names_without_sample() == {"unsampled"}


def test_short_names_resolve_by_task():
    assert "median" in registered("regression") and "median" not in registered("binary")
    assert "vote" in registered("multiclass") and "vote" not in registered("regression")
    from stacking.errors import ConfigError

    with pytest.raises(ConfigError, match="'vote' does not apply to a regression task"):
        make_candidate("vote", task="regression")


class _Data:
    """The little of a Dataset that make_fold_plan reads."""

    def __init__(self, frame):
        self.train, self.ids = frame, frame["row_id"].to_numpy()
        self.id_column, self.task = "row_id", "regression"
        self.y = frame["y"].to_numpy()
        self.source = {"train": "conformance rows"}
