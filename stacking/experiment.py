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

import shutil
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from stacking import results
from stacking.cache import CacheStore, open_cache
from stacking.config import Config, FeaturesConfig, load_config, parse_config
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
from stacking.plots import write_plots
from stacking.predictor import EnsemblePredictor
from stacking.stack import fit_stack, resolve_recipes
from stacking.tracking import MlflowTracker, Tracker, get_tracker, log_results, preflight
from stacking.views import read_view

BASE_MEAN = "base_mean"


def _features(cfg: Config) -> FeaturesConfig:
    """``meta.features``: the config's validator expands the short form (``proba``)."""
    features = cfg.meta.features
    assert isinstance(features, FeaturesConfig), features
    return features


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


class Progress:
    """One line per stage on stderr, with its time, and a closing summary.

    ``enabled=False`` (``stacking run --quiet``, tests) prints nothing: the leaderboard is
    the caller's to print.
    """

    def __init__(self, enabled: bool = True, stream: Any = None) -> None:
        self.enabled = enabled
        self.stream = stream
        self.times: dict[str, float] = {}
        self._started = time.perf_counter()

    def line(self, stage: str, seconds: float, detail: str = "") -> None:
        self.times[stage] = self.times.get(stage, 0.0) + seconds
        if self.enabled:
            print(f"{stage:<11}{seconds:7.1f} s  {detail}".rstrip(), file=self.stream or sys.stderr)

    @contextmanager
    def stage(self, name: str, detail: str = "") -> Iterator[dict[str, str]]:
        """Time the block; it may set ``info["detail"]`` to say what it did."""
        info = {"detail": detail}
        started = time.perf_counter()
        yield info
        self.line(name, time.perf_counter() - started, info["detail"])

    def summary(self, preds: dict) -> None:
        cached = sum(p.cached for p in preds.values())
        computed = sum(p.computed for p in preds.values())
        total = time.perf_counter() - self._started
        stages = ", ".join(f"{k} {v:.1f} s" for k, v in self.times.items())
        self.line("done", total, f"cache: {cached} hits, {computed} computed; {stages}")


@dataclass
class Reproduction:
    """The recorded run an experiment re-runs (:meth:`Experiment.from_run`)."""

    run_id: str
    cv_metrics: dict[str, float]
    ensemble: str | None


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
        if not isinstance(config, Config):
            raise ConfigError(
                f"Experiment takes a Config. Received: {type(config).__name__} "
                f"{config!r:.60}; use Experiment.from_yaml(path) for a YAML file"
            )
        self.config = config
        self.output_dir = Path(output_dir) if output_dir else None
        self.tracker = tracker if tracker is not None else get_tracker(config.tracking)
        self.executor = executor or make_executor(config.executor, progress=progress)
        self.progress = Progress(progress)
        self.cache = cache or open_cache(config.cache)
        self.reproduces: Reproduction | None = None

    @classmethod
    def from_yaml(cls, path: str | Path, overrides: Sequence[str] = (), **kwargs) -> Experiment:
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
        recorded_run = MlflowTracker(uri=tracking_uri).fetch_run(run_id)
        run_id = recorded_run.run_id  # the full id of a short one
        raw, tags, metrics = recorded_run.config, recorded_run.tags, recorded_run.metrics
        if raw is None:
            raise DataError(
                f"run {run_id} has no config.resolved.yaml artifact, so it cannot be "
                "reproduced; was it recorded by tf-stacking?"
            )
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
        experiment.reproduces = Reproduction(
            run_id=run_id,
            cv_metrics={k: v for k, v in metrics.items() if k.startswith("cv_")},
            ensemble=tags.get("stacking.ensemble"),
        )
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
        check_meta_columns(data, _features(cfg), reserved)
        return data, plan

    def _predict_bases(self, recipes, data: Dataset, plan: FoldPlan):
        """Every base model's OOF and test predictions, each model loaded once."""

        def inputs(frame: pd.DataFrame, which: str) -> dict[str, list]:
            source = data.source[which]
            ids = data.ids if which == "train" else data.test_ids
            read: dict[str, Any] = {}  # models reading the same view share one reader

            def view(spec):
                key = spec.model_dump_json()
                if key not in read:
                    root = Path(source).parent
                    read[key] = read_view(
                        frame, spec, which=which, source=source, root=root, ids=ids
                    )
                return read[key]

            return {r.name: [view(v) for v in r.views] for r in recipes}

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

    def _fit(self, recipes, preds, data: Dataset, plan: FoldPlan, levels):
        """The level-1 matrix of the training rows, and the stack fitted on it."""
        features = _features(self.config)
        level1 = build_level1(preds, data, features, include_test=False)
        stack, meta_entries = fit_stack(
            recipes,
            preds,
            level1,
            data,
            plan,
            levels,
            features=features,
            batch_size=self.config.executor.batch_size,
            on_candidate=lambda name, level, seconds: self.progress.line(
                "meta", seconds, f"{name} (level {level}) cross-fitted on every fold and refit"
            ),
        )
        base_mean = np.mean([p.oof for p in preds.values()], axis=0)
        entries = [
            *(Entry(name, "base", 1, p.oof) for name, p in preds.items()),
            Entry(BASE_MEAN, "base_mean", 1, base_mean),
            *meta_entries,
        ]
        return level1, stack, entries

    def _select(self, stack, entries, data: Dataset, plan: FoldPlan, metric_names) -> Entry:
        """Score every entry on its OOF rows; the best last-level candidate is the ensemble."""
        for entry in entries:
            score_entry(
                entry,
                data.y,
                plan,
                task=data.task,
                metrics=metric_names,
                sample_weight=data.sample_weight,
            )
        last = max(e.level for e in entries)
        ensemble = best_of([e for e in entries if e.level == last], get_metric(metric_names[0]))
        stack.ensemble = ensemble.name
        return ensemble

    def _predict_test(self, stack, preds, data: Dataset, level1) -> dict[str, np.ndarray]:
        """Every entry's test predictions; the meta levels through the served path."""
        if data.test is None:
            return {}
        base = {m: p.test for m, p in preds.items()}
        test_level1 = stack.level1(base, data.test, source=data.source["test"])
        level1.test_features = test_level1.features  # for test_predictions.parquet
        mean = np.mean(list(base.values()), axis=0)
        return {**base, BASE_MEAN: mean, **stack.combine(test_level1)}

    def _leaderboard(self, entries, data: Dataset, metric_names, ensemble, test_out):
        """Scores with bootstrap intervals, and ``test_<metric>`` on a labelled test table."""
        board = leaderboard(
            entries,
            data.y,
            task=data.task,
            metrics=metric_names,
            selected=ensemble.name,
            n_resamples=self.config.meta.bootstrap,
            seed=self.config.meta.seed,
            sample_weight=data.sample_weight,
        )
        if data.test_y is not None:  # the holdout truth next to the OOF estimate
            for name in metric_names:
                metric = get_metric(name)
                board[f"test_{metric.name}"] = [
                    metric(data.test_y, test_out[model], task=data.task) for model in board.model
                ]
        return board

    # -- the run --------------------------------------------------------------------------
    def run(self) -> ExperimentResult:
        """Every stage in order; the results folder appears whole, then the run is logged."""
        stage = self.progress.stage
        with stage("checks", "config, output folder, tracking store"):
            out = preflight(self.tracker, self.output_dir or results.default_dir(self.config.name))
        with stage("data") as info:
            data, plan = self._load()
            metric_names, levels = self._metrics(data.task), self._levels(data.task)
            recipes = resolve_recipes(self.config, data, plan)
            info["detail"] = (
                f"{len(data.ids)} rows ({data.task}), {plan.n_splits} folds, "
                f"{len(recipes)} base models checked"
            )
        with stage("inference") as info:
            preds = self._predict_bases(recipes, data, plan)
            cached = sum(p.cached for p in preds.values())
            computed = sum(p.computed for p in preds.values())
            info["detail"] = f"{computed} predictions computed, {cached} from the cache"
        level1, stack, entries = self._fit(recipes, preds, data, plan, levels)
        with stage("scores", f"{len(entries)} entries") as info:
            ensemble = self._select(stack, entries, data, plan, metric_names)
            test_out = self._predict_test(stack, preds, data, level1)
        with stage("bootstrap", f"{self.config.meta.bootstrap} paired resamples"):
            board = self._leaderboard(entries, data, metric_names, ensemble, test_out)

        fitted = {m.name: m.estimator for lv in stack.levels for m in lv}
        inputs = {m.name: (m.models, m.reads) for lv in stack.levels for m in lv}
        result = ExperimentResult(
            leaderboard=board,
            oof=results.oof_frame(data, plan, level1),
            test_predictions=results.test_frame(data, level1, test_out.get(ensemble.name)),
            weights=weights_table(fitted, inputs, data.output_names()),
            metrics=results.metrics_json(data, plan, entries, ensemble, metric_names, board),
            ensemble=ensemble.name,
            meta_model=fitted[ensemble.name],
            predictor=EnsemblePredictor(stack),
            output_dir=out,
            run_id=None,
        )
        result.run_id = self._write_and_record(out, data, plan, entries, result)
        self.progress.summary(preds)
        return result

    def _write_and_record(self, out, data, plan, entries, result: ExperimentResult) -> str | None:
        """Write the results folder whole, move it into place, then record it."""
        with self.progress.stage("results", str(out)):
            out = self._write(out, data, plan, entries, result)
        with self.progress.stage("tracking") as info:
            reproduces = (
                {"stacking.reproduces": self.reproduces.run_id} if self.reproduces else None
            )
            run_id = log_results(self.tracker, out, tags=reproduces)
            info["detail"] = f"run {run_id}" if run_id else "off"
        result.metrics.update({"run_id": run_id} if run_id else {})
        return run_id

    def _write(self, out, data, plan, entries, result: ExperimentResult) -> Path:
        tmp = results.write_partial(
            out,
            config=self.config.to_dict(),
            data=data,
            plan=plan,
            oof=result.oof,
            test_frame=result.test_predictions,
            board=result.leaderboard,
            weights=result.weights,
            metrics=result.metrics,
            entries=entries,
            predictor=result.predictor,
        )
        if self.config.plots:
            try:
                write_plots(tmp)
            except BaseException:
                shutil.rmtree(tmp, ignore_errors=True)  # nothing half-written stays
                raise
        return results.move_into_place(tmp, out)
