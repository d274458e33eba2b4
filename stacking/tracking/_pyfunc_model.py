"""The MLflow ``ensemble`` model, logged as code ("models from code").

MLflow runs this file to build the model; ``load_context`` reads the predictor folder
(base models, recipe, fitted meta-models) from the model's artifacts.
"""

from __future__ import annotations

import mlflow
import pandas as pd
from mlflow.pyfunc import PythonModel


class EnsembleModel(PythonModel):
    def load_context(self, context):
        from stacking.predictor import EnsemblePredictor

        self.predictor = EnsemblePredictor.load(context.artifacts["predictor"])

    def predict(self, context, model_input: pd.DataFrame, params=None) -> pd.DataFrame:
        return self.predictor.predict(model_input)


mlflow.models.set_model(EnsembleModel())
