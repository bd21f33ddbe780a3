"""TLS for ``tfvae.serve``: gRPC from TF Serving's ``--ssl_config_file``, REST from ``--rest_ssl_*``.

A CA, a server certificate (for 127.0.0.1 and localhost), a client certificate and a rogue CA's
client certificate are made in the test with ``cryptography``. The CLI serves both APIs over TLS:
clients trusting the CA get answers, plaintext clients and clients not trusting the CA get none.
With client verification (``client_verify`` / ``--rest_ssl_client_ca``), only the client holding
the CA-signed certificate is served. Every call has a timeout.
"""

import datetime
import http.client
import ipaddress
import json
import ssl
import threading

import grpc
import numpy as np
import pytest
import tensorflow as tf
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

from tfvae import serve
from tfvae.export import export_encoder
from tfvae.masking import keep_mask
from tfvae.serving.app import ServingApp
from tfvae.serving.manager import ModelManager
from tfvae.serving.tls import read_ssl_config, rest_ssl_context

DIM, N = 16, 8
X = np.linspace(-1, 1, 2 * DIM, dtype=np.float32).reshape(2, DIM)
BODY = json.dumps({"signature_name": "identity_free", "instances": X.tolist()})


def _cert(name, key, issuer=None, issuer_key=None, ca=False, server=False):
    now = datetime.datetime.now(datetime.timezone.utc)
    b = (x509.CertificateBuilder().subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
         .issuer_name(issuer.subject if issuer else x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
         .public_key(key.public_key()).serial_number(x509.random_serial_number())
         .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=1))
         .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
    if ca:
        b = b.add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                          content_commitment=False, key_encipherment=False, data_encipherment=False,
                                          key_agreement=False, encipher_only=False, decipher_only=False), critical=True)
    else:
        usage = ExtendedKeyUsageOID.SERVER_AUTH if server else ExtendedKeyUsageOID.CLIENT_AUTH
        b = b.add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
    if server:
        b = b.add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost"),
                                                         x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False)
    return b.sign(issuer_key or key, hashes.SHA256())


def _pem(obj) -> str:
    if isinstance(obj, x509.Certificate):
        return obj.public_bytes(serialization.Encoding.PEM).decode()
    return obj.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption()).decode()


def _text_proto_string(pem: str) -> str:
    """A PEM as TF Serving's SSLConfig text holds it: one quoted string literal per line."""
    return "\n    ".join(json.dumps(line + "\n") for line in pem.strip().splitlines())


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    d = tmp_path_factory.mktemp("pki")
    keys = {k: ec.generate_private_key(ec.SECP256R1()) for k in ("ca", "server", "client", "rogue", "rogue_client")}
    ca = _cert("tfvae test CA", keys["ca"], ca=True)
    rogue = _cert("rogue CA", keys["rogue"], ca=True)
    pems = {"ca": _pem(ca), "server": _pem(_cert("tfvae.serve", keys["server"], ca, keys["ca"], server=True)),
            "server_key": _pem(keys["server"]), "client": _pem(_cert("client", keys["client"], ca, keys["ca"])),
            "client_key": _pem(keys["client"]), "rogue_client_key": _pem(keys["rogue_client"]),
            "rogue_client": _pem(_cert("rogue client", keys["rogue_client"], rogue, keys["rogue"]))}
    files = {}
    for k, v in pems.items():
        (d / f"{k}.pem").write_text(v)
        files[k] = str(d / f"{k}.pem")
    for name, verify in (("ssl.config", False), ("ssl_verify.config", True)):
        verify_lines = f'custom_ca: {_text_proto_string(pems["ca"])}\nclient_verify: true\n' if verify else ""
        (d / name).write_text(f'server_key: {_text_proto_string(pems["server_key"])}\n'
                              f'server_cert: {_text_proto_string(pems["server"])}\n' + verify_lines)
        files[name] = str(d / name)
    return {"dir": d, "pem": pems, "file": files}


@pytest.fixture(scope="module")
def config(tmp_path_factory, tiny_lrvae):
    root = tmp_path_factory.mktemp("tls_models")
    m = tiny_lrvae(DIM, N)
    export_encoder(m, root, "tiny", {"identity_free": keep_mask(N, "identity_free", 4)},
                   {"emotion_names": ["a", "b", "c"]})
    return root / "models.config"


def _grpc_predict(port, credentials=None, timeout=10):
    target = f"127.0.0.1:{port}"
    channel = grpc.secure_channel(target, credentials) if credentials else grpc.insecure_channel(target)
    with channel:
        req = predict_pb2.PredictRequest()
        req.model_spec.name, req.model_spec.signature_name = "tiny", "identity_free"
        req.inputs["features"].CopyFrom(tf.make_tensor_proto(X))
        try:
            resp = prediction_service_pb2_grpc.PredictionServiceStub(channel).Predict(req, timeout=timeout)
        except grpc.RpcError as e:
            return e.code()
        return tf.make_ndarray(resp.outputs["latent"]).shape


def _https(port, context=None, timeout=10):
    conn = (http.client.HTTPSConnection("127.0.0.1", port, context=context, timeout=timeout) if context is not None
            else http.client.HTTPConnection("127.0.0.1", port, timeout=timeout))
    try:
        conn.request("POST", "/v1/models/tiny:predict", body=BODY)
        resp = conn.getresponse()
        return resp.status, np.shape(json.loads(resp.read())["predictions"])
    except (OSError, http.client.HTTPException) as e:  # ssl.SSLError is an OSError
        return type(e).__name__
    finally:
        conn.close()


def _client_context(pki, cert=None, key=None):
    ctx = ssl.create_default_context(cadata=pki["pem"]["ca"])
    if cert:
        ctx.load_cert_chain(pki["file"][cert], pki["file"][key])
    return ctx


def test_cli_serves_grpc_and_rest_over_tls_only(pki, config, tmp_path):
    from test_serve import _start, _stop

    info = _start(["--model_config_file", str(config), "--ssl_config_file", pki["file"]["ssl.config"],
                   "--rest_ssl_cert", pki["file"]["server"], "--rest_ssl_key", pki["file"]["server_key"]], tmp_path)
    try:
        ca = pki["pem"]["ca"].encode()
        assert _grpc_predict(info["port"], grpc.ssl_channel_credentials(root_certificates=ca)) == (2, N)
        assert _https(info["rest_api_port"], _client_context(pki)) == (200, (2, N))
        # plaintext clients get nothing; nor do clients that do not trust the CA
        assert _grpc_predict(info["port"], timeout=5) == grpc.StatusCode.UNAVAILABLE
        assert isinstance(_https(info["rest_api_port"]), str)
        other = grpc.ssl_channel_credentials(root_certificates=pki["pem"]["rogue_client"].encode())
        assert _grpc_predict(info["port"], other, timeout=5) == grpc.StatusCode.UNAVAILABLE
        assert _https(info["rest_api_port"], ssl.create_default_context()) == "SSLCertVerificationError"
        assert _https(info["rest_api_port"], _client_context(pki)) == (200, (2, N))  # still serving
    finally:
        assert _stop(info) == 0
    log = info["log"].read_text()
    assert "gRPC API at 127.0.0.1" in log and "(TLS)" in log and "REST API at https://" in log


def test_client_certificates_required(pki, config):
    manager = ModelManager(config, poll_seconds=0, config_poll_seconds=0)
    app = ServingApp(manager, "127.0.0.1", 0, 0, ssl_config=read_ssl_config(pki["file"]["ssl_verify.config"]),
                     rest_ssl_context=rest_ssl_context(pki["file"]["server"], pki["file"]["server_key"],
                                                       pki["file"]["ca"])).start()
    try:
        ca, pem = pki["pem"]["ca"].encode(), pki["pem"]
        no_cert = grpc.ssl_channel_credentials(root_certificates=ca)
        rogue = grpc.ssl_channel_credentials(ca, pem["rogue_client_key"].encode(), pem["rogue_client"].encode())
        good = grpc.ssl_channel_credentials(ca, pem["client_key"].encode(), pem["client"].encode())
        assert _grpc_predict(app.port, no_cert, timeout=5) == grpc.StatusCode.UNAVAILABLE
        assert _grpc_predict(app.port, rogue, timeout=5) == grpc.StatusCode.UNAVAILABLE
        assert _grpc_predict(app.port, good) == (2, N)
        assert isinstance(_https(app.rest_api_port, _client_context(pki)), str)
        assert isinstance(_https(app.rest_api_port, _client_context(pki, "rogue_client", "rogue_client_key")), str)
        assert _https(app.rest_api_port, _client_context(pki, "client", "client_key")) == (200, (2, N))
    finally:
        app.stop()


@pytest.mark.parametrize("make,message", [
    (lambda p: 'server_cert: "x"', "server_key is missing"),
    (lambda p: f'server_key: "/etc/key.pem"\nserver_cert: {p["server"]}',
     "server_key is not PEM (it holds the PEM text itself, as in TF Serving, not a file name)"),
    (lambda p: f"server_key: {p['server_key']}\nserver_cert: {p['server']}\nclient_verify: true",
     "client_verify needs custom_ca"),
    (lambda p: f"server_key: {p['server_key']}\nserver_cert: {p['server']}\nverify: true",
     'not a text-format tensorflow.serving.SSLConfig (fields server_key, server_cert, custom_ca, client_verify)'),
    (lambda p: f"server_key: {p['client_key']}\nserver_cert: {p['server']}",
     "server_cert and server_key do not load as a certificate and its private key"),
    (lambda p: f"server_key: {p['server_key']}\nserver_cert: {p['server']}\n"
               f'custom_ca: "-----BEGIN CERTIFICATE-----\\nbroken\\n-----END CERTIFICATE-----\\n"',
     "custom_ca is not a PEM CA certificate"),
])
def test_ssl_config_errors(pki, tmp_path, make, message):
    quoted = {k: _text_proto_string(v) for k, v in pki["pem"].items()}
    (tmp_path / "ssl.config").write_text(make(quoted))
    with pytest.raises(ValueError, match="^--ssl_config_file ") as e:
        read_ssl_config(tmp_path / "ssl.config")
    assert message in str(e.value)


@pytest.mark.parametrize("args,message", [
    (("server", None, None), "--rest_ssl_cert and --rest_ssl_key go together"),
    ((None, None, "ca"), "--rest_ssl_cert and --rest_ssl_key go together"),
    (("server", "client_key", None), "do not load as a PEM certificate chain and its private key"),
    (("server", "server_key", "nope"), "--rest_ssl_client_ca nope: no such file"),
    (("server", "server_key", "server_key"), "not a PEM CA certificate"),
])
def test_rest_ssl_errors(pki, args, message):
    with pytest.raises(ValueError) as e:
        rest_ssl_context(*(pki["file"].get(a, a) if a else None for a in args))
    assert message in str(e.value)


def test_cli_rejects_a_bad_ssl_config(config, tmp_path, capsys):
    (tmp_path / "ssl.config").write_text('server_key: "key.pem"')
    got = []  # in a thread: main() would fail at signal.signal rather than serve forever
    t = threading.Thread(target=lambda: got.append(serve.main(
        ["--model_config_file", str(config), "--port", "-1", "--rest_api_port", "-1",
         "--ssl_config_file", str(tmp_path / "ssl.config")])))
    t.start()
    t.join(timeout=60)
    assert got == [2] and "tfvae.serve: error: --ssl_config_file" in capsys.readouterr().err
