"""One traced function per architecture vs one per fold model.

A fold set's K models share an architecture. Before, each loaded model traced its own
``tf.function`` (a fixed cost per model); now the first model of an architecture traces a
function of (weights, inputs) and the others call it with their own weights. Same saved
models, same rows, same run, alternating the two ways; figures are ratios.

    python experiments/benchmarks/bench_shared_trace.py [--folds 20] [--rows 2000] [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np


def _mlp():
    """The end-to-end benchmark's 64-256-256-10 MLP (untrained: weights do not matter)."""
    import keras

    return keras.Sequential(
        [
            keras.Input((64,)),
            keras.layers.Dense(256, activation="relu"),
            keras.layers.Dense(256, activation="relu"),
            keras.layers.Dense(10, activation="softmax"),
        ]
    )


def _per_model(paths: list[Path], x: np.ndarray) -> list[np.ndarray]:
    """The previous way: load each fold model and trace its own compiled call."""
    import keras
    import tensorflow as tf

    out = []
    for path in paths:
        model = keras.models.load_model(path, compile=False)
        spec = tf.TensorSpec((None, 64), tf.float32)
        fn = tf.function(lambda a, m=model: m(a, training=False), input_signature=[spec])
        out.append(np.asarray(fn(x)))
    return out


def _shared(paths: list[Path], x: np.ndarray) -> list[np.ndarray]:
    from stacking.base import load_base_model
    from stacking.base._keras import SHARED_FUNCTIONS

    SHARED_FUNCTIONS.clear()  # every repeat pays its one trace again
    return [load_base_model(p).predict([x], batch_size=4096) for p in paths]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--folds", type=int, default=20)
    parser.add_argument("--rows", type=int, default=2000, help="rows each fold model predicts")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    x = np.random.default_rng(0).random((args.rows, 64), dtype=np.float32)
    with tempfile.TemporaryDirectory() as tmp:
        paths = []
        for k in range(args.folds):
            paths.append(Path(tmp) / f"fold_{k}.keras")
            _mlp().save(paths[-1])
        _per_model(paths[:1], x), _shared(paths[:1], x)  # imports and first allocations
        times: dict[str, list[float]] = {"per_model": [], "shared": []}
        for _ in range(args.repeats):
            for name, fn in (("per_model", _per_model), ("shared", _shared)):
                start = time.perf_counter()
                outputs = fn(paths, x)
                times[name].append(time.perf_counter() - start)
                results = outputs
        before, after = _per_model(paths, x), results
        for a, b in zip(before, after):
            np.testing.assert_allclose(a, b, atol=1e-6)
    best = {k: min(v) for k, v in times.items()}
    print(
        json.dumps(
            {
                "folds": args.folds,
                "rows_per_fold": args.rows,
                "per_model_trace_s": round(best["per_model"], 3),
                "shared_trace_s": round(best["shared"], 3),
                "speedup": round(best["per_model"] / best["shared"], 2),
                "load_average": os.getloadavg()[0],
            }
        )
    )


if __name__ == "__main__":
    main()
