"""`mlflow run . --env-manager local` (entry point `main`) twice on tiny synthetic covers: the steps run
as child runs of one parent, the second run reuses them and is much faster, and afterwards both
models have a champion that is the better of their versions."""
from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from helpers import BIN, ROOT, isolated_store, subprocess_env

from genreclf import CNN_MODEL_NAME, RF_MODEL_NAME
from genreclf import config as C
from genreclf.tracking import project, registry

pytestmark = pytest.mark.slow
EXPERIMENT = "pipeline-test"
DATA = {"data": "synthetic:12", "cache_size": 64}
PARAMS = {**DATA, "image_size": 64, "pretrained": "false", "epochs": 2, "batch_size": 16, "patience": 0,
          "gradcam_per_genre": 1, "n_estimators": 30, "workers": 0, "device": "cpu"}
STEPS = ["features", "train_rf", "train_cnn", "promote"]


# set by earlier in-process runs; `mlflow run --experiment-name` refuses MLFLOW_EXPERIMENT_ID beside it


def _mlflow_run(store: Path, env: dict) -> float:
    cmd = [str(BIN / "mlflow"), "run", str(ROOT), "--env-manager", "local", "--experiment-name", EXPERIMENT]
    for k, v in PARAMS.items():
        cmd += ["-P", f"{k}={v}"]
    start = time.perf_counter()
    # from the store's folder: the experiment's artifacts go to <store>/mlruns, never into the repo
    out = subprocess.run(cmd, cwd=store, env=env, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-5000:]
    return time.perf_counter() - start


@pytest.fixture(scope="module")
def study(tmp_path_factory, session_store):
    """Run `main` twice; between the runs register a weak RF challenger (a stump) by hand."""
    from genreclf.entrypoints import train
    from genreclf.tracking import runs as tracking
    store = tmp_path_factory.mktemp("pipeline")
    with isolated_store(store, session_store / "cache", CUDA_VISIBLE_DEVICES="") as env:
        import mlflow
        full_env = subprocess_env(env["MLFLOW_TRACKING_URI"], session_store / "cache", CUDA_VISIBLE_DEVICES="")
        first = _mlflow_run(store, full_env)
        weak = train.main(C.Resolved("train_rf", C.resolve(
            None, {**DATA, "experiment": EXPERIMENT, "n_estimators": 1, "max_depth": 1}, "data", "rf")))
        while mlflow.active_run():
            mlflow.end_run()
        second = _mlflow_run(store, full_env)
        parents = tracking.search_runs(EXPERIMENT, "tags.entry_point = 'main'", ["attributes.start_time ASC"])
        yield {"store": store, "env": full_env, "seconds": (first, second), "parents": parents,
               "weak_rf": str(weak["model_version"]), "tracking": tracking}


def _steps(tracking, parent) -> dict[str, dict]:
    """step -> {run_id, reused, seconds}, from the parent's pipeline/steps.json."""
    local = tracking.download(f"{parent.info.artifact_uri}/pipeline/steps.json")
    return {s["step"]: s for s in json.loads(Path(local).read_text())}


def test_main_runs_each_step_as_a_child_run(study):
    tracking, (first, _) = study["tracking"], study["parents"]
    assert first.info.status == "FINISHED"
    assert first.info.artifact_uri.startswith(str(study["store"]))  # nothing written into the repo
    children = {r.data.tags["entry_point"]: r for r in project.child_runs(EXPERIMENT, first.info.run_id)}
    assert sorted(children) == sorted(STEPS)
    for step, run in children.items():
        assert run.info.status == "FINISHED", step
        # run through mlflow.projects in this environment (with conda, absent here, it would have failed)
        assert run.data.tags["mlflow.project.backend"] == "local" and run.data.tags["env_manager"] == "local"
        assert run.data.tags["mlflow.project.entryPoint"] == step
        assert run.data.tags["git_commit"] == first.data.tags["git_commit"]
        assert json.loads(run.data.tags["step_params"])["data"] == "synthetic:12"
    assert json.loads(children["promote"].data.tags["step_params"])["model_name"] == "all"
    assert json.loads(children["train_cnn"].data.tags["step_params"])["pretrained"] == "false"
    assert {s: v["reused"] for s, v in _steps(tracking, first).items()} == dict.fromkeys(STEPS, False)


def test_second_main_reuses_finished_steps_and_is_much_faster(study):
    tracking, (first, second) = study["tracking"], study["parents"]
    t1, t2 = study["seconds"]
    a, b = _steps(tracking, first), _steps(tracking, second)
    for step in ("features", "train_rf", "train_cnn"):
        assert b[step]["reused"] and b[step]["run_id"] == a[step]["run_id"], step
    assert not b["promote"]["reused"] and b["promote"]["run_id"] != a["promote"]["run_id"]  # always re-run
    assert second.data.tags["steps_reused"] == "features,train_rf,train_cnn"
    # only promote is a child of the second parent
    assert [r.data.tags["entry_point"] for r in project.child_runs(EXPERIMENT, second.info.run_id)] == ["promote"]
    print(f"main: first run {t1:.1f}s, second run {t2:.1f}s")
    assert t2 < 0.6 * t1, (t1, t2)


def test_champions_exist_and_are_the_better_versions(study):
    tracking = study["tracking"]
    rf = registry.registered_aliases(RF_MODEL_NAME)
    # the stump registered between the runs was the challenger; the second promote kept the forest
    assert rf["challenger"] == study["weak_rf"]
    scores = {str(mv.version): float(mv.tags["test_macro_f1"])
              for mv in tracking.client().search_model_versions(f"name='{RF_MODEL_NAME}'")}
    assert len(scores) == 2 and scores[rf["champion"]] == max(scores.values()), (rf, scores)
    assert scores[rf["champion"]] > scores[study["weak_rf"]]
    weak_tags = registry.model_version(RF_MODEL_NAME, study["weak_rf"]).tags
    assert weak_tags["promotion_decision"] == "rejected" and weak_tags["compared_with"] == rf["champion"]
    cnn = registry.registered_aliases(CNN_MODEL_NAME)
    assert cnn["champion"] == cnn["challenger"] == "1"
    # every registered version says where it came from
    provenance = {"val_macro_f1", "test_macro_f1", "test_accuracy", "data_digest", "genres", "git_commit"}
    for name, version in ((RF_MODEL_NAME, rf["champion"]), (CNN_MODEL_NAME, "1")):
        tags = registry.model_version(name, version).tags
        assert provenance <= set(tags) and any(k.startswith("source_run") for k in tags), (name, tags)
    assert registry.model_version(CNN_MODEL_NAME, "1").tags["backbone"] == C.CNNConfig().backbone
    promote = tracking.get_run(_steps(tracking, study["parents"][1])["promote"]["run_id"])
    assert promote.data.tags["promotion_decision.rf"] == "rejected"
    assert promote.data.tags["promotion_decision.cnn"] == "kept"
    # both families' champions were scored on one test split: the run names the better one
    assert promote.data.tags["best_model"] in {f"{RF_MODEL_NAME}@champion", f"{CNN_MODEL_NAME}@champion"}


def test_cnn_champion_loads_in_a_fresh_process_on_cpu(study, tmp_path):
    from genreclf.data.images import encode
    from genreclf.data.synthetic import make_cover
    cover = tmp_path / "cover.jpg"
    cover.write_bytes(encode(make_cover("Rock", 900), "JPEG"))
    script = textwrap.dedent(f"""
        import json, mlflow, pandas as pd
        model = mlflow.pyfunc.load_model("models:/{CNN_MODEL_NAME}@champion")
        out = model.predict(pd.DataFrame({{"image": [open({str(cover)!r}, "rb").read()]}}))
        print(json.dumps({{"device": str(model.unwrap_python_model().predictor.device), "row": out.iloc[0].to_dict()}}))
    """)
    out = subprocess.run([sys.executable, "-c", script], env=study["env"], cwd=tmp_path, capture_output=True,
                         text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["device"] == "cpu"
    probs = {k[2:]: v for k, v in result["row"].items() if k.startswith("p_")}
    assert set(probs) == {"HipHop", "Rock", "Pop", "Electronic"} and abs(sum(probs.values()) - 1) < 1e-5
    assert result["row"]["genre"] == max(probs, key=probs.get)
