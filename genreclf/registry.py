"""Model registry: aliases (no stages - deprecated), version tags, and promotion.

Every newly registered version of ``album-genre-rf`` / ``album-genre-cnn`` gets the alias
``challenger`` and tags describing where it came from; ``promote`` moves ``champion``.
"""
from __future__ import annotations

import logging
from typing import Any

from . import tracking

log = logging.getLogger(__name__)
CHALLENGER, CHAMPION = "challenger", "champion"


def mark_challenger(name: str, version: str | int, tags: dict[str, Any]) -> None:
    """Tag a freshly registered version and point the ``challenger`` alias at it."""
    client = tracking.client()
    for key, value in tags.items():
        client.set_model_version_tag(name, str(version), key, str(value))
    client.set_registered_model_alias(name, CHALLENGER, str(version))
    log.info("registered %s version %s as @%s", name, version, CHALLENGER)
