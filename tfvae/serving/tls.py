"""TLS for both front ends.

- gRPC: TF Serving's ``--ssl_config_file``, a text-format ``tensorflow.serving.SSLConfig``
  (``server_key``, ``server_cert``, ``custom_ca``: the PEM text itself, not file names;
  ``client_verify``: require client certificates signed by ``custom_ca``). The
  ``tensorflow-serving-api`` package does not ship ``ssl_config_pb2``, so the message is built
  here from TF Serving's ``ssl_config.proto`` and read with protobuf's ``text_format``: the same
  syntax, field names and errors as TF Serving.
- REST: an :class:`ssl.SSLContext` from a certificate chain file and a key file, and optionally a CA
  file whose certificates clients must present (``--rest_ssl_cert``, ``--rest_ssl_key``,
  ``--rest_ssl_client_ca``); TF Serving's REST API has no TLS.

Both check the key, the certificate and the CA when the server starts, with errors naming the
flag and what is wrong.
"""

from __future__ import annotations

import os
import ssl
import tempfile
from pathlib import Path

import grpc
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory, text_format


def _ssl_config_class():
    """``tensorflow.serving.SSLConfig`` (TF Serving's tensorflow_serving/config/ssl_config.proto)."""
    fdp = descriptor_pb2.FileDescriptorProto(name="tfvae/ssl_config.proto", package="tensorflow.serving",
                                             syntax="proto3")
    msg = fdp.message_type.add(name="SSLConfig")
    for number, (name, kind) in enumerate([("server_key", "TYPE_STRING"), ("server_cert", "TYPE_STRING"),
                                           ("custom_ca", "TYPE_STRING"), ("client_verify", "TYPE_BOOL")], 1):
        msg.field.add(name=name, number=number, type=getattr(descriptor_pb2.FieldDescriptorProto, kind),
                      label=descriptor_pb2.FieldDescriptorProto.LABEL_OPTIONAL)
    pool = descriptor_pool.DescriptorPool()  # a private pool: no clash with a real ssl_config_pb2
    pool.Add(fdp)
    return message_factory.GetMessageClass(pool.FindMessageTypeByName("tensorflow.serving.SSLConfig"))


SSLConfig = _ssl_config_class()


def _no_password():
    raise ValueError("the private key is encrypted; give an unencrypted PEM key")


def _pem(value: str, field: str, where: str) -> None:
    if "-----BEGIN " not in value:
        hint = " (it holds the PEM text itself, as in TF Serving, not a file name)" if value.strip() else ""
        raise ValueError(f"{where}: {field} is not PEM{hint}")


def read_ssl_config(path: str | Path):
    """Parse and check an SSLConfig text file; returns the message."""
    where = f"--ssl_config_file {path}"
    try:
        text = Path(path).read_text()
    except (OSError, UnicodeError) as e:
        raise ValueError(f"{where}: cannot read it: {getattr(e, 'strerror', None) or e}") from None
    try:
        cfg = text_format.Parse(text, SSLConfig())
    except text_format.ParseError as e:
        raise ValueError(f"{where}: not a text-format tensorflow.serving.SSLConfig (fields server_key, "
                         f"server_cert, custom_ca, client_verify): {e}") from None
    for field in ("server_key", "server_cert"):
        if not getattr(cfg, field).strip():
            raise ValueError(f"{where}: {field} is missing")
        _pem(getattr(cfg, field), field, where)
    if cfg.client_verify and not cfg.custom_ca.strip():
        raise ValueError(f"{where}: client_verify needs custom_ca (the CA that signs the client certificates)")
    if cfg.custom_ca:
        _pem(cfg.custom_ca, "custom_ca", where)
    _check_pair(cfg.server_cert, cfg.server_key, where)
    if cfg.custom_ca:
        try:
            ssl.create_default_context().load_verify_locations(cadata=cfg.custom_ca)
        except (ssl.SSLError, ValueError) as e:
            raise ValueError(f"{where}: custom_ca is not a PEM CA certificate: {e}") from None
    return cfg


def _check_pair(cert_pem: str, key_pem: str, where: str) -> None:
    """ValueError unless the certificate and key load and belong together (checked with OpenSSL)."""
    with tempfile.TemporaryDirectory(prefix="tfvae-tls-") as d:  # mode 0700: the key is not exposed
        cert, key = os.path.join(d, "cert.pem"), os.path.join(d, "key.pem")
        Path(cert).write_text(cert_pem)
        fd = os.open(key, os.O_WRONLY | os.O_CREAT, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(key_pem)
        try:
            ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER).load_cert_chain(cert, key, password=_no_password)
        except (ssl.SSLError, ValueError) as e:
            raise ValueError(f"{where}: server_cert and server_key do not load as a certificate and its "
                             f"private key: {e}") from None


def grpc_server_credentials(cfg) -> grpc.ServerCredentials:
    """gRPC server credentials from a checked SSLConfig, as TF Serving builds them."""
    return grpc.ssl_server_credentials([(cfg.server_key.encode(), cfg.server_cert.encode())],
                                       root_certificates=cfg.custom_ca.encode() or None,
                                       require_client_auth=bool(cfg.client_verify))


def rest_ssl_context(cert: str | None, key: str | None, client_ca: str | None = None) -> ssl.SSLContext | None:
    """The REST server's TLS context (None without ``cert``); ``client_ca``: clients must present a
    certificate it signed. TLS 1.2 or newer."""
    if not cert and not key and not client_ca:
        return None
    if not cert or not key:
        raise ValueError("--rest_ssl_cert and --rest_ssl_key go together (a certificate chain and its key, PEM files)")
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    for flag, path in (("--rest_ssl_cert", cert), ("--rest_ssl_key", key), ("--rest_ssl_client_ca", client_ca)):
        if path and not Path(path).is_file():
            raise ValueError(f"{flag} {path}: no such file")
    try:
        ctx.load_cert_chain(cert, key, password=_no_password)
    except (ssl.SSLError, ValueError) as e:
        raise ValueError(f"--rest_ssl_cert {cert} / --rest_ssl_key {key}: do not load as a PEM certificate chain "
                         f"and its private key: {e}") from None
    if client_ca:
        try:
            ctx.load_verify_locations(cafile=client_ca)
        except (ssl.SSLError, ValueError) as e:
            raise ValueError(f"--rest_ssl_client_ca {client_ca}: not a PEM CA certificate: {e}") from None
        ctx.verify_mode = ssl.CERT_REQUIRED
    return ctx
