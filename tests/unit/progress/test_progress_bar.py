"""Progress off a terminal is a few plain log lines, never bar frames."""
from __future__ import annotations

import logging

from genreclf import progress


def test_off_a_terminal_progress_is_plain_log_lines(monkeypatch, caplog, capsys):
    monkeypatch.setattr(progress, "on_terminal", lambda: False)
    monkeypatch.setenv("GENRECLF_PROGRESS_SECONDS", "0")  # a line per update, to see them all
    with caplog.at_level(logging.INFO, logger="genreclf.progress"):
        items = list(progress.progress_bar(range(3), desc="decoding covers", unit="cover"))
    assert items == [0, 1, 2]
    lines = [r.getMessage() for r in caplog.records]
    assert lines[:3] == [f"decoding covers: {i}/3 cover ({100 * i / 3:.0f}%), 0s" for i in (1, 2, 3)]
    assert lines[-1].startswith("decoding covers: 3/3 cover (100%)") and "done in" in lines[-1]
    out = capsys.readouterr()
    assert "\r" not in out.err + out.out and "|" not in out.err  # no bar drawn anywhere


def test_quiet_run_logs_nothing_for_short_work(monkeypatch, caplog):
    monkeypatch.setattr(progress, "on_terminal", lambda: False)
    monkeypatch.delenv("GENRECLF_PROGRESS_SECONDS", raising=False)  # default: a line every 30 s
    with caplog.at_level(logging.INFO, logger="genreclf.progress"):
        bar = progress.progress_bar(total=5, desc="tuning", unit="trial")
        bar.update(2)
        bar.n = 5
        bar.refresh()
        bar.close()
    assert bar.n == 5 and not caplog.records  # under 30 s: no line at all


def test_on_a_terminal_it_is_tqdm(monkeypatch):
    monkeypatch.setattr(progress, "on_terminal", lambda: True)
    bar = progress.progress_bar(total=2, desc="x")
    assert type(bar).__module__.startswith("tqdm")
    bar.close()


def test_mlflow_artifact_bars_are_off_off_a_terminal(monkeypatch):
    monkeypatch.setattr(progress, "on_terminal", lambda: False)
    monkeypatch.delenv("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", raising=False)
    progress.quiet_library_bars()
    from mlflow.environment_variables import MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR
    assert MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR.get() is False
