"""Serving: a real `mlflow models serve` of the registered RF champion on 127.0.0.1 (loaded without any
pickle), real covers posted as base64, bad payloads answered with 4xx + message, hostile requests
within a stated budget; and `genreclf predict` on local files.

The budget, stated and checked: a float32 4350x4350 TIFF (157 KB encoded, its decode counted at 144 MiB
against a 128 MiB budget) and a request of 50 such rows each get a 400 while the server's resident
memory grows by less than 150 MB and its CPU time by less than 3 s; errors are short, lead with the
reason, echo no payload and no stack trace; JSON that MLflow's parser chokes on (nested 1,000 deep,
invalid) is a short 400 too; the server then answers a good request.
"""
from __future__ import annotations

import base64
import io
import json
import subprocess
import urllib.error
import urllib.request

import numpy as np
import psutil
import pytest
from helpers import BIN, isolated_store, model_server, subprocess_env
from PIL import Image

from genreclf import RF_MODEL_NAME
from genreclf import config as C
from genreclf.data.images import encode
from genreclf.data.synthetic import make_cover
from genreclf.entrypoints import promote, train
from genreclf.serving.contract import MAX_ROWS
from genreclf.serving.payloads import payload

pytestmark = pytest.mark.slow
GENRES = ["HipHop", "Rock", "Pop", "Electronic"]
DATA = {"data": "synthetic:12", "cache_size": 64}
MEMORY_BOUND_MB, CPU_BOUND_S = 150, 3.0


def _post_raw(url: str, body) -> tuple[int, bytes]:
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    req = urllib.request.Request(f"{url}/invocations", data=data, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=120) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as err:
        return err.code, err.read()


def _post(url: str, body) -> tuple[int, dict]:
    status, raw = _post_raw(url, body)
    return status, json.loads(raw or b"{}")


@pytest.fixture(scope="module")
def champion_store(tmp_path_factory, session_store):
    """A store where the RF trained on tiny synthetic covers is registered and promoted to champion."""
    root = tmp_path_factory.mktemp("serve")
    with isolated_store(root, session_store / "cache") as env:
        rf = train.main(C.Resolved("train_rf", C.resolve(None, {**DATA, "n_estimators": 40}, "data", "rf")))
        decision = promote.main(C.Resolved("promote", C.resolve(
            None, {**DATA, "model_name": RF_MODEL_NAME}, "data", "promote")))
    assert decision[RF_MODEL_NAME]["decision"] == "promoted"
    return {"root": root, "env": subprocess_env(env["MLFLOW_TRACKING_URI"], session_store / "cache"),
            "version": rf["model_version"]}


@pytest.fixture(scope="module")
def served(champion_store):
    """`mlflow models serve -m models:/album-genre-rf@champion` on a free loopback port: (URL, process)."""
    with model_server(f"models:/{RF_MODEL_NAME}@champion", champion_store["env"], champion_store["root"]) as served:
        yield served


@pytest.fixture(scope="module")
def server(served) -> str:
    return served[0]


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


def _usage(proc) -> tuple[float, float]:
    """(resident MB, CPU seconds) of the server and its workers together."""
    procs = [psutil.Process(proc.pid)] + psutil.Process(proc.pid).children(recursive=True)
    rss = sum(p.memory_info().rss for p in procs) / 2**20
    cpu = sum(sum(p.cpu_times()[:2]) for p in procs)
    return rss, cpu


def _float_tiff(side: int) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.zeros((side, side), dtype=np.float32), "F").save(
        buf, "TIFF", compression="tiff_adobe_deflate", tiffinfo={278: side})
    return buf.getvalue()


def _good() -> bytes:
    return encode(make_cover("Rock", 901), "PNG")


def test_hostile_requests_get_short_400s_within_budget_and_the_server_still_serves(served):
    url, proc = served
    assert _post_raw(url, payload([_good()]))[0] == 200  # warm: the model and its imports are loaded
    bomb = _float_tiff(4350)
    rss0, cpu0 = _usage(proc)
    status, body = _post_raw(url, payload([bomb]))
    assert status == 400, body[:300]
    answer = json.loads(body)
    assert answer["message"].startswith("row 0: 4350x4350 F image needs") and "stack_trace" not in answer
    status, body = _post_raw(url, payload([bomb] * 50))
    assert status == 400 and len(body) < 1000 and "stack_trace" not in json.loads(body)
    rss1, cpu1 = _usage(proc)
    print(f"float32 4350^2 TIFF ({len(bomb)} B) + 50-row request of it: RSS {rss0:.0f} -> {rss1:.0f} MB, "
          f"CPU {cpu1 - cpu0:.2f} s")
    assert rss1 - rss0 < MEMORY_BOUND_MB and cpu1 - cpu0 < CPU_BOUND_S

    # rows per request are capped before any decode (413: refused on size, before MLflow parses the body)
    status, body = _post_raw(url, payload([encode(make_cover("Rock", 902)[:32, :32], "JPEG")] * (MAX_ROWS + 1)))
    assert status == 413 and json.loads(body)["message"].startswith(f"{MAX_ROWS + 1} rows is over the limit")

    # a bad row among large good ones: the answer is the reason only, never the payload
    big = [encode(np.random.default_rng(k).integers(0, 256, (600, 600, 3), dtype=np.uint8), "PNG") for k in range(8)]
    status, body = _post_raw(url, payload(big + [b"not an image"]))
    answer = json.loads(body)
    assert status == 400 and len(body) < 1000, len(body)
    assert answer["message"].startswith("row 8: not a decodable image") and "stack_trace" not in answer
    assert base64.b64encode(big[0]).decode()[:40] not in body.decode()

    # MLflow's own JSON parsing, before the model: deep nesting (MLflow alone: a 500) and invalid JSON (MLflow
    # alone: the body echoed) are short 400s
    status, body = _post_raw(url, b'{"inputs": ' + b"[" * 1000 + b"]" * 1000 + b"}")
    assert status == 400 and "nested too deeply" in json.loads(body)["message"]
    status, body = _post_raw(url, b'{"inputs": {"image": ["' + b"A" * 100_000 + b'"]')
    assert status == 400 and len(body) < 1000 and "valid JSON" in json.loads(body)["message"]

    status, body = _post_raw(url, payload([_good()]))
    assert status == 200 and len(json.loads(body)["predictions"]) == 1
