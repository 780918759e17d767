"""Model families and their registry (see ``family``). Importing this package registers the built-in
families; a new family is a sub-package that calls ``register_family`` and one import line below."""
from genreclf.models.family import (
    FAMILIES,
    EvalRow,
    Family,
    Trained,
    family_of_entry,
    family_of_model,
    get_family,
    register_family,
    resolve_callable,
)


def family_loader(name: str):
    """The loader ``(artifacts, meta) -> predictor`` of the family ``name`` (a clear error if unknown)."""
    if name not in FAMILIES:
        raise RuntimeError(f"this model's meta.json names family {name!r}, which this genreclf does not have "
                           f"(known: {', '.join(FAMILIES)}); re-register it with this genreclf")
    return resolve_callable(FAMILIES[name].load)


from genreclf.models import cnn, ensemble, probe, rf  # noqa: E402,F401  (registers the built-in families)

__all__ = ["FAMILIES", "EvalRow", "Family", "Trained", "family_loader", "family_of_entry", "family_of_model",
           "get_family", "register_family", "resolve_callable"]
