"""``python -m tfvae.serve`` in a subprocess, exercised with real TF Serving clients.

gRPC through ``tensorflow_serving.apis`` stubs, REST through ``http.client``; every answer is
compared with calling the same SavedModel in this process.
"""

import http.client
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import grpc
import numpy as np
import pytest
import tensorflow as tf
from tensorflow_serving.apis import (get_model_metadata_pb2, get_model_status_pb2, model_service_pb2_grpc,
                                     predict_pb2, prediction_service_pb2_grpc)

from tfvae.export import export_encoder, export_protected, write_models_config
from tfvae.masking import keep_mask
from tfvae.model import LRVAE

N = 32
MAX_BATCH = 64
MAX_BYTES = 4 << 20
REPO = Path(__file__).resolve().parents[1]


def _model(c, seed):
    m = LRVAE(c.dim, len(c.emotion_names), len(c.speaker_index()), latent_dim=N, encoder_units=(48,),
              decoder_units=(32,), head_units=(16,), seed=seed)
    m.build()
    m.adapt_normalizer(c.splits["train"].features)
    return m


@pytest.fixture(scope="module")
def models(small_corpus, tmp_path_factory):
    c = small_corpus
    root = tmp_path_factory.mktemp("saved_models")
    staging = tmp_path_factory.mktemp("staging")
    masks = {"identity_free": keep_mask(N, "identity_free", 12), "emotion_free": keep_mask(N, "emotion_free", 20)}
    meta = {"emotion_names": c.emotion_names}
    a, b = _model(c, 0), _model(c, 1)
    export_encoder(a, root, "demo", masks, meta)
    export_encoder(a, root, "hot", masks, meta)
    export_protected(a, root, "demo-identity-free", "identity", masks["identity_free"], meta)
    hot2 = export_encoder(b, staging, "hot", masks, meta)  # dropped into the tree by the reload test
    return {"root": root, "config": root / "models.config", "masks": masks, "hot2": hot2,
            "x": c.splits["test"].features.astype(np.float32), "emotion_names": c.emotion_names}


def _start(args, tmp_path, timeout=180):
    ready = tmp_path / "ready.json"
    log = open(tmp_path / "serve.log", "w")
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    proc = subprocess.Popen([sys.executable, "-m", "tfvae.serve", "--host", "127.0.0.1", "--port", "0",
                             "--rest_api_port", "0", "--ready_file", str(ready), *args],
                            stdout=log, stderr=subprocess.STDOUT, cwd=REPO, env=env)
    t0 = time.monotonic()
    while not ready.exists():
        if proc.poll() is not None or time.monotonic() - t0 > timeout:
            proc.kill()
            raise RuntimeError(f"server did not start:\n{(tmp_path / 'serve.log').read_text()[-4000:]}")
        time.sleep(0.1)
    info = json.loads(ready.read_text())
    info.update(proc=proc, log=tmp_path / "serve.log")
    return info


def _stop(info) -> int:
    info["proc"].send_signal(signal.SIGTERM)
    try:
        return info["proc"].wait(timeout=60)
    except subprocess.TimeoutExpired:
        info["proc"].kill()
        raise


@pytest.fixture(scope="module")
def server(models, tmp_path_factory):
    # --expose_unmasked: these tests call serving_default, mask and the heads (hidden by default: test_serve_policy.py)
    info = _start(["--model_config_file", str(models["config"]), "--expose_unmasked", "--max_batch_size",
                   str(MAX_BATCH), "--max_request_bytes", str(MAX_BYTES), "--file_system_poll_wait_seconds", "0.2",
                   "--model_config_file_poll_wait_seconds", "0.2"], tmp_path_factory.mktemp("server"))
    info["channel"] = grpc.insecure_channel(f"127.0.0.1:{info['port']}")
    yield info
    info["channel"].close()
    assert _stop(info) == 0, info["log"].read_text()[-3000:]
    assert "stopped" in info["log"].read_text()


@pytest.fixture(scope="module")
def stub(server):
    return prediction_service_pb2_grpc.PredictionServiceStub(server["channel"])


@pytest.fixture(scope="module")
def local(models):
    """The SavedModels called in this process: the reference for every answer."""
    root = models["root"]
    return {"demo": tf.saved_model.load(str(root / "demo" / "1")).signatures,
            "private": tf.saved_model.load(str(root / "demo-identity-free" / "1")).signatures,
            "hot2": tf.saved_model.load(str(models["hot2"])).signatures}


def rest(server, method, path, body=None, raw: bytes | None = None, conn=None):
    own = conn is None
    conn = conn or http.client.HTTPConnection("127.0.0.1", server["rest_api_port"], timeout=60)
    data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
    conn.request(method, path, body=data, headers={"Content-Type": "application/json"} if data else {})
    resp = conn.getresponse()
    status, payload = resp.status, resp.read()
    if own:
        conn.close()
    assert resp.getheader("Content-Type") == "application/json"
    return status, json.loads(payload)


def _call(local_sigs, sig, **inputs):
    return {k: v.numpy() for k, v in local_sigs[sig](**{k: tf.constant(v) for k, v in inputs.items()}).items()}


def _predict_request(name, sig="", version=None, **inputs):
    req = predict_pb2.PredictRequest()
    req.model_spec.name = name
    if sig:
        req.model_spec.signature_name = sig
    if version is not None:
        req.model_spec.version.value = version
    for k, v in inputs.items():
        req.inputs[k].CopyFrom(tf.make_tensor_proto(v))
    return req


# ---------------------------------------------------------------------- REST
def test_rest_model_status_and_metadata(server):
    status, body = rest(server, "GET", "/v1/models/demo")
    assert status == 200
    assert body == {"model_version_status": [{"version": "1", "state": "AVAILABLE",
                                              "status": {"error_code": "OK", "error_message": ""}}]}
    assert rest(server, "GET", "/v1/models/demo/versions/1")[1] == body
    status, meta = rest(server, "GET", "/v1/models/demo/metadata")
    assert status == 200 and meta["model_spec"]["name"] == "demo" and meta["model_spec"]["version"] == "1"
    sigs = meta["metadata"]["signature_def"]["signature_def"]
    assert {"serving_default", "identity_free", "emotion_free", "mask", "emotion", "speaker_embedding"} <= set(sigs)
    feat = sigs["mask"]["inputs"]["features"]
    assert feat["dtype"] == "DT_FLOAT" and [d["size"] for d in feat["tensor_shape"]["dim"]] == ["-1", "1582"]
    assert [d["size"] for d in sigs["mask"]["inputs"]["keep"]["tensor_shape"]["dim"]] == ["-1", str(N)]
    assert sigs["emotion"]["outputs"]["class_name"]["dtype"] == "DT_STRING"
    assert sigs["serving_default"]["method_name"] == "tensorflow/serving/predict"
    assert rest(server, "GET", "/v1/models/demo/versions/1/metadata")[1] == meta


@pytest.mark.parametrize("sig", ["", "serving_default", "identity_free", "emotion_free", "speaker_embedding"])
def test_rest_predict_row_and_columnar_match_in_process(server, models, local, sig):
    x = models["x"][:5]
    ref = _call(local["demo"], sig or "serving_default", features=x)
    (key, want), = ref.items()
    body = {"instances": x.tolist(), **({"signature_name": sig} if sig else {})}
    status, out = rest(server, "POST", "/v1/models/demo:predict", body)
    assert status == 200, out
    np.testing.assert_allclose(np.asarray(out["predictions"], np.float32), want, rtol=1e-6, atol=1e-6)
    body = {"inputs": {"features": x.tolist()}, **({"signature_name": sig} if sig else {})}
    status, out = rest(server, "POST", "/v1/models/demo/versions/1:predict", body)
    assert status == 200, out
    np.testing.assert_allclose(np.asarray(out["outputs"], np.float32), want, rtol=1e-6, atol=1e-6)
    # the named-object row form and the bare columnar value give the same answer
    status, out = rest(server, "POST", "/v1/models/demo:predict",
                       {"instances": [{"features": r} for r in x.tolist()], "signature_name": sig or "serving_default"})
    assert status == 200 and np.allclose(out["predictions"], want, rtol=1e-6, atol=1e-6)
    status, out = rest(server, "POST", "/v1/models/demo:predict", {"inputs": x.tolist(), "signature_name": sig})
    assert status == 200 and np.allclose(out["outputs"], want, rtol=1e-6, atol=1e-6)


def test_rest_masked_views_zero_the_masked_nodes(server, models):
    x = models["x"][:3].tolist()
    full = np.asarray(rest(server, "POST", "/v1/models/demo:predict", {"instances": x})[1]["predictions"])
    ident = np.asarray(rest(server, "POST", "/v1/models/demo:predict",
                            {"instances": x, "signature_name": "identity_free"})[1]["predictions"])
    keep = models["masks"]["identity_free"] > 0
    assert np.all(ident[:, ~keep] == 0.0) and np.array_equal(ident[:, keep], full[:, keep])


def test_rest_mask_signature_row_and_columnar(server, models, local):
    x = models["x"][:4]
    keep = np.zeros((1, N), np.float32)
    keep[0, 3:9] = 1
    want = _call(local["demo"], "mask", features=x, keep=keep)["latent"]
    status, out = rest(server, "POST", "/v1/models/demo:predict",
                       {"signature_name": "mask", "inputs": {"features": x.tolist(), "keep": keep.tolist()}})
    assert status == 200, out
    np.testing.assert_allclose(out["outputs"], want, rtol=1e-6, atol=1e-6)
    assert np.all(np.asarray(out["outputs"])[:, keep[0] == 0] == 0.0)
    rows = [{"features": r, "keep": keep[0].tolist()} for r in x.tolist()]
    status, out = rest(server, "POST", "/v1/models/demo:predict", {"signature_name": "mask", "instances": rows})
    assert status == 200, out
    np.testing.assert_allclose(out["predictions"], want, rtol=1e-6, atol=1e-6)


def test_rest_emotion_rows_are_objects(server, models, local):
    x = models["x"][:3]
    ref = _call(local["demo"], "emotion", features=x)
    status, out = rest(server, "POST", "/v1/models/demo:predict", {"signature_name": "emotion", "instances": x.tolist()})
    assert status == 200, out
    assert [sorted(p) for p in out["predictions"]] == [["class_index", "class_name", "probabilities"]] * 3
    np.testing.assert_allclose([p["probabilities"] for p in out["predictions"]], ref["probabilities"],
                               rtol=1e-6, atol=1e-6)
    assert [p["class_index"] for p in out["predictions"]] == ref["class_index"].tolist()
    assert [p["class_name"] for p in out["predictions"]] == [s.decode() for s in ref["class_name"]]
    assert all(p["class_name"] in models["emotion_names"] for p in out["predictions"])
    status, out = rest(server, "POST", "/v1/models/demo:predict", {"signature_name": "emotion", "inputs": x.tolist()})
    assert status == 200 and out["outputs"]["class_index"] == ref["class_index"].tolist()


def test_rest_privacy_safe_model(server, models, local):
    x = models["x"][:2]
    status, out = rest(server, "POST", "/v1/models/demo-identity-free:predict", {"instances": x.tolist()})
    assert status == 200
    want = _call(local["private"], "identity_free", features=x)["latent"]
    assert want.shape == (2, 12)
    np.testing.assert_allclose(out["predictions"], want, rtol=1e-6, atol=1e-6)
    status, meta = rest(server, "GET", "/v1/models/demo-identity-free/metadata")
    sigs = meta["metadata"]["signature_def"]["signature_def"]
    assert {k for k in sigs if not k.startswith("__")} == {"serving_default", "identity_free"}


X1 = [0.5] * 1582


@pytest.mark.parametrize("method,path,body,status,message", [
    ("POST", "/v1/models/demo:predict", {"instances": [[0.0] * 10]}, 400,
     "input 'features' has shape [1,10] but the signature expects [-1,1582]"),
    ("POST", "/v1/models/demo:predict", {"inputs": {"features": [X1[:-1] + ["x"]]}}, 400,
     'JSON Value: "x" Type: String is not of expected type: float32'),
    ("POST", "/v1/models/demo:predict", {"instances": [X1[:-1] + [True]]}, 400, "is not of expected type"),
    ("POST", "/v1/models/demo:predict", {"instances": [X1[:-1] + [float("nan")]]}, 400,
     "input 'features' holds NaN or infinite values (first at index [0, 1581])"),
    ("POST", "/v1/models/demo:predict", {"instances": [X1, X1[:5] + [float("-inf")] + X1[6:]]}, 400,
     "holds NaN or infinite values (first at index [1, 5])"),
    ("POST", "/v1/models/nope:predict", {"instances": [X1]}, 404, "Servable not found for request: Latest(nope)"),
    ("POST", "/v1/models/demo/versions/9:predict", {"instances": [X1]}, 404,
     "Servable not found for request: Specific(demo, 9)"),
    ("POST", "/v1/models/demo:predict", {"signature_name": "nope", "instances": [X1]}, 400,
     'Serving signature name: "nope" not found in signature def'),
    ("POST", "/v1/models/demo:predict", b'{"instances": [[1.0, 2.0]', 400, "JSON Parse error"),
    ("POST", "/v1/models/demo:predict", b"[1, 2]", 400, "must be a JSON object"),
    ("POST", "/v1/models/demo:predict", {"instances": [X1] * (MAX_BATCH + 1)}, 400,
     f"batch size {MAX_BATCH + 1} of input 'features' is larger than the maximum batch size {MAX_BATCH}"),
    ("POST", "/v1/models/demo:predict", {"instances": [X1], "inputs": [X1]}, 400,
     "expecting only one of 'inputs' or 'instances'"),
    ("POST", "/v1/models/demo:predict", {"signature_name": "identity_free"}, 400, "Missing 'inputs' or 'instances' key"),
    ("POST", "/v1/models/demo:predict", {"instances": [X1, X1[:3]]}, 400, "ragged"),
    ("POST", "/v1/models/demo:predict", {"instances": []}, 400, "'instances' is an empty list"),
    ("POST", "/v1/models/demo:predict", {"signature_name": 3, "instances": [X1]}, 400, "must be a string value"),
    ("POST", "/v1/models/demo:predict", {"signature_name": "mask", "inputs": {"features": [X1]}}, 400,
     "input size does not match signature: 1!=2"),
    ("POST", "/v1/models/demo:predict", {"signature_name": "mask", "inputs": {"features": [X1], "keep": [[0.5] * N]}},
     400, "keep must hold only 0 and 1"),
    ("POST", "/v1/models/demo:predict",
     {"signature_name": "mask", "inputs": {"features": [X1] * 3, "keep": [[1.0] * N] * 2}}, 400,
     "keep must have 1 row or one row per example"),
    ("POST", "/v1/models/demo:predict", {"inputs": {"feature": [X1]}}, 400, "does not have named input: feature"),
    ("POST", "/v1/models/demo:classify", {"examples": []}, 501, "not implemented"),
    ("GET", "/v1/models/nope", None, 404, "Could not find any versions of model nope"),
    ("GET", "/v1/models/demo/versions/5", None, 404, "Could not find version 5 of model demo"),
    ("GET", "/v1/models/nope/metadata", None, 404, "Servable not found for request: Latest(nope)"),
    ("GET", "/v1/models/demo/labels/stable", None, 404, "Label(demo, stable)"),
    ("GET", "/v1/models", None, 400, "Missing model name in request."),
    ("GET", "/v1/models/demo/bogus", None, 400, "Malformed request: GET /v1/models/demo/bogus"),
    ("GET", "/metrics", None, 404, "Not found"),
])
def test_rest_bad_requests(server, method, path, body, status, message):
    raw = body if isinstance(body, bytes) else None
    got, out = rest(server, method, path, None if raw else body, raw=raw)
    assert (got, set(out)) == (status, {"error"}), out
    assert message in out["error"]
    # the server keeps serving
    got, out = rest(server, "POST", "/v1/models/demo:predict", {"instances": [X1]})
    assert got == 200 and np.shape(out["predictions"]) == (1, N)


def test_rest_body_over_the_limit(server):
    conn = http.client.HTTPConnection("127.0.0.1", server["rest_api_port"], timeout=60)
    raw = b'{"instances": [' + b"1.0," * (MAX_BYTES // 4) + b"1.0]}"
    got, out = rest(server, "POST", "/v1/models/demo:predict", raw=raw, conn=conn)
    assert got == 413 and f"larger than the limit of {MAX_BYTES} bytes" in out["error"]
    got, out = rest(server, "POST", "/v1/models/demo:predict", {"instances": [X1]}, conn=conn)  # same connection
    assert got == 200
    conn.close()


# ---------------------------------------------------------------------- gRPC
@pytest.mark.parametrize("sig", ["", "identity_free", "emotion_free", "speaker_embedding", "emotion"])
def test_grpc_predict_matches_in_process(stub, models, local, sig):
    x = models["x"][:6]
    resp = stub.Predict(_predict_request("demo", sig, features=x), timeout=30)
    ref = _call(local["demo"], sig or "serving_default", features=x)
    assert resp.model_spec.name == "demo" and resp.model_spec.version.value == 1
    assert resp.model_spec.signature_name == (sig or "serving_default")
    assert set(resp.outputs) == set(ref)
    for k, want in ref.items():
        got = tf.make_ndarray(resp.outputs[k])
        assert got.shape == want.shape and got.dtype == want.dtype
        if want.dtype.kind == "f":
            np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6)
        else:
            np.testing.assert_array_equal(got, want)


def test_grpc_mask_and_output_filter(stub, models, local):
    x = models["x"][:3]
    keep = np.stack([models["masks"]["identity_free"], models["masks"]["emotion_free"], np.ones(N, np.float32)])
    resp = stub.Predict(_predict_request("demo", "mask", version=1, features=x, keep=keep), timeout=30)
    np.testing.assert_allclose(tf.make_ndarray(resp.outputs["latent"]),
                               _call(local["demo"], "mask", features=x, keep=keep)["latent"], rtol=1e-6, atol=1e-6)
    req = _predict_request("demo", "emotion", features=x)
    req.output_filter.append("class_name")
    resp = stub.Predict(req, timeout=30)
    assert list(resp.outputs) == ["class_name"]
    assert [s.decode() for s in tf.make_ndarray(resp.outputs["class_name"])] == \
        [s.decode() for s in _call(local["demo"], "emotion", features=x)["class_name"]]


def test_grpc_metadata_and_status(server, stub):
    req = get_model_metadata_pb2.GetModelMetadataRequest()
    req.model_spec.name = "demo"
    req.metadata_field.append("signature_def")
    resp = stub.GetModelMetadata(req, timeout=30)
    assert resp.model_spec.name == "demo" and resp.model_spec.version.value == 1
    sdm = get_model_metadata_pb2.SignatureDefMap()
    assert resp.metadata["signature_def"].Unpack(sdm)
    sd = sdm.signature_def["identity_free"]
    assert sd.method_name == "tensorflow/serving/predict" and sd.inputs["features"].dtype == tf.float32.as_datatype_enum
    assert [d.size for d in sd.outputs["latent"].tensor_shape.dim] == [-1, N]
    sreq = get_model_status_pb2.GetModelStatusRequest()
    sreq.model_spec.name = "demo"
    sresp = model_service_pb2_grpc.ModelServiceStub(server["channel"]).GetModelStatus(sreq, timeout=30)
    assert [(s.version, s.state) for s in sresp.model_version_status] == \
        [(1, get_model_status_pb2.ModelVersionStatus.AVAILABLE)]


def _grpc_error(fn, *args):
    with pytest.raises(grpc.RpcError) as e:
        fn(*args, timeout=30)
    return e.value.code(), e.value.details()


@pytest.mark.parametrize("make,code,message", [
    (lambda x: _predict_request("demo", features=x[:, :100]), grpc.StatusCode.INVALID_ARGUMENT,
     "input 'features' has shape [2,100] but the signature expects [-1,1582]"),
    (lambda x: _predict_request("demo", features=x.astype(np.float64)), grpc.StatusCode.INVALID_ARGUMENT,
     "input 'features' has dtype float64 but the signature expects float32"),
    (lambda x: _predict_request("demo", features=np.where(np.arange(x.shape[1]) == 4, np.nan, x).astype(np.float32)),
     grpc.StatusCode.INVALID_ARGUMENT, "holds NaN or infinite values (first at index [0, 4])"),
    (lambda x: _predict_request("demo", features=np.full_like(x, np.inf)), grpc.StatusCode.INVALID_ARGUMENT,
     "NaN or infinite"),
    (lambda x: _predict_request("nope", features=x), grpc.StatusCode.NOT_FOUND,
     "Servable not found for request: Latest(nope)"),
    (lambda x: _predict_request("demo", version=4, features=x), grpc.StatusCode.NOT_FOUND,
     "Servable not found for request: Specific(demo, 4)"),
    (lambda x: _predict_request("demo", "nope", features=x), grpc.StatusCode.FAILED_PRECONDITION,
     'Serving signature key "nope" not found.'),
    (lambda x: _predict_request("demo", features=np.repeat(x, 33, axis=0)), grpc.StatusCode.INVALID_ARGUMENT,
     f"batch size 66 of input 'features' is larger than the maximum batch size {MAX_BATCH}"),
    (lambda x: _predict_request("demo", features=x, extra=x), grpc.StatusCode.INVALID_ARGUMENT,
     "input size does not match signature: 2!=1"),
    (lambda x: _predict_request("demo", "mask", features=x, keep=np.full((1, N), 2, np.float32)),
     grpc.StatusCode.INVALID_ARGUMENT, "keep must hold only 0 and 1"),
    (lambda x: _predict_request("", features=x), grpc.StatusCode.INVALID_ARGUMENT, "Missing ModelSpec name"),
    (lambda x: _predict_request("demo", features=np.zeros((700, x.shape[1]), np.float32)),
     grpc.StatusCode.RESOURCE_EXHAUSTED, ""),  # over --max_request_bytes: refused by gRPC itself
])
def test_grpc_bad_requests(stub, models, make, code, message):
    got, details = _grpc_error(stub.Predict, make(models["x"][:2]))
    assert got == code and message in details, details
    ok = stub.Predict(_predict_request("demo", features=models["x"][:1]), timeout=30)
    assert tf.make_ndarray(ok.outputs["latent"]).shape == (1, N)


def test_grpc_bad_metadata_and_status_requests(server, stub):
    req = get_model_metadata_pb2.GetModelMetadataRequest()
    req.model_spec.name = "demo"
    assert _grpc_error(stub.GetModelMetadata, req) == (
        grpc.StatusCode.INVALID_ARGUMENT, "GetModelMetadataRequest must specify at least one metadata_field")
    req.metadata_field.append("signature_def")
    req.model_spec.name = "nope"
    assert _grpc_error(stub.GetModelMetadata, req)[0] == grpc.StatusCode.NOT_FOUND
    sreq = get_model_status_pb2.GetModelStatusRequest()
    sreq.model_spec.name = "demo"
    sreq.model_spec.version.value = 3
    models = model_service_pb2_grpc.ModelServiceStub(server["channel"])
    assert _grpc_error(models.GetModelStatus, sreq) == (grpc.StatusCode.NOT_FOUND, "Could not find version 3 of model demo")


# ---------------------------------------------------------------------- hot reload
def _wait(cond, what, timeout=60):
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        got = cond()
        if got:
            return got
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def _versions(server, name):
    status, body = rest(server, "GET", f"/v1/models/{name}")
    return {int(s["version"]): s["state"] for s in body.get("model_version_status", [])} if status == 200 else {}


def test_hot_reload_of_new_broken_and_removed_versions(server, models, local, stub):
    root, x = models["root"], models["x"][:3]
    v1 = np.asarray(rest(server, "POST", "/v1/models/hot:predict", {"instances": x.tolist()})[1]["predictions"])
    # a new version dropped into the tree (copied file by file) is served without a restart, as the default
    shutil.copytree(models["hot2"], root / "hot" / "2")
    _wait(lambda: _versions(server, "hot").get(2) == "AVAILABLE", "version 2")
    want = _call(local["hot2"], "serving_default", features=x)["latent"]
    status, out = rest(server, "POST", "/v1/models/hot:predict", {"instances": x.tolist()})
    np.testing.assert_allclose(out["predictions"], want, rtol=1e-6, atol=1e-6)
    assert not np.allclose(want, v1)  # another model: the answer really changed
    got = stub.Predict(_predict_request("hot", features=x), timeout=30)
    assert got.model_spec.version.value == 2
    np.testing.assert_allclose(tf.make_ndarray(got.outputs["latent"]), want, rtol=1e-6, atol=1e-6)
    out = rest(server, "POST", "/v1/models/hot/versions/1:predict", {"instances": x.tolist()})[1]
    np.testing.assert_allclose(out["predictions"], v1, rtol=1e-6, atol=1e-6)  # policy all: v1 stays
    # a broken version is reported and skipped; the newest good version stays the default
    (root / "hot" / "3" / "variables").mkdir(parents=True)
    (root / "hot" / "3" / "saved_model.pb").write_bytes(b"not a SavedModel")
    _wait(lambda: _versions(server, "hot").get(3) == "END", "version 3 to fail")
    status, body = rest(server, "GET", "/v1/models/hot/versions/3")
    assert body["model_version_status"][0]["status"]["error_code"] == "UNKNOWN"
    assert body["model_version_status"][0]["status"]["error_message"]
    assert rest(server, "POST", "/v1/models/hot:predict", {"instances": x.tolist()})[0] == 200
    assert stub.Predict(_predict_request("hot", features=x), timeout=30).model_spec.version.value == 2
    assert "version 3" in server["log"].read_text() and "failed to load" in server["log"].read_text()
    # removed versions are unloaded
    shutil.rmtree(root / "hot" / "3")
    shutil.rmtree(root / "hot" / "1")
    _wait(lambda: _versions(server, "hot") == {2: "AVAILABLE"}, "versions 1 and 3 to go")
    assert rest(server, "POST", "/v1/models/hot/versions/1:predict", {"instances": x.tolist()})[0] == 404
    # a model added to models.config (as python -m tfvae.export does) is picked up
    shutil.copytree(root / "demo" / "1", root / "late" / "7")
    write_models_config(root)
    _wait(lambda: _versions(server, "late").get(7) == "AVAILABLE", "model late")
    assert rest(server, "POST", "/v1/models/late:predict", {"instances": x.tolist()})[0] == 200


# ---------------------------------------------------------------------- load
def _rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


def test_concurrent_clients_no_errors_bounded_memory(server, models, local):
    x = models["x"]
    want = _call(local["demo"], "identity_free", features=x[:8])["latent"]
    errors, lock = [], threading.Lock()

    def rest_client(n, seed):
        conn = http.client.HTTPConnection("127.0.0.1", server["rest_api_port"], timeout=60)
        for i in range(n):
            j = (seed + i) % 8
            try:
                status, out = rest(server, "POST", "/v1/models/demo:predict",
                                   {"signature_name": "identity_free", "instances": x[j:j + 1].tolist()}, conn=conn)
                # batch 1 against batch 8: matmul kernels may round differently
                assert status == 200 and np.allclose(out["predictions"], want[j:j + 1], rtol=1e-4, atol=1e-5)
            except Exception as e:  # noqa: BLE001
                with lock:
                    errors.append(repr(e))
        conn.close()

    def grpc_client(n, seed):
        stub = prediction_service_pb2_grpc.PredictionServiceStub(server["channel"])
        req = _predict_request("demo", "identity_free", features=x[:8])
        for _ in range(n):
            try:
                out = tf.make_ndarray(stub.Predict(req, timeout=30).outputs["latent"])
                assert np.allclose(out, want, rtol=1e-6, atol=1e-6)
            except Exception as e:  # noqa: BLE001
                with lock:
                    errors.append(repr(e))

    def run(n):
        threads = [threading.Thread(target=f, args=(n, s)) for s, f in enumerate([rest_client, rest_client,
                                                                                  grpc_client, grpc_client])]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=600)
        assert not any(t.is_alive() for t in threads)

    pid = server["pid"]
    run(100)  # warm-up: thread pools, allocator arenas
    before = _rss_kib(pid)
    run(500)  # 4 clients x 500 requests
    after = _rss_kib(pid)
    assert errors == []
    assert after - before < 64 * 1024, f"server RSS grew by {(after - before) / 1024:.1f} MiB"


# ---------------------------------------------------------------------- one model, CLI errors, shutdown
def test_single_model_mode_and_clean_shutdown(models, tmp_path):
    info = _start(["--model_name", "solo", "--model_base_path", str(models["root"] / "demo-identity-free"),
                   "--rest_api_port", "-1"], tmp_path)
    try:
        channel = grpc.insecure_channel(f"127.0.0.1:{info['port']}")
        out = prediction_service_pb2_grpc.PredictionServiceStub(channel).Predict(
            _predict_request("solo", features=models["x"][:2]), timeout=30)
        assert tf.make_ndarray(out.outputs["latent"]).shape == (2, 12)
        channel.close()
        assert info["rest_api_port"] == -1
    finally:
        code = _stop(info)
    assert code == 0 and "stopped" in info["log"].read_text()


def test_cli_rejects_a_missing_config(tmp_path):
    out = subprocess.run([sys.executable, "-m", "tfvae.serve", "--model_config_file", str(tmp_path / "none.config")],
                         capture_output=True, text=True, timeout=120, cwd=REPO)
    assert out.returncode == 2 and "tfvae.serve: error:" in out.stderr
