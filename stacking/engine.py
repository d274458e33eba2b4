"""Honest predictions of frozen base models: arrays in, arrays out.

One function, :func:`predict_base_models`, serves training and serving alike:

* with ``train`` (training rows, their inputs and the fold plan) it returns each base
  model's out-of-fold predictions: row *i* of fold *k* from fold model *k* only, every
  row from an external model, and for a backbone the prediction of a head cross-fitted
  on the fold plan over the backbone's cached embeddings;
* with ``rows`` (new rows: the test table, or rows to serve) it returns their
  predictions: the mean of the K fold models (or the ``full`` model), the external
  model, or the mean of a backbone's K fold heads.

Given both, each model file is loaded once for its OOF and new rows together. Every
(model, input) prediction goes through the cache first; what is missing becomes
:class:`~stacking.executors.Job` s for an executor.

A prediction-file member (kind ``predictions``) has no model: its one input IS its
prediction (the checked OOF / test file columns in training, the served columns of new
rows), so it makes no job and no cache entry; it is only mapped like a model's output.

Predictions are normalised to the representation of :mod:`stacking.metrics`:
``(n, C)`` probabilities for classification, ``(n, L)`` for multilabel, ``(n,)`` for
regression. Logit outputs are detected (values outside [0, 1]) or declared with
``outputs_are: logits`` and mapped through softmax / sigmoid.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from stacking.backbone import cross_fit_head, predict_heads
from stacking.base import ResolvedBaseModel
from stacking.cache import CacheStore, make_key, path_digest
from stacking.errors import BaseModelError
from stacking.executors import Executor, Job
from stacking.folds import FoldPlan
from stacking.numeric import sigmoid, softmax
from stacking.views import ViewData, as_view_data


@dataclass
class TrainRows:
    """The training rows a base model predicts out of fold, with what its head needs."""

    inputs: dict[str, list[ViewData]]  # per base model, one view (or array) per model input
    plan: FoldPlan
    y: np.ndarray
    sample_weight: np.ndarray | None = None


@dataclass
class BasePredictions:
    """One base model's honest predictions: ``oof`` for training rows, ``test`` for new."""

    name: str
    oof: np.ndarray | None
    test: np.ndarray | None
    cached: int = 0
    computed: int = 0
    outputs_are: str = "proba"
    heads: list = field(default_factory=list, repr=False)


@dataclass
class _Part:
    path: Path
    inputs: list[ViewData]
    key: str
    output: np.ndarray | None = None


def detect_outputs_are(raw: list[np.ndarray]) -> str:
    """``logits`` when any value lies outside [0, 1], else ``proba``."""
    low = min(float(np.min(r)) for r in raw if r.size)
    high = max(float(np.max(r)) for r in raw if r.size)
    return "logits" if low < -1e-6 or high > 1 + 1e-6 else "proba"


def to_representation(
    raw: list[np.ndarray], *, name: str, task: str, n_outputs: int, outputs_are: str
) -> list[np.ndarray]:
    """Map raw model outputs (all folds together, so they share one decision) to probas."""
    raw = [np.asarray(r, dtype=np.float64).reshape(len(r), -1) for r in raw]
    if not all(np.isfinite(r).all() for r in raw):
        raise BaseModelError(
            f"base model {name!r} predicted NaN or infinite values; check the model and its "
            "input view (scaling, dtype)"
        )
    width = raw[0].shape[1]
    if task == "regression":
        if width != 1:
            raise BaseModelError(
                f"base model {name!r} outputs {width} values per row; a regression task "
                "needs 1. Pick another output with `output:`"
            )
        return [r[:, 0] for r in raw]
    expected = {n_outputs} | ({1} if task == "binary" else set())
    if width not in expected:
        raise BaseModelError(
            f"base model {name!r} outputs {width} values per row but the target has "
            f"{n_outputs} {'labels' if task == 'multilabel' else 'classes'}; "
            "check the model and `data.target`"
        )
    if outputs_are == "auto":
        outputs_are = detect_outputs_are(raw)
    if outputs_are == "logits":
        squash = softmax if (task != "multilabel" and width > 1) else sigmoid
        raw = [squash(r) for r in raw]
    if task == "binary" and width == 1:
        raw = [np.column_stack([1.0 - r[:, 0], r[:, 0]]) for r in raw]
    if task in ("binary", "multiclass"):
        sums = np.concatenate([r.sum(axis=1) for r in raw])
        if sums.size and np.abs(sums - 1.0).max() > 1e-3:
            raise BaseModelError(
                f"base model {name!r} outputs values in [0, 1] whose rows do not sum to 1; "
                "set `outputs_are: logits` if they are scores, or add a softmax"
            )
    return [np.clip(r, 0.0, 1.0) for r in raw]


class _Shared:
    """Views, their fold subsets and their digests shared by every base model that reads
    the same view: one copy of the rows and one digest per view, not one per model."""

    def __init__(self) -> None:
        self.views: dict[int, ViewData] = {}
        self.folds: dict[tuple[int, int], ViewData] = {}
        self.digests: dict[int, str] = {}

    def view(self, x: object) -> ViewData:
        view = as_view_data(x)
        return self.views.setdefault(id(x), view)

    def fold(self, view: ViewData, k: int, rows: np.ndarray) -> ViewData:
        key = (id(view), k)
        if key not in self.folds:
            self.folds[key] = view.take(rows)
        return self.folds[key]

    def digest(self, view: ViewData) -> str:
        if id(view) not in self.digests:
            self.digests[id(view)] = view.digest()
        return self.digests[id(view)]


def _plan_parts(
    recipe: ResolvedBaseModel,
    train: TrainRows | None,
    rows: list[ViewData] | None,
    shared: _Shared,
) -> tuple[list[_Part], list[_Part]]:
    """The (model file, input) parts for the OOF rows and the new rows of one model."""

    def part(path: Path, views: list[ViewData]) -> _Part:
        key = make_key(
            model=path_digest(path),
            output=recipe.spec.output,
            layer=recipe.spec.layer,
            inputs=[shared.digest(v) for v in views],
        )
        return _Part(path=path, inputs=views, key=key)

    oof: list[_Part] = []
    if train is not None:
        inputs = [shared.view(x) for x in train.inputs[recipe.name]]
        if recipe.kind == "folds":
            reserved = np.flatnonzero(train.plan.reserved)  # predicted by every fold model
            for k, path in enumerate(recipe.fold_paths):
                fold_rows = np.concatenate([train.plan.test_index(k), reserved])
                oof.append(part(path, [shared.fold(x, k, fold_rows) for x in inputs]))
        else:
            oof.append(part(recipe.fold_paths[0], inputs))
    new = []
    if rows is not None:
        views = [shared.view(x) for x in rows]
        new = [part(p, views) for p in recipe.row_paths]
    return oof, new


@dataclass
class _PartsJob(Job):
    """A job that remembers the parts its outputs belong to (in the order of ``keys``)."""

    parts: list[_Part] = field(default_factory=list, repr=False)


def _jobs(recipe: ResolvedBaseModel, parts: list[_Part], batch_size: int) -> list[_PartsJob]:
    """One job per model file: the file is loaded once for all its parts."""
    by_path: dict[Path, list[_Part]] = {}
    for p in parts:
        if p.output is None:
            by_path.setdefault(p.path, []).append(p)
    jobs = []
    for path, todo in by_path.items():
        job = _PartsJob(
            model=recipe.name,
            spec=recipe.spec,
            path=path,
            inputs=[p.inputs for p in todo],
            keys=[p.key for p in todo],
            batch_size=batch_size,
            label=f"{recipe.name}/{path.name}",
            parts=todo,
        )
        jobs.append(job)
    return jobs


def _output(part: _Part) -> np.ndarray:
    assert part.output is not None, "every part is cached or predicted before assembly"
    return part.output


def _assemble(
    recipe: ResolvedBaseModel,
    oof_parts: list[_Part],
    new_parts: list[_Part],
    train: TrainRows | None,
    *,
    task: str,
    n_outputs: int,
) -> BasePredictions:
    """Final predictions of one model from its parts' raw outputs."""
    raw = [_output(p) for p in [*oof_parts, *new_parts]]
    n_oof = len(oof_parts)
    if recipe.kind == "backbone":
        flat = [np.asarray(r, dtype=np.float64).reshape(len(r), -1) for r in raw]
        heads, oof = recipe.heads, None
        if train is not None:
            assert recipe.spec.head is not None  # the config requires a backbone's head
            oof, _test, heads = cross_fit_head(
                recipe.name,
                recipe.spec.head,
                flat[0],
                None,
                train.y,
                train.plan,
                task=task,
                n_outputs=n_outputs,
                sample_weight=train.sample_weight,
            )
            held = train.plan.reserved
            if held.any():  # no fold head trained on them: their mean, as for test rows
                oof[held] = predict_heads(heads, flat[0][held], task=task, n_outputs=n_outputs)
        test = (
            predict_heads(heads, flat[n_oof], task=task, n_outputs=n_outputs) if new_parts else None
        )
        return BasePredictions(recipe.name, oof, test, outputs_are="embedding", heads=heads)
    outputs_are = recipe.outputs_are
    if outputs_are == "auto":
        outputs_are = detect_outputs_are(raw)
    mapped = to_representation(
        raw,
        name=recipe.name,
        task=task,
        n_outputs=n_outputs,
        outputs_are=outputs_are,
    )
    oof_out, new_out = mapped[:n_oof], mapped[n_oof:]
    oof = None
    if train is not None and recipe.kind == "folds":
        oof = np.empty((len(train.plan.ids), *oof_out[0].shape[1:]))
        on_reserved = []  # each fold model's predictions of the reserved rows, after its fold's
        for k, out in enumerate(oof_out):
            fold_rows = train.plan.test_index(k)
            oof[fold_rows] = out[: fold_rows.size]
            on_reserved.append(out[fold_rows.size :])
        if train.plan.reserved.any():
            oof[train.plan.reserved] = np.mean(on_reserved, axis=0)
    elif train is not None:
        oof = oof_out[0]
    test = np.mean(new_out, axis=0) if new_out else None
    return BasePredictions(recipe.name, oof, test, outputs_are=outputs_are)


GIVEN = "predictions"  # the kind of a member whose predictions are given (files, columns)


def _given(
    recipe: ResolvedBaseModel,
    train: TrainRows | None,
    rows: dict[str, list[ViewData]] | None,
    task: str,
    n_outputs: int,
) -> BasePredictions:
    """A prediction-file member: its one input is its prediction, mapped like an output."""
    raw = []
    if train is not None:
        raw.append(as_view_data(train.inputs[recipe.name][0]).to_numpy())
    if rows is not None:
        raw.append(as_view_data(rows[recipe.name][0]).to_numpy())
    mapped = to_representation(
        raw, name=recipe.name, task=task, n_outputs=n_outputs, outputs_are="proba"
    )
    oof = mapped.pop(0) if train is not None else None
    test = mapped.pop(0) if rows is not None else None
    return BasePredictions(recipe.name, oof, test, outputs_are="proba")


def predict_base_models(
    recipes: list[ResolvedBaseModel],
    *,
    task: str,
    n_outputs: int,
    executor: Executor,
    cache: CacheStore,
    train: TrainRows | None = None,
    rows: dict[str, list[ViewData]] | None = None,
    batch_size: int = 4096,
) -> dict[str, BasePredictions]:
    """Predict every base model on the training rows (OOF) and/or new ``rows``.

    ``rows[name]`` holds one view (:mod:`stacking.views`, or an array) per model input of
    base model ``name``; views are read in batches, never whole. Returns, per
    model, :class:`BasePredictions` whose ``oof`` is set when ``train`` is given and whose
    ``test`` is set when ``rows`` is given, with ``outputs_are`` resolved and a backbone's
    fitted ``heads``.
    """
    planned = {}
    jobs: list[Job] = []
    shared = _Shared()  # models reading the same view share its rows, folds and digest
    given = {r.name: _given(r, train, rows, task, n_outputs) for r in recipes if r.kind == GIVEN}
    for recipe in recipes:
        if recipe.kind == GIVEN:
            continue
        oof_parts, new_parts = _plan_parts(
            recipe, train, rows[recipe.name] if rows is not None else None, shared
        )
        for p in [*oof_parts, *new_parts]:
            p.output = cache.get(p.key)
        planned[recipe.name] = (oof_parts, new_parts)
        jobs += _jobs(recipe, [*oof_parts, *new_parts], batch_size)

    def on_result(job: Job, outputs: list[np.ndarray]) -> None:
        assert isinstance(job, _PartsJob)  # executors hand back the jobs they were given
        for part, out in zip(job.parts, outputs):
            cache.put(part.key, out)
            part.output = out

    if jobs:  # a warm rerun has none: no executor start-up, no garbage collection
        executor.run(jobs, on_result)

    results = {}
    for recipe in recipes:
        if recipe.kind == GIVEN:
            results[recipe.name] = given[recipe.name]
            continue
        oof_parts, new_parts = planned[recipe.name]
        pred = _assemble(recipe, oof_parts, new_parts, train, task=task, n_outputs=n_outputs)
        pred.computed = sum(len(j.keys) for j in jobs if j.model == recipe.name)
        pred.cached = len(oof_parts) + len(new_parts) - pred.computed
        results[recipe.name] = pred
    return results
