"""The server: :class:`ServingApp` runs the REST and gRPC front ends over one model manager."""

from __future__ import annotations

import json
import logging
import threading
import time
from concurrent import futures

import grpc
from tensorflow_serving.apis import model_service_pb2_grpc, prediction_service_pb2_grpc

from tfvae.serving.errors import _invalid
from tfvae.serving.grpc_api import _ModelService, _PredictionService
from tfvae.serving.manager import ModelManager
from tfvae.serving.rest import _parse_json_body, _parse_predict_body, _predict_response, _RestHandler, _RestServer

log = logging.getLogger("tfvae.serve")


class ServingApp:
    """REST and gRPC servers over one :class:`ModelManager`; ``start()`` / ``stop()``."""

    def __init__(self, manager: ModelManager, host: str = "0.0.0.0", rest_api_port: int = 8501, port: int = 8500,
                 max_request_bytes: int = 64 << 20, grpc_max_threads: int = 16):
        self.manager, self.host = manager, host
        self.rest_api_port, self.port = rest_api_port, port
        self.max_request_bytes, self.grpc_max_threads = max_request_bytes, grpc_max_threads
        self._rest: _RestServer | None = None
        self.in_flight, self.in_flight_lock = 0, threading.Lock()  # REST requests being answered
        self._rest_thread: threading.Thread | None = None
        self._grpc: grpc.Server | None = None

    def rest_predict(self, name, version, label, body: bytes) -> dict:
        servable = self.manager.resolve(name, version, label)
        req = _parse_json_body(body)
        sig_name = req.get("signature_name", "")
        if not isinstance(sig_name, str):
            raise _invalid(f"JSON Value: {json.dumps(sig_name)[:80]} not formatted correctly. 'signature_name' key "
                           "must be a string value.")
        sig = servable.signature(sig_name, "rest")
        inputs, fmt = _parse_predict_body(req, sig, scan=b"true" in body or b"false" in body)
        return _predict_response(servable.predict(sig, inputs), fmt)

    def start(self) -> "ServingApp":
        self.manager.start()
        if self.port >= 0:
            opts = [("grpc.max_receive_message_length", self.max_request_bytes),
                    ("grpc.max_send_message_length", -1), ("grpc.so_reuseport", 0)]
            self._grpc = grpc.server(futures.ThreadPoolExecutor(max_workers=self.grpc_max_threads,
                                                                thread_name_prefix="tfvae-grpc"), options=opts)
            prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(_PredictionService(self), self._grpc)
            model_service_pb2_grpc.add_ModelServiceServicer_to_server(_ModelService(self), self._grpc)
            bound = self._grpc.add_insecure_port(f"{self.host}:{self.port}")
            if bound == 0:
                raise OSError(f"cannot bind the gRPC port {self.host}:{self.port}")
            self.port = bound
            self._grpc.start()
            log.info("gRPC API at %s:%d", self.host, self.port)
        if self.rest_api_port >= 0:
            self._rest = _RestServer((self.host, self.rest_api_port), _RestHandler)
            self._rest.app = self
            self.rest_api_port = self._rest.server_address[1]
            self._rest_thread = threading.Thread(target=self._rest.serve_forever, kwargs={"poll_interval": 0.2},
                                                 name="tfvae-rest", daemon=True)
            self._rest_thread.start()
            log.info("REST API at http://%s:%d/v1/models/<name>", self.host, self.rest_api_port)
        return self

    def stop(self, grace: float = 2.0) -> None:
        """Stop accepting requests, give running ones ``grace`` seconds, stop polling."""
        done = self._grpc.stop(grace) if self._grpc is not None else None
        if self._rest is not None:
            self._rest.shutdown()
            self._rest.server_close()
            t0 = time.monotonic()
            while self.in_flight and time.monotonic() - t0 < grace:
                time.sleep(0.01)
        if done is not None:
            done.wait()
        self.manager.stop()

