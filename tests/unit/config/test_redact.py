"""Every form a URL carries a password in is hidden by ``redact`` wherever a configuration is written or a URL
shown; what is not a password stays readable (the host and database name are what a reader needs)."""
from __future__ import annotations

import errno

import pytest

from genreclf.params import redact

CASES = [  # (id, value, redacted, the secret that must be gone)
    ("userinfo", "postgresql://optuna:s3cret@db:5432/optuna", "postgresql://optuna:***@db:5432/optuna", "s3cret"),
    ("driver", "postgresql+psycopg2://u:s3cret@db/optuna", "postgresql+psycopg2://u:***@db/optuna", "s3cret"),
    ("with @", "postgresql://u:p@ss@host/db", "postgresql://u:***@host/db", "ss@"),
    ("with @ and no path", "mysql://u:p@ss@host", "mysql://u:***@host", "p@ss"),
    ("with /", "postgresql://u:pa/ss@host:5432/db", "postgresql://u:***@host:5432/db", "pa/ss"),
    ("with @ then /", "postgresql://u:a@/b@host/db", "postgresql://u:***@host/db", "/b"),
    ("with :", "postgresql://u:pa:ss@host/db", "postgresql://u:***@host/db", "pa:ss"),
    ("percent-encoded", "postgresql://u:p%40ss%2Fw%3A@host/db", "postgresql://u:***@host/db", "p%40ss"),
    ("no user", "redis://:s3cret@cache:6379/0", "redis://:***@cache:6379/0", "s3cret"),
    ("?password=", "postgresql://db/optuna?user=u&password=s3cret", "postgresql://db/optuna?user=u&password=***",
     "s3cret"),
    ("first ?password=", "postgresql://db/optuna?password=s3cret&sslmode=require",
     "postgresql://db/optuna?password=***&sslmode=require", "s3cret"),
    ("&password=", "postgresql://u@db/o?sslmode=require&password=s%40cret", "postgresql://u@db/o?sslmode=require&password=***",
     "s%40cret"),
    ("sslpassword=", "postgresql://u:pw1@db/o?sslkey=k.pem&sslpassword=keypass",
     "postgresql://u:***@db/o?sslkey=k.pem&sslpassword=***", "keypass"),
    ("PASSWORD=", "mssql+pyodbc://db/x?PASSWORD=s3cret", "mssql+pyodbc://db/x?PASSWORD=***", "s3cret"),
    ("libpq keywords", "host=db user=u password=s3cret dbname=o", "host=db user=u password=*** dbname=o", "s3cret"),
    ("several URLs", "from postgresql://a:one@h1/x to mysql://b:t@o@h2/y and sqlite:///z.db",
     "from postgresql://a:***@h1/x to mysql://b:***@h2/y and sqlite:///z.db", "one"),
    ("several URLs, no blank", "postgresql://a:one@h1/x,postgresql://b:two@h2/y",
     "postgresql://a:***@h1/x,postgresql://b:***@h2/y", "two"),
]
UNCHANGED = [  # no password: left as it is
    "postgresql://postgres@127.0.0.1:5432/optuna",
    "http://127.0.0.1:5000",
    "models:/album-genre-rf@champion",
    "sqlite:///mlflow.db",
    "optuna/journal.log",
    "user@example.org",
    "postgresql://db/o?sslmode=require&passwordless=1",
    "",
]


@pytest.mark.parametrize(("value", "expected", "secret"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_password_forms_are_redacted(value, expected, secret):
    assert redact(value) == expected
    assert secret not in redact(value)


@pytest.mark.parametrize("value", UNCHANGED)
def test_values_without_password_are_unchanged(value):
    assert redact(value) == value


@pytest.mark.parametrize("value", [5, 0.5, None, True, ["postgresql://u:p@h/d"]])
def test_non_strings_are_unchanged(value):
    assert redact(value) == value


def test_redaction_is_idempotent():
    once = redact("postgresql://u:p@ss@host/db?password=x")
    assert redact(once) == once == "postgresql://u:***@host/db?password=***"


def test_disk_full_message_hides_the_tracking_uri_password(monkeypatch, capsys):
    from genreclf import cli

    def full(_command):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setenv("MLFLOW_TRACKING_URI", "postgresql://mlflow:p@ss@db.internal/mlflow?sslpassword=k3y")
    monkeypatch.setattr(cli, "name_project_run", full)
    assert cli.main(["train_rf"]) == 1
    err = capsys.readouterr().err
    assert "the disk is full" in err and "postgresql://mlflow:***@db.internal/mlflow?sslpassword=***" in err
    assert "p@ss" not in err and "k3y" not in err
