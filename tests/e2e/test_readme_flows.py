"""The README's "Using it" commands, run as written by a user, in a copy of the project (issue 14).

The only change to a command is the data size: ``data=synthetic`` becomes ``synthetic:12`` with
64 px covers (and 64 px CNN input), so the block runs in minutes on 2 cores. The store is the default
one a user gets (``./mlflow.db`` of the copy: no MLFLOW_TRACKING_URI). The block runs twice: the second
time must succeed too and add nothing misplaced. The captured logs are checked for progress-bar frames
and for MLflow's model-logging warnings.
"""
from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

import mlflow
import pytest

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
TINY = {"data": "synthetic:12", "cache_size": "64"}
TINY_CNN = {"image_size": "64", "gradcam_per_genre": "1"}
pytestmark = [pytest.mark.slow, pytest.mark.timeout(5400)]  # the block runs twice: ~10 mlflow runs


def using_it_block() -> list[str]:
    """The command lines of the first bash block under "## Using it" in README.md."""
    text = (ROOT / "README.md").read_text()
    section = text[text.index("## Using it"):]
    block = re.search(r"```bash\n(.*?)```", section, re.S).group(1)
    return [line.split("  #")[0].strip() for line in block.splitlines() if line.strip()]


def tiny(argv: list[str]) -> list[str]:
    """Shrink the data of one `mlflow run` command that names its data; everything else stays as written
    (promote names none: it reads the challengers' recorded data)."""
    if not any(a.startswith("data=") for a in argv):
        return argv
    out, given = [], set()
    cnn = any(a in {"train_cnn", "tune_cnn"} for a in argv)
    for a in argv:
        key = a.split("=", 1)[0]
        if key in TINY or (cnn and key in TINY_CNN):
            a = f"{key}={TINY.get(key) or TINY_CNN[key]}"
        given.add(key)
        out.append(a)
    for key, value in {**TINY, **(TINY_CNN if cnn else {})}.items():
        if key not in given:
            out += ["-P", f"{key}={value}"]
    return out


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    """A copy of the project's tracked files (a user's checkout), and the environment of a user's shell."""
    dst = tmp_path_factory.mktemp("checkout")
    files = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True).stdout.split()
    for f in files:
        if (ROOT / f).is_file() and not f.endswith(".png"):
            (dst / f).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / f, dst / f)
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    env.update(PATH=f"{BIN}{os.pathsep}{env['PATH']}", PYTHONPATH=str(dst), HF_HUB_OFFLINE="1",
               GENRECLF_CACHE=str(tmp_path_factory.mktemp("cache")), MLFLOW_ENABLE_SYSTEM_METRICS_LOGGING="false",
               CUDA_VISIBLE_DEVICES="")
    return dst, env


def run_block(dst: Path, env: dict) -> list[dict]:
    """Run the block line by line as a shell would (exports carry over); returns what each line did."""
    env, done = dict(env), []
    for line in using_it_block():
        argv = shlex.split(line)
        if argv[0] == "source" or argv[:2] == ["mlflow", "ui"]:
            continue  # the venv is this interpreter's; the UI has its own test (test_mlflow_ui.py)
        if argv[0] == "export":
            key, value = argv[1].split("=", 1)
            env[key] = value
            continue
        if argv[:2] == ["mlflow", "run"]:
            argv = tiny(argv)
        start = time.perf_counter()
        proc = subprocess.run(argv, cwd=dst, env=env, capture_output=True, text=True, timeout=1800)
        assert proc.returncode == 0, f"{line}\n{proc.stderr[-4000:]}"
        done.append({"line": line, "seconds": time.perf_counter() - start, "log": proc.stdout + proc.stderr})
    return done


@pytest.fixture(scope="module")
def ran(project):
    dst, env = project
    first = run_block(dst, env)
    second = run_block(dst, env)
    mlflow.set_tracking_uri(f"sqlite:///{dst / 'mlflow.db'}")
    # the timings of each README command, for a person to read (not asserted: never a timed test)
    (ROOT / "test-output").mkdir(exist_ok=True)
    (ROOT / "test-output" / "readme_flows_timings.txt").write_text("".join(
        f"{name}\t{d['seconds']:.1f}s\t{d['line']}\n" for name, runs in (("first", first), ("second", second))
        for d in runs))
    return {"first": first, "second": second, "client": mlflow.MlflowClient(), "dst": dst, "env": env}


def runs_of(client, experiment: str) -> list:
    exp = client.get_experiment_by_name(experiment)
    return client.search_runs([exp.experiment_id], max_results=1000) if exp else []


def test_the_block_is_what_the_readme_says():
    lines = using_it_block()
    assert any("tune_rf" in line for line in lines) and any("promote" in line for line in lines)
    assert all("--env-manager local" in line for line in lines if line.startswith("mlflow run"))


def test_one_experiment_holds_the_study_its_trials_and_refit(ran):
    client = ran["client"]
    runs = runs_of(client, "album-genre")
    assert not [r for r in runs_of(client, "Default")], "runs landed in Default"
    by_id = {r.info.run_id: r for r in runs}
    for kind in ("rf", "cnn"):
        parents = [r for r in runs if r.data.tags.get("tune_role") == "study" and r.data.tags["model_family"] == kind]
        assert len(parents) == 1, kind  # the second run resumed the same study and parent
        pid = parents[0].info.run_id
        trials = [r for r in runs if r.data.tags.get("tune_role") == "trial" and r.data.tags["model_family"] == kind]
        refits = [r for r in runs if r.data.tags.get("tune_role") == "refit" and r.data.tags["model_family"] == kind]
        assert trials and len(refits) <= 1 and all(r.data.tags["mlflow.parentRunId"] == pid for r in trials + refits)
        assert all(r.data.tags["mlflow.parentRunId"] in by_id for r in trials + refits)
        # the parent shows the best configuration and the best value
        searched = [k[5:] for k in parents[0].data.tags if k.startswith("best_")]
        assert "best_value" in parents[0].data.metrics
        assert any(p in parents[0].data.params for p in searched), parents[0].data.params
    # the second run of the same commands: a continuation of the same study, named, pointing at its parent
    continued = [r for r in runs if r.data.tags.get("tune_role") == "continuation"]
    assert {r.data.tags["tune_parent_run_id"] for r in continued} <= set(by_id) and len(continued) == 2
    random = [r.info.run_name for r in runs if re.fullmatch(r"[a-z]+-[a-z]+-\d{1,3}", r.info.run_name)
              and not r.info.run_name.startswith(("rf-", "cnn-"))]  # MLflow's adjective-animal-NNN
    assert not random, f"runs left with a random name: {random}"


def test_promote_needs_no_data_parameter(ran):
    promote = [d for d in ran["first"] if "-e promote" in d["line"]][0]
    assert "data not given: scoring on the data the challenger was trained on (data=synthetic:12" in promote["log"]
    assert "Hugging Face" not in promote["log"] and promote["seconds"] < 120


def test_study_without_experiment_name_stays_in_one_experiment(ran):
    """Point 1: without MLFLOW_EXPERIMENT_NAME the project run is in Default: so are its trials and refit."""
    env = {k: v for k, v in ran["env"].items() if k != "MLFLOW_EXPERIMENT_NAME"}
    line = next(line for line in using_it_block() if "-e tune_rf" in line)
    argv = [a.replace("n_trials=10", "n_trials=12") for a in tiny(shlex.split(line))]
    proc = subprocess.run(argv, cwd=ran["dst"], env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-4000:]
    runs = runs_of(ran["client"], "Default")
    (parent,) = [r for r in runs if r.data.tags.get("tune_role") == "study"]
    nested = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
    assert sorted(r.data.tags["tune_role"] for r in nested) == ["refit", "trial", "trial"]
    assert len(runs) == 4


def test_explicit_epochs_equal_to_the_default_win_over_the_config_file(ran):
    from genreclf.config import CNNConfig
    epochs = CNNConfig().epochs
    cmd = ["genreclf", "train_cnn", "--config", "experiments/quickstart.yaml", "--epochs", str(epochs),
           "--data", "synthetic:12", "--cache_size", "64", "--image_size", "32", "--max_steps_per_epoch", "1",
           "--gradcam_per_genre", "0", "--register", "false", "--experiment", "explicit"]
    proc = subprocess.run(cmd, cwd=ran["dst"], env=ran["env"], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-4000:]
    (run,) = runs_of(ran["client"], "explicit")
    assert run.data.metrics["train/epochs_run"] == epochs
    assert run.data.params["epochs"] == str(epochs)


BAR_FRAME = re.compile(r"\r|\d+%\|[^\n]*\|\s*\d+/\d+ \[")  # tqdm: carriage returns, "37%|███▋  | 3/8 ["


def test_mlflow_run_logs_have_no_progress_bar_frames(ran):
    for d in ran["first"] + ran["second"]:
        frames = BAR_FRAME.findall(d["log"])
        assert not frames, f"{d['line']}: {len(frames)} progress-bar frames, e.g. {frames[:2]}"


def test_mlflow_run_logs_have_no_model_logging_warnings(ran):
    """MLflow's type-hint and CloudPickle warnings (fixed by typed predict + models-from-code)."""
    for d in ran["first"] + ran["second"]:
        assert "Add type hints to the `predict` method" not in d["log"], d["line"]
        assert "serialized using CloudPickle" not in d["log"], d["line"]
