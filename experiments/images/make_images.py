"""scikit-learn's digits as image files on disk, with tables of relative paths.

Each 8x8 digit (values 0-16) is scaled to 0-255, upscaled by pixel repetition to
``size``x``size`` and written as an RGB PNG (three equal channels), so that
``keras.utils.load_img`` gives exactly the upscaled pixels back. Tables:

* ``train.csv``: ``id``, ``path`` (relative to the table's folder), ``label`` and the
  original 64 pixels ``px_0 … px_63`` in [0, 1] (a second view of the same rows);
* ``test.csv``: the same without ``label`` (rows to predict), and
  ``test_labeled.csv`` with it (to score the predictions);
* ``external.csv``: rows disjoint from both, never used for stacking (the backbone's
  batch-norm statistics are estimated on their pixels, without labels).

    python experiments/images/make_images.py [--out DIR] [--size 32]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd

HERE = Path(__file__).resolve().parent


def digit_pixels(images: np.ndarray, size: int) -> np.ndarray:
    """``(n, 8, 8)`` digits (0-16) as ``(n, size, size, 3)`` uint8 RGB, 0-255."""
    if size % 8:
        raise ValueError(f"size must be a multiple of 8. Received: size={size}")
    scale = size // 8
    gray = np.round(images * (255.0 / 16.0)).astype(np.uint8)
    gray = gray.repeat(scale, axis=1).repeat(scale, axis=2)
    return np.repeat(gray[..., None], 3, axis=-1)


def write_png(pixels: np.ndarray, path: Path) -> None:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(path)  # uint8 (H, W, 3): RGB


def write_digit_images(
    out_dir: str | Path,
    *,
    size: int = 32,
    n_rows: int | None = None,
    test_size: float = 0.2,
    n_external: int = 0,
    seed: int = 0,
    folder: str = "png",
) -> dict[str, Path]:
    """Write the PNG files and the tables; returns the table paths by name."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(digits.target))[: n_rows or len(digits.target)]
    out_dir = Path(out_dir)
    frame = pd.DataFrame(digits.data[order] / 16.0, columns=[f"px_{i}" for i in range(64)])
    frame.insert(0, "label", digits.target[order])
    frame.insert(0, "path", [f"{folder}/{i:04d}.png" for i in order])
    frame.insert(0, "id", order)
    for row, pixels in zip(frame.itertuples(), digit_pixels(digits.images[order], size)):
        write_png(pixels, out_dir / row.path)
    external = frame.iloc[:n_external]
    rest = frame.iloc[n_external:]
    train, test = train_test_split(
        rest, test_size=test_size, stratify=rest.label, random_state=seed
    )
    tables = {
        "train": out_dir / "train.csv",
        "test": out_dir / "test.csv",
        "test_labeled": out_dir / "test_labeled.csv",
    }
    train.to_csv(tables["train"], index=False)
    test.drop(columns="label").to_csv(tables["test"], index=False)
    test.to_csv(tables["test_labeled"], index=False)
    if n_external:
        tables["external"] = out_dir / "external.csv"
        external.drop(columns="label").to_csv(tables["external"], index=False)
    return tables


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=HERE / "data")
    parser.add_argument("--size", type=int, default=32)
    parser.add_argument("--external", type=int, default=200)
    args = parser.parse_args()
    tables = write_digit_images(args.out, size=args.size, n_external=args.external)
    print({k: str(v) for k, v in tables.items()})


if __name__ == "__main__":
    main()
