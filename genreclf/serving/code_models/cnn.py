"""``album-genre-cnn`` as code: MLflow executes this file on load; weights come from a state_dict."""
import mlflow

from genreclf.cnn.model import CNNCoverModel

mlflow.models.set_model(CNNCoverModel())
