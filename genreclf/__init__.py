"""genreclf: album-cover -> music-genre classification as a reproducible MLflow project."""
import os

__version__ = "0.1.0"

# the registered names of the two families the quickstart and most examples use (models.FAMILIES has all)
RF_MODEL_NAME = "album-genre-rf"
CNN_MODEL_NAME = "album-genre-cnn"

# MLflow's telemetry (a lookup of its telemetry host on every run, an installation id under
# ~/.config/mlflow) is off wherever genreclf is imported - the CLI, `mlflow run` steps, the demo -
# unless the user set these variables themselves (README: "Privacy"). It must happen here, first:
# MLflow decides on telemetry when it is imported, and genreclf's modules import it.
PRIVACY_DEFAULTS = {"MLFLOW_DISABLE_TELEMETRY": "true", "DO_NOT_TRACK": "true"}
for _key, _value in PRIVACY_DEFAULTS.items():
    os.environ.setdefault(_key, _value)
