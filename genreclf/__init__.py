"""genreclf: album-cover -> music-genre classification as a reproducible MLflow project."""
__version__ = "0.1.0"

RF_MODEL_NAME = "album-genre-rf"
CNN_MODEL_NAME = "album-genre-cnn"
BOOST_MODEL_NAME = "album-genre-boost"
