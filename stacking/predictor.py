"""The whole ensemble as one predictor: raw rows in, a predictions table out.

An :class:`EnsemblePredictor` is a :class:`~stacking.stack.FittedStack` (the very object
the experiment fitted and predicted its test rows with) plus the output table a user
wants: the id, one ``ensemble__<output>`` column per class/label and ``prediction``.

>>> predictor = load_predictor("runs/digits-…")          # or its ensemble/ folder
>>> predictor.predict(pd.read_parquet("new_rows.parquet"))   # id, ensemble__<k>, prediction

The MLflow ``ensemble`` pyfunc model is this folder, saved with the base models copied in.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from stacking.images import ImageAccess
from stacking.level1 import output_columns
from stacking.stack import FittedStack, load_stack


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


class EnsemblePredictor:
    """Predicts new rows with a fitted stack; see the module docstring."""

    def __init__(self, stack: FittedStack) -> None:
        self.stack = stack

    @property
    def id_column(self) -> str:
        return self.stack.id_column

    def predict_proba(
        self,
        frame: pd.DataFrame,
        *,
        root: str | Path | None = None,
        source: str | None = None,
        access: ImageAccess | None = None,
    ) -> np.ndarray:
        """The ensemble's probabilities ``(n, C)`` (``(n, L)`` multilabel, ``(n,)`` values).

        Image columns hold the images themselves (``bytes``, ``data:image/…;base64,…``)
        or paths relative to ``root`` (default: the working folder) that may not leave it;
        ``access`` replaces that rule (e.g. :meth:`ImageAccess.serving`). ``source``
        names the rows in errors (e.g. their file).
        """
        if access is None:
            access = ImageAccess.local(Path(root) if root is not None else None)
        return self.stack.predict_proba(frame, source=source or "the input table", access=access)

    def predict(
        self,
        frame: pd.DataFrame,
        *,
        root: str | Path | None = None,
        source: str | None = None,
        access: ImageAccess | None = None,
    ) -> pd.DataFrame:
        """``id`` (when present), ``ensemble__<output>`` columns and ``prediction``."""
        ids = frame[self.id_column].to_numpy() if self.id_column in frame.columns else None
        return prediction_frame(
            self.predict_proba(frame, root=root, source=source, access=access),
            task=self.stack.task,
            classes=self.stack.classes,
            output_names=self.stack.output_names,
            ids=ids,
            id_column=self.id_column,
        )

    def save(self, directory: str | Path, *, copy_models: bool = False) -> Path:
        """Write the predictor folder; ``copy_models`` makes it self-contained."""
        return self.stack.save(directory, copy_models=copy_models)

    @classmethod
    def load(cls, directory: str | Path) -> EnsemblePredictor:
        return cls(FittedStack.load(directory))


def load_predictor(location: str | Path) -> EnsemblePredictor:
    """A predictor from a results directory or a predictor folder."""
    return EnsemblePredictor(load_stack(location))
