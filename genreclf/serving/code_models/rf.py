"""``album-genre-rf`` as code: MLflow executes this file on load; the forest comes from a skops file."""
import mlflow

from genreclf.rf.forest import RFCoverModel

mlflow.models.set_model(RFCoverModel())
