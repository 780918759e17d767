"""A model family is one unit: registering one (here a throwaway family defined in this test only)
makes it a CLI subcommand, an MLproject entry point, evaluate rows and a promote candidate, without
any other module knowing it."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest

from genreclf import config
from genreclf.commands import commands, mlproject_text
from genreclf.evaluation import compare
from genreclf.models import FAMILIES, EvalRow, Family, family_loader, get_family, register_family
from genreclf.models.family import family_of_entry, family_of_model, unregister_family
from genreclf.params import opt


@dataclass
class ToyConfig:
    smoothing: float = opt(1.0, "add-k smoothing of the genre counts", rule=(0.0, 100.0))
    register: bool = opt(True, "register the model (true | false)", rule="any")


def uniform(view, inputs, seed, options) -> np.ndarray:
    n = len(view.genres)
    return np.full((len(view.indices("test")), n), 1.0 / n)


@pytest.fixture
def toy():
    family = Family(name="toy", model_name="album-genre-toy", section="toy", summary="a throwaway family",
                    load=f"{__name__}:uniform", fit=f"{__name__}:uniform",
                    rows={"toy_uniform": EvalRow("toy: uniform guess", f"{__name__}:uniform")})
    register_family(family, config=ToyConfig)
    try:
        yield family
    finally:
        unregister_family("toy")
        config.SECTIONS.pop("toy", None)


def test_a_registered_family_appears_everywhere(toy):
    from genreclf.cli import get_args_parser
    from genreclf.entrypoints import promote

    assert "train_toy" in commands() and commands()["train_toy"].sections == ("data", "toy")
    args = get_args_parser().parse_args(["train_toy", "--smoothing", "2.5"])
    assert args.command == "train_toy" and args.smoothing == "2.5"
    text = mlproject_text()
    assert "  train_toy:\n" in text and "command: genreclf train_toy" in text and "smoothing: float = 1.0" in text
    assert "toy_uniform" in compare.rows() and compare.parse_models("majority,toy_uniform") == ["majority",
                                                                                                "toy_uniform"]
    assert compare.label("toy_uniform") == "toy: uniform guess"
    assert "album-genre-toy" in promote.candidates() and promote.short_name("album-genre-toy") == "toy"
    assert family_of_entry("train_toy") is toy and family_of_model("album-genre-toy") is toy
    assert family_loader("toy") is uniform


def test_unregistering_removes_it(toy):
    unregister_family("toy")
    assert "train_toy" not in commands() and "toy_uniform" not in compare.rows()


def test_every_family_is_complete():
    """Each built-in family names a config section, a loader and a trainer that exist."""
    from genreclf.models import resolve_callable
    assert {"rf", "cnn", "ensemble"} <= set(FAMILIES)
    for f in FAMILIES.values():
        assert f.section in config.SECTIONS and callable(resolve_callable(f.load))
        assert callable(resolve_callable(f.fit or f.train))
        assert f.model_name.startswith("album-genre-") and f.entry_point == f"train_{f.name}"
        for row in f.rows.values():
            assert callable(resolve_callable(row.runner))


def test_unknown_family_is_a_clear_error():
    with pytest.raises(Exception, match="unknown model family 'nope'"):
        get_family("nope")
    with pytest.raises(RuntimeError, match="re-register it"):
        family_loader("nope")
    with pytest.raises(ValueError, match="config section 'missing' is not declared"):
        register_family(Family(name="x", model_name="m", section="missing", summary="", load="a:b"))
