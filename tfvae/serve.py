"""``python -m tfvae.serve``: TF Serving's REST and gRPC predict APIs over tfvae's SavedModels.

One process serves every model of a TF Serving ``models.config`` (``model_config_list`` text
format, as written by ``python -m tfvae.export``), or one model given by ``--model_name`` and
``--model_base_path``, on

- REST (``--rest_api_port``, on aiohttp): ``GET /v1/models/{name}[/versions/{v}|/labels/{l}]``
  (model status), ``GET .../metadata`` (signature defs), ``POST .../{name}[/versions/{v}]:predict``
  with ``signature_name`` and ``instances`` (row format) or ``inputs`` (columnar format);
  errors are ``{"error": "..."}`` with TF Serving's HTTP status for the error code;
  ``GET /monitoring/prometheus/metrics``: request counts and latencies of both APIs per model,
  version and signature, in Prometheus text format;
- gRPC (``--port``): ``tensorflow.serving.PredictionService`` ``Predict`` and
  ``GetModelMetadata``, and ``tensorflow.serving.ModelService`` ``GetModelStatus``, with the
  protos of the ``tensorflow-serving-api`` package, so TF Serving clients work unchanged.

Every version directory is loaded with ``tf.saved_model.load`` and warmed up once. Base paths
are polled (``--file_system_poll_wait_seconds``) so a version directory dropped into the tree
is served without a restart, and the config file is re-read when it changes. A request without
a version gets the newest available version. A version that fails to load is logged, reported
by the status API, and retried only when its files change; the other models keep serving.

Differences from ``tensorflow_model_server``: port 0 picks a free port (-1 disables a server;
TF Serving uses 0 to disable REST), the config file is re-read by default, request limits are
``--max_batch_size`` / ``--max_request_bytes``, and ``--ready_file`` reports the bound ports.
REST is bounded for hostile clients: ``--rest_api_num_threads`` workers plus ``--rest_max_queue``
waiting predicts (503 beyond), ``--rest_api_timeout_in_ms`` per predict (504), and
``--rest_idle_timeout_s`` for idle connections and slow bodies (408); bodies over
``--max_request_bytes`` are refused from their Content-Length (413) without being read.
Classify/Regress/MultiInference are not implemented (tfvae exports predict signatures only).

Exposure (:mod:`tfvae.serving.policy`): by default only the privacy views are served
(``identity_free``, ``emotion_free``, ``keep_<attributes>``, with ``_leace`` / ``_wav`` variants) and
the ``serving_default`` of privacy-safe exports (which is their view). The full latent
(``serving_default`` of a full export), ``mask`` and the unmasked heads are served only with
``--expose_unmasked`` or when ``--allowed_signatures`` / ``--signature_policy_file`` names them. A
signature that is not exposed is answered like one that does not exist, over both APIs, and metadata
lists only the exposed ones.

TLS (:mod:`tfvae.serving.tls`): ``--ssl_config_file`` is TF Serving's text-format ``SSLConfig`` for
gRPC; ``--rest_ssl_cert`` / ``--rest_ssl_key`` (and ``--rest_ssl_client_ca`` to require client
certificates) put REST on HTTPS.

This module is the command line; the server itself is the package :mod:`tfvae.serving`, whose
public names are re-exported here.
"""

from __future__ import annotations

from tfvae.quiet import quiet_main

quiet_main(__name__)

import argparse
import json
import logging
import os
import signal
import sys
import threading
from pathlib import Path

import tensorflow as tf
from google.protobuf import text_format

from tfvae.serving.app import ServingApp, default_rest_threads
from tfvae.serving.batching import BatchingOptions, read_batching_parameters
from tfvae.serving.errors import HTTP_STATUS, ServingError
from tfvae.serving.manager import ModelManager, ModelState
from tfvae.serving.policy import SignaturePolicy
from tfvae.serving.servable import DEFAULT_SIGNATURE, WARMUP_FILE, InputSpec, Servable, Signature
from tfvae.serving.tls import read_ssl_config, rest_ssl_context

__all__ = ["DEFAULT_SIGNATURE", "HTTP_STATUS", "WARMUP_FILE", "InputSpec", "ModelManager", "ModelState",
           "Servable", "ServingApp", "ServingError", "Signature", "SignaturePolicy", "main", "parser"]

log = logging.getLogger("tfvae.serve")


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m tfvae.serve", formatter_class=argparse.ArgumentDefaultsHelpFormatter,
        description="Serve SavedModels over TF Serving's REST and gRPC predict APIs.")
    p.add_argument("--model_config_file", help="TF Serving models.config (model_config_list text format)")
    p.add_argument("--model_name", default="default", help="model name when serving --model_base_path")
    p.add_argument("--model_base_path", help="serve this one model directory (holding version directories)")
    p.add_argument("--port", type=int, default=8500, help="gRPC port (0: any free port, -1: no gRPC)")
    p.add_argument("--rest_api_port", type=int, default=8501, help="REST port (0: any free port, -1: no REST)")
    p.add_argument("--host", default="0.0.0.0", help="address to bind")
    p.add_argument("--file_system_poll_wait_seconds", type=float, default=1.0,
                   help="how often base paths are polled for new or removed versions (0: never)")
    p.add_argument("--model_config_file_poll_wait_seconds", type=float, default=1.0,
                   help="how often the config file is checked for changes (0: never)")
    p.add_argument("--max_batch_size", type=int, default=1024, help="largest batch a request may send")
    p.add_argument("--max_request_bytes", type=int, default=64 << 20,
                   help="largest REST body / gRPC message accepted")
    p.add_argument("--grpc_max_threads", type=int, default=16,
                   help="threads that run gRPC predicts which are not batched (gRPC itself runs on grpc.aio)")
    p.add_argument("--rest_api_num_threads", type=int, default=default_rest_threads(),
                   help="REST worker threads running predicts (0: TF Serving's default, 4 per CPU)")
    p.add_argument("--rest_api_timeout_in_ms", type=int, default=30000,
                   help="REST predict timeout: a predict not answered by then gets 504")
    p.add_argument("--rest_max_queue", type=int, default=128,
                   help="REST predicts that may wait for a worker; more at once get 503")
    p.add_argument("--rest_idle_timeout_s", type=float, default=30.0,
                   help="REST connections idle this long are closed; a body must arrive within it (else 408)")
    g = p.add_argument_group("exposed signatures (default: the privacy views only)")
    g.add_argument("--allowed_signatures", action="append", metavar="MODEL=SIG[,SIG...][;MODEL=...]",
                   help="per-model allowlist of signature names or fnmatch patterns ('*': all, '@privacy': the "
                        "privacy views); an entry without MODEL= sets the rule of the models not named; repeatable")
    g.add_argument("--signature_policy_file", metavar="JSON",
                   help='the same as a JSON file: {"default": RULE, "models": {"MODEL": RULE}}, RULE a list of '
                        "names/patterns (models.config cannot carry it: ModelConfig has no such field)")
    g.add_argument("--expose_unmasked", action="store_true",
                   help="models without a rule expose every signature: the full-latent serving_default, mask "
                        "and the unmasked heads as well")
    t = p.add_argument_group("TLS")
    t.add_argument("--ssl_config_file", help="gRPC TLS: TF Serving's text-format SSLConfig (server_key, server_cert, "
                                            "custom_ca: PEM text; client_verify: require client certificates)")
    t.add_argument("--rest_ssl_cert", help="REST HTTPS: PEM certificate chain file")
    t.add_argument("--rest_ssl_key", help="REST HTTPS: PEM private key file of --rest_ssl_cert")
    t.add_argument("--rest_ssl_client_ca", help="REST: require client certificates signed by this PEM CA file")
    b = p.add_argument_group("server-side batching")
    b.add_argument("--enable_batching", action="store_true",
                   help="merge concurrent predicts of a signature into batches (TF Serving's --enable_batching)")
    b.add_argument("--batching_parameters_file",
                   help="TF Serving BatchingParameters, text format (e.g. 'max_batch_size { value: 64 }'); "
                        "fields left out keep tfvae's defaults; needs --enable_batching")
    p.add_argument("--tensorflow_intra_op_parallelism", type=int, default=0,
                   help="threads TensorFlow uses inside one op (0: TensorFlow's default, one per core); "
                        "1 often serves small encoders faster, with batching too (bench/serving_batching.py)")
    p.add_argument("--tensorflow_inter_op_parallelism", type=int, default=0,
                   help="threads TensorFlow uses to run independent ops at once (0: TensorFlow's default)")
    p.add_argument("--ready_file", help="write {'port', 'rest_api_port', 'pid'} as JSON here once serving")
    p.add_argument("--log_level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    return p


def set_tensorflow_threads(intra_op: int, inter_op: int) -> None:
    """TF Serving's ``--tensorflow_intra_op_parallelism`` / ``--tensorflow_inter_op_parallelism``: 0 keeps
    TensorFlow's default; set before any model loads. ValueError for a negative count."""
    for flag, n in (("tensorflow_intra_op_parallelism", intra_op), ("tensorflow_inter_op_parallelism", inter_op)):
        if n < 0:
            raise ValueError(f"--{flag} must be >= 0 (0: TensorFlow's default), got {n}")
    try:
        if intra_op:
            tf.config.threading.set_intra_op_parallelism_threads(intra_op)
        if inter_op:
            tf.config.threading.set_inter_op_parallelism_threads(inter_op)
    except RuntimeError as e:  # TensorFlow already ran an op in this process
        raise ValueError(f"cannot set TensorFlow's thread counts now ({e})") from None


def main(argv=None) -> int:
    args = parser().parse_args(argv)
    logging.basicConfig(level=args.log_level, stream=sys.stderr,
                        format="%(asctime)s tfvae.serve %(levelname)s %(message)s")
    if bool(args.model_config_file) == bool(args.model_base_path):
        print("tfvae.serve: error: give --model_config_file or --model_base_path (one of them)", file=sys.stderr)
        return 2
    try:
        policy = SignaturePolicy.from_args(args.allowed_signatures, args.signature_policy_file, args.expose_unmasked)
        ssl_config = read_ssl_config(args.ssl_config_file) if args.ssl_config_file else None
        rest_ctx = rest_ssl_context(args.rest_ssl_cert, args.rest_ssl_key, args.rest_ssl_client_ca)
        if args.batching_parameters_file and not args.enable_batching:
            raise ValueError("--batching_parameters_file needs --enable_batching")
        set_tensorflow_threads(args.tensorflow_intra_op_parallelism, args.tensorflow_inter_op_parallelism)
        batching = None
        if args.enable_batching:
            batching = (read_batching_parameters(args.batching_parameters_file) if args.batching_parameters_file
                        else BatchingOptions())
    except ValueError as e:
        print(f"tfvae.serve: error: {e}", file=sys.stderr)
        return 2
    log.info("signature policy: %s", policy.describe())
    if args.tensorflow_intra_op_parallelism or args.tensorflow_inter_op_parallelism:
        log.info("TensorFlow threads: intra-op %d, inter-op %d (0: TensorFlow's default)",
                 tf.config.threading.get_intra_op_parallelism_threads(),
                 tf.config.threading.get_inter_op_parallelism_threads())
    if batching is not None:
        log.info("batching: %s", batching.describe())
    try:
        manager = ModelManager(args.model_config_file, args.model_name, args.model_base_path,
                               poll_seconds=args.file_system_poll_wait_seconds,
                               config_poll_seconds=args.model_config_file_poll_wait_seconds,
                               max_batch_size=args.max_batch_size, batching=batching)
        app = ServingApp(manager, args.host, args.rest_api_port, args.port, args.max_request_bytes,
                         args.grpc_max_threads, rest_api_num_threads=args.rest_api_num_threads,
                         rest_api_timeout_in_ms=args.rest_api_timeout_in_ms, rest_max_queue=args.rest_max_queue,
                         rest_idle_timeout_s=args.rest_idle_timeout_s, policy=policy, ssl_config=ssl_config,
                         rest_ssl_context=rest_ctx).start()
    except (OSError, ValueError, text_format.ParseError) as e:
        print(f"tfvae.serve: error: {e}", file=sys.stderr)
        return 2
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda signum, frame: stop.set())
    if args.ready_file:
        tmp = Path(args.ready_file).with_suffix(".tmp")
        tmp.write_text(json.dumps({"port": app.port, "rest_api_port": app.rest_api_port, "pid": os.getpid()}))
        os.replace(tmp, args.ready_file)
    log.info("serving %d model(s): %s", len(manager.models), ", ".join(sorted(manager.models)))
    while not stop.wait(1.0):
        pass
    log.info("shutting down")
    app.stop()
    log.info("stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
