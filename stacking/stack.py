"""The fitted stack: raw rows in, ensemble predictions out, for training and serving alike.

A :class:`FittedStack` holds everything that turns rows into ensemble predictions:

* one :class:`~stacking.base.ResolvedBaseModel` per base model (its spec, its files,
  its input views, how its outputs map, a backbone's fitted heads);
* the level-1 transform (``meta.features``, with the training OOF values rank features
  place new rows among);
* every fitted meta-model of every level, and the name of the selected ensemble.

:func:`fit_stack` cross-fits the meta levels on the training OOF predictions and returns
the stack with its leaderboard entries. :meth:`FittedStack.predict_proba` predicts new
rows: base models through :func:`~stacking.engine.predict_base_models`, then
:meth:`FittedStack.combine`. The experiment predicts its test rows with exactly these two
calls, and the served model (results folder, ``stacking predict``, the MLflow pyfunc
model) makes the same two calls, so serving cannot drift from training.

>>> stack = load_stack("runs/digits-…/ensemble")
>>> stack.predict_proba(pd.read_parquet("new_rows.parquet"))   # (n, C)
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import pandas as pd

from stacking.base import (
    PredictionFiles,
    ResolvedBaseModel,
    path_digest,
    read_prediction_files,
    resolve_base_model,
    served_columns,
)
from stacking.cache import CacheStore, NullCacheStore, array_digest, make_key
from stacking.config import (
    READ_BACK,
    BaseModelSpec,
    Config,
    FeaturesConfig,
    PredictionFilesConfig,
    ViewConfig,
)
from stacking.data import Dataset
from stacking.engine import BasePredictions, predict_base_models
from stacking.errors import DataError, DataFileNotFoundError
from stacking.evaluate import Entry
from stacking.executors import Executor, LocalExecutor
from stacking.folds import FoldPlan
from stacking.images import ImageAccess
from stacking.level1 import (
    Level1,
    block_names,
    level1_features,
    next_level_input,
    pre_features,
    to_block,
)
from stacking.meta import Candidate, cross_fit, predict_output, refit, with_layout
from stacking.views import ViewData, fix_columns, read_view

FORMAT_VERSION = 4  # 4: each base model as its spec and what was resolved from it
READS_FORMATS = (3, 4)  # 3: one FittedStack for training and serving


@dataclass
class Member:
    """One fitted meta-model of a level and what it reads (blocks or features)."""

    name: str
    uses_blocks: bool
    estimator: Any = field(repr=False)
    models: list[str] = field(default_factory=list)  # the models of the blocks it combines
    reads: list[str] = field(default_factory=list)  # the columns it reads (blocks: models)


@dataclass
class FittedStack:
    """Resolved base models, the level-1 transform and the fitted levels; see module doc."""

    task: str
    classes: list
    output_names: list[str]
    id_column: str
    base_models: list[ResolvedBaseModel]
    features: FeaturesConfig
    levels: list[list[Member]]
    ensemble: str = ""
    reference: dict[str, np.ndarray] = field(default_factory=dict, repr=False)
    batch_size: int = 4096

    @property
    def n_outputs(self) -> int:
        return 1 if self.task == "regression" else len(self.classes)

    # -- prediction ---------------------------------------------------------------------
    def read_inputs(
        self,
        frame: pd.DataFrame,
        *,
        source: str,
        root: Path | None = None,
        access: ImageAccess | None = None,
    ) -> dict[str, list[ViewData]]:
        """Each base model's inputs for ``frame``, through its views (read in batches);
        image views read paths as ``access`` allows (see :class:`ImageAccess`)."""
        ids = frame[self.id_column] if self.id_column in frame.columns else None
        self.check_given_columns(frame, source=source)
        return {
            r.name: [
                read_view(frame, v, source=source, root=root, ids=ids, access=access)
                for v in r.views
            ]
            for r in self.base_models
        }

    def given_columns(self) -> dict[str, list[str]]:
        """The columns rows to serve carry for each prediction-file member (it has no
        model): its predictions, named as its level-1 features."""
        return {
            r.name: list(r.views[0].columns or [])
            for r in self.base_models
            if r.kind == "predictions"
        }

    def check_given_columns(self, frame: pd.DataFrame, *, source: str) -> None:
        """Refuse rows that lack a prediction-file member's columns, naming them."""
        for name, columns in self.given_columns().items():
            missing = [c for c in columns if c not in frame.columns]
            if missing:
                raise DataError(
                    f"{source} lacks column(s) {missing} of base model {name!r}: it is given "
                    f"by prediction files and has no model, so rows to serve carry its "
                    f"predictions in columns {columns}; add them (the model's predictions "
                    "of these rows)"
                )

    def level1(self, preds: dict[str, np.ndarray], frame: pd.DataFrame, *, source: str) -> Level1:
        """Level-1 features and blocks of new rows from each base model's prediction."""
        features = level1_features(
            preds,
            frame,
            self.features,
            task=self.task,
            output_names=self.output_names,
            reference=self.reference or None,
            source=source,
        )
        blocks = np.hstack([to_block(preds[r.name], self.task) for r in self.base_models])
        return Level1(
            models=[r.name for r in self.base_models],
            features=features,
            blocks=blocks,
            columns_per_model=blocks.shape[1] // len(self.base_models),
        )

    def combine(self, level1: Level1) -> dict[str, np.ndarray]:
        """Every meta-model's prediction of the rows of ``level1``, level after level
        (the selected ensemble's among them)."""
        blocks, features = level1.blocks, level1.features.to_numpy()
        every: dict[str, np.ndarray] = {}
        for level in self.levels:
            outputs = {
                m.name: predict_output(
                    m.estimator,
                    blocks if m.uses_blocks else features,
                    task=self.task,
                    n_outputs=self.n_outputs,
                )
                for m in level
            }
            every.update(outputs)
            blocks = features = next_level_input(list(outputs.values()), self.task)
        return every

    def predict_proba(
        self,
        frame: pd.DataFrame,
        *,
        executor: Executor | None = None,
        cache: CacheStore | None = None,
        source: str = "the input table",
        root: Path | None = None,
        access: ImageAccess | None = None,
    ) -> np.ndarray:
        """The ensemble's probabilities ``(n, C)`` (``(n, L)`` multilabel, ``(n,)`` values).

        ``root`` is the folder relative image paths start from (default: the working
        folder); ``access``, when given, says which paths image views may read instead.
        """
        if len(frame) == 0:
            raise DataError(f"{source} has no rows to predict")
        frame = frame.reset_index(drop=True)
        preds = predict_base_models(
            self.base_models,
            task=self.task,
            n_outputs=self.n_outputs,
            executor=executor or LocalExecutor(progress=False),
            cache=cache or NullCacheStore(),
            rows=self.read_inputs(frame, source=source, root=root, access=access),
            batch_size=self.batch_size,
        )
        base = {m: _test_of(p) for m, p in preds.items()}
        if self.ensemble in base:  # meta.guard fell back to a base model
            return base[self.ensemble]
        level1 = self.level1(base, frame, source=source)
        return self.combine(level1)[self.ensemble]

    # -- persistence --------------------------------------------------------------------
    # pragma: no mutate block (save, load: mutation testing covers the predict path only)
    def save(self, directory: str | Path, *, copy_models: bool = False) -> Path:
        """Write the stack as a folder; ``copy_models`` copies the base models in.

        ``stack.json`` (each base model's spec and files, the levels),
        ``meta_models.joblib`` (fitted levels and backbone heads: a pickle is code, load
        only what you trust), ``reference.npz`` (rank features) and, with
        ``copy_models``, the model files under ``models/``.
        """
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        members = []
        for m in self.base_models:
            if copy_models:  # serving never predicts out of fold
                copied = [_copy_model(directory, m.name, p) for p in m.row_paths]
                m = m.model_copy(update={"row_paths": copied, "fold_paths": []})
            members.append(m.model_dump(mode="json"))
        spec = {
            "format_version": FORMAT_VERSION,
            "task": self.task,
            "classes": self.classes,
            "output_names": self.output_names,
            "id_column": self.id_column,
            "base_models": members,
            "features": self.features.model_dump(mode="json"),
            "levels": [
                [{"name": m.name, "uses_blocks": m.uses_blocks} for m in lv] for lv in self.levels
            ],
            "ensemble": self.ensemble,
            "batch_size": self.batch_size,
        }
        (directory / "stack.json").write_text(json.dumps(spec, indent=2, default=str))
        fitted = {
            "levels": {m.name: m.estimator for lv in self.levels for m in lv},
            "heads": {r.name: r.heads for r in self.base_models if r.heads},
        }
        joblib.dump(fitted, directory / "meta_models.joblib")
        if self.reference:  # keys prefixed: a model may be named like a savez argument
            arrays = {f"m:{k}": v for k, v in self.reference.items()}
            # numpy's stub checks **arrays against the keyword-only `allow_pickle: bool`.
            np.savez(directory / "reference.npz", **arrays)  # type: ignore[arg-type]
        return directory

    @classmethod
    def load(cls, directory: str | Path) -> FittedStack:
        directory = Path(directory)
        if (directory / "predictor.json").is_file() and not (directory / "stack.json").is_file():
            old = json.loads((directory / "predictor.json").read_text()).get("format_version")
            raise DataError(
                f"{str(directory)!r} was saved in format {old} (predictor.json) by an older "
                f"tf-stacking; this one reads format {FORMAT_VERSION}. Use the version that "
                "wrote it, or re-run the experiment"
            )
        if not (directory / "stack.json").is_file():
            raise DataFileNotFoundError(
                f"{str(directory)!r} holds no stack.json; pass a results directory, its "
                "ensemble/ folder or an MLflow ensemble model"
            )
        spec = json.loads((directory / "stack.json").read_text())
        version = spec.pop("format_version", None)
        if version not in READS_FORMATS:
            raise DataError(
                f"{str(directory)!r} was saved in format {version}; this tf-stacking "
                f"reads formats {' and '.join(map(str, READS_FORMATS))}. Use the version "
                "that wrote it, or re-run the experiment"
            )
        fitted = joblib.load(directory / "meta_models.joblib")
        reference = {}
        if (directory / "reference.npz").is_file():
            with np.load(directory / "reference.npz") as npz:
                reference = {k.removeprefix("m:"): npz[k] for k in npz.files}

        def here(p: Path) -> Path:
            return p if p.is_absolute() else directory / p

        members = []
        for entry in spec.pop("base_models"):
            if version == FORMAT_VERSION:
                m = ResolvedBaseModel.model_validate(entry, context=READ_BACK)
            else:
                m = _from_format_3(entry)
            update = {
                "fold_paths": [here(p) for p in m.fold_paths],
                "row_paths": [here(p) for p in m.row_paths],
                "heads": fitted["heads"].get(m.name, []),
            }
            members.append(m.model_copy(update=update))
        levels = [
            [Member(m["name"], m["uses_blocks"], fitted["levels"][m["name"]]) for m in lv]
            for lv in spec.pop("levels")
        ]
        return cls(
            **{k: v for k, v in spec.items() if k != "features"},
            base_models=members,
            features=FeaturesConfig(**spec["features"]),
            levels=levels,
            reference=reference,
        )


# pragma: no mutate start (training and loading: mutation testing covers the predict path)
def _copy_model(directory: Path, name: str, source: Path) -> Path:
    target = Path("models") / name / source.name
    (directory / target).parent.mkdir(parents=True, exist_ok=True)
    if source.is_dir():
        shutil.copytree(source, directory / target, dirs_exist_ok=True)
    else:
        shutil.copy2(source, directory / target)
    return target


def _from_format_3(entry: dict[str, Any]) -> ResolvedBaseModel:
    """A base model of a stack saved in format 3, which recorded only the settings serving
    reads (no path, head or declaration): built from them as they were validated when
    the stack was trained (a spec without a path is no valid config, see READ_BACK)."""
    names, views = entry["input_names"], [ViewConfig(**v) for v in entry["views"]]
    inputs: list[str | ViewConfig] = list(views)
    served = entry["outputs_are"] if entry["kind"] in ("folds", "external") else None
    if entry["kind"] == "predictions":  # its view is its served predictions, no input
        inputs = []
    spec = BaseModelSpec.model_construct(
        input=dict(zip(names, inputs)) if names else (inputs or None),
        custom_objects=list(entry["custom_objects"]),
        output=entry["output"],
        layer=entry["layer"],
    )
    return ResolvedBaseModel.model_construct(
        name=entry["name"],
        spec=spec,
        kind=entry["kind"],
        fold_paths=[Path(p) for p in entry["fold_paths"]],
        row_paths=[Path(p) for p in entry["row_paths"]],
        views=views,
        fitted_outputs_are=served,
    )


def resolve_base_models(
    config: Config, data: Dataset, plan: FoldPlan, *, cache: CacheStore | None = None
) -> list[ResolvedBaseModel]:
    """Check each configured base model against the experiment; find its files and
    resolve its views against the training table.

    Prediction files are read and checked here; ``cache`` keeps what passed the checks.
    """
    members = []
    to_cache: list[tuple[str, np.ndarray]] = []  # written once every member is checked
    for name, cfg in config.base_models.items():
        resolved = resolve_base_model(
            name,
            cfg,
            folds_digest=plan.digest,
            n_splits=plan.n_splits,
            task=data.task,
            classes=data.classes,
        )
        if cfg.predictions is not None:
            members.append(_prediction_files_member(resolved, data, plan, cache, to_cache))
            continue
        views, _ = config.model_inputs(name)
        table = data.source["train"]
        views = [fix_columns(v, data.train, source=table) for v in views]  # by name from now
        members.append(resolved.model_copy(update={"views": views}))
    for key, value in to_cache:  # only filled when there is a cache
        assert cache is not None
        cache.put(key, value)
    return members


def _checked_prediction_files(
    name: str,
    cfg: PredictionFilesConfig,
    data: Dataset,
    plan: FoldPlan,
    cache: CacheStore | None,
    to_cache: list[tuple[str, np.ndarray]],
) -> PredictionFiles:
    """The member's files read and checked, or their checked arrays from the cache.

    An entry's key holds each file's sha256 and everything the checks read (the rows'
    ids, the fold plan, the task and outputs), and is written only once the checks
    passed: a hit is what checking the same files against the same rows would give, so
    a warm rerun neither parses nor re-checks unchanged files. New entries are added to
    ``to_cache``, written once every member passed (a refused run writes none).
    """
    test_ids = data.test_ids if data.test is not None else None
    paths = {"oof": cfg.oof, **({"test": cfg.test} if test_ids is not None and cfg.test else {})}
    keys: dict[str, str] = {}
    if cache is not None and all(p.is_file() for p in paths.values()):
        common = {"task": data.task, "outputs": data.output_names(), "id": data.id_column}
        rows = {"oof": data.ids, "test": test_ids}
        keys = {
            role: make_key(
                predictions=path_digest(path),
                role=role,
                ids=array_digest(np.asarray(rows[role]).astype(str)),
                folds=plan.digest if role == "oof" else None,
                **common,
            )
            for role, path in paths.items()
        }
        hits = {role: cache.get(key) for role, key in keys.items()}
        oof, test = hits.get("oof"), hits.get("test")
        if oof is not None and (test is not None or test_ids is None):
            digests = {role: path_digest(path) for role, path in paths.items()}
            return PredictionFiles(name, oof, test, digests)
    files = read_prediction_files(
        name,
        cfg,
        id_column=data.id_column,
        ids=data.ids,
        folds=plan.folds,
        test_ids=test_ids,
        task=data.task,
        output_names=data.output_names(),
    )
    if cache is not None and keys:
        for role, key in keys.items():
            value = files.oof if role == "oof" else files.test
            if value is not None:
                to_cache.append((key, value))
    return files


def _prediction_files_member(
    member: ResolvedBaseModel,
    data: Dataset,
    plan: FoldPlan,
    cache: CacheStore | None,
    to_cache: list[tuple[str, np.ndarray]],
) -> ResolvedBaseModel:
    """A prediction-file member, its files checked against the data and the fold plan.

    It reads, when serving, one columns view: its predictions carried by the rows to
    serve, named as its level-1 features (float64, so served equals trained exactly).
    """
    files_cfg = member.spec.predictions
    assert files_cfg is not None
    files = _checked_prediction_files(member.name, files_cfg, data, plan, cache, to_cache)
    columns = served_columns(member.name, data.task, data.output_names())
    views = [ViewConfig(columns=columns, dtype="float64")]
    return member.model_copy(update={"views": views, "predictions": files})


def fit_stack(
    recipes: list[ResolvedBaseModel],
    preds: dict[str, BasePredictions],
    level1: Level1,
    data: Dataset,
    plan: FoldPlan,
    levels: list[list[Candidate]],
    *,
    features: FeaturesConfig,
    batch_size: int = 4096,
    on_candidate: Callable[[str, int, float], None] | None = None,
    on_candidate_start: Callable[[str, int, tuple[int, int]], None] | None = None,
) -> tuple[FittedStack, list[Entry]]:
    """Cross-fit every level on the fold plan and refit it on all rows.

    Returns the stack (``ensemble`` still unset: the caller selects it from the scored
    entries) and one leaderboard :class:`~stacking.evaluate.Entry` per candidate.
    ``on_candidate_start(name, level, X.shape)`` and ``on_candidate(name, level,
    seconds)`` are called around each candidate, so a slow one is seen running.
    """
    entries, fitted_levels = [], []
    X_blocks, X_features = level1.blocks, level1.features.to_numpy()
    block_models, feature_names = list(level1.models), list(level1.features.columns)
    for depth, candidates in enumerate(levels, start=2):
        members, oofs = [], []
        for cand in candidates:
            started = time.perf_counter()
            X = X_blocks if cand.uses_blocks else X_features
            if on_candidate_start is not None:
                on_candidate_start(cand.name, depth, X.shape)
            with_layout(cand, level1.columns_per_model)
            oof = cross_fit(
                cand,
                X,
                data.y,
                plan,
                sample_weight=data.sample_weight,
                task=data.task,
                n_outputs=data.n_outputs,
            )
            model = refit(cand, X, data.y, sample_weight=data.sample_weight)
            reads = block_models if cand.uses_blocks else feature_names
            members.append(
                Member(cand.name, cand.uses_blocks, model, list(block_models), list(reads))
            )
            entries.append(Entry(cand.name, "meta", depth, oof))
            oofs.append(oof)
            if on_candidate is not None:
                on_candidate(cand.name, depth, time.perf_counter() - started)
        fitted_levels.append(members)
        X_blocks = X_features = next_level_input(oofs, data.task)
        block_models = [c.name for c in candidates]
        feature_names = [n for c in candidates for n in block_names(c.name, data)]
    resolved = [_with_training_outcome(r, preds[r.name]) for r in recipes]
    reference = {}
    if features.kind == "rank":
        reference = {m: pre_features(_oof_of(p), data.task, features) for m, p in preds.items()}
    stack = FittedStack(
        task=data.task,
        classes=list(data.classes),
        output_names=data.output_names(),
        id_column=data.id_column,
        base_models=resolved,
        features=features,
        levels=fitted_levels,
        reference=reference,
        batch_size=batch_size,
    )
    return stack, entries


def _with_training_outcome(recipe: ResolvedBaseModel, pred: BasePredictions) -> ResolvedBaseModel:
    """The base model as serving needs it: ``outputs_are`` resolved, a backbone's heads."""
    if recipe.kind in ("folds", "external"):
        update: dict[str, Any] = {"fitted_outputs_are": pred.outputs_are}
    else:  # a backbone's outputs are embeddings; prediction files are probabilities
        update = {}
    return recipe.model_copy(update={**update, "heads": pred.heads})


def load_stack(location: str | Path) -> FittedStack:
    """A stack from a results directory or a stack folder."""
    path = Path(location)
    if (path / "ensemble" / "stack.json").is_file():
        path = path / "ensemble"
    return FittedStack.load(path)


# pragma: no mutate end
def _test_of(pred: BasePredictions) -> np.ndarray:
    assert pred.test is not None, "predict_base_models was given rows"
    return pred.test


def _oof_of(pred: BasePredictions) -> np.ndarray:  # pragma: no mutate block
    assert pred.oof is not None, "predict_base_models was given the training rows"
    return pred.oof
