"""The server: :class:`ServingApp` runs the REST and gRPC front ends over one model manager."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import ssl
import threading
from concurrent import futures

import grpc
from tensorflow_serving.apis import model_service_pb2_grpc, prediction_service_pb2_grpc

from tfvae.serving.errors import _invalid
from tfvae.serving.grpc_api import _ModelService, _PredictionService
from tfvae.serving.manager import ModelManager
from tfvae.serving.metrics import Metrics, RequestInfo
from tfvae.serving.policy import SignaturePolicy
from tfvae.serving.rest import RestServer, _parse_json_body, _parse_predict_body, _predict_response
from tfvae.serving.servable import DEFAULT_SIGNATURE
from tfvae.serving.tls import grpc_server_credentials

log = logging.getLogger("tfvae.serve")


def default_rest_threads() -> int:
    """TF Serving's default ``--rest_api_num_threads``: 4 per schedulable CPU."""
    try:
        return 4 * len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return 4 * (os.cpu_count() or 1)


_LOOP: asyncio.AbstractEventLoop | None = None
_LOOP_LOCK = threading.Lock()


def grpc_loop() -> asyncio.AbstractEventLoop:
    """The process's one event loop for ``grpc.aio`` servers, running in a daemon thread (gRPC's asyncio
    stack is made for one loop per process, so every :class:`ServingApp` of a process shares it)."""
    global _LOOP
    with _LOOP_LOCK:
        if _LOOP is None or _LOOP.is_closed():
            _LOOP = asyncio.new_event_loop()
            threading.Thread(target=_LOOP.run_forever, name="tfvae-grpc-loop", daemon=True).start()
        return _LOOP


class ServingApp:
    """REST and gRPC servers over one :class:`ModelManager`; ``start()`` / ``stop()``.

    gRPC runs on ``grpc.aio`` in the process's gRPC event loop (:func:`grpc_loop`): requests are parsed
    there, and models run in a batch thread (batching on) or in ``grpc_max_threads`` pool threads.
    REST limits: ``rest_api_num_threads`` workers run the predicts, ``rest_max_queue`` more may wait
    (beyond that: 503), a predict is answered within ``rest_api_timeout_in_ms`` (else 504), and a
    connection idle or a body still arriving after ``rest_idle_timeout_s`` is closed (408 for a body).
    ``metrics`` (:class:`~tfvae.serving.metrics.Metrics`) counts the predicts of both APIs.

    ``policy`` (:class:`~tfvae.serving.policy.SignaturePolicy`) decides which signatures both APIs
    expose; without one, every signature is (``python -m tfvae.serve`` passes the privacy-views-only
    default). ``ssl_config``: a checked ``SSLConfig`` (:func:`~tfvae.serving.tls.read_ssl_config`) for
    gRPC; ``rest_ssl_context``: an :class:`ssl.SSLContext` for REST (:func:`~tfvae.serving.tls.rest_ssl_context`).
    """

    def __init__(self, manager: ModelManager, host: str = "0.0.0.0", rest_api_port: int = 8501, port: int = 8500,
                 max_request_bytes: int = 64 << 20, grpc_max_threads: int = 16, *,
                 rest_api_num_threads: int | None = None, rest_api_timeout_in_ms: int = 30000,
                 rest_max_queue: int = 128, rest_idle_timeout_s: float = 30.0,
                 policy: SignaturePolicy | None = None, ssl_config=None,
                 rest_ssl_context: ssl.SSLContext | None = None):
        self.manager, self.host = manager, host
        self.rest_api_port, self.port = rest_api_port, port
        self.max_request_bytes, self.grpc_max_threads = max_request_bytes, grpc_max_threads
        self.rest_api_num_threads = rest_api_num_threads or default_rest_threads()
        self.rest_api_timeout_in_ms, self.rest_max_queue = rest_api_timeout_in_ms, rest_max_queue
        self.rest_idle_timeout_s = rest_idle_timeout_s
        self.metrics = Metrics()
        self.policy = policy if policy is not None else SignaturePolicy.expose_all()
        self.ssl_config, self.rest_ssl_context = ssl_config, rest_ssl_context
        self._rest: RestServer | None = None
        self._grpc: grpc.aio.Server | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        #: threads that run gRPC predicts which are not batched
        self.grpc_pool: futures.ThreadPoolExecutor | None = None

    def rest_predict(self, name: str, version: int | None, label: str | None, body: bytes,
                     info: RequestInfo) -> dict:
        """One REST predict (in a REST worker thread): resolve, parse the JSON body, run, answer JSON."""
        servable = self.manager.resolve(name, version, label)
        info.servable(servable)
        req = _parse_json_body(body)
        sig_name = req.get("signature_name", "")
        if not isinstance(sig_name, str):
            raise _invalid(f"JSON Value: {json.dumps(sig_name)[:80]} not formatted correctly. 'signature_name' key "
                           "must be a string value.")
        sig = self.policy.signature(servable, sig_name, "rest")
        info.signature = sig_name or DEFAULT_SIGNATURE
        try:
            inputs, fmt = _parse_predict_body(req, sig, scan=b"true" in body or b"false" in body)
        except (RecursionError, ValueError, TypeError, OverflowError, UnicodeError) as e:  # what numpy cannot take
            raise _invalid(f"the JSON values cannot be read as tensors of the signature's inputs "
                           f"({type(e).__name__}: {str(e)[:200]})") from None
        return _predict_response(servable.predict(sig, inputs), fmt)

    def start(self) -> "ServingApp":
        self.policy.check_models(self.manager.models)
        rest = None
        if self.rest_api_port >= 0:  # checks the REST settings before anything starts
            rest = RestServer(self, self.host, self.rest_api_port, max_request_bytes=self.max_request_bytes,
                              num_threads=self.rest_api_num_threads, max_queue=self.rest_max_queue,
                              timeout_s=self.rest_api_timeout_in_ms / 1000, idle_timeout_s=self.rest_idle_timeout_s,
                              metrics=self.metrics, ssl_context=self.rest_ssl_context)
        self.manager.start()
        self.policy.log_exposure(self.manager)
        if self.port >= 0:
            self.grpc_pool = futures.ThreadPoolExecutor(max_workers=self.grpc_max_threads,
                                                        thread_name_prefix="tfvae-grpc")
            creds = grpc_server_credentials(self.ssl_config) if self.ssl_config is not None else None
            self._loop = grpc_loop()
            self.port = asyncio.run_coroutine_threadsafe(self._start_grpc(creds), self._loop).result(120)
            log.info("gRPC API at %s:%d (%s)", self.host, self.port, "plaintext" if self.ssl_config is None else
                     "TLS, client certificates required" if self.ssl_config.client_verify else "TLS")
        if rest is not None:
            self._rest = rest.start()
            self.rest_api_port = rest.port
            ctx = self.rest_ssl_context
            log.info("REST API at %s://%s:%d/v1/models/<name> (%d workers, queue %d, timeout %d ms, idle %g s%s)",
                     "http" if ctx is None else "https", self.host, self.rest_api_port, self.rest_api_num_threads,
                     self.rest_max_queue, self.rest_api_timeout_in_ms, self.rest_idle_timeout_s,
                     "" if ctx is None else ", client certificates required" if ctx.verify_mode == ssl.CERT_REQUIRED
                     else "")
            if ctx is None and self._grpc is not None and self.ssl_config is not None:
                log.warning("gRPC uses TLS but REST is plaintext (--rest_ssl_cert/--rest_ssl_key; "
                            "--rest_api_port -1 turns REST off)")
        return self

    async def _start_grpc(self, creds) -> int:
        """(in the gRPC loop) Create, bind and start the ``grpc.aio`` server; the bound port."""
        opts = [("grpc.max_receive_message_length", self.max_request_bytes),
                ("grpc.max_send_message_length", -1), ("grpc.so_reuseport", 0)]
        server = grpc.aio.server(options=opts)
        prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(_PredictionService(self), server)
        model_service_pb2_grpc.add_ModelServiceServicer_to_server(_ModelService(self), server)
        address = f"{self.host}:{self.port}"
        try:
            bound = (server.add_secure_port(address, creds) if creds is not None
                     else server.add_insecure_port(address))
        except RuntimeError as e:
            raise OSError(f"cannot bind the gRPC port {self.host}:{self.port} ({e})") from None
        if bound == 0:
            raise OSError(f"cannot bind the gRPC port {self.host}:{self.port}")
        await server.start()
        self._grpc = server
        return bound

    def stop(self, grace: float = 2.0) -> None:
        """Stop accepting requests, give running ones up to ``grace`` seconds (REST: 2 s), stop polling."""
        done = (asyncio.run_coroutine_threadsafe(self._grpc.stop(grace), self._loop)
                if self._grpc is not None else None)
        if self._rest is not None:
            self._rest.stop(grace)
        if done is not None:
            done.result(grace + 30)
            self._grpc = None
        if self.grpc_pool is not None:
            self.grpc_pool.shutdown(wait=True, cancel_futures=True)
        self.manager.stop()
