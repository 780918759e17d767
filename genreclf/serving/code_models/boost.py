"""``album-genre-boost`` as code: MLflow executes this file on load; forest and SVM come from skops files."""
import mlflow

from genreclf.serving import server_guard
from genreclf.serving.boost_model import BoostCoverModel

mlflow.models.set_model(BoostCoverModel())
server_guard.install()  # in `mlflow models serve`: short 400s for JSON MLflow cannot parse
