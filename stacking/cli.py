"""``stacking`` command line: a thin layer over :class:`~stacking.experiment.Experiment`.

Exit codes: 0 success; 2 a user error (one line ``error: …`` on stderr, no traceback
unless ``--debug``); 1 an internal failure (a bug: the traceback is printed).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from pathlib import Path

from stacking.errors import StackingError


def _run(args) -> int:
    from stacking.experiment import Experiment

    experiment = Experiment.from_yaml(
        args.config, overrides=args.set or [], output_dir=args.output, progress=not args.quiet
    )
    result = experiment.run()
    print(result.summary())
    if result.run_id:
        uri = experiment.config.tracking.uri
        if uri is None:
            import mlflow

            uri = mlflow.get_tracking_uri()
        print(f"mlflow run: {result.run_id}")
        print(f"browse it:  mlflow ui --backend-store-uri {uri}")
    return 0


def _inspect(args) -> int:
    from stacking.base import MANIFEST, load_base_model, read_manifest

    path = Path(args.model_path)
    info: dict = {"path": str(path)}
    target = path
    if path.is_dir() and (path / MANIFEST).is_file():
        info["manifest"] = read_manifest(path)
        target = next(iter(sorted(path.glob("fold_0*"))), path)
    model = load_base_model(target)
    info["model"] = str(target)
    info["inputs"] = [list(s) for s in model.input_shapes]
    info["outputs"] = model.output_names
    print(json.dumps(info, indent=2, default=str))
    return 0


def _cache(args) -> int:
    from stacking.cache import LocalCacheStore

    store = LocalCacheStore(args.dir)
    if args.action == "info":
        print(json.dumps(store.info(), indent=2))
    else:
        print(f"removed {store.clear()} cache entries from {args.dir}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="stacking", description="Leak-free stacking of frozen TensorFlow models."
    )
    parser.add_argument("--debug", action="store_true", help="show tracebacks for user errors")
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="run one stacking experiment from a YAML config")
    run.add_argument("config", help="path to the experiment YAML")
    run.add_argument(
        "--set", action="append", metavar="KEY=VALUE", help="override a config key (repeatable)"
    )
    run.add_argument("--output", help="results directory (default runs/<name>-<timestamp>)")
    run.add_argument("--quiet", action="store_true", help="no progress bars")
    run.set_defaults(func=_run)

    inspect = sub.add_parser("inspect", help="show a model's inputs, outputs and manifest")
    inspect.add_argument("model_path")
    inspect.set_defaults(func=_inspect)

    cache = sub.add_parser("cache", help="show or clear the prediction cache")
    cache.add_argument("action", choices=["info", "clear"])
    cache.add_argument("--dir", default=".stacking_cache", help="cache folder")
    cache.set_defaults(func=_cache)
    return parser


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        return args.func(args)
    except StackingError as exc:
        if args.debug:
            raise
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
