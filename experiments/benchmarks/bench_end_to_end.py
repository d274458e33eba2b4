"""End to end: what a user waits for, as ratios measured in one run on this machine.

Workload (issue 9): 4 base models (64-256-256-10 MLPs) x 5 fold models, ``--rows``
training rows (default 100,000) + 20,000 test rows, 10 classes, meta candidate ``mean``.
Figures, each a ratio inside this one run:

1. ``stacking run`` (Python API, cache and tracking off) against the tutorial loop
   (``keras.models.load_model`` + ``model.predict`` per fold model, OOF and test), whose
   predictions it must equal;
2. the inference stage's GFLOP/s against the float32 matmul peak measured just before;
   the stage is timed for the local and the prefetching executor; and the ceiling of
   this architecture: one fold model's compiled call on a resident 4096-row batch;
3. a warm rerun changing only the meta-model (``geometric`` instead of ``mean``) against
   the cold run, cache on;
4. peak RSS of a run with 2, 8 and 32 external base models, each in its own subprocess,
   against the level-1 bytes a model adds;
5. time per training row.

    python experiments/benchmarks/bench_end_to_end.py [--rows 100000] [--profile]
    python experiments/benchmarks/bench_end_to_end.py --rows 1000000   # minutes

``--profile`` adds a cProfile of the cold run (top functions by own and total time).
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import io
import json
import os
import pstats
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np
import pandas as pd
import yaml

N_FEATURES, N_CLASSES, N_SPLITS, N_TEST = 64, 10, 5, 20_000
HIDDEN = (256, 256)
MACS = N_FEATURES * HIDDEN[0] + HIDDEN[0] * HIDDEN[1] + HIDDEN[1] * N_CLASSES


def _mlp(seed: int):
    import keras

    keras.utils.set_random_seed(seed)
    inputs = keras.Input((N_FEATURES,), name="x")
    h = inputs
    for units in HIDDEN:
        h = keras.layers.Dense(units, activation="relu")(h)
    return keras.Model(inputs, keras.layers.Dense(N_CLASSES, activation="softmax")(h))


def make_workload(root: Path, rows: int, n_models: int = 4) -> dict:
    """Data, a fold plan and ``n_models`` fold-model directories (untrained weights: speed
    does not depend on them) plus one external model, under ``root``."""
    from stacking import load_config, load_dataset, make_fold_plan, write_manifest

    rng = np.random.default_rng(0)
    x = rng.normal(size=(rows + N_TEST, N_FEATURES)).astype("float32")
    y = (x @ rng.normal(size=(N_FEATURES, N_CLASSES))).argmax(axis=1)
    frame = pd.DataFrame(x, columns=[f"f_{i}" for i in range(N_FEATURES)])
    frame.insert(0, "id", np.arange(len(frame)))
    frame["y"] = y
    frame.iloc[:rows].to_parquet(root / "train.parquet", index=False)
    frame.iloc[rows:].drop(columns="y").to_parquet(root / "test.parquet", index=False)
    raw = {
        "name": "bench",
        "data": {
            "train": "train.parquet",
            "test": "test.parquet",
            "id": "id",
            "target": "y",
            "task": "multiclass",
            "views": {"x": {"columns": "f_*"}},
        },
        "folds": {"kind": "stratified", "n_splits": N_SPLITS, "seed": 0},
        "base_models": {
            f"mlp{m}": {"path": f"models/mlp{m}", "input": "x"} for m in range(n_models)
        },
        "meta": {"candidates": ["mean"]},
        "tracking": {"enabled": False},
        "cache": {"enabled": False, "dir": str(root / "cache")},
    }
    (root / "config.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
    cfg = load_config(root / "config.yaml")
    plan = make_fold_plan(cfg.folds, load_dataset(cfg.data))
    for m in range(n_models):
        directory = root / f"models/mlp{m}"
        directory.mkdir(parents=True)
        for k in range(N_SPLITS):
            _mlp(seed=100 * m + k).save(directory / f"fold_{k}.keras")
        write_manifest(directory, fold_plan=plan, task="multiclass", classes=list(range(N_CLASSES)))
    _mlp(seed=999).save(root / "models/external.keras")
    return raw


def write_config(root: Path, raw: dict, name: str, **changes) -> Path:
    raw = json.loads(json.dumps(raw))
    for dotted, value in changes.items():
        node = raw
        *parents, last = dotted.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[last] = value
    path = root / f"{name}.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


def best_gflops(call, flops: float, seconds: float) -> float:
    """Best GFLOP/s of ``call()`` (``flops`` each) over ``seconds`` of repeated calls."""
    best, end = 0.0, time.perf_counter() + seconds
    while time.perf_counter() < end:
        start = time.perf_counter()
        call()
        best = max(best, flops / (time.perf_counter() - start) / 1e9)
    return best


def matmul_peak(seconds: float = 3.0) -> float:
    """Best float32 GFLOP/s of a 2048x2048 matmul on this machine, now."""
    import tensorflow as tf

    a = tf.random.normal((2048, 2048))
    b = tf.random.normal((2048, 2048))
    fn = tf.function(lambda: tf.reduce_sum(tf.linalg.matmul(a, b)))
    fn()
    return best_gflops(lambda: fn().numpy(), 2 * 2048**3, seconds)


def model_ceiling(root: Path, batch_size: int = 4096, seconds: float = 2.0) -> float:
    """Best GFLOP/s of one fold model's compiled call on a resident ``batch_size``-row
    batch, traced beforehand: what this architecture can reach here (its layers are
    skinny next to the 2048x2048 matmul), with no loading, tracing or copying around it."""
    from stacking.base import load_base_model

    model = load_base_model(root / "models/mlp0/fold_0.keras")
    x = np.random.default_rng(0).normal(size=(batch_size, N_FEATURES)).astype("float32")
    model.predict([x], batch_size=batch_size)  # traces
    return best_gflops(
        lambda: model.predict([x], batch_size=batch_size), 2 * MACS * batch_size, seconds
    )


def tutorial_loop(root: Path, raw: dict) -> tuple[float, dict[str, np.ndarray]]:
    """What a user writes without tf-stacking: load each fold model, ``model.predict``."""
    import keras

    from stacking import load_config, load_dataset, make_fold_plan

    start = time.perf_counter()
    cfg = load_config(root / "config.yaml")
    data = load_dataset(cfg.data)
    plan = make_fold_plan(cfg.folds, data)
    columns = [f"f_{i}" for i in range(N_FEATURES)]
    x = data.train[columns].to_numpy("float32")
    x_test = data.test[columns].to_numpy("float32")
    oof = {}
    for name in raw["base_models"]:
        oof[name] = np.zeros((len(x), N_CLASSES))
        test = np.zeros((len(x_test), N_CLASSES))
        for k in range(N_SPLITS):
            model = keras.models.load_model(root / f"models/{name}/fold_{k}.keras")
            rows = plan.test_index(k)
            oof[name][rows] = model.predict(x[rows], verbose=0)
            test += model.predict(x_test, verbose=0) / N_SPLITS
    return time.perf_counter() - start, oof


@contextlib.contextmanager
def stage_timer(totals: dict):
    """Time the executor's ``run`` (the inference stage) and the models' own ``predict``."""
    import stacking.base
    from stacking.executors import Executor

    originals = {cls: cls.run for cls in Executor.__subclasses__()}
    load = stacking.base.load_base_model

    def timed_run(original):
        def run(self, jobs, on_result):
            start = time.perf_counter()
            try:
                return original(self, jobs, on_result)
            finally:
                totals["stage"] = totals.get("stage", 0.0) + time.perf_counter() - start

        return run

    def timed_load(*args, **kwargs):
        model = load(*args, **kwargs)
        predict = model.predict

        def timed_predict(inputs, *, batch_size):
            start = time.perf_counter()
            out = predict(inputs, batch_size=batch_size)
            totals["predict"] = totals.get("predict", 0.0) + time.perf_counter() - start
            totals["rows"] = totals.get("rows", 0) + len(inputs[0])
            return out

        model.predict = timed_predict
        return model

    for cls, original in originals.items():
        cls.run = timed_run(original)
    stacking.base.load_base_model = timed_load
    try:
        yield totals
    finally:
        for cls, original in originals.items():
            cls.run = original
        stacking.base.load_base_model = load


def executor_stage(root: Path, raw: dict, kinds: list[str], repeats: int) -> dict[str, float]:
    """Best time of each executor over the benchmark's inference jobs, run alternately.

    The jobs are the engine's: each fold model predicts its fold's rows and the test rows.
    """
    from stacking import load_config, load_dataset, make_fold_plan
    from stacking.config import parse_config
    from stacking.executors import Job, get_executor

    cfg = load_config(root / "config.yaml")
    data = load_dataset(cfg.data)
    plan = make_fold_plan(cfg.folds, data)
    columns = [f"f_{i}" for i in range(N_FEATURES)]
    x = data.train[columns].to_numpy("float32")
    x_test = data.test[columns].to_numpy("float32")
    jobs = [
        Job(
            model=name,
            spec=cfg.base_models[name],
            path=root / f"models/{name}/fold_{k}.keras",
            inputs=[[x[plan.test_index(k)]], [x_test]],
            keys=["oof", "test"],
        )
        for name in raw["base_models"]
        for k in range(N_SPLITS)
    ]
    best = {kind: float("inf") for kind in kinds}
    for _ in range(repeats):
        for kind in kinds:
            executor = get_executor(
                parse_config({**raw, "executor": {"kind": kind}}, root=root).executor,
                progress=False,
            )
            start = time.perf_counter()
            executor.run(jobs, lambda job, outputs: None)
            best[kind] = min(best[kind], time.perf_counter() - start)
    return best


def stacking_run(config: Path, out: Path, profile: cProfile.Profile | None = None):
    from stacking import Experiment

    totals: dict = {}
    with stage_timer(totals):
        start = time.perf_counter()
        if profile is not None:
            profile.enable()
        result = Experiment.from_yaml(config, output_dir=out, progress=False).run()
        if profile is not None:
            profile.disable()
        totals["wall"] = time.perf_counter() - start
    return totals, result


def peak_rss_child(config: str) -> None:
    """Subprocess body: one run, then print this process's peak RSS in MB."""
    from stacking import Experiment

    Experiment.from_yaml(config, output_dir=Path(config).with_suffix(".out"), progress=False).run()
    print(json.dumps({"peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))


def external_models(root: Path, n: int) -> dict:
    """``base_models`` entries for ``n`` external models: copies of ``models/external.keras``
    (made once), so that each is loaded, predicted and held like a distinct model."""
    models = {}
    for m in range(n):
        path = root / f"models/external_{m}.keras"
        if not path.exists():
            shutil.copy(root / "models/external.keras", path)
        models[f"ext{m}"] = {"path": str(path), "input": "x", "trained_on": "external"}
    return models


def peak_rss(root: Path, raw: dict, counts: list[int], changes: dict) -> dict[int, float]:
    """Peak RSS of a run with ``n`` external base models (copies of one file), per ``n``."""
    peaks = {}
    for n in counts:
        config = write_config(root, raw, f"rss{n}", base_models=external_models(root, n), **changes)
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
        done = subprocess.run(
            [sys.executable, __file__, "--rss-child", str(config)],
            capture_output=True,
            text=True,
            env=env,
            check=True,
        )
        peaks[n] = json.loads(done.stdout.strip().splitlines()[-1])["peak_rss_mb"]
    return peaks


def _top(profile: cProfile.Profile, key: str, n: int = 25) -> str:
    buffer = io.StringIO()
    pstats.Stats(profile, stream=buffer).sort_stats(key).print_stats(n)
    return buffer.getvalue()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--rss-counts", default="2,8,32")
    parser.add_argument("--profile", action="store_true")
    parser.add_argument("--repeats", type=int, default=3, help="executor comparison: best of")
    parser.add_argument(
        "--bootstrap", type=int, help="meta.bootstrap resamples (default: the config default)"
    )
    parser.add_argument("--rss-child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    profile = None
    if args.rss_child:
        return peak_rss_child(args.rss_child)
    report: dict = {"rows": args.rows, "test_rows": N_TEST, "load_average": os.getloadavg()}
    meta = {} if args.bootstrap is None else {"meta.bootstrap": args.bootstrap}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        raw = make_workload(root, args.rows)
        report["matmul_peak_gflops"] = matmul_peak()
        report["tutorial_s"], expected = tutorial_loop(root, raw)
        stage = executor_stage(root, raw, ["local", "prefetch"], args.repeats)
        report.update({f"executor_best_s[{kind}]": v for kind, v in stage.items()})
        runs = {}
        for kind in ("local", "prefetch"):
            config = write_config(root, raw, f"cold_{kind}", **{"executor.kind": kind}, **meta)
            runs[kind], result = stacking_run(config, root / f"out_{kind}")
        if args.profile:  # a third run, profiled: the figures above are unprofiled
            profile = cProfile.Profile()
            stacking_run(root / "cold_local.yaml", root / "out_profiled", profile)
        for name, oof in expected.items():
            ours = result.oof.sort_values("id")[[f"{name}__{c}" for c in range(N_CLASSES)]]
            np.testing.assert_allclose(ours.to_numpy(), oof, atol=1e-5)
        report["stacking_run_s"] = runs["local"]["wall"]
        report["speedup_vs_tutorial"] = report["tutorial_s"] / runs["local"]["wall"]
        flops = 2 * MACS * runs["local"]["rows"]
        for kind, totals in runs.items():
            report[f"inference_stage_s[{kind}]"] = totals["stage"]
            report[f"inference_stage_gflops[{kind}]"] = flops / totals["stage"] / 1e9
        # the machine is shared: the peak is the best of a measurement before and after
        report["matmul_peak_gflops"] = max(report["matmul_peak_gflops"], matmul_peak())
        report["predict_only_s"] = runs["local"]["predict"]
        report["predict_only_gflops"] = flops / runs["local"]["predict"] / 1e9
        report["stage_pct_of_peak"] = (
            100 * report["inference_stage_gflops[local]"] / report["matmul_peak_gflops"]
        )
        report["predict_pct_of_peak"] = (
            100 * report["predict_only_gflops"] / report["matmul_peak_gflops"]
        )
        report["model_ceiling_gflops"] = model_ceiling(root)
        report["model_ceiling_pct_of_peak"] = (
            100 * report["model_ceiling_gflops"] / report["matmul_peak_gflops"]
        )
        report["stage_pct_of_model_ceiling"] = (
            100 * report["inference_stage_gflops[local]"] / report["model_ceiling_gflops"]
        )
        report["time_per_row_us"] = 1e6 * runs["local"]["wall"] / args.rows

        cached = {"cache.enabled": True, **meta}
        cold, _ = stacking_run(write_config(root, raw, "cache_cold", **cached), root / "c1")
        warm_cfg = write_config(
            root, raw, "cache_warm", **cached, **{"meta.candidates": ["geometric"]}
        )
        warm, _ = stacking_run(warm_cfg, root / "c2")
        report["cold_cached_s"], report["warm_rerun_s"] = cold["wall"], warm["wall"]
        report["warm_speedup"] = cold["wall"] / warm["wall"]

        counts = [int(c) for c in args.rss_counts.split(",")]
        peaks = peak_rss(root, raw, counts, meta)
        level1_mb = args.rows * N_CLASSES * 8 / 1e6  # float64 OOF, as issue 9 counts it
        growth = (peaks[counts[-1]] - peaks[counts[0]]) / (counts[-1] - counts[0])
        report.update({f"peak_rss_mb[{n}]": v for n, v in peaks.items()})
        report["rss_growth_per_model_mb"] = growth
        if len(counts) > 2:  # the slope between the two largest runs, where models dominate
            top = (peaks[counts[-1]] - peaks[counts[-2]]) / (counts[-1] - counts[-2])
            report["rss_growth_per_model_mb_upper"] = top
        report["level1_mb_per_model"] = level1_mb
        report["rss_growth_over_level1"] = growth / level1_mb
    print(
        json.dumps(
            {k: round(v, 3) if isinstance(v, float) else v for k, v in report.items()}, indent=1
        )
    )
    if profile is not None:
        print(_top(profile, "tottime"))
        print(_top(profile, "cumulative"))


if __name__ == "__main__":
    main()
