"""Inference speed: tf-stacking's compiled, large-batch predict vs Keras ``model.predict``.

Same saved model, same rows, same machine, same run; figures are ratios to the baseline.
The model is the demo's CNN; the workloads are one large call and the OOF engine's own
(each fold model predicts its fold once).

    python experiments/benchmarks/bench_inference.py [--rows 20000] [--repeats 5]
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np


def _cnn():
    """The demo's CNN architecture (untrained: speed does not depend on the weights)."""
    import importlib.util

    demo = Path(__file__).resolve().parents[1] / "digits" / "train_base_models.py"
    spec = importlib.util.spec_from_file_location("train_base_models", demo)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.build_cnn()


def _best(fn, repeats: int) -> float:
    fn()  # warm-up: tracing and first allocation are not what a second fold pays
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    import keras

    from stacking.base import load_base_model

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=20000)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    x = np.random.default_rng(0).random((args.rows, 8, 8, 1), dtype=np.float32)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "cnn.keras"
        _cnn().save(path)
        model = keras.models.load_model(path, compile=False)
        frozen = load_base_model(path)
        np.testing.assert_allclose(
            frozen.predict([x[:256]], batch_size=4096),
            model.predict(x[:256], verbose=0),
            atol=1e-5,
        )
        small = [x[i * 300 : (i + 1) * 300] for i in range(20)]
        workloads = {
            f"one call, {args.rows} rows": lambda f: f(x),
            "20 calls of 300 rows (a fold each)": lambda f: [f(part) for part in small],
        }
        methods = {
            "keras model.predict (default batch_size=32)": lambda a: model.predict(a, verbose=0),
            "keras model.predict (batch_size=4096)": lambda a: model.predict(
                a, batch_size=4096, verbose=0
            ),
            "tf-stacking compiled predict (batch_size=4096)": lambda a: frozen.predict(
                [a], batch_size=4096
            ),
        }
        results = {
            (w, m): _best(lambda w=w, m=m: workloads[w](methods[m]), args.repeats)
            for w in workloads
            for m in methods
        }
    cores = os.cpu_count()
    print(f"best of {args.repeats}, small CNN on 8x8x1 inputs, CPU ({cores} cores)")
    print("| workload | method | seconds | speed-up vs model.predict |")
    print("| --- | --- | ---: | ---: |")
    for (workload, method), seconds in results.items():
        baseline = results[(workload, "keras model.predict (default batch_size=32)")]
        print(f"| {workload} | {method} | {seconds:.3f} | {baseline / seconds:.1f}x |")
    print(json.dumps({f"{w} / {m}": round(v, 4) for (w, m), v in results.items()}))


if __name__ == "__main__":
    main()
