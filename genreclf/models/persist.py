"""Fitted scikit-learn estimators on disk as skops files: loading never unpickles, so it runs no code.

Each family names the types beyond skops' defaults that its estimators need; a file that needs any
other type is refused before anything is built from it.
"""
from __future__ import annotations

import zipfile
from pathlib import Path
from typing import Any

import skops.io as skops_io

from genreclf.errors import UserError

# the one type of a fitted forest that skops does not trust by default
FOREST_TYPES = ["sklearn.tree._tree.Tree"]


class UntrustedModelFile(UserError):
    """A model file needs types that genreclf does not load (not the expected estimator)."""


def save_estimator(estimator: Any, path: Path) -> str:
    skops_io.dump(estimator, path, compression=zipfile.ZIP_DEFLATED)
    return str(path)


def load_estimator(path: str, trusted: list[str]) -> Any:
    """A fitted estimator from a skops file, trusting only ``trusted`` beyond skops' defaults."""
    if not path.endswith(".skops"):
        raise UntrustedModelFile(f"{Path(path).name}: not a .skops file; re-register the model with this genreclf")
    unknown = sorted(set(skops_io.get_untrusted_types(file=path)) - set(trusted))
    if unknown:
        raise UntrustedModelFile(f"{Path(path).name}: refusing to load types {unknown} (not the expected estimator)")
    return skops_io.load(path, trusted=trusted)
