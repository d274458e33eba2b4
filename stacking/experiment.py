"""The one orchestrator behind the CLI and the Python API.

>>> result = Experiment.from_yaml("configs/digits.yaml").run()
>>> result.leaderboard.head()
>>> result.oof, result.test_predictions, result.run_id

``run`` goes down the data flow of DESIGN.md: data → fold plan → base models (checked
against the fold plan) → cached OOF/test predictions → level-1 matrix → meta candidates
cross-fitted on the same folds, level after level → leaderboard with bootstrap intervals
→ results directory → tracker. The results directory appears whole or not at all.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from stacking import results
from stacking.backbone import cross_fit_head
from stacking.base import resolve_base_model
from stacking.cache import CacheStore, open_cache
from stacking.config import Config, ViewConfig, load_config, parse_config
from stacking.data import Dataset, load_dataset
from stacking.engine import predict_base_models
from stacking.errors import ConfigError, DataError
from stacking.evaluate import Entry, best_of, format_leaderboard, leaderboard, score_entry
from stacking.executors import Executor, make_executor
from stacking.folds import FoldPlan, make_fold_plan
from stacking.level1 import (
    Level1,
    block_names,
    build_level1,
    check_meta_columns,
    pre_features,
    to_block,
)
from stacking.meta import Candidate, cross_fit, make_candidate, predict_output, refit
from stacking.meta.weights import weights_table
from stacking.metrics import default_metrics, get_metric
from stacking.predictor import BaseRecipe, EnsemblePredictor
from stacking.tracking import MlflowTracker, Tracker, get_tracker, log_results, preflight

BASE_MEAN = "base_mean"


@dataclass
class ExperimentResult:
    """What a run produced; the same content as its results directory."""

    leaderboard: pd.DataFrame
    oof: pd.DataFrame
    test_predictions: pd.DataFrame | None
    weights: pd.DataFrame
    metrics: dict[str, Any]
    ensemble: str
    meta_model: Any
    predictor: EnsemblePredictor
    output_dir: Path
    run_id: str | None

    def summary(self) -> str:
        primary = get_metric(self.metrics["primary_metric"])
        text = format_leaderboard(self.leaderboard, primary)
        return f"{text}\n\nensemble: {self.ensemble}  results: {self.output_dir}"


class Experiment:
    """A configured stacking experiment; ``run()`` executes it end to end."""

    def __init__(
        self,
        config: Config,
        *,
        output_dir: str | Path | None = None,
        tracker: Tracker | None = None,
        executor: Executor | None = None,
        cache: CacheStore | None = None,
        progress: bool = True,
    ) -> None:
        self.config = config
        self.output_dir = Path(output_dir) if output_dir else None
        self.tracker = tracker if tracker is not None else get_tracker(config.tracking)
        self.executor = executor or make_executor(config.executor, progress=progress)
        self.cache = cache or open_cache(config.cache)
        self.reproduces: tuple[str, dict[str, float], str | None] | None = None

    @classmethod
    def from_yaml(cls, path: str | Path, overrides: list[str] = (), **kwargs) -> Experiment:
        return cls(load_config(path, overrides), **kwargs)

    @classmethod
    def from_run(cls, run_id: str, *, tracking_uri: str | None = None, **kwargs) -> Experiment:
        """The experiment of a recorded MLflow run, from its ``config.resolved.yaml``.

        Its data and fold plan must still have the digests the run recorded; the new run
        is tagged ``stacking.reproduces`` with the old run's id.
        """
        recorded_run = MlflowTracker(uri=tracking_uri).fetch_run(run_id)
        raw, tags, metrics = recorded_run.config, recorded_run.tags, recorded_run.metrics
        raw.setdefault("tracking", {})["uri"] = tracking_uri or raw["tracking"].get("uri")
        config = parse_config(raw, root=Path.cwd(), source=f"run {run_id}'s config")
        data = load_dataset(config.data)
        plan = make_fold_plan(config.folds, data)
        for what, now in [("data", data.digest), ("folds", plan.digest)]:
            recorded = tags.get(f"stacking.{what}_digest")
            if recorded != now:
                raise DataError(
                    f"run {run_id} used {what} with digest {recorded}, but "
                    f"{config.data.train} now gives {now}; the {what} changed since that run"
                )
        experiment = cls(config, **kwargs)
        recorded = {k: v for k, v in metrics.items() if k.startswith("cv_")}
        experiment.reproduces = (run_id, recorded, tags.get("stacking.ensemble"))
        return experiment

    # -- stages ---------------------------------------------------------------------------
    def _metrics(self, task: str) -> list[str]:
        names = self.config.metrics or default_metrics(task)
        for name in names:
            metric = get_metric(name)
            if task not in metric.tasks:
                raise ConfigError(
                    f"metrics: {name!r} does not apply to a {task} task; "
                    f"try {default_metrics(task)}"
                )
        return names

    def _levels(self, task: str) -> list[list[Candidate]]:
        specs = [self.config.meta.candidates] + [lv.candidates for lv in self.config.meta.levels]
        levels, seen = [], {BASE_MEAN, *self.config.base_models}
        for i, level in enumerate(specs):
            where = "meta.candidates" if i == 0 else f"meta.levels[{i - 1}].candidates"
            if not level:
                raise ConfigError(f"{where} is empty; name at least one meta-model")
            candidates = [make_candidate(s, task=task, where=where) for s in level]
            for c in candidates:
                if c.name in seen:
                    raise ConfigError(
                        f"{where}: the name {c.name!r} is used twice; give candidates "
                        "distinct `name:` values"
                    )
                seen.add(c.name)
            levels.append(candidates)
        return levels

    def _views(self, name: str, spec) -> list[ViewConfig]:
        specs = spec if isinstance(spec, list) else [spec]
        views = []
        for s in specs:
            if isinstance(s, str):
                if s not in self.config.data.views:
                    raise ConfigError(
                        f"base_models.{name}.input: no view {s!r} in data.views "
                        f"(defined: {sorted(self.config.data.views)})"
                    )
                s = self.config.data.views[s]
            views.append(s)
        return views

    def _predict_bases(self, data: Dataset, plan: FoldPlan):
        sources = []
        for name, cfg in self.config.base_models.items():
            source = resolve_base_model(
                name,
                cfg,
                folds_digest=plan.digest,
                n_splits=plan.n_splits,
                task=data.task,
                classes=data.classes,
            )
            views = self._views(name, cfg.input)
            inputs = [data.view(v) for v in views]
            test_inputs = (
                [data.view(v, which="test") for v in views] if data.test is not None else None
            )
            options = {
                "output": cfg.output,
                "layer": cfg.layer,
                "outputs_are": cfg.outputs_are,
                "views": views,
            }
            sources.append((source, inputs, test_inputs, options))
        preds = predict_base_models(
            sources,
            plan,
            task=data.task,
            n_outputs=data.n_outputs,
            executor=self.executor,
            cache=self.cache,
            batch_size=self.config.executor.batch_size,
        )
        heads = {}
        for src, *_ in sources:
            if src.kind == "backbone":
                pred = preds[src.name]
                pred.oof, pred.test, heads[src.name] = cross_fit_head(
                    src.name,
                    self.config.base_models[src.name].head,
                    pred.oof,
                    pred.test,
                    data.y,
                    plan,
                    task=data.task,
                    n_outputs=data.n_outputs,
                    sample_weight=data.sample_weight,
                )
        recipes = [
            BaseRecipe(
                name=src.name,
                paths=[str(p) for p in ([src.full_path] if src.full_path else src.fold_paths)],
                views=[v.model_dump(mode="json") for v in options["views"]],
                output=options["output"],
                outputs_are=preds[src.name].outputs_are,
                layer=options["layer"],
                heads=heads.get(src.name, []),
            )
            for src, _, _, options in sources
        ]
        return preds, recipes

    def _stack(self, level1: Level1, data: Dataset, plan: FoldPlan, levels):
        """Cross-fit every level; return meta entries and every candidate refitted."""
        entries, fitted, test_out, inputs = [], {}, {}, {}
        block_models, feature_names = list(level1.models), list(level1.features.columns)
        X_blocks, X_features = level1.blocks, level1.features.to_numpy()
        T_blocks, T_features = (
            level1.test_blocks,
            (None if level1.test_features is None else level1.test_features.to_numpy()),
        )
        kw = {"task": data.task, "n_outputs": data.n_outputs}
        for depth, candidates in enumerate(levels, start=2):
            oofs, tests = [], []
            for cand in candidates:
                X = X_blocks if cand.uses_blocks else X_features
                if "columns_per_model" in cand.estimator.get_params():
                    # Explicit, so a meta fold missing a class still reads the layout right.
                    cand.estimator.set_params(columns_per_model=level1.columns_per_model)
                oof = cross_fit(cand, X, data.y, plan, sample_weight=data.sample_weight, **kw)
                model = refit(cand, X, data.y, sample_weight=data.sample_weight)
                fitted[cand.name] = model
                inputs[cand.name] = (
                    block_models,
                    block_models if cand.uses_blocks else feature_names,
                )
                entries.append(Entry(cand.name, "meta", depth, oof))
                oofs.append(oof)
                T = T_blocks if cand.uses_blocks else T_features
                test = predict_output(model, T, **kw) if T is not None else None
                test_out[cand.name] = test
                tests.append(test)
            # The next level reads this level's OOF predictions, in block layout.
            X_blocks = np.hstack([to_block(o, data.task) for o in oofs])
            X_features = X_blocks
            block_models = [c.name for c in candidates]
            feature_names = [n for c in candidates for n in block_names(c.name, data)]
            if T_blocks is not None:
                T_blocks = np.hstack([to_block(t, data.task) for t in tests])
                T_features = T_blocks
        return entries, fitted, test_out, inputs

    # -- the run --------------------------------------------------------------------------
    def run(self) -> ExperimentResult:
        cfg = self.config
        out = preflight(self.tracker, self.output_dir or results.default_dir(self.config.name))
        data = load_dataset(cfg.data)
        plan = make_fold_plan(cfg.folds, data)
        reserved = {data.id_column, *data.target_columns}
        reserved |= {c for c in (cfg.data.weight, cfg.folds.column) if c}
        check_meta_columns(data, cfg.meta.features, reserved)
        metric_names = self._metrics(data.task)
        primary = get_metric(metric_names[0])
        levels = self._levels(data.task)

        preds, recipes = self._predict_bases(data, plan)
        level1 = build_level1(preds, data, cfg.meta.features)

        entries = [Entry(name, "base", 1, p.oof) for name, p in preds.items()]
        entries.append(
            Entry(BASE_MEAN, "base_mean", 1, np.mean([p.oof for p in preds.values()], 0))
        )
        meta_entries, fitted, test_out, inputs = self._stack(level1, data, plan, levels)
        entries += meta_entries
        for entry in entries:
            score_entry(
                entry,
                data.y,
                plan,
                task=data.task,
                metrics=metric_names,
                sample_weight=data.sample_weight,
            )
        last_level = [e for e in meta_entries if e.level == len(levels) + 1]
        ensemble = best_of(last_level, primary)
        board = leaderboard(
            entries,
            data.y,
            task=data.task,
            metrics=metric_names,
            selected=ensemble.name,
            n_resamples=cfg.meta.bootstrap,
            seed=cfg.meta.seed,
            sample_weight=data.sample_weight,
        )
        weights = weights_table(fitted, inputs, data.output_names())
        oof = results.oof_frame(data, plan, level1)
        test_frame = results.test_frame(data, level1, test_out.get(ensemble.name))
        metrics = results.metrics_json(data, plan, entries, ensemble, metric_names, board)
        predictor = self._predictor(data, preds, recipes, levels, fitted, ensemble.name)
        tmp = results.write_partial(
            out,
            config=self.config.to_dict(),
            data=data,
            plan=plan,
            oof=oof,
            test_frame=test_frame,
            board=board,
            weights=weights,
            metrics=metrics,
            entries=entries,
            predictor=predictor,
        )
        out = results.move_into_place(tmp, out)
        reproduces = {"stacking.reproduces": self.reproduces[0]} if self.reproduces else None
        run_id = log_results(self.tracker, out, tags=reproduces)
        metrics.update({"run_id": run_id} if run_id else {})
        return ExperimentResult(
            leaderboard=board,
            oof=oof,
            test_predictions=test_frame,
            weights=weights,
            metrics=metrics,
            ensemble=ensemble.name,
            meta_model=fitted[ensemble.name],
            predictor=predictor,
            output_dir=out,
            run_id=run_id,
        )

    # -- outputs --------------------------------------------------------------------------
    def _predictor(self, data, preds, recipes, levels, fitted, ensemble) -> EnsemblePredictor:
        features = self.config.meta.features
        reference = {}
        if features.kind == "rank":
            reference = {m: pre_features(p.oof, data.task, features) for m, p in preds.items()}
        return EnsemblePredictor(
            task=data.task,
            classes=list(data.classes),
            output_names=data.output_names(),
            id_column=data.id_column,
            base_models=recipes,
            features=features.model_dump(mode="json"),
            levels=[[{"name": c.name, "uses_blocks": c.uses_blocks} for c in lv] for lv in levels],
            ensemble=ensemble,
            meta_models=fitted,
            reference=reference,
            batch_size=self.config.executor.batch_size,
        )
