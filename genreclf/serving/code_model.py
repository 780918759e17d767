"""Every registered genreclf model as code (MLflow models-from-code): loading runs this file, never a pickle.

The family comes from the logged ``meta.json`` (see ``cover_model``).
"""
import mlflow

from genreclf.serving import server_guard
from genreclf.serving.cover_model import GenreCoverModel

mlflow.models.set_model(GenreCoverModel())
server_guard.install()  # in `mlflow models serve`: short 400s for JSON MLflow cannot parse
