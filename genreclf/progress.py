"""Progress reporting: a tqdm bar on a terminal, a periodic plain log line everywhere else.

Under ``mlflow run``, in CI or with output redirected to a file, stderr is not a terminal and a bar's
carriage-return frames would make up a third or more of the log. There the same calls log one line
(``<desc>: 120/400 covers (30%)``) at most every ``GENRECLF_PROGRESS_SECONDS`` seconds (default 30)
and a last one when the work ends, if it took longer than that.
"""
from __future__ import annotations

import logging
import os
import sys
import time
from typing import Any, Iterable, Iterator, Sized

from tqdm.auto import tqdm

log = logging.getLogger("genreclf.progress")


def on_terminal() -> bool:
    try:
        return sys.stderr.isatty()
    except (AttributeError, ValueError):  # replaced or closed stderr
        return False


def quiet_library_bars() -> None:
    """Off a terminal, turn off the bars libraries draw themselves (MLflow's "Downloading artifacts")."""
    if not on_terminal():
        os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")


def progress_bar(iterable: Iterable | None = None, *, total: int | None = None, desc: str = "", unit: str = "it",
                 disable: bool = False, leave: bool = False, initial: int = 0) -> Any:
    """A tqdm bar when stderr is a terminal, else a :class:`LogProgress` with the same small interface
    (iteration, ``update``, ``n``, ``refresh``, ``close``)."""
    if on_terminal() and not disable:
        return tqdm(iterable, total=total, desc=desc, unit=unit, leave=leave, initial=initial)
    if total is None and isinstance(iterable, Sized):
        total = len(iterable)
    return LogProgress(iterable, total, desc, unit, disable, initial)


class LogProgress:
    """Counts like a bar; logs a plain line now and then instead of redrawing."""

    def __init__(self, iterable, total, desc, unit, disable=False, initial=0):
        self.iterable, self.total, self.desc, self.unit, self.disable = iterable, total, desc, unit, disable
        self.n = initial
        self.every = float(os.environ.get("GENRECLF_PROGRESS_SECONDS", "30"))
        self.start = self.last = time.monotonic()
        self.logged = False

    def __iter__(self) -> Iterator:
        for item in self.iterable:
            yield item
            self.update(1)
        self.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def update(self, n: int = 1) -> None:
        self.n += n
        self.refresh()

    def refresh(self) -> None:
        now = time.monotonic()
        if not self.disable and now - self.last >= self.every:
            self.last, self.logged = now, True
            log.info("%s", self.line(now))

    def close(self) -> None:
        now = time.monotonic()
        if not self.disable and (self.logged or now - self.start >= self.every):
            log.info("%s (done in %.0fs)", self.line(now), now - self.start)
        self.disable = True  # close() may be called twice (iteration end, then explicitly)

    def line(self, now: float) -> str:
        share = f" ({100 * self.n / self.total:.0f}%)" if self.total else ""
        total = f"/{self.total}" if self.total else ""
        return f"{self.desc}: {self.n}{total} {self.unit}{share}, {now - self.start:.0f}s"
