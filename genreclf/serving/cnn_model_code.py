"""Models-from-code definition of ``album-genre-cnn``: MLflow stores this file with the model and runs
it at load time instead of unpickling an object (no CloudPickle, no pickled code of an old version)."""
from mlflow.models import set_model

from genreclf.serving.cnn_model import CNNCoverModel

set_model(CNNCoverModel())
