"""One parameter value: its declaration (default, help, allowed values), its type coercion, its check,
its redaction when written, and the YAML files values come from. The bottom of config: no genreclf
imports besides errors.
"""
from __future__ import annotations

import dataclasses
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, TypeGuard, Union

import yaml

from genreclf.errors import UserError


class ConfigError(UserError):
    """A configuration file or parameter is wrong; the message names it."""


INF = math.inf
ANY, NONEMPTY, LATER = "any", "nonempty", "checked by "


@dataclass(frozen=True)
class Check:
    """A rule no range or list of choices can say. ``problem(value, section)`` is what is wrong with the
    value (the resolved section is there for rules that involve another field), None if it fits."""
    allowed: str
    problem: Callable[[Any, Any], Union[str, None]]


# (low, high) numbers, both inclusive | (choice, ...) strings, case as given | "nonempty" | "any" (free
# text, may be empty; also flags, which coercion already limits to true/false) | a Check |
# "checked by <function>": values only the domain code can judge (e.g. freeze stage names per backbone)
Rule = Union[tuple[float, float], tuple[str, ...], str, Check]


def opt(default: Any, help: str, rule: Rule) -> Any:
    """A parameter: its default, one line of help (unit, choices) for --help, MLproject and the docs, and
    the values it allows, checked once when its section resolves (``config.build``)."""
    if not _is_rule(rule):
        raise TypeError(f"not a parameter rule: {rule!r}")
    return field(default=default, metadata={"help": help, "rule": rule})


def later(where: str) -> str:
    """The rule of a parameter whose allowed values only ``where`` (domain code) knows."""
    return LATER + where


def _is_rule(rule: Any) -> bool:
    if isinstance(rule, Check):
        return True
    if isinstance(rule, str):
        return rule in (ANY, NONEMPTY) or (rule.startswith(LATER) and len(rule) > len(LATER))
    if not isinstance(rule, tuple) or not rule:
        return False
    return _is_range(rule) or all(isinstance(c, str) for c in rule)


def _is_range(rule: Any) -> TypeGuard[tuple[float, float]]:
    return (isinstance(rule, tuple) and len(rule) == 2
            and all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in rule))


def allowed_range(low: float, high: float) -> str:
    return f">= {low}" if high == INF else f"[{low}, {high}]"


def problem(name: str, value: Any, rule: Rule, section: Any = None) -> str | None:
    """What is wrong with ``value`` of parameter ``name`` under ``rule``, naming both; None if it fits."""
    head = f"parameter {name}={redact(value)!r}"  # a storage URL's password never reaches a log
    if value is None:
        return f"{head}: needs a value"
    if isinstance(rule, Check):
        why = rule.problem(value, section)
        return f"{head}: {why}" if why else None
    if rule == NONEMPTY:
        return None if str(value).strip() else f"{head}: must not be empty"
    if isinstance(rule, str):  # "any" or checked later
        return None
    if _is_range(rule):
        low, high = rule
        if isinstance(value, float) and not math.isfinite(value):
            return f"{head}: must be a finite number in {allowed_range(low, high)}"
        return None if low <= value <= high else f"{head}: allowed range is {allowed_range(low, high)}"
    return None if value in rule else f"{head}: choose one of {' | '.join(map(str, rule))}"


def rule_of(cls: type, name: str) -> Rule | None:
    """The declared rule of field ``name`` of a config class (None if it declares none)."""
    f = cls.__dataclass_fields__[name]  # type: ignore[attr-defined]
    return f.metadata.get("rule")


def check(cfg: Any) -> None:
    """Refuse the first parameter of a resolved section outside its allowed values (a ConfigError)."""
    for name in cfg.__dataclass_fields__:
        rule = rule_of(type(cfg), name)
        why = problem(name, getattr(cfg, name), rule, cfg) if rule is not None else None
        if why:
            raise ConfigError(why)


RDB_SCHEMES = ("sqlite", "postgresql", "mysql", "oracle", "mssql")  # SQLAlchemy dialects, "+driver" allowed


def _cores(value: int, _: Any) -> str | None:
    return None if value == -1 or 1 <= value <= 1024 else "use -1 (all cores) or a count >= 1 (at most 1024)"


def _test_frac(value: float, data: Any) -> str | None:
    if not (math.isfinite(value) and 0.01 <= value <= 0.9):
        return "allowed range is [0.01, 0.9]"
    return None if data.val_frac + value < 1 else f"val_frac + test_frac must be < 1 (val_frac={data.val_frac})"


def _max_features(value: str, _: Any) -> str | None:
    if value in ("sqrt", "log2", "all"):
        return None
    try:
        number: float = int(value) if value.isdigit() else float(value)
    except ValueError:
        number = 0.0
    ok = number >= 1 if isinstance(number, int) else 0 < number <= 1
    return None if ok else "use sqrt, log2, all, a share in (0, 1] or a count >= 1"


def _storage(url: str, tune: Any) -> str | None:
    scheme = url.partition("://")[0].partition("+")[0] if "://" in url else ""
    if scheme and scheme not in RDB_SCHEMES:
        return f"use a journal file path or a {' / '.join(s + '://' for s in RDB_SCHEMES)} URL"
    if scheme == "sqlite" and tune.n_workers > 1:
        return (f"SQLite cannot take {tune.n_workers} concurrent workers without 'database is locked' errors; "
                "leave storage empty (journal file) or use PostgreSQL/MySQL")
    return None


def _grace(value: int, tune: Any) -> str | None:
    # a live worker must beat at least once per grace period, or it is failed while still running
    return None if value > tune.heartbeat_interval else f"must exceed heartbeat_interval={tune.heartbeat_interval}"


# the checks of single fields that no range or list of choices can say
CORES = Check("-1 (all cores) or a count >= 1", _cores)
TEST_FRAC = Check("[0.01, 0.9] with val_frac + test_frac < 1", _test_frac)
SHARE_OR_COUNT = Check("sqrt | log2 | all | a share in (0, 1] | a count >= 1", _max_features)
STORAGE = Check("a journal file path or an RDB URL (SQLite: n_workers=1)", _storage)
GRACE = Check("> heartbeat_interval", _grace)


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


def read_sections(p: Path | str, known: list[str]) -> dict[str, dict[str, Any]]:
    """An experiment YAML: a mapping of section name (one of ``known``) -> mapping of parameters."""
    p = Path(p)
    raw = read_yaml(p, "config file", "experiments/quickstart.yaml")
    if not isinstance(raw, dict):
        raise ConfigError(f"config file {p} must be a mapping of sections {known}")
    unknown = set(raw) - set(known) - {"description"}
    if unknown:
        raise ConfigError(f"config file {p}: unknown section(s) {sorted(unknown)}; known: {known}")
    for name, body in raw.items():
        if name != "description" and body is not None and not isinstance(body, dict):
            raise ConfigError(f"config file {p}: section {name!r} must be a mapping of parameters, "
                              f"got a {type(body).__name__}")
    return {k: v or {} for k, v in raw.items() if k != "description"}

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


# userinfo password: it runs to the LAST '@' that a host follows (a host, then '/', '?', '#', blank or the end), since
# people paste passwords with '@', '/' or ':' unencoded; it never spans blanks or the next URL's '://'. An '@' later
# in a path or query makes it hide too much, never too little.
_USERINFO_PASSWORD = re.compile(r"://([^:/@\s]*):(?:(?!://)\S)*@(?=[^@\s/?#]+(?:[/?#\s]|$))")
# query and libpq keyword passwords: ?password=, &password=, sslpassword=, passwd=, "host=db password=x"
_KEYWORD_PASSWORD = re.compile(r"(?i)((?:^|[?&;\s])\w*(?:password|passwd))=[^&#\s]*")


def redact(value: Any) -> Any:
    """Every URL password (``scheme://user:secret@host``, ``?password=secret``, ``&sslpassword=secret``) replaced by
    ``***``, in each URL of a string; other values unchanged.

    Used wherever a configuration is written (the run's config.yaml, logged parameters) or a URL is shown."""
    if isinstance(value, str):
        return _KEYWORD_PASSWORD.sub(r"\1=***", _USERINFO_PASSWORD.sub(r"://\1:***@", value))
    return value


def as_flat_dict(*configs) -> dict[str, Any]:
    """Flatten dataclasses for logging as MLflow params (section-prefixed only on collisions that differ:
    one ``seed`` when data, model and tuner share it, not ``seed`` + ``cnnconfig.seed``)."""
    out: dict[str, Any] = {}
    for cfg in configs:
        for key, val in dataclasses.asdict(cfg).items():
            if key in out and out[key] == val:
                continue
            out[key if key not in out else f"{type(cfg).__name__.lower()}.{key}"] = redact(val)
    return out
