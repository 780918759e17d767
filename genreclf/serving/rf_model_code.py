"""Models-from-code definition of ``album-genre-rf``: MLflow stores this file with the model and runs
it at load time instead of unpickling an object (no CloudPickle, no pickled code of an old version)."""
from mlflow.models import set_model

from genreclf.serving.rf_model import RFCoverModel

set_model(RFCoverModel())
