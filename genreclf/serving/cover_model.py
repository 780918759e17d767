"""The one pyfunc of every model family: cover bytes in, ``genre`` + ``p_<genre>`` out.

The logged ``meta.json`` names the family; the family's loader turns the other artifacts into a
predictor. So a registered version of any family loads, serves and scores the same way, and adding
a family adds no serving code.
"""
from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any, Callable

import numpy as np

from genreclf.data.covers import CoverSet
from genreclf.models import Family, family_loader
from genreclf.serving.contract import CoverModel, input_example, signature
from genreclf.tracking import registry

META = "meta"  # the artifact that names the family and holds genres, decode size and the family's settings


class GenreCoverModel(CoverModel):
    """``predictor`` is the family's own object (the demo reads its extras: features, Grad-CAM)."""

    def load_context(self, context) -> None:
        meta = json.loads(Path(context.artifacts[META]).read_text())
        self.predictor = family_loader(meta.get("family", ""))(dict(context.artifacts), meta)
        self.genres, self.size = list(self.predictor.genres), int(self.predictor.size)

    def predict_proba(self, covers: list[np.ndarray]) -> np.ndarray:
        return self.predictor.predict_proba(covers)


def write_meta(folder: Path, family: str, genres: list[str], decode_size: int, extra: dict) -> str:
    """meta.json: the family, the genres in output order and the size covers are decoded to first."""
    path = folder / "meta.json"
    path.write_text(json.dumps({"family": family, "genres": list(genres), "decode_size": int(decode_size), **extra},
                               indent=2))
    return str(path)


def log_cover_model(family: Family, write: Callable[[Path], dict[str, str]], meta: dict[str, Any],
                    covers: CoverSet, register: bool, tags: dict[str, Any]) -> tuple[str, str | None]:
    """Log the family's pyfunc to the active run (``write`` puts its files in a folder; meta.json names
    the family; two test covers are its input example); register it as the family's model @challenger
    with ``tags`` when ``register``. Returns (model URI, version or None)."""
    example = input_example([np.asarray(covers.images[i]) for i in covers.indices("test")[:2]])
    code_file = str(Path(__file__).resolve().parent / "code_model.py")
    with tempfile.TemporaryDirectory() as tmp:
        files = write(Path(tmp))
        files[META] = write_meta(Path(tmp), family.name, covers.genres, int(covers.images.shape[1]), meta)
        return registry.log_model(code_file, files, example, signature(covers.genres), family.model_name,
                                  register, tags)
