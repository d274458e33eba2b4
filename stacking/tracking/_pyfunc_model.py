"""The MLflow ``ensemble`` model, logged as code ("models from code").

MLflow runs this file to build the model; ``load_context`` reads the predictor folder
(base models, recipe, fitted meta-models) from the model's artifacts.

A served model is an HTTP endpoint: whoever can reach it chooses the rows. So the rows
carry the images themselves (``data:image/png;base64,…``), a path is read only under an
image folder the operator chose when loading the model, each request's work is bounded,
and a refused request is answered with the row and what was wrong with its data, never
with a server path or a traceback. The operator's settings, each a pyfunc
``model_config`` key (``mlflow.pyfunc.load_model(uri, model_config={...})``, or
``SERVING_MODEL_CONFIG='{...}'`` for ``mlflow models serve``) or else an environment
variable:

=================  ===========================  ===========================================
key                environment variable         default
=================  ===========================  ===========================================
image_root         STACKING_IMAGE_ROOT          none: no path on the server is read
max_rows           STACKING_MAX_ROWS            1000 rows per request
max_image_bytes    STACKING_MAX_IMAGE_BYTES     10 MiB per image
max_image_pixels   STACKING_MAX_IMAGE_PIXELS    25 million pixels per image (header)
=================  ===========================  ===========================================
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import mlflow
import pandas as pd
from mlflow.exceptions import MlflowException
from mlflow.protos.databricks_pb2 import INTERNAL_ERROR, INVALID_PARAMETER_VALUE
from mlflow.pyfunc import PythonModel, PythonModelContext

from stacking.errors import ConfigError, DataError, StackingError

_log = logging.getLogger("stacking.serving")

# model_config key -> (environment variable, default)
SETTINGS: dict[str, tuple[str, int | None]] = {
    "image_root": ("STACKING_IMAGE_ROOT", None),
    "max_rows": ("STACKING_MAX_ROWS", 1000),
    "max_image_bytes": ("STACKING_MAX_IMAGE_BYTES", 10 * 2**20),
    "max_image_pixels": ("STACKING_MAX_IMAGE_PIXELS", 25_000_000),
}


class RequestError(MlflowException, DataError):
    """A request the model refuses: HTTP 400 from ``mlflow models serve`` with only this
    message, and a :class:`~stacking.errors.DataError` for Python callers."""

    def __init__(self, message: str) -> None:
        super().__init__(message, error_code=INVALID_PARAMETER_VALUE)


def serving_settings(model_config: dict[str, Any] | None) -> dict[str, Any]:
    """The operator's settings: ``model_config``, else the environment, else defaults.

    The model is logged with every key set to ``None`` (MLflow passes on only the keys a
    model was logged with), so an unset key falls through to the environment."""
    config = {k: v for k, v in (model_config or {}).items() if v is not None}
    settings: dict[str, Any] = {}
    for key, (variable, default) in SETTINGS.items():
        value = config.get(key, os.environ.get(variable) or default)
        name = f"model_config[{key!r}]" if key in config else variable
        if key == "image_root":
            settings[key] = _image_root(value, name)
            continue
        try:
            number = int(value)  # type: ignore[arg-type]
        except (TypeError, ValueError):
            number = 0
        if number <= 0 or str(number) != str(value).strip():
            raise ConfigError(f"{name} must be a positive whole number. Received: {value!r}")
        settings[key] = number
    return settings


def _image_root(value: Any, name: str) -> Path | None:
    if value in (None, ""):
        return None
    root = Path(str(value))
    if not root.is_absolute() or not root.is_dir():
        raise ConfigError(
            f"{name} must be an existing folder given as an absolute path. Received: {value!r}"
        )
    return root


class EnsembleModel(PythonModel):
    def load_context(self, context: PythonModelContext) -> None:
        from stacking.images import ImageAccess
        from stacking.predictor import EnsemblePredictor

        self.settings = serving_settings(getattr(context, "model_config", None))
        self.access = ImageAccess.serving(
            self.settings["image_root"],
            max_bytes=self.settings["max_image_bytes"],
            max_pixels=self.settings["max_image_pixels"],
        )
        self.predictor = EnsemblePredictor.load(context.artifacts["predictor"])

    def predict(
        self,
        context: PythonModelContext,
        model_input: pd.DataFrame,
        params: dict[str, Any] | None = None,
    ) -> pd.DataFrame:
        max_rows = self.settings["max_rows"]
        if len(model_input) > max_rows:
            raise RequestError(
                f"the request has {len(model_input)} rows; this model answers at most "
                f"{max_rows} per request: send them in smaller requests"
            )
        try:
            return self.predictor.predict(model_input, source="the request", access=self.access)
        except DataError as exc:  # the request's data: its rows and columns, no server path
            raise RequestError(str(exc)) from exc
        except StackingError as exc:
            # The server's own state (a damaged model file, the cache): its message names
            # server paths, so the client only learns that the server failed.
            _log.error("the stacking ensemble could not answer a request: %s", exc)
            raise MlflowException(
                "the ensemble could not answer this request (a problem on the server; its "
                "log has the details)",
                error_code=INTERNAL_ERROR,
            ) from exc
        except Exception as exc:  # a bug: the details stay in the server's log
            _log.exception("the stacking ensemble failed on a request")
            raise MlflowException(
                "the ensemble failed on this request (an internal error; the server's log "
                "has the details)",
                error_code=INTERNAL_ERROR,
            ) from exc


mlflow.models.set_model(EnsembleModel())
