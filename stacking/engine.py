"""Out-of-fold and test predictions of frozen base models: arrays in, arrays out.

For a fold-model directory, row *i* of fold *k* is predicted by fold model *k* only, and
test rows by the mean of the K fold models' probabilities (or by the ``full`` model).
An external model predicts every row. Every (model, input) prediction goes through the
cache first; what is missing becomes :class:`~stacking.executors.Job` s for an executor,
each job loading one model once.

Predictions are normalised to the representation of :mod:`stacking.metrics`:
``(n, C)`` probabilities for classification, ``(n, L)`` for multilabel, ``(n,)`` for
regression. Logit outputs are detected (values outside [0, 1]) or declared with
``outputs_are: logits`` and mapped through softmax / sigmoid.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from stacking.base import BaseModelSource
from stacking.cache import CacheStore, array_digest, make_key, path_digest
from stacking.errors import BaseModelError
from stacking.executors import Executor, Job
from stacking.folds import FoldPlan
from stacking.numeric import sigmoid, softmax


@dataclass
class BasePredictions:
    """One base model's honest predictions: ``oof`` for training rows, ``test`` for test."""

    name: str
    oof: np.ndarray
    test: np.ndarray | None
    cached: int = 0
    computed: int = 0
    outputs_are: str = "proba"


@dataclass
class _Part:
    path: object
    inputs: list[np.ndarray]
    key: str
    output: np.ndarray | None = None


def detect_outputs_are(raw: list[np.ndarray]) -> str:
    """``logits`` when any value lies outside [0, 1], else ``proba``."""
    low = min(float(np.min(r)) for r in raw)
    high = max(float(np.max(r)) for r in raw)
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
        if np.abs(sums - 1.0).max() > 1e-3:
            raise BaseModelError(
                f"base model {name!r} outputs values in [0, 1] whose rows do not sum to 1; "
                "set `outputs_are: logits` if they are scores, or add a softmax"
            )
    return [np.clip(r, 0.0, 1.0) for r in raw]


def _plan_parts(source, inputs, test_inputs, plan: FoldPlan, output, layer) -> tuple[list, list]:
    """The (model, input) parts for OOF rows and test rows of one base model."""
    digests = {}

    def part(path, arrays):
        if path not in digests:
            digests[path] = path_digest(path)
        key = make_key(
            model=digests[path],
            output=output,
            layer=layer,
            inputs=[array_digest(a) for a in arrays],
        )
        return _Part(path=path, inputs=arrays, key=key)

    if source.kind in ("external", "backbone"):
        oof = [part(source.fold_paths[0], inputs)]
        test = [part(source.fold_paths[0], test_inputs)] if test_inputs is not None else []
        return oof, test
    oof = []
    for k, path in enumerate(source.fold_paths):
        rows = plan.test_index(k)
        oof.append(part(path, [x[rows] for x in inputs]))
    test = []
    if test_inputs is not None:
        paths = [source.full_path] if source.full_path else source.fold_paths
        test = [part(p, test_inputs) for p in paths]
    return oof, test


def predict_base_models(
    sources: list[tuple[BaseModelSource, list[np.ndarray], list[np.ndarray] | None, dict]],
    plan: FoldPlan,
    *,
    task: str,
    n_outputs: int,
    executor: Executor,
    cache: CacheStore,
    batch_size: int = 4096,
) -> dict[str, BasePredictions]:
    """Predict every base model; ``sources`` holds (source, inputs, test_inputs, options).

    ``options`` has ``output``, ``layer`` and ``outputs_are`` from the base model's
    config. A backbone's predictions are its raw embeddings, flattened to ``(n, d)``; its
    head is cross-fitted later (:mod:`stacking.backbone`).
    """
    planned = {}
    jobs = []
    for source, inputs, test_inputs, options in sources:
        oof_parts, test_parts = _plan_parts(
            source, inputs, test_inputs, plan, options["output"], options.get("layer")
        )
        planned[source.name] = (oof_parts, test_parts, options, source.kind)
        by_path: dict = {}
        for p in [*oof_parts, *test_parts]:
            p.output = cache.get(p.key)
            if p.output is None:
                by_path.setdefault(p.path, []).append(p)
        for path, parts in by_path.items():
            job = Job(
                model=source.name,
                path=path,
                output=options["output"],
                inputs=[p.inputs for p in parts],
                keys=[p.key for p in parts],
                batch_size=batch_size,
                label=f"{source.name}/{path.name}",
                layer=options.get("layer"),
            )
            job.parts = parts  # type: ignore[attr-defined]
            jobs.append(job)

    def on_result(job, outputs):
        for part, out in zip(job.parts, outputs):
            cache.put(part.key, out)
            part.output = out

    executor.run(jobs, on_result)

    results = {}
    n = len(plan.ids)
    for name, (oof_parts, test_parts, options, kind) in planned.items():
        n_computed = sum(len(j.keys) for j in jobs if j.model == name)
        raw = [p.output for p in [*oof_parts, *test_parts]]
        if kind == "backbone":
            flat = [np.asarray(r, dtype=np.float64).reshape(len(r), -1) for r in raw]
            results[name] = BasePredictions(
                name=name,
                oof=flat[0],
                test=flat[1] if len(flat) > 1 else None,
                cached=len(raw) - n_computed,
                computed=n_computed,
                outputs_are="embedding",
            )
            continue
        outputs_are = options["outputs_are"]
        if outputs_are == "auto":
            outputs_are = detect_outputs_are(raw)
        mapped = to_representation(
            raw, name=name, task=task, n_outputs=n_outputs, outputs_are=outputs_are
        )
        oof_out, test_out = mapped[: len(oof_parts)], mapped[len(oof_parts) :]
        if len(oof_parts) == 1:
            oof = oof_out[0]
        else:
            oof = np.empty((n, *oof_out[0].shape[1:]))
            for k, out in enumerate(oof_out):
                oof[plan.test_index(k)] = out
        test = np.mean(test_out, axis=0) if test_out else None
        results[name] = BasePredictions(
            name=name,
            oof=oof,
            test=test,
            cached=len(oof_parts) + len(test_parts) - n_computed,
            computed=n_computed,
            outputs_are=outputs_are,
        )
    return results
