"""``stacking`` command line: a thin layer over :class:`~stacking.experiment.Experiment`.

Exit codes: 0 success; 2 a user error (one line ``error: …`` on stderr, no traceback
unless ``--debug``); 1 an internal failure (a bug: the traceback is printed); 3 from
``reproduce`` when the re-run's scores differ from the recorded ones.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shlex
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from stacking.errors import ConfigError, DataError, OutputError, StackingError
from stacking.quiet import loud_tensorflow, quiet_tensorflow  # also imported by scripts

if TYPE_CHECKING:  # the commands import these lazily: `stacking --help` stays fast
    import pandas as pd

    from stacking.predictor import EnsemblePredictor
    from stacking.tracking import RecordedRun, Tracker


def _run(args: argparse.Namespace) -> int:
    if args.seeds is not None:
        return _run_seeds(args)
    from stacking.experiment import Experiment

    experiment = Experiment.from_yaml(
        args.config, overrides=args.set or [], output_dir=args.output, progress=not args.quiet
    )
    if args.submission:  # before any computing: a run is long to find a bad flag after
        _check_table_path("--submission", Path(args.submission))
        if experiment.config.data.test is None:
            raise ConfigError(
                f"--submission {args.submission!r} needs test rows to predict; set data.test "
                "in the config, or drop --submission"
            )
    result = experiment.run()
    print(result.summary())
    if args.submission:
        assert result.test_predictions is not None  # data.test is set
        target = _target_name(result.output_dir)
        frame = _submission(result.test_predictions, result.predictor, False, target)
        _write_table(frame, Path(args.submission))
        print(f"wrote a submission of {len(frame)} rows to {args.submission}")
    if result.run_id:
        print("\n".join(experiment.tracker.run_lines(result.run_id)))
    return 0


def _run_seeds(args: argparse.Namespace) -> int:
    """``run --seeds``: the config once per seed, nested under one MLflow parent run."""
    from stacking.seeds import parse_seeds, run_seeds

    seeds = parse_seeds(args.seeds)  # before any computing: a bad flag fails at once
    if args.submission:
        raise ConfigError("--submission writes one run's predictions; drop it with --seeds")
    done = run_seeds(
        args.config,
        seeds,
        overrides=args.set or [],
        output_dir=args.output,
        progress=not args.quiet,
    )
    for seed, result in zip(seeds, done, strict=True):
        print(
            f"seed {seed}: {result.ensemble}  results: {result.output_dir}"
            + (f"  mlflow run: {result.run_id}" if result.run_id else "")
        )
    run_ids = [r.run_id for r in done if r.run_id]
    if run_ids:
        print(f"compare them: stacking compare {' '.join(run_ids)}")
    return 0


def _compare(args: argparse.Namespace) -> int:
    """One table over several runs: each config's mean over seeds, paired differences."""
    from stacking.compare import compare_stored, parse_formats, to_markdown, write_tables

    formats = parse_formats(args.format)
    if bool(args.run_ids) == bool(args.experiment):
        raise ConfigError(
            "stacking compare takes run ids or --experiment NAME, not both nor neither. "
            f"Received: {len(args.run_ids)} run id(s), --experiment {args.experiment!r}"
        )
    if args.output and Path(args.output).exists() and not Path(args.output).is_dir():
        raise ConfigError(f"--output {args.output!r} is a file; name a folder")
    comparison = compare_stored(
        args.run_ids,
        experiment=args.experiment,
        tracking_uri=args.tracking_uri,
        metric=args.metric,
        baseline=args.baseline,
    )
    print(to_markdown(comparison))
    for note in comparison.notes:
        print(f"note: {note}")
    if args.output:
        for path in write_tables(comparison, Path(args.output), formats):
            print(f"wrote {path}")
    return 0


def _reproduce(args: argparse.Namespace) -> int:
    _say(f"reproducing run {args.run_id}: reading its config, data and fold plan")
    from stacking.experiment import Experiment

    experiment = Experiment.from_run(
        args.run_id,
        tracking_uri=args.tracking_uri,
        trust_imports=args.trust_imports,
        output_dir=args.output,
    )
    result = experiment.run()
    print(result.summary())
    assert experiment.reproduces is not None  # set by from_run
    old_id = experiment.reproduces.run_id
    old_ensemble = experiment.reproduces.ensemble
    differ = []
    if old_ensemble != result.ensemble:
        print(f"the selected ensemble changed: recorded {old_ensemble}, now {result.ensemble}")
        differ.append("ensemble")
    checks = experiment.reproduces.compare(result.metrics)  # one per recorded metric, >= 1
    for check in checks:
        shown = "missing" if check.reproduced is None else f"{check.reproduced:.6f}"
        print(
            f"{check.name} of {old_ensemble}: recorded {check.recorded:.6f}  reproduced "
            f"{shown}  {'same' if check.equal else 'DIFFERS'}"
        )
        differ += [] if check.equal else [check.name]
    print(f"new run: {result.run_id} (tag stacking.reproduces={old_id})")
    count = f"{sum(c.equal for c in checks)} of {len(checks)} recorded cv_ metrics equal"
    if differ:
        print(f"not reproduced: {', '.join(differ)} differ ({count})", file=sys.stderr)
        return 3
    print(f"reproduced: {count}")
    return 0


def _say(line: str) -> None:
    """A progress line on stdout, shown at once: ``predict`` and ``reproduce`` spend their
    first seconds importing TensorFlow and loading models. stderr keeps only errors."""
    print(line, flush=True)


def _predict(args: argparse.Namespace) -> int:
    _say(f"loading the ensemble from {args.model}")
    from stacking.data import read_table
    from stacking.predictor import load_predictor

    model = args.model
    _refuse_run_id_as_path(model)
    if ":/" in model:  # an MLflow model URI, fetched through the tracker
        model = _mlflow_tracker(args.tracking_uri).download_model(model)
    out = Path(args.output)
    submission = Path(args.submission) if args.submission else out
    for flag, path in (("--output", out), ("--submission", submission)):
        _check_table_path(flag, path)
    if (args.proba or args.target_column) and not args.submission:
        raise ConfigError("--proba and --target-column shape the --submission file; add one")
    predictor = load_predictor(model)
    rows = Path(args.data)  # relative image paths start from the rows file's folder
    root = Path(args.image_root) if args.image_root else rows.parent
    if not root.is_dir():
        raise ConfigError(
            f"--image-root {str(root)!r} is not a folder; name the folder images are in"
        )
    _say(f"reading rows from {rows}")
    table = read_table(rows)
    names = [m.name for m in predictor.stack.base_models]
    _say(f"predicting {len(table)} rows with {len(names)} base models ({', '.join(names)})")
    result = predictor.predict(table, root=root, source=str(rows))
    frames = [(out, result)]
    if args.submission:
        target = args.target_column or _target_name(Path(model))
        frames.append((submission, _submission(result, predictor, args.proba, target)))
    for path, frame in frames:
        _write_table(frame, path)
    print(f"wrote {len(result)} predictions to {out}")
    if args.submission:
        print(f"wrote a submission of {len(result)} rows to {submission}")
    return 0


def _check_table_path(flag: str, path: Path) -> None:
    """Refuse a table path before any work: its suffix, and a folder that is not there
    (a run found that out only when it wrote the file at the end)."""
    if path.suffix.lower() not in {".csv", ".parquet"}:
        raise ConfigError(f"{flag} {str(path)!r} must end in .csv or .parquet")
    if not path.parent.is_dir():
        raise ConfigError(
            f"{flag} {str(path)!r}: there is no folder {str(path.parent)!r}; create it or "
            "choose another path"
        )


def _write_table(frame: pd.DataFrame, path: Path) -> None:
    """CSV or Parquet by the suffix, complete or not at all (written aside, then renamed)."""
    tmp = path.with_name(f".{path.name}.partial")
    try:
        if path.suffix.lower() == ".csv":
            frame.to_csv(tmp, index=False)
        else:
            frame.to_parquet(tmp, index=False)
        tmp.replace(path)
    except OSError as exc:  # full disk, no permission: one line, no partial file
        raise OutputError(f"cannot write {str(path)!r}: {exc.strerror or exc}") from exc
    finally:
        tmp.unlink(missing_ok=True)


def _init(args: argparse.Namespace) -> int:
    from stacking.starter import write_starter_config

    out = write_starter_config(args.train, test=args.test, output=args.output)
    print(f"wrote {out}: check its guesses, add your base models under base_models:, then")
    print(f"  stacking run {shlex.quote(str(out))}")
    return 0


def _refuse_run_id_as_path(model: str) -> None:
    """A run id where a folder was expected: name the model URI that was meant."""
    import re

    if not Path(model).exists() and re.fullmatch(r"[0-9a-f]{8,32}", model):
        from stacking.errors import DataFileNotFoundError

        raise DataFileNotFoundError(
            f"no folder {model!r}; it looks like an MLflow run id: pass the run's model as "
            f"runs:/{model}/ensemble (with --tracking-uri URI unless the store is MLflow's "
            "default)"
        )


def _log(args: argparse.Namespace) -> int:
    """Record a finished results folder (e.g. one whose tracking failed at the end)."""
    import yaml

    from stacking.config import TrackingConfig
    from stacking.tracking import get_tracker, log_results, record_from_results

    folder = Path(args.results_dir)
    record_from_results(folder)  # a readable, finished folder, before touching a store
    metrics = json.loads((folder / "metrics.json").read_text())
    if metrics.get("run_id") and not args.again:
        raise ConfigError(
            f"{str(folder)!r} is already recorded as MLflow run {metrics['run_id']}; "
            "pass --again to record it as a new run"
        )
    config = yaml.safe_load((folder / "config.resolved.yaml").read_text())
    recorded = dict(config.get("tracking") or {})
    # The run's own MLflow section (kept when it was switched off), else MLflow's defaults.
    tracking = recorded if recorded.get("kind", "mlflow") == "mlflow" else {}
    tracking.update({"kind": "mlflow", "enabled": True, "run_name": recorded.get("run_name")})
    if args.tracking_uri:
        tracking["uri"] = args.tracking_uri
    if args.experiment:
        tracking["experiment"] = args.experiment
    tracker = get_tracker(TrackingConfig.build(tracking))
    tracker.check()
    run_id = log_results(tracker, folder)
    assert run_id is not None  # an MLflow tracker stores every run
    print("\n".join(tracker.run_lines(run_id)))
    return 0


def _runs(args: argparse.Namespace) -> int:
    """A comparison table of the experiment's recent runs, newest first."""
    tracker = _mlflow_tracker(args.tracking_uri, experiment=args.experiment)
    found = tracker.runs(max_results=args.max_results)
    if not found:
        print(_no_runs_hint(tracker, args.experiment))
        return 0
    print(format_runs(found, metric=args.metric))
    return 0


def _mlflow_tracker(uri: str | None, **keys: Any) -> Tracker:
    """The MLflow tracker of ``--tracking-uri`` (and ``--experiment``), for the commands
    that read runs back: ``predict MODEL_URI``, ``runs``."""
    from stacking.config import TrackingConfig
    from stacking.tracking import get_tracker

    return get_tracker(TrackingConfig.build({"kind": "mlflow", "uri": uri, **keys}))


def _no_runs_hint(tracker: Tracker, experiment: str) -> str:
    """What to type instead when an experiment has no runs: the ones that have some."""
    from stacking.errors import did_you_mean

    others = {k: v for k, v in tracker.experiments_with_runs().items() if k != experiment}
    if not others:
        return f"no runs in experiment {experiment!r}, nor in any other experiment of this store"
    listed = ", ".join(f"{k} ({n} run{'s' if n != 1 else ''})" for k, n in sorted(others.items()))
    pick = min(others, key=lambda name: (did_you_mean(experiment, [name]) == "", name))
    return (
        f"no runs in experiment {experiment!r}; experiments with runs: {listed}; "
        f"e.g. stacking runs --experiment {shlex.quote(pick)}"
    )


def format_runs(found: list[RecordedRun], *, metric: str | None = None) -> str:
    """One row per run: date, run id, ensemble, its cv_/test_ metrics, digests."""
    import pandas as pd

    rows = []
    for run in found:
        chosen = run.tags.get("stacking.primary_metric", "")
        wanted = (
            [metric]
            if metric
            else sorted({k.split("_", 1)[1] for k in run.metrics if k.startswith(("cv_", "test_"))})
        )
        row: dict[str, str | float] = {
            "date": pd.Timestamp(run.start_time, unit="ms").strftime("%Y-%m-%d %H:%M"),
            "run_id": run.run_id[:12],
            "name": run.name,
            "ensemble": run.tags.get("stacking.ensemble", ""),
        }
        for name in wanted:
            for prefix in ("cv_", "test_"):
                if f"{prefix}{name}" in run.metrics:
                    row[f"{prefix}{name}"] = run.metrics[f"{prefix}{name}"]
        row["primary"] = chosen
        row["data"] = run.tags.get("stacking.data_digest", "")[:8]
        row["folds"] = run.tags.get("stacking.folds_digest", "")[:8]
        row["status"] = run.status
        rows.append(row)
    table = pd.DataFrame(rows)
    if metric and not any(c.endswith(f"_{metric}") for c in table.columns):
        raise ConfigError(
            f"no run records a metric {metric!r}. Received: --metric {metric}; "
            "use a metric name such as log_loss or accuracy, without cv_"
        )
    metric_columns = [c for c in table.columns if c.startswith(("cv_", "test_"))]
    rest = [c for c in table.columns if c not in metric_columns]
    table = table[rest[:4] + metric_columns + rest[4:]]
    return table.to_string(index=False, float_format=lambda v: f"{v:.4f}", na_rep="-")


def _target_name(model: Path) -> str:
    """The training target's column name, from ``config.resolved.yaml`` of the results
    folder (``model`` or the parent of its ``ensemble/``); ``prediction`` without one."""
    import yaml

    for folder in (model, model.parent):
        path = folder / "config.resolved.yaml"
        if path.is_file():
            target = (yaml.safe_load(path.read_text()).get("data") or {}).get("target")
            if isinstance(target, str):
                return target
    return "prediction"


def _submission(
    result: pd.DataFrame, predictor: EnsemblePredictor, proba: bool, target: str
) -> pd.DataFrame:
    """Kaggle's layout: the id column, then the label (or value) named like the target;
    ``proba``: one column per class named by the class. Multilabel: one 0/1 (or
    probability) column per label."""
    import pandas as pd

    stack, id_column = predictor.stack, predictor.id_column
    if id_column not in result.columns:
        raise DataError(
            f"the rows have no id column {id_column!r}, which a submission needs; "
            "add it to the data file or drop --submission"
        )
    if proba and stack.task == "regression":
        raise ConfigError("--proba is for classification; this ensemble is a regression one")
    names = [f"ensemble__{n}" for n in stack.output_names]
    if proba or stack.task == "multilabel":
        values = result[names].set_axis(stack.output_names, axis=1)
        if not proba:
            values = (values >= 0.5).astype(int)
        return pd.concat([result[[id_column]], values], axis=1)
    return pd.DataFrame({id_column: result[id_column], target: result["prediction"]})


def _folds(args: argparse.Namespace) -> int:
    """Write the experiment's fold plan before any model exists, for models trained
    elsewhere (``stacking folds CONFIG --output folds.csv``)."""
    from stacking.config import load_config
    from stacking.data import load_dataset
    from stacking.folds import make_fold_plan

    config = load_config(args.config, args.set or [], require_base_models=False)
    data = load_dataset(config.data)
    plan = make_fold_plan(config.folds, data)
    out = Path(args.output)
    if out.suffix.lower() != ".csv":
        raise ConfigError(
            f"--output {args.output!r}: the fold plan is written as CSV; end it in .csv"
        )
    tmp = out.with_name(f".{out.name}.tmp")
    try:
        plan.save(tmp, id_column=data.id_column)
        tmp.replace(out)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise DataError(f"cannot write --output {args.output!r}: {exc.strerror or exc}") from exc
    reserved = (
        f"; {plan.n_reserved} rows are reserved (fold -1): train on none of them and "
        "predict them with every fold model, as test rows"
        if plan.n_reserved
        else ""
    )
    print(
        f"wrote {len(plan.ids)} rows in {plan.n_splits} folds (plan {plan.digest}) to {out}; "
        f"train fold k on the rows whose fold is not k, predict the rows whose fold is k"
        f"{reserved}"
    )
    return 0


def _inspect(args: argparse.Namespace) -> int:
    from stacking.base import inspect_model

    info = inspect_model(args.model_path, custom_objects=args.custom_objects or None)
    print(json.dumps(info, indent=2, default=str))
    return 0


def _cache(args: argparse.Namespace) -> int:
    from stacking.cache import get_cache, verify_cache
    from stacking.config import CacheConfig

    store = get_cache(CacheConfig.build({"kind": "local", "dir": args.dir}))
    if args.action == "info":
        print(json.dumps(store.info(), indent=2))
    elif args.action == "verify":
        n = verify_cache(args.dir)
        print(f"all {n} cache entries in {args.dir} are intact")
    else:
        print(f"removed {store.clear()} cache entries from {args.dir}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="stacking", description="Leak-free stacking of frozen TensorFlow models."
    )
    parser.add_argument("--debug", action="store_true", help="show tracebacks for user errors")
    # Also accepted after the command (`stacking run cfg.yaml --debug`); SUPPRESS keeps a
    # subcommand from resetting a --debug given before it.
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--debug", action="store_true", default=argparse.SUPPRESS)
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser(
        "run", parents=[common], help="run one stacking experiment from a YAML config"
    )
    run.add_argument("config", help="path to the experiment YAML")
    run.add_argument(
        "--set", action="append", metavar="KEY=VALUE", help="override a config key (repeatable)"
    )
    run.add_argument("--output", help="results directory (default runs/<name>-<timestamp>)")
    run.add_argument(
        "--quiet", action="store_true", help="print only the leaderboard (no stage lines or bars)"
    )
    run.add_argument(
        "--submission",
        metavar="FILE",
        help="at the end, write a Kaggle-style file (.csv or .parquet) of the test rows: the "
        "id and the predicted class or value, named like the target",
    )
    run.add_argument(
        "--seeds",
        metavar="SEEDS",
        help="run the config once per seed (e.g. 0-4 or 0,2,7), nested under one MLflow "
        "parent run; a seed sets meta.seed and the meta-models' random_state, never the "
        "fold plan; results go to OUTPUT/seed-<s>",
    )
    run.set_defaults(func=_run)

    compare = sub.add_parser(
        "compare",
        parents=[common],
        help="one table over several runs: each config's mean over seeds and paired "
        "differences (Markdown, LaTeX, CSV)",
    )
    compare.add_argument("run_ids", nargs="*", metavar="RUN_ID", help="MLflow run ids")
    compare.add_argument("--experiment", help="compare every finished run of this experiment")
    compare.add_argument("--tracking-uri", help="MLflow store (default: MLflow's)")
    compare.add_argument("--output", metavar="DIR", help="write compare.<format> files here")
    compare.add_argument(
        "--format", default="md,tex,csv", help="formats written to --output (default md,tex,csv)"
    )
    compare.add_argument("--metric", help="metric to compare (default: the runs' primary)")
    compare.add_argument(
        "--baseline", help="config the differences are taken from (default: the first)"
    )
    compare.set_defaults(func=_compare)

    folds = sub.add_parser(
        "folds",
        parents=[common],
        help="write the fold plan (id, fold) of a config, to train models elsewhere on it",
    )
    folds.add_argument("config", help="path to the experiment YAML")
    folds.add_argument("--output", required=True, help="the plan's CSV file, e.g. folds.csv")
    folds.add_argument(
        "--set", action="append", metavar="KEY=VALUE", help="override a config key (repeatable)"
    )
    folds.set_defaults(func=_folds)

    init = sub.add_parser(
        "init", parents=[common], help="write a commented starting config from a training table"
    )
    init.add_argument("train", help="the training table (CSV or Parquet)")
    init.add_argument("--test", help="the test table: its missing column is taken as the target")
    init.add_argument(
        "--output", default="config.yaml", help="config file to write (default config.yaml)"
    )
    init.set_defaults(func=_init)

    predict = sub.add_parser(
        "predict", parents=[common], help="predict new rows with a saved ensemble"
    )
    predict.add_argument(
        "model", help="a results directory, its ensemble/ folder, or an MLflow model URI"
    )
    predict.add_argument("data", help="CSV or Parquet rows with the base models' input columns")
    predict.add_argument("--output", required=True, help="predictions file (.csv or .parquet)")
    predict.add_argument("--tracking-uri", help="MLflow store of a model URI (default: MLflow's)")
    predict.add_argument(
        "--image-root",
        metavar="DIR",
        help="folder that image paths in the rows are relative to and may not leave "
        "(default: the rows file's folder)",
    )

    predict.add_argument(
        "--submission",
        help="also write a Kaggle-style file (.csv or .parquet): the id and the predicted "
        "class or value",
    )
    predict.add_argument(
        "--proba",
        action="store_true",
        help="the submission holds one probability column per class, named by the class",
    )
    predict.add_argument(
        "--target-column",
        help="name of the submission's prediction column (default: the training target's)",
    )
    predict.set_defaults(func=_predict)

    reproduce = sub.add_parser(
        "reproduce", parents=[common], help="re-run a recorded experiment and compare"
    )
    reproduce.add_argument("run_id")
    reproduce.add_argument("--tracking-uri", help="MLflow store of the run (default: MLflow's)")
    reproduce.add_argument("--output", help="results directory for the new run")
    reproduce.add_argument(
        "--trust-imports",
        action="store_true",
        help="let the recorded config import code outside stacking. and sklearn. "
        "(only for runs whose writers you trust)",
    )
    reproduce.set_defaults(func=_reproduce)

    log = sub.add_parser("log", parents=[common], help="record a finished results folder in MLflow")
    log.add_argument("results_dir", help="a folder `stacking run` wrote (runs/<name>-<time>)")
    log.add_argument("--tracking-uri", help="MLflow store (default: the folder's config)")
    log.add_argument("--experiment", help="MLflow experiment (default: the folder's config)")
    log.add_argument("--again", action="store_true", help="record a recorded folder again")
    log.set_defaults(func=_log)

    runs = sub.add_parser(
        "runs", parents=[common], help="compare the recent runs of an MLflow experiment"
    )
    runs.add_argument("--experiment", default="tf-stacking", help="MLflow experiment name")
    runs.add_argument("--metric", help="show only this metric (cv_ and test_), e.g. log_loss")
    runs.add_argument("--tracking-uri", help="MLflow store (default: MLflow's)")
    runs.add_argument("--max-results", type=int, default=20, help="how many recent runs")
    runs.set_defaults(func=_runs)

    inspect = sub.add_parser(
        "inspect",
        parents=[common],
        help="show a model's format, kind, inputs, outputs, layers, manifest and file hashes "
        "(JSON)",
    )
    inspect.add_argument(
        "model_path",
        help="a model file, a SavedModel folder, a fold-model directory, or its stacking.json "
        "(the manifest and file hashes only, without loading a model)",
    )
    inspect.add_argument(
        "--custom-objects",
        action="append",
        metavar="MODULE",
        help="module defining the model's custom Keras classes (repeatable)",
    )
    inspect.set_defaults(func=_inspect)

    cache = sub.add_parser(
        "cache", parents=[common], help="show, verify or clear the prediction cache"
    )
    cache.add_argument("action", choices=["info", "verify", "clear"])
    cache.add_argument("--dir", default=".stacking_cache", help="cache folder")
    cache.set_defaults(func=_cache)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.debug:  # --debug: TensorFlow's own logging and MLflow's bars too
        loud_tensorflow()
    else:
        quiet_tensorflow()
    os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "WARNING")  # keeps errors to one line
    logging.getLogger("mlflow").setLevel(logging.WARNING)  # if mlflow is imported already
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        return args.func(args)
    except StackingError as exc:
        if args.debug:
            raise
        print(f"error: {_one_line(exc)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


def _one_line(exc: BaseException) -> str:
    """The message on one line: a cause quoted from a library may hold newlines."""
    return " ".join(str(exc).split()) or type(exc).__name__


if __name__ == "__main__":
    sys.exit(main())
