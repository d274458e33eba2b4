"""Write the Kaggle-style tables of the worked example from scikit-learn's bundled
Breast Cancer Wisconsin (Diagnostic) data: nothing is downloaded.

``data/train.csv`` (id, diagnosis ``B``/``M``, the 30 features under the names Kaggle's
copy of the data set uses: ``radius_mean`` … ``fractal_dimension_worst``), ``data/test.csv``
(the same without ``diagnosis``, a stratified 20 % held out) and ``data/test_solution.csv``
(the held-out labels, as a competition keeps them for its private leaderboard).

    python experiments/kaggle/make_data.py [--out experiments/kaggle/data]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.datasets import load_breast_cancer
from sklearn.model_selection import train_test_split

HERE = Path(__file__).resolve().parent


def kaggle_name(name: str) -> str:
    """``mean radius`` -> ``radius_mean``, ``radius error`` -> ``radius_se``,
    ``worst radius`` -> ``radius_worst``: the column names of Kaggle's copy."""
    for prefix, suffix in (("mean ", "_mean"), ("worst ", "_worst")):
        if name.startswith(prefix):
            return name.removeprefix(prefix).replace(" ", "_") + suffix
    return name.removesuffix(" error").replace(" ", "_") + "_se"


def write_data(out: Path, seed: int = 0) -> dict[str, Path]:
    bunch = load_breast_cancer()
    frame = pd.DataFrame(bunch.data, columns=[kaggle_name(n) for n in bunch.feature_names])
    # scikit-learn codes malignant as 0; Kaggle's copy writes M and B.
    frame.insert(0, "diagnosis", np.where(bunch.target == 0, "M", "B"))
    frame.insert(0, "id", [f"p{i:04d}" for i in range(len(frame))])
    train, test = train_test_split(
        frame, test_size=0.2, stratify=frame["diagnosis"], random_state=seed
    )
    out.mkdir(parents=True, exist_ok=True)
    paths = {
        "train": out / "train.csv",
        "test": out / "test.csv",
        "solution": out / "test_solution.csv",
    }
    train.to_csv(paths["train"], index=False)
    test.drop(columns="diagnosis").to_csv(paths["test"], index=False)
    test[["id", "diagnosis"]].to_csv(paths["solution"], index=False)
    return paths


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=HERE / "data")
    args = parser.parse_args()
    paths = write_data(args.out)
    print(f"wrote {', '.join(str(p) for p in paths.values())}")


if __name__ == "__main__":
    main()
