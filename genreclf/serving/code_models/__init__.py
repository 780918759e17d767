"""Model definitions logged as code (MLflow models-from-code): loading runs these files, never a pickle."""
