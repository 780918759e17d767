"""``album-genre-cnn`` as code: MLflow executes this file on load; weights come from a state_dict."""
import mlflow

from genreclf.serving import server_guard
from genreclf.serving.cnn_model import CNNCoverModel

mlflow.models.set_model(CNNCoverModel())
server_guard.install()  # in `mlflow models serve`: short 400s for JSON MLflow cannot parse
