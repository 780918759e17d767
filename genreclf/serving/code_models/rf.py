"""``album-genre-rf`` as code: MLflow executes this file on load; the forest comes from a skops file."""
import mlflow

from genreclf.serving import server_guard
from genreclf.serving.rf_model import RFCoverModel

mlflow.models.set_model(RFCoverModel())
server_guard.install()  # in `mlflow models serve`: short 400s for JSON MLflow cannot parse
