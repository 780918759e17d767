"""CNN fine-tuning (`train_cnn`): the run, the registered pyfunc, the linear-probe path, resume, offline.

Tiny settings throughout (96 synthetic covers at 64 px, resnet18 from scratch, 2-4 epochs): the
point is that every piece is there and behaves, not accuracy.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from genreclf import CNN_MODEL_NAME
from genreclf import config as C
from genreclf.data.covers import load_covers
from genreclf.data.images import encode
from genreclf.entrypoints import train_cnn
from genreclf.models.cnn import checkpoints, training
from genreclf.nets import backbones

TINY = dict(data="synthetic:24", cache_size=64, image_size=64, backbone="resnet18", pretrained=False, epochs=2,
            batch_size=16, gradcam_per_genre=2, patience=0)


def resolved(**over):
    return C.Resolved("train_cnn", C.resolve(None, {**TINY, **over}, "data", "cnn"))


def metric_steps(run_id: str, key: str) -> dict[int, float]:
    return {m.step: m.value for m in mlflow.MlflowClient().get_metric_history(run_id, key)}


def artifact_paths(run_id: str, path: str = "") -> set[str]:
    out = set()
    for info in mlflow.MlflowClient().list_artifacts(run_id, path):
        out |= artifact_paths(run_id, info.path) if info.is_dir else {info.path}
    return out


def test_train_cnn_run_holds_everything_and_registered_model_predicts_bytes(workdir):
    out = train_cnn.main(resolved())
    client = mlflow.MlflowClient()
    run = client.get_run(out["run_id"])
    assert run.info.run_name == "cnn-resnet18-lr1e-3" and run.info.status == "FINISHED"
    assert run.data.tags["model_family"] == "cnn" and run.data.tags["backbone"] == "resnet18"
    assert run.data.params["backbone"] == "resnet18" and run.data.params["image_size"] == "64"
    # per-epoch curves with step=epoch; the final (best-restored) val value comes after them
    genre_f1 = [k for k in run.data.metrics if k.startswith("val_f1_")]
    assert genre_f1, "no per-genre val F1"
    for key in ("train_loss", "train_accuracy", "val_loss", "train/lr", "train/epoch_time_s", "train/images_per_s",
                *genre_f1):  # diagnostics grouped under train/; per-genre F1 a curve, not one dot
        assert sorted(metric_steps(run.info.run_id, key))[:2] == [0, 1], key
    assert "data/covers" in run.data.metrics and "train/best_epoch" in run.data.metrics
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert "checkpoints" not in artifacts or not client.list_artifacts(run.info.run_id, "checkpoints"), \
        "keep_checkpoints=none: a finished run keeps no checkpoint"
    f1 = metric_steps(run.info.run_id, "val_macro_f1")
    assert sorted(f1) == [0, 1, 2] and f1[2] == pytest.approx(max(f1[0], f1[1]))
    assert metric_steps(run.info.run_id, "train/lr")[0] > metric_steps(run.info.run_id, "train/lr")[1]  # cosine
    covers = load_covers(C.DataConfig(data="synthetic:24", cache_size=64), progress=False)
    genres, test = covers.genres, covers.indices("test")
    for key in ["test_accuracy", "test_macro_f1"] + [f"test_f1_{g}" for g in genres]:
        assert 0.0 <= run.data.metrics[key] <= 1.0, key
    arts = artifact_paths(run.info.run_id)
    assert {"curves/training_curves.png", "eval/test_confusion_matrix.png", "eval/test_confusion_matrix.json",
            "eval/val_confusion_matrix.png", "eval/test_per_genre.csv", "config.yaml",
            "data/split_manifest.csv"} <= arts
    assert {f"gradcam/{g}.png" for g in genres} <= arts
    local = Path(mlflow.artifacts.download_artifacts(run_id=run.info.run_id, artifact_path="gradcam/Rock.png"))
    assert Image.open(local).size[0] > 200  # a real gallery, not an empty canvas
    cm = json.loads(mlflow.artifacts.load_text(f"runs:/{run.info.run_id}/eval/test_confusion_matrix.json"))
    assert np.sum(cm["counts"]) == len(test) and cm["genres"] == genres

    version = out["model_version"]
    mv = client.get_model_version_by_alias(CNN_MODEL_NAME, "challenger")
    assert str(mv.version) == version and mv.run_id == run.info.run_id
    assert mv.tags["backbone"] == "resnet18" and mv.tags["data_digest"] == covers.digest[:20]
    assert float(mv.tags["test_macro_f1"]) == pytest.approx(run.data.metrics["test_macro_f1"], abs=1e-4)

    # a fresh process (no GPU, nothing imported) loads it by URI and predicts on raw bytes;
    # PNG bytes of the cached pixels must reproduce the logged test accuracy exactly
    inputs = workdir / "inputs.parquet"
    pd.DataFrame({"image": [encode(covers.images[i], "PNG") for i in test]}).to_parquet(inputs)
    script = ("import sys, mlflow, pandas as pd; m = mlflow.pyfunc.load_model(sys.argv[1]); "
              "m.predict(pd.read_parquet(sys.argv[2])).to_json(sys.argv[3], orient='records')")
    subprocess.run([sys.executable, "-c", script, f"models:/{CNN_MODEL_NAME}/{version}", str(inputs),
                    str(workdir / "pred.json")], check=True, timeout=180,
                   env={**os.environ, "CUDA_VISIBLE_DEVICES": ""})
    pred = pd.read_json(workdir / "pred.json", orient="records")
    assert list(pred.columns) == ["genre"] + [f"p_{g}" for g in genres]
    assert np.allclose(pred.filter(like="p_").sum(axis=1), 1.0, atol=1e-5)
    truth = [genres[k] for k in covers.labels[test]]
    assert np.mean(pred["genre"] == truth) == pytest.approx(run.data.metrics["test_accuracy"])

    # in Python: decoded arrays are accepted too, and explain() gives a Grad-CAM overlay
    model = mlflow.pyfunc.load_model(f"models:/{CNN_MODEL_NAME}@challenger").unwrap_python_model()
    frame = model.predict(None, np.stack([covers.images[i] for i in test[:3]]))
    assert list(frame["genre"]) == list(pred["genre"][:3])
    overlay, genre = model.predictor.explain(covers.images[test[0]])
    assert overlay.dtype == np.uint8 and overlay.shape == (64, 64, 3) and genre == pred["genre"][0]
    assert not np.array_equal(overlay, covers.images[test[0]])


def test_frozen_backbone_trains_head_on_embeddings_computed_once(workdir, caplog):
    covers = load_covers(C.DataConfig(data="synthetic:24", cache_size=64), progress=False)
    cfg = C.build(C.CNNConfig, None, {**TINY, "freeze": "backbone", "epochs": 3, "lr": 0.01, "device": "cpu"})
    torch.manual_seed(cfg.seed)
    initial = backbones.create_model("resnet18", 4, pretrained=False).state_dict()
    folder = Path(os.environ["GENRECLF_CACHE"]) / "embeddings"
    before = set(folder.glob("*.npy"))
    seen = []
    result = training.fit(covers, cfg, on_epoch=lambda e, m: seen.append((e, m["val_macro_f1"])))
    assert [e for e, _ in seen] == [0, 1, 2]
    cached = set(folder.glob("resnet18-*.npy")) - before
    assert len(cached) == 1 and np.load(cached.pop()).shape == (len(covers.indices("train", "val")), 2, 512)
    after = result.model.state_dict()
    assert all(torch.equal(initial[k], after[k].cpu()) for k in initial if not k.startswith("fc."))  # incl. BN stats
    assert not torch.equal(initial["fc.weight"], after["fc.weight"].cpu())
    # a second fit (a tuning trial, a resumed run) reuses the file instead of running the backbone
    caplog.set_level("INFO", logger="genreclf.models.cnn.embeddings")
    again = training.fit(covers, cfg)
    assert any("from cache" in r.message for r in caplog.records)
    assert torch.equal(again.model.fc.weight, result.model.fc.weight)  # and is deterministic

    # on_epoch may abort (optuna.TrialPruned): the exception propagates, global state is restored
    class Pruned(Exception):
        pass

    def prune(epoch, metrics):
        raise Pruned(epoch)
    with pytest.raises(Pruned):
        training.fit(covers, cfg, on_epoch=prune)
    assert not torch.are_deterministic_algorithms_enabled()


def test_killed_run_resumes_in_the_same_run_to_the_same_result(workdir, genreclf_cmd):
    over = dict(data="synthetic:12", image_size=32, batch_size=8, epochs=4, register=False, gradcam_per_genre=0,
                experiment="resume", keep_checkpoints="all")  # all: the finished runs' weights are compared
    args = [*genreclf_cmd, "train_cnn", *[f"--{k}={v}" for k, v in {**TINY, **over}.items()]]
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": ""}
    proc = subprocess.Popen(args, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    client, run, deadline = mlflow.MlflowClient(), None, time.time() + 240
    try:
        while time.time() < deadline and proc.poll() is None:
            runs = mlflow.search_runs(experiment_names=["resume"], output_format="list")
            if runs and "checkpoint_epoch" in client.get_run(runs[0].info.run_id).data.tags:
                run = runs[0]
                break
            time.sleep(0.2)
    finally:
        proc.kill()
        proc.wait()
    assert run is not None, f"no checkpoint appeared: {proc.stderr.read().decode()[-2000:]}"
    killed = client.get_run(run.info.run_id)
    assert killed.info.status == "RUNNING" and int(killed.data.tags["checkpoint_epoch"]) < 3

    subprocess.run([*genreclf_cmd, "train_cnn", f"--resume={run.info.run_id}"], env=env, check=True, timeout=300)
    resumed = client.get_run(run.info.run_id)
    assert resumed.info.status == "FINISHED" and resumed.data.tags["resumed_after_epoch"] == killed.data.tags[
        "checkpoint_epoch"]
    straight = train_cnn.main(resolved(**{**over, "experiment": "straight"}))

    for key in ("train_loss", "val_loss", "val_macro_f1", "train/lr"):
        assert metric_steps(run.info.run_id, key) == metric_steps(straight["run_id"], key), key
    for key in ("test_accuracy", "test_macro_f1", "val_macro_f1"):
        assert resumed.data.metrics[key] == straight[key], key
    with pytest.raises(checkpoints.ResumeError, match="already finished"):  # no second registration
        train_cnn.main(resolved(resume=run.info.run_id))
    weights = [torch.load(mlflow.artifacts.download_artifacts(run_id=r, artifact_path="checkpoints/last.pt"),
                          weights_only=True)["model"] for r in (run.info.run_id, straight["run_id"])]
    assert all(torch.equal(weights[0][k], weights[1][k]) for k in weights[0])


def test_offline_pretrained_fails_clearly_and_local_weights_load(workdir, genreclf_cmd, monkeypatch, tmp_path):
    env = {**os.environ, "TORCH_HOME": str(tmp_path / "torch"), "https_proxy": "http://127.0.0.1:9",
           "HTTPS_PROXY": "http://127.0.0.1:9", "no_proxy": "", "NO_PROXY": ""}  # a refused connection = offline
    res = subprocess.run([*genreclf_cmd, "train_cnn", "--data=synthetic:24", "--cache_size=64", "--backbone=resnet18",
                          "--pretrained=true"], env=env, capture_output=True, text=True, timeout=120)
    assert res.returncode == 2 and "Traceback" not in res.stderr
    assert "Downloading" not in res.stdout + res.stderr  # torch.hub's line is held back when the download fails
    for part in ("resnet18-f37072fd.pth", str(tmp_path / "torch" / "hub" / "checkpoints"), "pretrained=false",
                 "weights_path="):
        assert part in res.stderr, part
    # weights_path: an ImageNet-shaped state_dict (1000-class head) loads, the head is replaced
    torch.manual_seed(0)
    imagenet = backbones.torchvision.models.resnet18()
    torch.save(imagenet.state_dict(), tmp_path / "local.pth")
    model = backbones.create_model("resnet18", 4, pretrained=True, weights_path=str(tmp_path / "local.pth"))
    assert torch.equal(model.layer4[1].conv2.weight, imagenet.layer4[1].conv2.weight) and model.fc.out_features == 4
    torch.save({"conv1.weight": torch.zeros(1)}, tmp_path / "wrong.pth")
    with pytest.raises(backbones.WeightsUnavailableError, match="wrong.pth.*does not fit resnet18"):
        backbones.create_model("resnet18", 4, weights_path=str(tmp_path / "wrong.pth"))
    with pytest.raises(backbones.UserError, match="freeze='layer9'.*layer1, layer2"):
        backbones.freeze(model, "resnet18", "layer9")
    with pytest.raises(C.ConfigError, match=r"parameter aug_scale_min=0.0: allowed range is \[0.01, 1.0\]"):
        C.build(C.CNNConfig, None, {"aug_scale_min": 0.0})
    with pytest.raises(C.ConfigError, match="parameter backbone='vgg11': choose one of efficientnet_lite0 | "):
        C.build(C.CNNConfig, None, {"backbone": "vgg11"})
