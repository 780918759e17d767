"""What a model family is, and the one registry of them.

A family bundles everything the rest of genreclf needs to know about one kind of model: its
registered name, its config section, how it trains, how a registered version loads its artifacts
back into a predictor, and the rows it adds to ``evaluate``. The CLI, the generated MLproject,
``promote``, the demo, ``evaluate`` and the one code model all read ``FAMILIES``; adding a family
is a module that calls :func:`register_family` (plus its config section and docs).

Callables are named as ``"module:function"`` strings and imported when used, so reading the
registry (``genreclf --help``) never imports torch or scikit-learn.
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Protocol

import numpy as np

from genreclf.config import SECTIONS
from genreclf.errors import UserError


class Predictor(Protocol):
    """A loaded model: decoded RGB covers (at ``size``) in, (N, len(genres)) probabilities out."""

    genres: list[str]
    size: int

    def predict_proba(self, covers: list[np.ndarray]) -> np.ndarray: ...


@dataclass
class Trained:
    """What a family's ``fit`` returns to the generic trainer, which logs it (domain code logs nothing).

    ``proba`` holds the val and test covers' probabilities; ``write`` puts the files the predictor
    loads into a folder and returns them by artifact name (``meta`` is added by the trainer).
    """
    proba: dict[str, np.ndarray]
    write: Callable[[Path], dict[str, str]]
    meta: dict[str, Any] = field(default_factory=dict)
    params: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, float] = field(default_factory=dict)
    tables: dict[str, Any] = field(default_factory=dict)    # artifact path -> DataFrame (CSV)
    figures: dict[str, Any] = field(default_factory=dict)   # artifact path -> matplotlib Figure (PNG)


@dataclass(frozen=True)
class EvalRow:
    """One row of ``evaluate``.

    ``runner(view, inputs, seed, options) -> test probabilities`` trains on the split's train (and
    val) covers only; ``inputs`` maps the per-cover tables it reads to ``"module:function"`` builders
    ``(covers) -> (N, D) array``, computed once per cover set whatever the number of splits and rows
    (rows that name the same input share it); ``options`` is the ``evaluate`` section.
    """
    label: str
    runner: str
    inputs: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Family:
    name: str                     # short name: train_<name>, metric and tag prefixes
    model_name: str               # the registered model
    section: str                  # config section of its parameters (a key of config.SECTIONS)
    summary: str                  # one line for --help and the MLproject comment
    load: str                     # "module:function": (artifacts, meta) -> Predictor
    fit: str = ""                 # "module:function": (covers, cfg) -> Trained, for the generic trainer
    run_name: str = ""            # "module:function": (cfg) -> the run's name (default: the family name)
    train: str = "genreclf.entrypoints.train:main"  # the training entry point (Resolved -> dict)
    rows: dict[str, EvalRow] = field(default_factory=dict)  # evaluate's rows, by model key

    @property
    def entry_point(self) -> str:
        return f"train_{self.name}"


FAMILIES: dict[str, Family] = {}


def register_family(family: Family, config: type | None = None) -> Family:
    """Add ``family`` (and, when given, its config section class) to the registry."""
    if config is not None:
        SECTIONS.setdefault(family.section, config)
    if family.section not in SECTIONS:
        raise ValueError(f"family {family.name!r}: config section {family.section!r} is not declared")
    FAMILIES[family.name] = family
    return family


def unregister_family(name: str) -> None:
    FAMILIES.pop(name, None)


def get_family(name: str) -> Family:
    if name not in FAMILIES:
        raise UserError(f"unknown model family {name!r}; known: {', '.join(FAMILIES)}")
    return FAMILIES[name]


def family_of_model(model_name: str) -> Family | None:
    return next((f for f in FAMILIES.values() if f.model_name == model_name), None)


def family_of_entry(entry_point: str) -> Family:
    found = next((f for f in FAMILIES.values() if f.entry_point == entry_point), None)
    if found is None:
        raise UserError(f"{entry_point!r} is not a training entry point; known: "
                        f"{', '.join(f.entry_point for f in FAMILIES.values())}")
    return found


def resolve_callable(target: str) -> Callable[..., Any]:
    """The function a ``"module:function"`` string names."""
    module, _, func = target.partition(":")
    return getattr(importlib.import_module(module), func)
