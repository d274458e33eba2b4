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

import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from stacking import results
from stacking.cache import CacheStore, open_cache
from stacking.config import Config, load_config, parse_config
from stacking.data import Dataset, load_dataset
from stacking.engine import TrainRows, predict_base_models
from stacking.errors import ConfigError, DataError
from stacking.evaluate import Entry, best_of, format_leaderboard, leaderboard, score_entry
from stacking.executors import Executor, make_executor
from stacking.folds import FoldPlan, make_fold_plan
from stacking.level1 import build_level1, check_meta_columns
from stacking.meta import Candidate, make_candidate
from stacking.meta.weights import weights_table
from stacking.metrics import default_metrics, get_metric
from stacking.predictor import EnsemblePredictor
from stacking.stack import fit_stack, resolve_recipes
from stacking.tracking import (
    ChildRecord,
    NoopTracker,
    RunRecord,
    Tracker,
    fetch_run,
    make_tracker,
)
from stacking.views import read_view

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
        self.tracker = tracker if tracker is not None else make_tracker(config.tracking)
        self.executor = executor or make_executor(config.executor, progress=progress)
        self.cache = cache or open_cache(config.cache)
        self.reproduces: tuple[str, dict[str, float], str | None] | None = None

    @classmethod
    def from_yaml(cls, path: str | Path, overrides: list[str] = (), **kwargs) -> Experiment:
        return cls(load_config(path, overrides), **kwargs)

    @classmethod
    def from_run(
        cls,
        run_id: str,
        *,
        tracking_uri: str | None = None,
        trust_imports: bool = False,
        **kwargs,
    ) -> Experiment:
        """The experiment of a recorded MLflow run, from its ``config.resolved.yaml``.

        Its data and fold plan must still have the digests the run recorded; the new run
        is tagged ``stacking.reproduces`` with the old run's id. The stored config is not
        trusted: import paths outside ``stacking.``/``sklearn.`` are refused unless
        ``trust_imports``.
        """
        raw, tags, metrics = fetch_run(run_id, tracking_uri)
        raw.setdefault("tracking", {})["uri"] = tracking_uri or raw["tracking"].get("uri")
        source = f"run {run_id}'s config"
        config = parse_config(raw, root=Path.cwd(), source=source, trusted_imports=trust_imports)
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
            if task not in get_metric(name).tasks:
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
            candidates = [make_candidate(s, task=task, where=where) for s in level]
            for c in candidates:  # "default" resolves by task, so names are final only here
                if c.name in seen:
                    raise ConfigError(
                        f"{where}: the name {c.name!r} is used twice; give candidates "
                        "distinct `name:` values"
                    )
                seen.add(c.name)
            levels.append(candidates)
        return levels

    def _load(self) -> tuple[Dataset, FoldPlan]:
        cfg = self.config
        data = load_dataset(cfg.data)
        plan = make_fold_plan(cfg.folds, data)
        reserved = {data.id_column, *data.target_columns}
        reserved |= {c for c in (cfg.data.weight, cfg.folds.column) if c}
        check_meta_columns(data, cfg.meta.features, reserved)
        return data, plan

    def _predict_bases(self, recipes, data: Dataset, plan: FoldPlan):
        def inputs(frame, which):
            source = data.source[which]
            ids = data.ids if which == "train" else data.test_ids
            return {
                r.name: [
                    read_view(
                        frame, v, which=which, source=source, root=Path(source).parent, ids=ids
                    )
                    for v in r.views
                ]
                for r in recipes
            }

        train = TrainRows(inputs(data.train, "train"), plan, data.y, data.sample_weight)
        return predict_base_models(
            recipes,
            task=data.task,
            n_outputs=data.n_outputs,
            executor=self.executor,
            cache=self.cache,
            train=train,
            rows=inputs(data.test, "test") if data.test is not None else None,
            batch_size=self.config.executor.batch_size,
        )

    def _score(self, entries, data, plan, metric_names) -> pd.DataFrame:
        for entry in entries:
            score_entry(
                entry,
                data.y,
                plan,
                task=data.task,
                metrics=metric_names,
                sample_weight=data.sample_weight,
            )
        return entries

    # -- the run --------------------------------------------------------------------------
    def run(self) -> ExperimentResult:
        cfg = self.config
        out = results.check_output_dir(self.output_dir or results.default_dir(cfg.name))
        data, plan = self._load()
        metric_names = self._metrics(data.task)
        primary = get_metric(metric_names[0])
        levels = self._levels(data.task)
        recipes = resolve_recipes(cfg, data, plan)

        preds = self._predict_bases(recipes, data, plan)
        level1 = build_level1(preds, data, cfg.meta.features)
        stack, meta_entries = fit_stack(
            recipes,
            preds,
            level1,
            data,
            plan,
            levels,
            features=cfg.meta.features,
            batch_size=cfg.executor.batch_size,
        )
        base_entries = [Entry(name, "base", 1, p.oof) for name, p in preds.items()]
        base_mean = np.mean([p.oof for p in preds.values()], axis=0)
        entries = [*base_entries, Entry(BASE_MEAN, "base_mean", 1, base_mean), *meta_entries]
        self._score(entries, data, plan, metric_names)
        ensemble = best_of([e for e in meta_entries if e.level == len(levels) + 1], primary)
        stack.ensemble = ensemble.name

        test_out = None
        if data.test is not None:  # the served model's own path, from the base predictions on
            source = data.source["test"]
            test_level1 = stack.level1(
                {m: p.test for m, p in preds.items()}, data.test, source=source
            )
            test_out = stack.combine(test_level1)[ensemble.name]
            level1.test_features = test_level1.features
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
        fitted = {m.name: m.estimator for lv in stack.levels for m in lv}
        inputs = {m.name: (m.models, m.reads) for lv in stack.levels for m in lv}
        weights = weights_table(fitted, inputs, data.output_names())
        oof = results.oof_frame(data, plan, level1)
        test_frame = results.test_frame(data, level1, test_out)
        metrics = results.metrics_json(data, plan, entries, ensemble, metric_names, board)
        predictor = EnsemblePredictor(stack)
        run_id = self._write_and_record(
            out,
            data,
            plan,
            oof,
            test_frame,
            board,
            weights,
            metrics,
            entries,
            predictor,
            ensemble,
            metric_names,
        )
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

    def _write_and_record(
        self,
        out,
        data,
        plan,
        oof,
        test_frame,
        board,
        weights,
        metrics,
        entries,
        predictor,
        ensemble,
        metric_names,
    ) -> str | None:
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
        try:  # the run is recorded from the unfinished folder, which appears only at the end
            record = self._record(data, plan, entries, ensemble, metric_names, tmp)
            if not isinstance(self.tracker, NoopTracker):
                record.model_example = results.model_example(data, predictor, test_frame)
            if self.reproduces:
                record.tags["stacking.reproduces"] = self.reproduces[0]

            def write_run_id(run_id: str) -> None:  # before upload: both copies agree
                metrics["run_id"] = run_id
                (tmp / "metrics.json").write_text(json.dumps(metrics, indent=2, default=float))

            record.on_run_id = write_run_id
            self.tracker.log(record)
            if out.exists():
                out.rmdir()
            tmp.rename(out)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        return metrics.get("run_id")

    # -- outputs --------------------------------------------------------------------------
    def _record(self, data, plan, entries, ensemble, metric_names, out) -> RunRecord:
        names = [get_metric(m).name for m in metric_names]
        parent = {f"cv_{m}": ensemble.scores[m] for m in names}
        children = []
        for e in entries:
            if e.role == "base":
                parent.update({f"base.{e.name}.cv_{m}": e.scores[m] for m in names})
            role = "meta" if e.role == "meta" else "base"
            if e.role == "base_mean":
                continue
            children.append(
                ChildRecord(
                    name=e.name,
                    role=role,
                    params={"level": e.level, **self._child_params(e)},
                    metrics={f"cv_{m}": e.scores[m] for m in names},
                    fold_metrics={m: e.fold_scores[m] for m in names},
                )
            )
        return RunRecord(
            name=self.config.tracking.run_name or self.config.name,
            params=self.config.to_dict(),
            metrics=parent,
            tags={
                "stacking.data_digest": data.digest,
                "stacking.folds_digest": plan.digest,
                "stacking.task": data.task,
                "stacking.ensemble": ensemble.name,
                "stacking.primary_metric": names[0],
                **{
                    f"stacking.direction.{m}": (
                        "higher" if get_metric(m).greater_is_better else "lower"
                    )
                    for m in names
                },
            },
            children=children,
            artifacts_dir=out,
            model_dir=out / "ensemble",
        )

    def _child_params(self, entry: Entry) -> dict:
        if entry.role == "base":
            return {"path": str(self.config.base_models[entry.name].path)}
        return {}
