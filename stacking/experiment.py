"""The one orchestrator behind the CLI and the Python API.

>>> result = Experiment.from_yaml("configs/digits.yaml").run()
>>> result.leaderboard.head()
>>> result.oof, result.test_predictions, result.run_id

``run`` goes down the data flow of docs/architecture.md: data → fold plan → base models (checked
against the fold plan) → cached OOF/test predictions → level-1 matrix → meta candidates
cross-fitted on the same folds, level after level → leaderboard with paired intervals
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
from stacking.base import check_recorded_files
from stacking.cache import CacheStore, get_cache
from stacking.config import Config, FeaturesConfig, TrackingConfig, load_config, parse_config
from stacking.cost import COST_ROWS, served_cost, with_cost_columns
from stacking.data import Dataset, load_dataset
from stacking.engine import TrainRows, predict_base_models
from stacking.errors import ConfigError, DataError
from stacking.evaluate import (
    Entry,
    best_of,
    format_leaderboard,
    interval_method,
    leaderboard,
    repeat_interval,
    repeat_spread,
    score_entry,
)
from stacking.executors import Executor, get_executor
from stacking.folds import FoldPlan, check_resplit, make_fold_plan, resplit_fold_plan
from stacking.guard import (
    apply_guard,
    check_guard,
    record_guard,
    set_aside,
    with_guard_columns,
    write_reserved,
)
from stacking.level1 import build_level1, check_meta_columns
from stacking.meta import (
    Candidate,
    check_nested,
    make_candidate,
    nested_selection,
    repeated_oof,
)
from stacking.meta.weights import models_used, weights_table
from stacking.metrics import default_metrics, get_metric
from stacking.plots import write_plots
from stacking.predictor import EnsemblePredictor
from stacking.stack import fit_stack, resolve_base_models
from stacking.tracking import Tracker, get_tracker, log_results, preflight
from stacking.views import read_view

BASE_MEAN = "base_mean"


def _with_nested(board: pd.DataFrame, nested: dict | None) -> pd.DataFrame:
    """``cv_<metric>_selected_nested`` on the selected entry's row, beside its own score."""
    if nested is not None:
        for column, value in nested["scores"].items():
            board[column] = np.where(board["selected"], value, np.nan)
    return board


def _with_repeats(board: pd.DataFrame, repeated: dict, metric_names) -> pd.DataFrame:
    """``cv_<metric>_repeat_mean`` and ``_repeat_std`` of every entry over the splits."""
    if repeated:
        for name in metric_names:
            metric = get_metric(name).name
            values = [repeated[model][metric] for model in board["model"]]
            board[f"cv_{metric}_repeat_mean"] = [float(np.mean(v)) for v in values]
            board[f"cv_{metric}_repeat_std"] = [repeat_spread(v) for v in values]
    return board


def _models_used(stack, data: Dataset) -> dict[str, list[str]]:
    """The base models every entry uses: itself, all (``base_mean``), or by weight."""
    names = [r.name for r in stack.base_models]
    fitted = {m.name: m.estimator for lv in stack.levels for m in lv}
    inputs = {m.name: (m.models, m.reads) for lv in stack.levels for m in lv}
    used = {n: [n] for n in names} | {BASE_MEAN: names}
    return used | models_used(fitted, inputs, names, data.output_names())


def _check_evaluation(cfg: Config, plan: FoldPlan) -> None:
    """``meta.nested`` and ``meta.repeats`` refused before any model runs, not after."""
    if cfg.meta.nested:
        check_nested(plan)
    if cfg.meta.repeats > 1:
        check_resplit(cfg.folds)


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
        guard = self.metrics.get("guard", {}).get("message")
        text += f"\n\n{guard}" if guard else ""
        return f"{text}\n\nensemble: {self.ensemble}  results: {self.output_dir}"


def _interval_detail(board: pd.DataFrame, n_resamples: int) -> str:
    """What the intervals stage did: the methods of the leaderboard's ``ci_method``."""
    methods = sorted(set(board["ci_method"]) - {""})
    shown = [f"{n_resamples} paired resamples" if m == "bootstrap" else m for m in methods]
    analytic = [m for m in methods if m in ("t", "delong")]
    note = " (analytic, O(n))" if analytic else ""
    return (", ".join(shown) or "none") + note


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

    def start(self, stage: str, detail: str) -> None:
        """A line when a step begins that may take long (a meta candidate): its time
        follows in a :meth:`line` when it ends."""
        if self.enabled:
            print(f"{stage:<11}{'start':>9}  {detail}", file=self.stream or sys.stderr)

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


@dataclass(frozen=True)
class MetricCheck:
    """One recorded ``cv_`` metric of a run against the re-run's (``None``: not computed)."""

    name: str
    recorded: float
    reproduced: float | None

    @property
    def equal(self) -> bool:
        """Equal to 1e-9 (relative above 1): a re-run on the same data, folds and models
        gives the same numbers up to summation order; NaN (undefined) equals NaN."""
        new, old = self.reproduced, self.recorded
        if new is None:
            return False
        if np.isnan(old) or np.isnan(new):
            return bool(np.isnan(old) and np.isnan(new))
        return abs(new - old) <= 1e-9 * max(1.0, abs(old))


@dataclass
class Reproduction:
    """The recorded run an experiment re-runs (:meth:`Experiment.from_run`).

    A run that recorded no ``cv_`` metric is refused here: a re-run of it would compare
    nothing, and "nothing differed" is not a reproduction.
    """

    run_id: str
    cv_metrics: dict[str, float]
    ensemble: str | None

    def __post_init__(self) -> None:
        if not self.cv_metrics:
            raise DataError(
                f"run {self.run_id} recorded no cv_ metric of its ensemble, so a re-run would "
                "have nothing to be compared with; reproduce a run that finished "
                "(`stacking runs` lists them with their scores)"
            )

    def compare(self, metrics: dict) -> list[MetricCheck]:
        """Every recorded ``cv_`` metric against the re-run's score of the recorded ensemble
        (``metrics`` is the re-run's ``metrics.json``), in name order."""
        entry = metrics["entries"].get(self.ensemble, {"scores": {}})
        return [
            MetricCheck(name, old, entry["scores"].get(name.removeprefix("cv_")))
            for name, old in sorted(self.cv_metrics.items())
        ]


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
        self.executor = executor or get_executor(config.executor, progress=progress)
        self.progress = Progress(progress)
        self.cache = cache or get_cache(config.cache)
        self.reproduces: Reproduction | None = None
        self._reserved: tuple | None = None  # (rows, verdict) when the plan reserves rows

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
        mlflow = TrackingConfig.build({"kind": "mlflow", "uri": tracking_uri})
        recorded_run = get_tracker(mlflow).fetch_run(run_id)
        run_id = recorded_run.run_id  # the full id of a short one
        raw, tags, metrics = recorded_run.config, recorded_run.tags, recorded_run.metrics
        if raw is None:
            raise DataError(
                f"run {run_id} has no config.resolved.yaml artifact, so it cannot be "
                "reproduced; was it recorded by tf-stacking?"
            )
        reproduction = Reproduction(
            run_id=run_id,
            cv_metrics={k: v for k, v in metrics.items() if k.startswith("cv_")},
            ensemble=tags.get("stacking.ensemble"),
        )
        tracking = raw.setdefault("tracking", {})
        if tracking.get("kind", "mlflow") == "mlflow":  # the uri key is MLflow's
            tracking["uri"] = tracking_uri or tracking.get("uri")
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
        for name, model in config.base_models.items():
            if model.predictions is not None:  # changed since the run: refused, as a model
                check_recorded_files(run_id, name, model.predictions, tags)
        experiment = cls(config, **kwargs)
        experiment.reproduces = reproduction
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
        _check_evaluation(cfg, plan)
        check_guard(cfg.meta.guard, plan, data.source.get("train", "the training data"))
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

            return {r.name: given(r, which) or [view(v) for v in r.views] for r in recipes}

        def given(recipe, which: str) -> list | None:
            """A prediction-file member's input: its checked predictions of these rows."""
            if recipe.predictions is None:
                return None
            return [recipe.predictions.oof if which == "train" else recipe.predictions.test]

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
            on_candidate_start=lambda name, level, shape: self.progress.start(
                "meta",
                f"{name} (level {level}) on {shape[0]} rows x {shape[1]} columns, "
                f"{plan.n_splits} folds",
            ),
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
        eligible = self._within_budget(stack, [e for e in entries if e.level == last], data)
        ensemble = best_of(eligible, get_metric(metric_names[0]))
        stack.ensemble = ensemble.name
        return ensemble

    def _within_budget(self, stack, candidates: list[Entry], data: Dataset) -> list[Entry]:
        """``meta.max_models``: the candidates that use at most that many base models."""
        budget = self.config.meta.max_models
        if budget is None:
            return candidates
        used = _models_used(stack, data)
        eligible = [e for e in candidates if len(used[e.name]) <= budget]
        if not eligible:
            counts = ", ".join(f"{e.name}: {len(used[e.name])}" for e in candidates)
            raise ConfigError(
                f"meta.max_models: {budget}, but every last-level candidate uses more base "
                f"models ({counts}); raise meta.max_models or add a candidate that uses "
                "fewer, such as selection with a small n_iter"
            )
        return eligible

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
            interval=self.config.meta.interval,
            bootstrap_max_rows=self.config.meta.bootstrap_max_rows,
        )
        if data.test_y is not None:  # the holdout truth next to the OOF estimate
            for name in metric_names:
                metric = get_metric(name)
                board[f"test_{metric.name}"] = [
                    metric(data.test_y, test_out[model], task=data.task) for model in board.model
                ]
        return board

    def _nested(self, level1, data: Dataset, plan: FoldPlan, levels, metric_names):
        """``meta.nested``: the outer-fold score of the selection procedure, or None."""
        if not self.config.meta.nested:
            return None
        with self.progress.stage("nested", f"{plan.n_splits} outer folds") as info:
            score = nested_selection(
                level1.blocks,
                level1.features.to_numpy(),
                data.y,
                plan,
                levels,
                metric=metric_names[0],
                task=data.task,
                n_outputs=data.n_outputs,
                columns_per_model=level1.columns_per_model,
                sample_weight=data.sample_weight,
            )
            info["detail"] = f"winners per outer fold: {', '.join(score.winners)}"
        scores = {}
        for name in metric_names:
            metric = get_metric(name)
            value = metric(data.y, score.oof, task=data.task, sample_weight=data.sample_weight)
            scores[f"cv_{metric.name}_selected_nested"] = value
        return {"scores": scores, "winners": score.winners}

    def _repeats(self, level1, data: Dataset, levels, entries, metric_names):
        """``meta.repeats``: every entry's scores on each split, the fold plan's first, and
        its OOF predictions on each split (for the intervals over repeats)."""
        n_repeats = self.config.meta.repeats
        if n_repeats == 1:
            return {}, {}
        with self.progress.stage("repeats", f"{n_repeats - 1} re-splits of the meta level"):
            plans = [resplit_fold_plan(self.config.folds, data, r) for r in range(1, n_repeats)]
            again = repeated_oof(
                level1.blocks,
                level1.features.to_numpy(),
                data.y,
                plans,
                levels,
                task=data.task,
                n_outputs=data.n_outputs,
                columns_per_model=level1.columns_per_model,
                sample_weight=data.sample_weight,
            )
        out, by_entry = {}, {}
        for entry in entries:  # base models' OOF predictions are the same on every split
            oofs = [entry.oof, *again.get(entry.name, [entry.oof] * (n_repeats - 1))]
            by_entry[entry.name] = oofs
            out[entry.name] = {
                get_metric(m).name: [
                    get_metric(m)(data.y, o, task=data.task, sample_weight=data.sample_weight)
                    for o in oofs
                ]
                for m in metric_names
            }
        return out, by_entry

    def _with_repeat_intervals(
        self,
        board: pd.DataFrame,
        entries: list[Entry],
        repeat_oofs: dict[str, list[np.ndarray]],
        data: Dataset,
        metric_names: list[str],
    ) -> pd.DataFrame:
        """``meta.repeats``: each entry's difference from the best base model averaged over
        the splits, and its interval (``delta_vs_best_base_repeats``, ``ci_low_repeats``,
        ``ci_high_repeats``), beside the fold plan's own ``delta_vs_best_base``."""
        if not repeat_oofs:
            return board
        meta = self.config.meta
        primary = get_metric(metric_names[0])
        best = best_of([e for e in entries if e.role == "base"], primary)
        method = interval_method(meta.interval, len(data.y), meta.bootstrap_max_rows)
        found = {
            e.name: repeat_interval(
                primary,
                data.y,
                repeat_oofs[e.name],
                best.oof,
                task=data.task,
                method=method,
                n_resamples=meta.bootstrap,
                seed=meta.seed,
                sample_weight=data.sample_weight,
            )
            for e in entries
            if e.role != "base"
        }
        empty = (np.nan, np.nan, np.nan, "")
        columns = ("delta_vs_best_base_repeats", "ci_low_repeats", "ci_high_repeats")
        for k, column in enumerate(columns):
            board[column] = [found.get(m, empty)[k] for m in board["model"]]
        return board

    def _with_cost(self, board: pd.DataFrame, stack, data: Dataset) -> pd.DataFrame:
        """``meta.cost``: the base models each entry uses and their parameter count."""
        if not self.config.meta.cost:
            return board
        with self.progress.stage("cost", "base models used, parameters, time per 1,000 rows"):
            used = _models_used(stack, data)
            rows = data.train.head(COST_ROWS)
            source = data.source["train"]
            views = stack.read_inputs(rows, source=source, root=Path(source).parent)
            batch = self.config.executor.batch_size
            cost = {
                r.name: served_cost(r, views[r.name], len(rows), batch) for r in stack.base_models
            }
        return with_cost_columns(board, used, cost)

    # -- the run --------------------------------------------------------------------------
    def run(self) -> ExperimentResult:
        """Every stage in order; the results folder appears whole, then the run is logged."""
        stage = self.progress.stage
        with stage("checks", "config, output folder, tracking store"):
            out = preflight(self.tracker, self.output_dir or results.default_dir(self.config.name))
        with stage("data") as info:
            data, plan = self._load()
            metric_names, levels = self._metrics(data.task), self._levels(data.task)
            recipes = resolve_base_models(self.config, data, plan, cache=self.cache)
            info["detail"] = (
                f"{len(data.ids)} rows ({data.task}), {plan.n_splits} folds, "
                f"{len(recipes)} base models checked"
            )
        with stage("inference") as info:
            preds = self._predict_bases(recipes, data, plan)
            cached = sum(p.cached for p in preds.values())
            computed = sum(p.computed for p in preds.values())
            info["detail"] = f"{computed} predictions computed, {cached} from the cache"
        # Reserved rows (folds.holdout) leave here: the meta level never sees them.
        data, plan, preds, held = set_aside(data, plan, preds)
        level1, stack, entries = self._fit(recipes, preds, data, plan, levels)
        with stage("scores", f"{len(entries)} entries") as info:
            ensemble = self._select(stack, entries, data, plan, metric_names)
        verdict = None
        if held is not None:
            with stage("guard") as info:
                guard_on = self.config.meta.guard
                ensemble, verdict = apply_guard(
                    held, stack, entries, ensemble, metric_names, enabled=guard_on
                )
                info["detail"] = verdict.message
        test_out = self._predict_test(stack, preds, data, level1)
        nested = self._nested(level1, data, plan, levels, metric_names)
        repeated, repeat_oofs = self._repeats(level1, data, levels, entries, metric_names)
        with stage("intervals") as info:
            board = self._leaderboard(entries, data, metric_names, ensemble, test_out)
            info["detail"] = _interval_detail(board, self.config.meta.bootstrap)
        board = _with_repeats(_with_nested(board, nested), repeated, metric_names)
        board = self._with_repeat_intervals(board, entries, repeat_oofs, data, metric_names)
        board = self._with_cost(board, stack, data)
        board = with_guard_columns(board, verdict) if verdict is not None else board

        fitted = {m.name: m.estimator for lv in stack.levels for m in lv}
        inputs = {m.name: (m.models, m.reads) for lv in stack.levels for m in lv}
        result = ExperimentResult(
            leaderboard=board,
            oof=results.oof_frame(data, plan, level1),
            test_predictions=results.test_frame(data, level1, test_out.get(ensemble.name)),
            weights=weights_table(fitted, inputs, data.output_names()),
            metrics=results.metrics_json(data, plan, entries, ensemble, metric_names, board),
            ensemble=ensemble.name,
            meta_model=fitted.get(ensemble.name),  # None: the guard fell back to a base
            predictor=EnsemblePredictor(stack),
            output_dir=out,
            run_id=None,
        )
        if digests := results.prediction_digests(recipes):
            result.metrics["prediction_files"] = digests
        if nested is not None:
            result.metrics["selected_nested"] = nested
        if repeated:
            result.metrics["repeats"] = self.config.meta.repeats
            for name, scores in repeated.items():
                result.metrics["entries"][name]["repeat_scores"] = scores
        if held is not None and verdict is not None:
            record_guard(result.metrics, verdict, held)
            self._reserved = (held, verdict)
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

    def _write(
        self,
        out: Path,
        data: Dataset,
        plan: FoldPlan,
        entries: list[Entry],
        result: ExperimentResult,
    ) -> Path:
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
        if self._reserved is not None:
            write_reserved(tmp, *self._reserved)
        if self.config.plots:
            try:
                write_plots(tmp)
            except BaseException:
                shutil.rmtree(tmp, ignore_errors=True)  # nothing half-written stays
                raise
        return results.move_into_place(tmp, out)
