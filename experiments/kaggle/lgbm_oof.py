"""A LightGBM model trained the way a Kaggle notebook trains it, outside tf-stacking:
one booster per fold of the exported plan, its out-of-fold predictions and the mean of
its test predictions written as two CSV files that the stack reads as a base model.

It needs only pandas and LightGBM, as a notebook on another machine would; what ties it
to the stack is the plan: ``stacking folds configs/kaggle.yaml --output folds.csv``.

    python experiments/kaggle/lgbm_oof.py [--data experiments/kaggle/data]
        [--folds experiments/kaggle/data/folds.csv] [--out experiments/kaggle/preds]

Writes ``lgbm_oof.csv`` (id, fold, B, M) and ``lgbm_test.csv`` (id, B, M). Rows the plan
reserves (fold -1, ``folds.holdout``) are never trained on; like test rows they get the
mean of the fold boosters.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd

HERE = Path(__file__).resolve().parent
PARAMS = {
    "n_estimators": 400,
    "learning_rate": 0.03,
    "num_leaves": 15,
    "min_child_samples": 10,
    "subsample": 0.8,
    "subsample_freq": 1,
    "colsample_bytree": 0.8,
    "random_state": 0,
    "verbose": -1,
}


def train_oof(data: Path, folds: Path, out: Path, *, n_estimators: int | None = None) -> dict:
    from lightgbm import LGBMClassifier

    train = pd.read_csv(data / "train.csv", dtype={"id": str})
    test = pd.read_csv(data / "test.csv", dtype={"id": str})
    plan = pd.read_csv(folds, dtype={"id": str})
    train = train.merge(plan, on="id", validate="one_to_one")  # each row's fold
    features = [c for c in test.columns if c != "id"]
    y = (train["diagnosis"] == "M").to_numpy(int)
    params = {**PARAMS, **({"n_estimators": n_estimators} if n_estimators else {})}
    oof = np.zeros(len(train))
    test_pred = np.zeros(len(test))
    n_splits = int(train["fold"].max()) + 1
    reserved = (train["fold"] == -1).to_numpy()
    for k in range(n_splits):
        fit, held = (train["fold"] != k) & ~reserved, train["fold"] == k
        model = LGBMClassifier(**params).fit(train.loc[fit, features], y[fit])
        oof[held.to_numpy()] = model.predict_proba(train.loc[held, features])[:, 1]
        if reserved.any():
            oof[reserved] += model.predict_proba(train.loc[reserved, features])[:, 1] / n_splits
        test_pred += model.predict_proba(test[features])[:, 1] / n_splits
    out.mkdir(parents=True, exist_ok=True)
    paths = {"oof": out / "lgbm_oof.csv", "test": out / "lgbm_test.csv"}
    pd.DataFrame({"id": train["id"], "fold": train["fold"], "B": 1 - oof, "M": oof}).to_csv(
        paths["oof"], index=False
    )
    pd.DataFrame({"id": test["id"], "B": 1 - test_pred, "M": test_pred}).to_csv(
        paths["test"], index=False
    )
    return paths


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=HERE / "data")
    parser.add_argument("--folds", type=Path, default=HERE / "data" / "folds.csv")
    parser.add_argument("--out", type=Path, default=HERE / "preds")
    args = parser.parse_args()
    paths = train_oof(args.data, args.folds, args.out)
    print(f"lgbm: wrote {paths['oof']} and {paths['test']}")


if __name__ == "__main__":
    main()
