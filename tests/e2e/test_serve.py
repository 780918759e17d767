"""Serving: a real `mlflow models serve` of the registered RF champion on 127.0.0.1, real covers
posted as base64, bad payloads answered with 4xx + message; and `genreclf predict` on local files."""
from __future__ import annotations

import base64
import json
import os
import signal
import subprocess
import time
import urllib.error
import urllib.request

import pytest
from helpers import BIN, free_port, isolated_store, subprocess_env

from genreclf import RF_MODEL_NAME
from genreclf import config as C
from genreclf.data.images import encode
from genreclf.data.synthetic import make_cover
from genreclf.serving.payloads import payload

pytestmark = pytest.mark.slow
GENRES = ["HipHop", "Rock", "Pop", "Electronic"]
DATA = {"data": "synthetic:12", "cache_size": 64}


def _post(url: str, body) -> tuple[int, dict]:
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    req = urllib.request.Request(f"{url}/invocations", data=data, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=60) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read() or b"{}")


@pytest.fixture(scope="module")
def champion_store(tmp_path_factory, session_store):
    """A store where the RF trained on tiny synthetic covers is registered and promoted to champion."""
    from genreclf.entrypoints import promote, train_rf
    root = tmp_path_factory.mktemp("serve")
    with isolated_store(root, session_store / "cache") as env:
        rf = train_rf.main(C.Resolved("train_rf", C.resolve(None, {**DATA, "n_estimators": 40}, "data", "rf")))
        decision = promote.main(C.Resolved("promote", C.resolve(
            None, {**DATA, "model_name": RF_MODEL_NAME}, "data", "promote")))
    assert decision[RF_MODEL_NAME]["decision"] == "promoted"
    return {"root": root, "env": subprocess_env(env["MLFLOW_TRACKING_URI"], session_store / "cache"),
            "version": rf["model_version"]}


@pytest.fixture(scope="module")
def server(champion_store):
    """`mlflow models serve -m models:/album-genre-rf@champion` on a free loopback port."""
    port = free_port()
    log = open(champion_store["root"] / "serve.log", "w")
    proc = subprocess.Popen([str(BIN / "mlflow"), "models", "serve", "-m", f"models:/{RF_MODEL_NAME}@champion",
                             "--env-manager", "local", "-h", "127.0.0.1", "-p", str(port)],
                            env=champion_store["env"], cwd=champion_store["root"], stdout=log,
                            stderr=subprocess.STDOUT, start_new_session=True)  # own group: stop uvicorn too
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            assert proc.poll() is None, (champion_store["root"] / "serve.log").read_text()[-3000:]
            try:
                with urllib.request.urlopen(f"{url}/ping", timeout=2) as resp:
                    if resp.status == 200:
                        break
            except OSError:
                pass
            assert time.monotonic() < deadline, "server did not answer /ping within 120 s"
            time.sleep(0.5)
        yield url
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
        log.close()


def _covers() -> tuple[list[bytes], list[str]]:
    """One unseen cover per genre (indices far beyond the 12 per genre the model saw), JPEG and PNG."""
    covers = [encode(make_cover(g, 500 + k), "JPEG" if k % 2 else "PNG") for k, g in enumerate(GENRES)]
    return covers, GENRES


@pytest.mark.parametrize("fmt", ["dataframe_split", "inputs"])
def test_server_predicts_genres_of_posted_covers(server, fmt):
    covers, truth = _covers()
    status, body = _post(server, payload(covers, fmt))
    assert status == 200, body
    preds = body["predictions"]
    assert len(preds) == len(covers)
    for p in preds:
        probs = {k[2:]: v for k, v in p.items() if k.startswith("p_")}
        assert set(probs) == set(GENRES)
        assert abs(sum(probs.values()) - 1) < 1e-6 and all(0 <= v <= 1 for v in probs.values())
        assert p["genre"] == max(probs, key=probs.get)
    correct = sum(p["genre"] == t for p, t in zip(preds, truth))
    assert correct >= 2, f"{correct}/4 unseen synthetic covers right (chance is 1/4): {preds}"


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


BAD = {
    "not base64": {"dataframe_split": {"columns": ["image"], "data": [["%%% not base64 %%%"]]}},
    "not base64 (inputs)": {"inputs": {"image": ["%%% not base64 %%%"]}},
    "base64 of text": {"dataframe_split": {"columns": ["image"], "data": [[_b64(b"hello, I am not an image")]]}},
    "base64 of text (inputs)": {"inputs": {"image": [_b64(b"hello, I am not an image")]}},
    "truncated jpeg": {"inputs": {"image": [_b64(encode(make_cover("Rock", 1), "JPEG")[:300])]}},
    "empty list": {"dataframe_split": {"columns": ["image"], "data": []}},
    "empty list (inputs)": {"inputs": {"image": []}},
    "wrong column": {"dataframe_split": {"columns": ["img"], "data": [[_b64(b"x")]]}},
    "wrong column (inputs)": {"inputs": {"img": [_b64(b"x")]}},
    "null": {"dataframe_split": {"columns": ["image"], "data": [[None]]}},
    "no format key": {"image": ["abc"]},
    "not json": b"{not json",
}


def test_server_answers_bad_payloads_with_4xx_and_a_message(server, tmp_path):
    # a path to a real cover: a server that opened client paths would answer 200 here
    cover = tmp_path / "cover.png"
    cover.write_bytes(encode(make_cover("Rock", 3)))
    cases = {**BAD, "file path": {"dataframe_split": {"columns": ["image"], "data": [[str(cover)]]}},
             "file path (inputs)": {"inputs": {"image": [str(cover)]}}}
    for name, body in cases.items():
        status, answer = _post(server, body)
        assert 400 <= status < 500, (name, status, answer)
        assert answer.get("message"), (name, answer)
    # the specific messages say what is wrong and where
    assert "row 0" in _post(server, BAD["base64 of text (inputs)"])[1]["message"]
    assert "empty input" in _post(server, BAD["empty list"])[1]["message"]
    assert "image" in _post(server, BAD["wrong column"])[1]["message"]
    # ...and the worker is alive and well afterwards
    with urllib.request.urlopen(f"{server}/ping", timeout=5) as resp:
        assert resp.status == 200
    covers, _ = _covers()
    assert _post(server, payload(covers[:1]))[0] == 200


def test_predict_cli_prints_genres_and_names_bad_files(champion_store, tmp_path):
    good = tmp_path / "cover1.jpg"
    good.write_bytes(encode(make_cover("Pop", 700), "JPEG"))
    good2 = tmp_path / "cover2.png"
    good2.write_bytes(encode(make_cover("Rock", 701), "PNG"))
    bad = tmp_path / "bad.txt"
    bad.write_text("not a cover")
    cmd = [str(BIN / "genreclf"), "predict", "--model", f"models:/{RF_MODEL_NAME}@champion", "--top", "2",
           str(good), str(bad), str(good2), str(tmp_path / "missing.jpg")]
    out = subprocess.run(cmd, env=champion_store["env"], capture_output=True, text=True, timeout=180)
    assert out.returncode == 1, out.stderr[-2000:]
    lines = {ln.split()[0]: ln for ln in out.stdout.splitlines() if ln.strip()}
    assert set(lines) == {str(good), str(good2)}, out.stdout
    for ln in lines.values():
        assert ln.split()[1] in GENRES and ln.count("%") == 2  # genre + the top-2 probabilities
    assert "bad.txt" in out.stderr and "not a decodable image" in out.stderr
    assert "missing.jpg" in out.stderr and "2 of 4 file(s)" in out.stderr

    out = subprocess.run([str(BIN / "genreclf"), "predict", "--model", "models:/no-such-model@champion", str(good)],
                         env=champion_store["env"], capture_output=True, text=True, timeout=180)
    assert out.returncode == 2 and "cannot load model 'models:/no-such-model@champion'" in out.stderr, out.stderr
    assert "Traceback" not in out.stderr
