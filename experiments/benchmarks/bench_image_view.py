"""Memory of the image view: peak RSS predicting N image files read in batches, against
the same rows held in memory as one array.

Writes N random RGB PNG files (``--size`` pixels square) and a table of their paths, saves
a small CNN, then predicts every file in a fresh process per method, so that each peak is
its own:

* ``view``: tf-stacking's image view (``stacking.views.read_view``), decoded batch by batch
  in its ``tf.data`` pipeline and predicted by the frozen model as the engine does
  (``predict_in_batches``);
* ``memory``: every image decoded first (``keras.utils.load_img`` + ``img_to_array``) into
  one float32 array, then predicted the same way.

Both must give the same predictions. Figures: peak RSS (``ru_maxrss``), RSS before the
inputs are read (TensorFlow and the model loaded), and wall time.

    python experiments/benchmarks/bench_image_view.py [--rows 20000] [--size 32]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np
import pandas as pd


def _rss_mb() -> float:
    """Current resident set size of this process, in MB."""
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KB on Linux


def write_files(folder: Path, n: int, size: int, seed: int = 0) -> Path:
    """``n`` random RGB PNG files and ``table.csv`` (``id``, ``path``); returns the table."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    (folder / "png").mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(n):
        path = f"png/{i:06d}.png"
        Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)).save(folder / path)
        paths.append(path)
    table = folder / "table.csv"
    pd.DataFrame({"id": np.arange(n), "path": paths}).to_csv(table, index=False)
    return table


def save_model(path: Path, size: int) -> None:
    import keras
    from keras import layers

    keras.utils.set_random_seed(0)
    inputs = keras.Input((size, size, 3))
    x = layers.Rescaling(1 / 255)(inputs)
    x = layers.Conv2D(16, 3, activation="relu")(x)
    x = layers.GlobalAveragePooling2D()(x)
    keras.Model(inputs, layers.Dense(10, activation="softmax")(x)).save(path)


def measure(method: str, table: Path, model_path: Path, size: int, batch_size: int) -> dict:
    """One method in this process; returns its figures (and saves its predictions)."""
    import keras

    from stacking.base import load_base_model
    from stacking.config import ViewConfig
    from stacking.views import predict_in_batches, read_view

    frame = pd.read_csv(table)
    model = load_base_model(model_path)
    before = _rss_mb()
    start = time.perf_counter()
    if method == "view":
        spec = ViewConfig(image="path", size=[size, size], channels=3)
        inputs = read_view(frame, spec, root=table.parent, ids=frame["id"])
    else:
        inputs = np.stack(
            [
                keras.utils.img_to_array(
                    keras.utils.load_img(table.parent / p, target_size=(size, size))
                )
                for p in frame["path"]
            ]
        )
    preds = predict_in_batches(model, [inputs], batch_size=batch_size)
    seconds = time.perf_counter() - start
    np.save(table.parent / f"preds-{method}.npy", preds)
    return {
        "method": method,
        "rows": len(frame),
        "rss_before_inputs_mb": round(before, 1),
        "peak_rss_mb": round(_peak_mb(), 1),
        "seconds": round(seconds, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=20000)
    parser.add_argument("--size", type=int, default=32)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--measure", choices=["view", "memory"], help=argparse.SUPPRESS)
    parser.add_argument("--dir", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure:  # the child process
        figures = measure(
            args.measure,
            args.dir / "table.csv",
            args.dir / "model.keras",
            args.size,
            args.batch_size,
        )
        print(json.dumps(figures))
        return
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        start = time.perf_counter()
        write_files(folder, args.rows, args.size)
        print(
            f"wrote {args.rows} PNG files of {args.size}x{args.size} in "
            f"{time.perf_counter() - start:.0f}s"
        )
        save_model(folder / "model.keras", args.size)
        rows = []
        for method in ["view", "memory"]:
            out = subprocess.run(
                [
                    sys.executable,
                    __file__,
                    "--measure",
                    method,
                    "--dir",
                    str(folder),
                    "--rows",
                    str(args.rows),
                    "--size",
                    str(args.size),
                    "--batch-size",
                    str(args.batch_size),
                ],
                check=True,
                capture_output=True,
                text=True,
            )
            rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
        diff = np.abs(np.load(folder / "preds-view.npy") - np.load(folder / "preds-memory.npy"))
    array_mb = args.rows * args.size * args.size * 3 * 4 / 2**20
    table = pd.DataFrame(rows)
    table["peak_minus_before_mb"] = table.peak_rss_mb - table.rss_before_inputs_mb
    print(table.to_string(index=False))
    print(
        f"the rows as one float32 array: {array_mb:.0f} MB; batch size {args.batch_size}; "
        f"max |view - memory| prediction difference {diff.max():.2e}"
    )


if __name__ == "__main__":
    main()
