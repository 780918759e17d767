"""Whether the process that recorded an identity still runs: the owner of a RUNNING run, of a trial,
of the refit claim.

An identity is the process's host name, machine id, boot id, pid namespace, pid and start time. A pid
names a process only within one boot of one kernel and one pid namespace, so the other parts say
whether this process can judge the pid at all:

* another host name, another machine id or another pid namespace (a container sharing the host name):
  unknown - this process cannot look at that process table;
* the same machine and namespace but another boot id: dead - a reboot ended every process of the
  earlier boot (a namespace id repeats across boots: the host's own is a constant);
* the same boot: the pid must exist with the recorded start time, give or take ``START_TOLERANCE_S``.

On Linux the start time is read in seconds since boot (``/proc/<pid>/stat``), which no clock step
(NTP, a suspend, a manual change) moves; elsewhere it is psutil's wall-clock start time, and the
tolerance absorbs small steps. Anything this process cannot check (a permission error, a missing
part of the identity) is unknown: callers act only on a proven death, never reap on a doubt.
"""
from __future__ import annotations

import functools
import os
import socket
import sys
from pathlib import Path
from typing import Any, Mapping

import psutil

START_TOLERANCE_S = 2.0  # a recycled pid that started within 2 s of the owner is not a realistic case
LINUX = sys.platform.startswith("linux")


@functools.cache
def boot_id() -> str:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:  # not Linux: the boot time names the boot (rounded: psutil derives it from the clock)
        return f"boot-{round(psutil.boot_time())}"


@functools.cache
def machine_id() -> str:
    for path in ("/etc/machine-id", "/var/lib/dbus/machine-id"):
        try:
            return Path(path).read_text().strip()
        except OSError:
            continue
    return ""


def pid_namespace() -> str:
    try:
        return os.readlink("/proc/self/ns/pid")
    except OSError:  # no /proc: one namespace per host
        return ""


def start_time(pid: int) -> float:
    """When ``pid`` started: seconds since boot on Linux, wall-clock seconds elsewhere.

    Raises psutil.NoSuchProcess when there is no such process (or only its zombie), psutil.AccessDenied
    when it cannot be read."""
    if not LINUX:
        proc = psutil.Process(pid)
        if proc.status() == psutil.STATUS_ZOMBIE:
            raise psutil.NoSuchProcess(pid)
        return proc.create_time()
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        raise psutil.NoSuchProcess(pid) from None
    except PermissionError:
        raise psutil.AccessDenied(pid) from None
    fields = stat.rpartition(")")[2].split()  # the command name may hold spaces and parentheses
    if fields[0] in ("Z", "X"):  # exited; only its exit status waits to be collected
        raise psutil.NoSuchProcess(pid)
    return int(fields[19]) / os.sysconf("SC_CLK_TCK")


def identity(pid: int | None = None) -> dict[str, Any]:
    """What identifies this process (or ``pid``, in this namespace) for ``alive``."""
    pid = os.getpid() if pid is None else pid
    return {"host": socket.gethostname(), "machine": machine_id(), "boot": boot_id(), "pidns": pid_namespace(),
            "pid": pid, "started": start_time(pid)}


def alive(ident: Mapping[str, Any]) -> bool | None:
    """True/False for a process this one can judge; None (unknown) otherwise."""
    try:
        host, pid, started = str(ident["host"]), int(ident["pid"]), float(ident["started"])
        machine, boot, pidns = str(ident["machine"]), str(ident["boot"]), str(ident["pidns"])
    except (KeyError, TypeError, ValueError):
        return None  # recorded by other code, or damaged
    if host != socket.gethostname() or machine != machine_id() or pidns != pid_namespace():
        return None
    if boot != boot_id():
        return False
    try:
        return abs(start_time(pid) - started) <= START_TOLERANCE_S
    except psutil.NoSuchProcess:
        return False
    except (psutil.Error, OSError, ValueError, IndexError):  # AccessDenied, an unreadable stat line
        return None


def describe(ident: Mapping[str, Any]) -> str:
    return f"pid {ident.get('pid')} on {ident.get('host')}"
