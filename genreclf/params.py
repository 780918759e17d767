"""One parameter value: its declaration (default + help), its type coercion, its redaction when written,
and the YAML files values come from. The bottom of config: no genreclf imports besides errors.
"""
from __future__ import annotations

import re
from dataclasses import field
from pathlib import Path
from typing import Any

import yaml

from genreclf.errors import UserError


class ConfigError(UserError):
    """A configuration file or parameter is wrong; the message names it."""


def opt(default: Any, help: str) -> Any:
    """A parameter: its default and one line of help (unit, choices) for --help, MLproject and the docs."""
    return field(default=default, metadata={"help": help})


def read_yaml(p: Path, what: str, example: str) -> Any:
    """Parse a YAML file; a missing or malformed file is a ConfigError naming it."""
    if not p.is_file():
        raise ConfigError(f"{what} not found: {p} (expected e.g. {example})")
    try:
        return yaml.safe_load(p.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{what} {p} is not valid YAML: {exc}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{what} {p} is not a text file (not UTF-8); expected YAML") from None


def coerce(cls: type, name: str, value: Any) -> Any:
    default = getattr(cls(), name)
    if value is None:
        return None
    try:
        if isinstance(default, bool):
            if isinstance(value, str):
                low = value.strip().lower()
                if low not in {"true", "false", "1", "0", "yes", "no"}:
                    raise ValueError(value)
                return low in {"true", "1", "yes"}
            return bool(value)
        if isinstance(default, int):
            if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
                raise ValueError(value)  # `epochs: 2.7` is not silently 2
            return int(value)
        if isinstance(default, float):
            if isinstance(value, bool):
                raise ValueError(value)
            return float(value)
        return str(value)
    except (TypeError, ValueError):
        raise ConfigError(f"parameter {name}={value!r}: expected {type(default).__name__}") from None


def redact(value: Any) -> Any:
    """A URL's password (``scheme://user:secret@host``) replaced by ``***``; other values unchanged.

    Used wherever a configuration is written (the run's config.yaml, logged parameters)."""
    if isinstance(value, str):
        # a password may hold '/' (not '@': URLs percent-encode it), so it ends at the first '@'
        return re.sub(r"://([^:/@\s]*):[^@\s]*@", r"://\1:***@", value)
    return value
