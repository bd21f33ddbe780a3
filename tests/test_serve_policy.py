"""The signature allowlist of ``tfvae.serve`` (:mod:`tfvae.serving.policy`) over REST and gRPC.

Tiny exports: ``full`` (every signature: full latent, the privacy views with LEACE variants, mask,
heads) and ``safe`` (a privacy-safe export: ``serving_default`` = ``identity_free``). The CLI's
default policy is checked on a ``python -m tfvae.serve`` subprocess; explicit rules (flag and
file) on in-process servers. A signature that is not allowed must be answered byte for byte as one
that does not exist (apart from its name), and metadata must list only the allowed ones.
"""

import http.client
import json
import threading
import types

import grpc
import numpy as np
import pytest
import tensorflow as tf
from tensorflow_serving.apis import get_model_metadata_pb2, predict_pb2, prediction_service_pb2_grpc

from tfvae import serve
from tfvae.erasure import LinearEraser
from tfvae.export import METADATA_FILE, export_encoder, export_protected
from tfvae.masking import keep_mask
from tfvae.serving.app import ServingApp
from tfvae.serving.manager import ModelManager
from tfvae.serving.policy import METADATA_FILE as POLICY_METADATA_FILE
from tfvae.serving.policy import SignaturePolicy, is_privacy_view, privacy_safe_view

DIM, N = 16, 8
X = np.linspace(-1, 1, 3 * DIM, dtype=np.float32).reshape(3, DIM)
VIEWS = {"identity_free", "keep_emotion", "identity_free_leace", "keep_emotion_leace", "emotion_free", "keep_identity"}
UNMASKED = {"serving_default", "mask", "emotion", "speaker_embedding"}
GONE = "no_such_signature"


@pytest.fixture(scope="module")
def models(tmp_path_factory, tiny_lrvae):
    root = tmp_path_factory.mktemp("policy_models")
    m = tiny_lrvae(DIM, N)
    masks = {"identity_free": keep_mask(N, "identity_free", 4), "emotion_free": keep_mask(N, "emotion_free", 4)}
    eraser = LinearEraser(mean=np.zeros(N), projection=np.eye(N)[:1].T @ np.eye(N)[:1])
    full = export_encoder(m, root, "full", masks, {"emotion_names": ["a", "b", "c"]},
                          erasers={"identity_free_leace": eraser})
    safe = export_protected(m, root, "safe", "identity", masks["identity_free"], {"emotion_names": ["a", "b", "c"]})
    sigs = tf.saved_model.load(str(full)).signatures
    assert set(sigs) == VIEWS | UNMASKED  # what the export has: the test's premise
    return {"root": root, "config": root / "models.config", "full": sigs,
            "safe": tf.saved_model.load(str(safe)).signatures}


@pytest.fixture(scope="module")
def default_server(models, tmp_path_factory):
    """``python -m tfvae.serve`` with no policy flag."""
    from test_serve import _start, _stop

    info = _start(["--model_config_file", str(models["config"])], tmp_path_factory.mktemp("policy_server"))
    info["channel"] = grpc.insecure_channel(f"127.0.0.1:{info['port']}")
    yield info
    info["channel"].close()
    assert _stop(info) == 0


def _in_process(models, policy):
    manager = ModelManager(models["config"], poll_seconds=0, config_poll_seconds=0)
    return ServingApp(manager, "127.0.0.1", 0, 0, policy=policy).start()


def _rest(port, method, path, body=None):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        conn.request(method, path, body=None if body is None else json.dumps(body))
        resp = conn.getresponse()
        return resp.status, resp.getheader("Content-Type"), resp.read()
    finally:
        conn.close()


def _predict(port, model, sig=None):
    return _rest(port, "POST", f"/v1/models/{model}:predict",
                 {"instances": X.tolist(), **({"signature_name": sig} if sig is not None else {})})


def _grpc(channel, model, sig=""):
    req = predict_pb2.PredictRequest()
    req.model_spec.name, req.model_spec.signature_name = model, sig
    req.inputs["features"].CopyFrom(tf.make_tensor_proto(X))
    try:
        resp = prediction_service_pb2_grpc.PredictionServiceStub(channel).Predict(req, timeout=30)
    except grpc.RpcError as e:
        return e.code(), e.details()
    return grpc.StatusCode.OK, resp


def _rest_metadata(port, model):
    status, _, body = _rest(port, "GET", f"/v1/models/{model}/metadata")
    assert status == 200, body
    return set(json.loads(body)["metadata"]["signature_def"]["signature_def"])


def _grpc_metadata(channel, model):
    req = get_model_metadata_pb2.GetModelMetadataRequest()
    req.model_spec.name = model
    req.metadata_field.append("signature_def")
    resp = prediction_service_pb2_grpc.PredictionServiceStub(channel).GetModelMetadata(req, timeout=30)
    sdm = get_model_metadata_pb2.SignatureDefMap()
    assert resp.metadata["signature_def"].Unpack(sdm)
    return set(sdm.signature_def)


def _assert_hidden(port, channel, model, sig):
    """``sig`` (None: no signature name) is answered exactly as a signature that does not exist."""
    name = sig or "serving_default"
    gone = _predict(port, model, GONE)
    assert gone[0] == 400 and json.loads(gone[2]) == {"error": f'Serving signature name: "{GONE}" not found in '
                                                               "signature def"}
    assert _predict(port, model, sig) == (gone[0], gone[1], gone[2].replace(GONE.encode(), name.encode()))
    code, details = _grpc(channel, model, GONE)
    assert (code, details) == (grpc.StatusCode.FAILED_PRECONDITION, f'Serving signature key "{GONE}" not found.')
    assert _grpc(channel, model, sig or "") == (code, details.replace(GONE, name))


# ---------------------------------------------------------------------- the CLI's default
def test_default_policy_exposes_exactly_the_privacy_views(default_server):
    port, channel = default_server["rest_api_port"], default_server["channel"]
    assert _rest_metadata(port, "full") == _grpc_metadata(channel, "full") == VIEWS
    assert _rest_metadata(port, "safe") == _grpc_metadata(channel, "safe") == {"serving_default", "identity_free"}
    assert "not exposed: emotion, mask, serving_default, speaker_embedding" in default_server["log"].read_text()


@pytest.mark.parametrize("sig", sorted(VIEWS))
def test_default_policy_serves_the_views(default_server, models, sig):
    want = models["full"][sig](features=tf.constant(X))["latent"].numpy()
    status, _, body = _predict(default_server["rest_api_port"], "full", sig)
    assert status == 200, body
    np.testing.assert_allclose(json.loads(body)["predictions"], want, rtol=1e-6, atol=1e-6)
    code, resp = _grpc(default_server["channel"], "full", sig)
    assert code == grpc.StatusCode.OK, resp
    np.testing.assert_allclose(tf.make_ndarray(resp.outputs["latent"]), want, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("sig", [None, "", *sorted(UNMASKED), "__saved_model_init_op"])
def test_default_policy_hides_the_unmasked_signatures_like_missing_ones(default_server, sig):
    _assert_hidden(default_server["rest_api_port"], default_server["channel"], "full", sig)


def test_privacy_safe_export_serves_its_default(default_server, models):
    want = models["safe"]["identity_free"](features=tf.constant(X))["latent"].numpy()
    for sig in (None, "serving_default", "identity_free"):
        status, _, body = _predict(default_server["rest_api_port"], "safe", sig)
        assert status == 200 and np.allclose(json.loads(body)["predictions"], want, rtol=1e-6, atol=1e-6)
        code, resp = _grpc(default_server["channel"], "safe", sig or "")
        assert code == grpc.StatusCode.OK and np.allclose(tf.make_ndarray(resp.outputs["latent"]), want, atol=1e-6)
    _assert_hidden(default_server["rest_api_port"], default_server["channel"], "safe", "emotion")


# ---------------------------------------------------------------------- explicit rules
def test_flag_rules_replace_the_default_per_model(models):
    policy = SignaturePolicy.parse(["full=emotion,keep_*", "safe=identity_free"])
    app = _in_process(models, policy)
    try:
        channel = grpc.insecure_channel(f"127.0.0.1:{app.port}")
        allowed = {"emotion", "keep_emotion", "keep_emotion_leace", "keep_identity"}
        assert _rest_metadata(app.rest_api_port, "full") == _grpc_metadata(channel, "full") == allowed
        assert _predict(app.rest_api_port, "full", "emotion")[0] == 200
        assert _grpc(channel, "full", "keep_identity")[0] == grpc.StatusCode.OK
        for sig in ("identity_free", "emotion_free", "serving_default", "mask", None):  # views not listed: hidden
            _assert_hidden(app.rest_api_port, channel, "full", sig)
        assert _rest_metadata(app.rest_api_port, "safe") == {"identity_free"}
        _assert_hidden(app.rest_api_port, channel, "safe", None)  # its serving_default was not listed
        channel.close()
    finally:
        app.stop()


def test_policy_file_and_expose_unmasked(models, tmp_path):
    f = tmp_path / "policy.json"
    f.write_text(json.dumps({"default": ["@privacy", "emotion"], "models": {"safe": "*"}}))
    app = _in_process(models, SignaturePolicy.from_file(f))
    try:
        channel = grpc.insecure_channel(f"127.0.0.1:{app.port}")
        assert _grpc_metadata(channel, "full") == VIEWS | {"emotion"}
        assert "__saved_model_init_op" in _rest_metadata(app.rest_api_port, "safe")  # '*': the whole SignatureDefMap
        channel.close()
    finally:
        app.stop()
    everything = SignaturePolicy.parse([], expose_unmasked=True)
    assert everything.rule("full") == ("*",) and SignaturePolicy.parse([]).rule("full") == ("@privacy",)


# ---------------------------------------------------------------------- the rules themselves
def test_privacy_view_names_and_privacy_safe_detection(models, tmp_path):
    assert POLICY_METADATA_FILE == METADATA_FILE
    for name in ("identity_free", "emotion_free", "keep_emotion", "keep_emotion_gender", "keep_identity_leace",
                 "identity_free_wav", "emotion_free_leace"):
        assert is_privacy_view(name), name
    for name in ("serving_default", "mask", "emotion", "speaker_embedding", "gender", "keep", "keep_", "keep_a b",
                 "identity_free_x", "my_identity_free", "embed_wav", "__saved_model_init_op"):
        assert not is_privacy_view(name), name
    (tmp_path / "assets.extra").mkdir()
    fake = types.SimpleNamespace(path=tmp_path, signatures={"serving_default": 0, "identity_free": 0})
    assert privacy_safe_view(fake) is None  # no metadata file
    (tmp_path / METADATA_FILE).write_text(json.dumps({"view": "identity_free"}))
    assert privacy_safe_view(fake) == "identity_free"
    fake.signatures["mask"] = 0  # a full export whose metadata claims a view: its serving_default stays hidden
    assert privacy_safe_view(fake) is None
    (tmp_path / METADATA_FILE).write_text(json.dumps({"view": "emotion"}))
    assert privacy_safe_view(types.SimpleNamespace(path=tmp_path, signatures={"serving_default": 0, "emotion": 0})) \
        is None


@pytest.mark.parametrize("values,message", [
    (["full="], "model 'full': empty signature name"),
    (["full=a,,b"], "model 'full': empty signature name"),
    (["=identity_free"], "has no model name before '='"),
    (["full=a;full=b"], "model 'full' is given twice"),
    (["full=@everything"], "unknown rule '@everything' (the only one is '@privacy')"),
    (["full=identity free"], "'identity free' is not a signature name or pattern"),
    (["a;b"], "two default rules"),
])
def test_flag_errors(values, message):
    with pytest.raises(ValueError, match="^--allowed_signatures") as e:
        SignaturePolicy.parse(values)
    assert message in str(e.value)


@pytest.mark.parametrize("content,message", [
    ("{", "not valid JSON"),
    ('["full"]', "expected a JSON object"),
    ('{"model": {}}', "unknown keys ['model']"),
    ('{"models": ["full"]}', "'models' must be an object"),
    ('{"models": {"full": 3}}', "model 'full': a rule is a list of signature names"),
    ('{"default": []}', "default: empty signature name"),
])
def test_policy_file_errors(tmp_path, content, message):
    f = tmp_path / "p.json"
    f.write_text(content)
    with pytest.raises(ValueError, match="signature policy file") as e:
        SignaturePolicy.from_file(f)
    assert message in str(e.value)


@pytest.mark.parametrize("extra,message", [
    (["--allowed_signatures", "ful=identity_free"],
     "the signature policy names model(s) that are not served: ful (served: full, safe)"),
    (["--allowed_signatures", "full=*", "--signature_policy_file", "p.json"],
     "give --allowed_signatures or --signature_policy_file, not both"),
    (["--allowed_signatures", "identity_free", "--expose_unmasked"], "--expose_unmasked would set another"),
    (["--signature_policy_file", "/nonexistent/p.json"], "cannot read it"),
    (["--allowed_signatures", "full=@all"], "unknown rule '@all'"),
])
def test_cli_rejects_bad_policies(models, capsys, extra, message):
    """An unknown model name is an error, not a warning: with the typo, the model would get the default rule."""
    got = []  # in a thread: were the check gone, main() would fail at signal.signal instead of serving forever
    t = threading.Thread(target=lambda: got.append(serve.main(["--model_config_file", str(models["config"]), "--port",
                                                               "-1", "--rest_api_port", "-1", *extra])))
    t.start()
    t.join(timeout=120)
    assert got == [2]
    err = capsys.readouterr().err
    assert err.startswith("tfvae.serve: error:") and message in err, err
