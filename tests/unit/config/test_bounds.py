"""Every out-of-range or malformed parameter: a clear error naming it and the allowed range."""
from __future__ import annotations

import dataclasses

import pytest

from genreclf import cli
from genreclf import config as C

BAD = [  # (section, parameter, value, expected fragment)
    ("data", "cache_size", 0, "allowed range is [16, 2048]"),
    ("data", "cache_size", -64, "allowed range is [16, 2048]"),
    ("data", "cache_size", 100000, "allowed range is [16, 2048]"),
    ("rf", "n_jobs", 0, "use -1 (all cores) or a count >= 1"),
    ("serve", "port", 99999, "allowed range is [1, 65535]"),
    ("data", "experiment", "", "must not be empty"),
    ("data", "per_genre", -5, "allowed range is >= 0"),
    ("data", "dedup_distance", -1, "allowed range is [0, 64]"),
    ("cnn", "lr", "inf", "must be a finite number"),
    ("cnn", "lr", "nan", "must be a finite number"),
    ("cnn", "max_steps_per_epoch", -1, "allowed range is >= 0"),
    ("serve", "max_upload_mb", -1, "allowed range is [0.01, 1024.0]"),
]


@pytest.mark.parametrize("section,name,value,fragment", BAD, ids=[f"{b[1]}={b[2]}" for b in BAD])
def test_bad_parameter_names_itself_and_its_range(section, name, value, fragment):
    with pytest.raises(C.ConfigError) as err:
        C.build(C.SECTIONS[section], None, {name: value})
    assert str(err.value).startswith(f"parameter {name}=") and fragment in str(err.value)


def test_defaults_and_example_configs_are_within_bounds():
    for cls in C.SECTIONS.values():
        C.check(cls())
    for path in ("experiments/quickstart.yaml", "experiments/best_4genre.yaml"):
        C.resolve(path, {}, "data", "rf", "cnn", "promote")


@pytest.mark.parametrize("text,fragment", [
    ("cnn:\n  epochs: 2.7\n", "parameter epochs=2.7: expected int"),
    ("cnn:\n  - epochs\n  - 3\n", "section 'cnn' must be a mapping of parameters, got a list"),
    (b"\xff\xfe\x00binary\x00\x9c", "is not a text file"),
])
def test_bad_yaml_is_a_config_error(tmp_path, text, fragment):
    p = tmp_path / "exp.yaml"
    p.write_bytes(text if isinstance(text, bytes) else text.encode())
    with pytest.raises(C.ConfigError, match=fragment.replace("(", r"\(").replace("[", r"\[")):
        C.resolve(str(p), {}, "data", "cnn")


@pytest.mark.parametrize("argv,fragment", [
    (["demo", "--port", "99999"], "parameter port=99999: allowed range is [1, 65535]"),
    (["features", "--experiment", ""], "parameter experiment='': must not be empty"),
    (["train_rf", "--cache-size", "0"], "parameter cache_size=0"),
])
def test_cli_reports_bad_parameters_without_a_traceback(argv, fragment, capsys):
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    assert fragment in err and "Traceback" not in err


def test_written_config_redacts_storage_passwords():
    tune = dataclasses.replace(C.TuneConfig(), storage="postgresql://optuna:s3cret@db:5432/optuna")
    text = C.Resolved("tune_rf", {"tune": tune}).to_yaml()
    assert "s3cret" not in text and "postgresql://optuna:***@db:5432/optuna" in text
    assert "s3cret" not in str(C.as_flat_dict(tune))
