"""The console script: help lists the entry points; user errors are messages, not tracebacks."""
from __future__ import annotations

import subprocess

from genreclf.commands import commands


def test_help_lists_every_entry_point(genreclf_cmd):
    out = subprocess.run(genreclf_cmd + ["--help"], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0
    for name in list(commands()) + ["predict"]:
        assert name in out.stdout


def test_unknown_genre_is_a_message_not_a_traceback(genreclf_cmd, workdir):
    out = subprocess.run(genreclf_cmd + ["features", "--data", "synthetic:5", "--genres", "Rock,Polka"],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 2
    assert "unknown genre(s) ['Polka']" in out.stderr and "Traceback" not in out.stderr


def test_bad_parameter_type_is_named(genreclf_cmd, workdir):
    out = subprocess.run(genreclf_cmd + ["train_cnn", "--epochs", "ten"], capture_output=True, text=True, timeout=300)
    assert out.returncode == 2 and "epochs='ten': expected int" in out.stderr
