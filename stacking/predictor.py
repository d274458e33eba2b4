"""The whole ensemble as one predictor: raw rows in, ensemble predictions out.

An :class:`EnsemblePredictor` holds what serving needs and nothing else: each base
model's frozen model files (the fold models, whose mean predicts new rows, or the
``full`` / external model), its input views, the level-1 feature recipe (with the
training OOF distribution for rank features), and every fitted meta-model of every level.

>>> predictor = EnsemblePredictor.load("runs/digits-…/ensemble")
>>> predictor.predict(pd.read_parquet("new_rows.parquet"))   # id, ensemble__<k>, prediction

Saved as a folder: ``predictor.json`` (the recipe), ``meta_models.joblib`` (the fitted
scikit-learn estimators; like model files, a pickle is code: load only what you trust),
``reference.npz`` (rank features only) and, with ``copy_models=True``, the base model
files under ``models/``. The MLflow ``ensemble`` pyfunc model is this folder.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import pandas as pd

from stacking.backbone import predict_heads
from stacking.config import FeaturesConfig, ViewConfig
from stacking.data import view_array
from stacking.engine import to_representation
from stacking.errors import DataError, DataFileNotFoundError
from stacking.executors import Job, run_job
from stacking.level1 import level1_features, output_columns, to_block
from stacking.meta import predict_output

FORMAT_VERSION = 2  # 2: backbone layer + heads


def prediction_frame(
    proba: np.ndarray,
    *,
    task: str,
    classes: list,
    output_names: list[str],
    ids: np.ndarray | None = None,
    id_column: str = "id",
) -> pd.DataFrame:
    """``id``, ``ensemble__<output>`` columns and ``prediction`` (label, labels or value)."""
    out = pd.DataFrame(index=range(len(proba)))
    if ids is not None:
        out[id_column] = ids
    names = output_columns("ensemble", task, output_names, drop_redundant=False)
    out[names] = np.asarray(proba).reshape(len(proba), -1)
    if task in ("binary", "multiclass"):
        out["prediction"] = np.asarray(classes)[proba.argmax(axis=1)]
    elif task == "multilabel":
        out["prediction"] = [
            ",".join(str(c) for c, on in zip(classes, row) if on) for row in proba >= 0.5
        ]
    else:
        out["prediction"] = proba
    return out


@dataclass
class BaseRecipe:
    """How one base model predicts new rows."""

    name: str
    paths: list[str]
    views: list[dict]
    output: str | int | None
    outputs_are: str
    layer: str | None = None
    heads: list = field(default_factory=list, repr=False)  # a backbone's K fold heads


@dataclass
class EnsemblePredictor:
    task: str
    classes: list
    output_names: list[str]
    id_column: str
    base_models: list[BaseRecipe]
    features: dict
    levels: list[list[dict]]  # per level: [{"name": …, "uses_blocks": …}, …]
    ensemble: str
    meta_models: dict[str, Any] = field(repr=False, default_factory=dict)
    reference: dict[str, np.ndarray] = field(repr=False, default_factory=dict)
    batch_size: int = 4096
    root: Path | None = field(default=None, repr=False)

    # -- prediction ---------------------------------------------------------------------
    def _path(self, path: str) -> Path:
        p = Path(path)
        return p if p.is_absolute() or self.root is None else self.root / p

    def _base_predictions(self, frame: pd.DataFrame) -> dict[str, np.ndarray]:
        n_outputs = 1 if self.task == "regression" else len(self.classes)
        preds = {}
        for recipe in self.base_models:
            inputs = [
                view_array(frame, ViewConfig(**v), source="the input rows") for v in recipe.views
            ]
            raw = [
                run_job(
                    Job(
                        model=recipe.name,
                        path=self._path(path),
                        output=recipe.output,
                        inputs=[inputs],
                        keys=[""],
                        batch_size=self.batch_size,
                        layer=recipe.layer,
                    )
                )[0]
                for path in recipe.paths
            ]
            if recipe.heads:  # a backbone: embeddings through the mean of its fold heads
                embeddings = np.asarray(raw[0], dtype=np.float64).reshape(len(frame), -1)
                preds[recipe.name] = predict_heads(
                    recipe.heads, embeddings, task=self.task, n_outputs=n_outputs
                )
                continue
            mapped = to_representation(
                raw,
                name=recipe.name,
                task=self.task,
                n_outputs=n_outputs,
                outputs_are=recipe.outputs_are,
            )
            preds[recipe.name] = np.mean(mapped, axis=0)
        return preds

    def predict_proba(self, frame: pd.DataFrame) -> np.ndarray:
        """The ensemble's probabilities ``(n, C)`` (``(n, L)`` multilabel, ``(n,)`` values)."""
        if len(frame) == 0:
            raise DataError("no rows to predict")
        frame = frame.reset_index(drop=True)
        preds = self._base_predictions(frame)
        cfg = FeaturesConfig(**self.features)
        features = level1_features(
            preds,
            frame,
            cfg,
            task=self.task,
            output_names=self.output_names,
            reference=self.reference or None,
            source="the input rows",
        ).to_numpy()
        blocks = np.hstack([to_block(p, self.task) for p in preds.values()])
        n_outputs = 1 if self.task == "regression" else len(self.classes)
        outputs: dict[str, np.ndarray] = {}
        for level in self.levels:
            outputs = {
                c["name"]: predict_output(
                    self.meta_models[c["name"]],
                    blocks if c["uses_blocks"] else features,
                    task=self.task,
                    n_outputs=n_outputs,
                )
                for c in level
            }
            blocks = features = np.hstack([to_block(o, self.task) for o in outputs.values()])
        return outputs[self.ensemble]

    def predict(self, frame: pd.DataFrame) -> pd.DataFrame:
        """``id`` (when present), ``ensemble__<output>`` columns and ``prediction``."""
        ids = frame[self.id_column].to_numpy() if self.id_column in frame.columns else None
        return prediction_frame(
            self.predict_proba(frame),
            task=self.task,
            classes=self.classes,
            output_names=self.output_names,
            ids=ids,
            id_column=self.id_column,
        )

    # -- persistence --------------------------------------------------------------------
    def save(self, directory: str | Path, *, copy_models: bool = False) -> Path:
        """Write the predictor folder; ``copy_models`` makes it self-contained."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        recipes = []
        for recipe in self.base_models:
            paths = recipe.paths
            if copy_models:
                paths = []
                for path in recipe.paths:
                    source = self._path(path)
                    target = Path("models") / recipe.name / source.name
                    (directory / target).parent.mkdir(parents=True, exist_ok=True)
                    if source.is_dir():
                        shutil.copytree(source, directory / target, dirs_exist_ok=True)
                    else:
                        shutil.copy2(source, directory / target)
                    paths.append(str(target))
            recipes.append({**recipe.__dict__, "paths": paths, "heads": None})
        spec = {
            "format_version": FORMAT_VERSION,
            "task": self.task,
            "classes": self.classes,
            "output_names": self.output_names,
            "id_column": self.id_column,
            "base_models": recipes,
            "features": self.features,
            "levels": self.levels,
            "ensemble": self.ensemble,
            "batch_size": self.batch_size,
        }
        (directory / "predictor.json").write_text(json.dumps(spec, indent=2, default=str))
        joblib.dump(self.meta_models, directory / "meta_models.joblib")
        heads = {r.name: r.heads for r in self.base_models if r.heads}
        if heads:
            joblib.dump(heads, directory / "heads.joblib")
        if self.reference:  # keys prefixed: a model may be named like a savez argument
            np.savez(
                directory / "reference.npz", **{f"m:{k}": v for k, v in self.reference.items()}
            )
        return directory

    @classmethod
    def load(cls, directory: str | Path) -> EnsemblePredictor:
        directory = Path(directory)
        if not (directory / "predictor.json").is_file():
            raise DataFileNotFoundError(
                f"{str(directory)!r} holds no predictor.json; pass a results directory's "
                "ensemble/ folder or an MLflow ensemble model"
            )
        spec = json.loads((directory / "predictor.json").read_text())
        version = spec.pop("format_version", None)
        if version != FORMAT_VERSION:
            raise DataError(
                f"{str(directory)!r} was saved in predictor format {version}; this "
                f"tf-stacking reads format {FORMAT_VERSION}. Use the version that wrote it, "
                "or re-run the experiment"
            )
        heads = {}
        if (directory / "heads.joblib").is_file():
            heads = joblib.load(directory / "heads.joblib")
        reference = {}
        if (directory / "reference.npz").is_file():
            with np.load(directory / "reference.npz") as data:
                reference = {k.removeprefix("m:"): data[k] for k in data.files}
        return cls(
            **{k: v for k, v in spec.items() if k != "base_models"},
            base_models=[
                BaseRecipe(**{**r, "heads": heads.get(r["name"], [])}) for r in spec["base_models"]
            ],
            meta_models=joblib.load(directory / "meta_models.joblib"),
            reference=reference,
            root=directory,
        )


def load_predictor(location: str | Path) -> EnsemblePredictor:
    """A predictor from a results directory or a predictor folder."""
    path = Path(location)
    if (path / "ensemble" / "predictor.json").is_file():
        path = path / "ensemble"
    return EnsemblePredictor.load(path)
