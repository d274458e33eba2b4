"""Does a model's memory come back after its job, and at what price? One strategy per process.

Runs ``--jobs`` inference jobs (each loads a saved 64-W-W-10 MLP, predicts 20,000 rows and
drops it) and prints RSS along the way and the time spent freeing memory, for:

- ``none``: drop the references only (Keras models are reference cycles: RSS grows);
- ``collect``: a full ``gc.collect()`` after each job (tf-stacking before issue 9);
- ``clear``: ``keras.backend.clear_session()`` after each job, no collection;
- ``executor``: the local executor (the pre-run heap frozen, a young collection per job).

    python experiments/benchmarks/bench_release.py [--width 2048] [--jobs 40]
"""

from __future__ import annotations

import argparse
import gc
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

STRATEGIES = ["none", "collect", "clear", "executor"]


def _rss_mb() -> float:
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("VmRSS")) / 1024


def child(strategy: str, width: int, n_jobs: int, root: Path) -> None:
    import keras
    import numpy as np

    from stacking.config import BaseModelSpec
    from stacking.executors import Job, LocalExecutor, run_job

    paths = []
    for i in range(4):
        inputs = keras.Input((64,))
        h = keras.layers.Dense(width, activation="relu")(inputs)
        h = keras.layers.Dense(width, activation="relu")(h)
        model = keras.Model(inputs, keras.layers.Dense(10, activation="softmax")(h))
        paths.append(root / f"m{i}.keras")
        model.save(paths[-1])
    del model
    x = np.random.default_rng(0).random((20_000, 64), dtype=np.float32)
    jobs = [
        Job(
            model="m",
            spec=BaseModelSpec(path=paths[i % 4], input="x"),
            path=paths[i % 4],
            inputs=[[x]],
            keys=["k"],
        )
        for i in range(n_jobs)
    ]
    rss, freeing = [], 0.0
    start = time.perf_counter()
    if strategy == "executor":
        LocalExecutor(progress=False).run(jobs, lambda job, out: rss.append(_rss_mb()))
    else:
        for job in jobs:
            run_job(job)
            tick = time.perf_counter()
            if strategy == "collect":
                gc.collect()
            elif strategy == "clear":
                keras.backend.clear_session(free_memory=False)
            freeing += time.perf_counter() - tick
            rss.append(_rss_mb())
    total = time.perf_counter() - start
    weights = (64 * width + width * width + width * 10) * 4 / 2**20
    shown = "in total" if strategy == "executor" else f"{freeing:.2f}"
    print(
        f"| {strategy} | {rss[3]:.0f} | {rss[-1]:.0f} | {rss[-1] - rss[3]:+.0f} "
        f"| {weights:.1f} | {shown} | {total:.1f} |"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--width", type=int, default=2048)
    parser.add_argument("--jobs", type=int, default=40)
    parser.add_argument("--child", choices=STRATEGIES, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        with tempfile.TemporaryDirectory() as tmp:
            return child(args.child, args.width, args.jobs, Path(tmp))
    print(f"{args.jobs} jobs, 64-{args.width}-{args.width}-10 MLPs, 20,000 rows each")
    print(
        "| strategy | RSS after job 4 (MB) | after last | growth | weights/model (MB) "
        "| freeing (s) | total (s) |"
    )
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    for strategy in STRATEGIES:
        command = [sys.executable, __file__, "--child", strategy]
        command += ["--width", str(args.width), "--jobs", str(args.jobs)]
        done = subprocess.run(command, capture_output=True, text=True, env=env, check=True)
        print(done.stdout.strip().splitlines()[-1])


if __name__ == "__main__":
    main()
