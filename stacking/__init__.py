"""tf-stacking: leak-free stacking ensembles of frozen TensorFlow models.

>>> from stacking import Experiment
>>> result = Experiment.from_yaml("configs/digits.yaml").run()
>>> print(result.summary())

Heavy modules (TensorFlow, MLflow) load only when used.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

from stacking.errors import (
    BaseModelError,
    CacheError,
    ConfigError,
    DataError,
    DataFileNotFoundError,
    LeakageError,
    StackingError,
    TrackingError,
)
from stacking.quiet import quiet_tensorflow

__version__ = "0.1.0"

quiet_tensorflow()  # TensorFlow's start-up lines off in scripts, notebooks, the pyfunc model

_LAZY = {
    "Experiment": "stacking.experiment",
    "ExperimentResult": "stacking.experiment",
    "load_config": "stacking.config",
    "load_dataset": "stacking.data",
    "FoldPlan": "stacking.folds",
    "make_fold_plan": "stacking.folds",
    "load_base_model": "stacking.base",
    "write_manifest": "stacking.base",
    "train_fold_models": "stacking.training",
    "train_onnx_fold_models": "stacking.training",
}

__all__ = [
    "BaseModelError",
    "CacheError",
    "ConfigError",
    "DataError",
    "DataFileNotFoundError",
    "LeakageError",
    "StackingError",
    "TrackingError",
    *_LAZY,
]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'stacking' has no attribute {name!r}")
