"""Which process owns a RUNNING run: recorded as tags when a process opens a run, checked before
another process continues it (``resume``) and when a run is found RUNNING with its owner gone.

A run carries ``owner_host``, ``owner_pid`` and ``owner_started`` (the process's start time, so a
recycled pid is not mistaken for the owner). Liveness can only be checked on the owner's host.
"""
from __future__ import annotations

import os
import socket

import psutil

TAGS = ("owner_host", "owner_pid", "owner_started")


def owner_tags() -> dict[str, str]:
    return {"owner_host": socket.gethostname(), "owner_pid": str(os.getpid()),
            "owner_started": repr(psutil.Process().create_time())}


def owner_alive(tags: dict[str, str]) -> bool | None:
    """True/False for an owner on this host; None when unknown (no tags, or another host)."""
    if tags.get("owner_host") != socket.gethostname() or "owner_pid" not in tags:
        return None
    try:
        pid, started = int(tags["owner_pid"]), float(tags.get("owner_started", "nan"))
        if pid == os.getpid():
            return True
        return abs(psutil.Process(pid).create_time() - started) < 1e-3
    except (psutil.Error, ValueError):
        return False
