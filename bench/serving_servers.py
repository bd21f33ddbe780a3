"""The gRPC servers of ``bench/serving_batching.py``, each started as its own process:

    python bench/serving_servers.py '<json spec>'

``spec``: ``noop`` (a Predict that answers a fixed 1 x 128 tensor at once: the ceiling of the gRPC
stack), else a :class:`~tfvae.serving.manager.ModelManager` over ``base``/``name`` served by
:class:`~tfvae.serving.app.ServingApp` (gRPC only; ``batching``: BatchingOptions fields or null),
or, a bench-only prototype, ``inloop`` (a ``grpc.aio`` front end that runs its batches in its event
loop). ``intra_op``: TF's
intra/inter-op threads. The server writes ``{"port", "pid"}`` to ``ready`` and, on SIGTERM, stops
and writes its batch counters to ``stats``.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import threading
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def _serve_child(spec: str) -> int:
    """Start the server ``spec`` (JSON, see the module doc) and serve until SIGTERM."""
    from tfvae.serving.app import ServingApp
    from tfvae.serving.batching import BatchingOptions
    from tfvae.serving.manager import ModelManager

    spec = json.loads(spec)
    if spec.get("noop"):
        return _noop_child(spec)
    if spec.get("intra_op"):
        import tensorflow as tf

        tf.config.threading.set_intra_op_parallelism_threads(spec["intra_op"])
        tf.config.threading.set_inter_op_parallelism_threads(spec.get("inter_op") or spec["intra_op"])
    if spec.get("switch_interval"):
        sys.setswitchinterval(spec["switch_interval"])
    batching = spec["batching"]
    if batching is not None:
        batching["allowed_batch_sizes"] = tuple(batching["allowed_batch_sizes"])
    manager = ModelManager(model_name=spec["name"], model_base_path=spec["base"], poll_seconds=0,
                           config_poll_seconds=0, max_batch_size=spec["max_batch_size"],
                           batching=None if batching is None else BatchingOptions(**batching))
    if spec.get("inloop"):
        return _inloop_child(spec, manager)
    app = ServingApp(manager, "127.0.0.1", rest_api_port=-1, port=0, grpc_max_threads=spec["grpc_max_threads"]).start()
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    _write_ready(spec, app.port)
    while not stop.wait(0.5):
        pass
    app.stop()
    stats = {}
    for state in manager.models.values():
        for v, servable in state.versions.items():
            if servable.batcher is not None:
                stats[f"{state.name}/{v}"] = servable.batcher.stats
    Path(spec["stats"]).write_text(json.dumps(stats))
    return 0


def _write_ready(spec: dict, port: int) -> None:
    """Tell the bench this server listens on ``port`` (written whole, then renamed into place)."""
    Path(spec["ready"]).with_suffix(".tmp").write_text(json.dumps({"port": port, "pid": os.getpid()}))
    os.replace(Path(spec["ready"]).with_suffix(".tmp"), spec["ready"])


def _serve_aio(spec: dict, add_servicer, before=None, after=None) -> None:
    """Run a ``grpc.aio`` server (``add_servicer(server)`` adds its servicer) on a free loopback port until
    SIGTERM; ``before`` / ``after`` run in the loop before it starts and after it stops."""
    import asyncio

    import grpc

    async def serve():
        if before is not None:
            before()
        server = grpc.aio.server()
        add_servicer(server)
        port = server.add_insecure_port("127.0.0.1:0")
        await server.start()
        stop = asyncio.Event()
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
        _write_ready(spec, port)
        await stop.wait()
        await server.stop(1)
        if after is not None:
            after()

    asyncio.run(serve())


def _inloop_child(spec: dict, manager) -> int:
    """A prototype, for ``--designs`` only: Predict on a ``grpc.aio`` server that batches in its event
    loop and runs each batch there (no batch thread, no thread handoff). A batch closes at
    ``max_batch_size`` rows, at ``timeout`` s after its first request, and (``close``):
    ``adaptive``: at the size of the last batch closed by its timeout, re-probing one more every 16
    batches; ``gap``: ``gap`` s after its newest request."""
    import asyncio

    from tensorflow_serving.apis import prediction_service_pb2_grpc

    from tfvae.serving.errors import ServingError
    from tfvae.serving.grpc_api import _tensor_to_array, predict_response

    timeout, gap, max_rows = spec["timeout"], spec.get("gap", 0.0), spec["max_rows"]
    pending: list = []  # (servable, signature, inputs, wanted, future)
    st = {"handle": None, "first": 0.0, "target": max_rows, "since_probe": 0, "batches": 0, "rows": 0}

    def flush(by_timeout: bool = False) -> None:
        if st["handle"] is not None:
            st["handle"].cancel()
        st["handle"] = None
        batch = pending[:]
        pending.clear()
        if not batch:
            return
        if spec["close"] == "adaptive":
            if by_timeout:
                st["target"], st["since_probe"] = len(batch), 0
            else:
                st["since_probe"] += 1
                if st["since_probe"] >= 16:
                    st["target"], st["since_probe"] = min(st["target"] + 1, max_rows), 0
        st["batches"] += 1
        st["rows"] += len(batch)
        groups: dict = {}
        for item in batch:  # one call per (servable, signature)
            groups.setdefault((id(item[0]), item[1].name), []).append(item)
        for items in groups.values():
            servable, sig = items[0][0], items[0][1]
            wanted = list(dict.fromkeys(a for it in items for a in it[3]))
            x = {k: np.concatenate([it[2][k] for it in items]) for k in items[0][2]}
            try:
                out = servable._run(sig, x, wanted)
            except ServingError as e:
                for it in items:
                    it[4].set_exception(e)
                continue
            start = 0
            for it in items:
                n = next(iter(it[2].values())).shape[0]
                it[4].set_result({a: out[a][start:start + n] for a in it[3]})
                start += n

    class InLoopPrediction(prediction_service_pb2_grpc.PredictionServiceServicer):
        async def Predict(self, request, context):  # noqa: N802
            try:
                servable = manager.resolve_spec(request.model_spec)
                sig = servable.signature(request.model_spec.signature_name, "grpc")
                inputs = {k: _tensor_to_array(k, t, sig.inputs.get(k)) for k, t in request.inputs.items()}
                wanted = servable._validate(sig, inputs, request.output_filter)
            except ServingError as e:
                await context.abort(e.code, e.message)
            loop = asyncio.get_running_loop()
            fut = loop.create_future()
            now = loop.time()
            if not pending:
                st["first"] = now
            pending.append((servable, sig, inputs, wanted, fut))
            if len(pending) >= (st["target"] if spec["close"] == "adaptive" else max_rows):
                flush()
            elif spec["close"] == "gap":
                if st["handle"] is not None:
                    st["handle"].cancel()
                st["handle"] = loop.call_at(min(st["first"] + timeout, now + gap), flush, True)
            elif st["handle"] is None:
                st["handle"] = loop.call_at(st["first"] + timeout, flush, True)
            try:
                outputs = await fut
            except ServingError as e:
                await context.abort(e.code, e.message)
            return predict_response(servable, request, outputs)

    _serve_aio(spec, lambda server: prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(
        InLoopPrediction(), server), before=manager.start, after=manager.stop)
    Path(spec["stats"]).write_text(json.dumps({"inloop": {"batches": st["batches"], "rows": st["rows"]}}))
    return 0


def _noop_child(spec: dict) -> int:
    """The gRPC ceiling: a PredictionService whose Predict returns a fixed 1 x 128 answer at once, on
    the same ``grpc.server`` + thread pool as :class:`~tfvae.serving.app.ServingApp` (no TF, no model)."""
    from concurrent import futures

    import grpc
    from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

    resp = predict_pb2.PredictResponse()
    t = resp.outputs["latent"]
    t.dtype = 1  # DT_FLOAT
    t.tensor_shape.dim.add(size=1)
    t.tensor_shape.dim.add(size=128)
    t.tensor_content = np.zeros((1, 128), np.float32).tobytes()

    class Noop(prediction_service_pb2_grpc.PredictionServiceServicer):
        def Predict(self, request, context):  # noqa: N802
            return resp

    if spec.get("aio"):
        class AioNoop(prediction_service_pb2_grpc.PredictionServiceServicer):
            async def Predict(self, request, context):  # noqa: N802
                return resp

        _serve_aio(spec, lambda server: prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(
            AioNoop(), server))
        return 0

    server = grpc.server(futures.ThreadPoolExecutor(max_workers=spec["grpc_max_threads"]))
    prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(Noop(), server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    _write_ready(spec, port)
    while not stop.wait(0.5):
        pass
    server.stop(1).wait()
    return 0


if __name__ == "__main__":
    sys.exit(_serve_child(sys.argv[1]))
