"""Serving benchmark: in-process signature latency, then ``python -m tfvae.serve`` over loopback.

    python bench/serving.py [--saved_model saved_models/<run>/<version>] [--requests 2000] [--clients 8]

1. in-process: ``identity_free`` called on the loaded SavedModel at batch 1 and 128 (p50/p99);
2. REST, one client, one utterance per request: p50/p99 latency;
3. gRPC (``PredictionServiceStub``), one client, one utterance: p50/p99 latency;
4. gRPC throughput in batches of 128 (``--batch_clients`` concurrent clients);
5. load run: ``--clients`` concurrent clients (half REST, half gRPC, one utterance each) x
   ``--requests`` requests; counts errors and the server's RSS before and after;
6. server-side batching: "8 concurrent clients sending one utterance each over gRPC"
   (``--batch_test_clients`` clients, each on its own channel, sending back to back), against a
   server without batching, one with it (TF Serving's ``--enable_batching``; parameters from
   ``--batching_parameters_file`` or tfvae's defaults) and a no-op gRPC server (the ceiling of the
   Python gRPC stack), in ``--batch_test_rounds`` interleaved rounds of ``--batch_test_requests``
   requests per client: throughput (utterances/s, median of the rounds), p50/p99 latency per
   request, CPU per utterance of server and clients. ``--only_batching`` runs this section alone.

Without ``--saved_model`` it exports an untrained model of the paper's size (1582 IS10
features, encoder 512-256, 128 latent nodes) to a temporary directory. The server runs in its
own process; clients are threads of this one. Goals (2 cores): in-process batch-1 p50 < 1 ms,
REST p99 < 10 ms for one utterance, >= 20,000 utterances/s over gRPC in batches of 128; with
batching, 8 one-utterance gRPC clients: batched/unbatched throughput >= 3 and batched p99 <= 20 ms.

The servers of section 6 are ``python -m tfvae.serve --enable_batching`` when the CLI has that flag,
else this script in its ``--serve_child`` mode (a ``ModelManager(batching=...)`` + ``ServingApp``
in its own process, gRPC only).
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]


def _pct(ts) -> tuple[float, float]:
    a = np.asarray(ts) * 1000
    return float(np.percentile(a, 50)), float(np.percentile(a, 99))


def _export_default(tmp: Path) -> Path:
    from tfvae.export import export_encoder
    from tfvae.masking import keep_mask
    from tfvae.model import LRVAE

    rng = np.random.default_rng(0)
    m = LRVAE(1582, 5, 32, latent_dim=128, seed=0)  # the paper's sizes (section 3.1)
    m.build()
    m.adapt_normalizer(rng.lognormal(size=(512, 1582)).astype(np.float32))
    masks = {"identity_free": keep_mask(128, "identity_free", 64), "emotion_free": keep_mask(128, "emotion_free", 64)}
    return export_encoder(m, tmp, "bench", masks, {"emotion_names": ["neutral", "angry", "sad", "happy", "disgust"]})


def _rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _serve_child(spec: str) -> int:
    """``--serve_child``: a gRPC-only server (ModelManager + ServingApp) for section 6, in its own process;
    on SIGTERM it stops and writes the batch schedulers' counters to ``spec['stats']``."""
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
    if spec.get("aio"):
        return _aio_child(spec, manager)
    app = ServingApp(manager, "127.0.0.1", rest_api_port=-1, port=0, grpc_max_threads=spec["grpc_max_threads"]).start()
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    Path(spec["ready"]).with_suffix(".tmp").write_text(json.dumps({"port": app.port, "pid": os.getpid()}))
    os.replace(Path(spec["ready"]).with_suffix(".tmp"), spec["ready"])
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


def _aio_child(spec: dict, manager) -> int:
    """A prototype, for this benchmark only: Predict on a ``grpc.aio`` server (one event-loop thread,
    no worker pool) awaiting :meth:`Servable.predict_async`, so that no thread waits for a batch."""
    import asyncio

    import grpc
    from tensorflow_serving.apis import prediction_service_pb2_grpc

    from tfvae.serving.errors import ServingError
    from tfvae.serving.grpc_api import _tensor_to_array, predict_response

    class AioPrediction(prediction_service_pb2_grpc.PredictionServiceServicer):
        async def Predict(self, request, context):  # noqa: N802
            try:
                servable = manager.resolve_spec(request.model_spec)
                sig = servable.signature(request.model_spec.signature_name, "grpc")
                inputs = {k: _tensor_to_array(k, t, sig.inputs.get(k)) for k, t in request.inputs.items()}
                outputs = await servable.predict_async(sig, inputs, request.output_filter)
            except ServingError as e:
                await context.abort(e.code, e.message)
            return predict_response(servable, request, outputs)

    async def serve():
        manager.start()
        server = grpc.aio.server()
        prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(AioPrediction(), server)
        port = server.add_insecure_port("127.0.0.1:0")
        await server.start()
        stop = asyncio.Event()
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
        Path(spec["ready"]).with_suffix(".tmp").write_text(json.dumps({"port": port, "pid": os.getpid()}))
        os.replace(Path(spec["ready"]).with_suffix(".tmp"), spec["ready"])
        await stop.wait()
        await server.stop(1)
        manager.stop()

    asyncio.run(serve())
    stats = {f"{st.name}/{v}": s.batcher.stats for st in manager.models.values() for v, s in st.versions.items()
             if s.batcher is not None}
    Path(spec["stats"]).write_text(json.dumps(stats))
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
        import asyncio

        class AioNoop(prediction_service_pb2_grpc.PredictionServiceServicer):
            async def Predict(self, request, context):  # noqa: N802
                return resp

        async def serve():
            server = grpc.aio.server()
            prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(AioNoop(), server)
            port = server.add_insecure_port("127.0.0.1:0")
            await server.start()
            stop = asyncio.Event()
            asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
            Path(spec["ready"]).with_suffix(".tmp").write_text(json.dumps({"port": port, "pid": os.getpid()}))
            os.replace(Path(spec["ready"]).with_suffix(".tmp"), spec["ready"])
            await stop.wait()
            await server.stop(1)

        asyncio.run(serve())
        return 0

    server = grpc.server(futures.ThreadPoolExecutor(max_workers=spec["grpc_max_threads"]))
    prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(Noop(), server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    Path(spec["ready"]).with_suffix(".tmp").write_text(json.dumps({"port": port, "pid": os.getpid()}))
    os.replace(Path(spec["ready"]).with_suffix(".tmp"), spec["ready"])
    while not stop.wait(0.5):
        pass
    server.stop(1).wait()
    return 0


def _wait_ready(proc, ready: Path, log_path: Path, timeout: float = 300) -> dict:
    t0 = time.monotonic()
    while not ready.exists():
        if proc.poll() is not None or time.monotonic() - t0 > timeout:
            proc.kill()
            raise RuntimeError("server did not start:\n" + log_path.read_text()[-3000:])
        time.sleep(0.1)
    return json.loads(ready.read_text())


def _stop_proc(proc) -> object:
    proc.send_signal(signal.SIGTERM)
    try:
        return proc.wait(timeout=60)
    except subprocess.TimeoutExpired:
        proc.kill()
        return "killed"


def _cpu_s(pid: int) -> float:
    """User + system CPU seconds of process ``pid`` so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _grpc_load(port: int, name: str, signature: str, x: np.ndarray, clients: int, requests: int,
               warmup: int = 50, server_pid: int | None = None) -> dict:
    """``clients`` threads, each on its own channel, each sending ``requests`` one-utterance predicts
    back to back (after ``warmup`` each): utterances/s, per-request p50/p99 latency, and the CPU time
    per utterance of the server and of this (client) process."""
    import grpc
    import tensorflow as tf
    from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

    reqs = []
    for i in range(16):
        req = predict_pb2.PredictRequest()
        req.model_spec.name = name
        req.model_spec.signature_name = signature
        req.inputs["features"].CopyFrom(tf.make_tensor_proto(x[i:i + 1]))
        reqs.append(req)
    lat = [[] for _ in range(clients)]
    errs: list[str] = []
    answers: dict[int, np.ndarray] = {}
    barrier = threading.Barrier(clients + 1)

    def client(k):
        channel = grpc.insecure_channel(f"127.0.0.1:{port}")
        stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
        try:
            for i in range(warmup):
                resp = stub.Predict(reqs[(i + k) % 16], timeout=60)
                answers.setdefault((i + k) % 16, tf.make_ndarray(resp.outputs["latent"]))
        finally:
            barrier.wait()
        own = lat[k]
        for i in range(requests):
            t0 = time.perf_counter()
            try:
                stub.Predict(reqs[(i + k) % 16], timeout=60)
            except Exception as e:  # noqa: BLE001
                errs.append(repr(e)[:300])
            own.append(time.perf_counter() - t0)
        channel.close()

    threads = [threading.Thread(target=client, args=(k,), daemon=True) for k in range(clients)]
    for t in threads:
        t.start()
    barrier.wait()
    t0, c0 = time.perf_counter(), _cpu_s(os.getpid())
    s0 = _cpu_s(server_pid) if server_pid else 0.0
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    n = clients * requests
    server_us = (_cpu_s(server_pid) - s0) / n * 1e6 if server_pid else float("nan")
    client_us = (_cpu_s(os.getpid()) - c0) / n * 1e6
    p50, p99 = _pct([v for own in lat for v in own])
    return {"throughput": n / wall, "p50": p50, "p99": p99, "errors": len(errs), "first_errors": errs[:3],
            "wall": wall, "answers": answers, "server_cpu_us": server_us, "client_cpu_us": client_us,
            "latencies": [v for own in lat for v in own]}


def batching_section(args, model_root: Path, name: str, x: np.ndarray, tmp: Path) -> dict:
    """Section 6: the same gRPC load against a server without batching, one with it, and a no-op gRPC
    server (the ceiling of the gRPC stack); ``--batch_test_rounds`` interleaved rounds against the three
    running servers, so that a disturbance of the machine hits all three alike. Throughput: the median
    of the rounds; latency: p50/p99 of every request of every round."""
    import tensorflow as tf

    from tfvae.serving.batching import BatchingOptions, read_batching_parameters

    options = read_batching_parameters(args.batching_parameters_file) if args.batching_parameters_file \
        else BatchingOptions()
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2",
           "PYTHONPATH": os.pathsep.join([str(REPO), *filter(None, [os.environ.get("PYTHONPATH")])])}
    helptext = subprocess.run([sys.executable, "-m", "tfvae.serve", "--help"], capture_output=True, text=True,
                              cwd=REPO, env=env, timeout=300).stdout
    cli = "--enable_batching" in helptext
    print(f"\n6. {args.batch_test_clients} concurrent clients sending one utterance each over gRPC "
          f"({args.batch_test_rounds} rounds x {args.batch_test_requests} requests per client; server: "
          f"{'python -m tfvae.serve' if cli else 'ModelManager + ServingApp (bench/serving.py --serve_child)'}, "
          f"{args.grpc_max_threads} gRPC threads)")
    print(f"   batching parameters: {options.describe()}")
    fn = tf.saved_model.load(str(model_root / str(max(int(p.name) for p in model_root.iterdir()
                                                       if p.name.isdigit())))).signatures[args.signature]
    modes = ("unbatched", "batched", "ceiling") + (("batched-aio", "ceiling-aio") if args.aio_prototype else ())
    procs, ports, files = {}, {}, {}
    try:
        for mode in modes:
            ready, log_path, stats = tmp / f"ready-{mode}.json", tmp / f"serve-{mode}.log", tmp / f"stats-{mode}.json"
            files[mode] = (log_path, stats)
            if mode.startswith("ceiling"):
                spec = {"noop": True, "ready": str(ready), "grpc_max_threads": args.grpc_max_threads,
                        "aio": mode == "ceiling-aio"}
                cmd = [sys.executable, str(Path(__file__).resolve()), "--serve_child", json.dumps(spec)]
            elif cli and mode != "batched-aio":
                cmd = [sys.executable, "-m", "tfvae.serve", "--model_name", name, "--model_base_path",
                       str(model_root), "--host", "127.0.0.1", "--port", "0", "--rest_api_port", "-1",
                       "--ready_file", str(ready), "--grpc_max_threads", str(args.grpc_max_threads),
                       "--file_system_poll_wait_seconds", "0"]
                if mode == "batched":
                    cmd.append("--enable_batching")
                    if args.batching_parameters_file:
                        cmd += ["--batching_parameters_file", str(args.batching_parameters_file)]
            else:
                batching = None if mode == "unbatched" else {**options.__dict__}
                spec = {"base": str(model_root), "name": name, "ready": str(ready), "stats": str(stats),
                        "batching": batching, "max_batch_size": 1024, "grpc_max_threads": args.grpc_max_threads,
                        "aio": mode == "batched-aio"}
                cmd = [sys.executable, str(Path(__file__).resolve()), "--serve_child", json.dumps(spec)]
            with open(log_path, "w") as log:
                procs[mode] = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, cwd=REPO, env=env)
        for mode in modes:
            ports[mode] = _wait_ready(procs[mode], tmp / f"ready-{mode}.json", files[mode][0])["port"]
        runs = {m: [] for m in modes}
        for rnd in range(args.batch_test_rounds):
            for mode in modes:
                runs[mode].append(_grpc_load(ports[mode], name, args.signature, x, args.batch_test_clients,
                                             args.batch_test_requests, warmup=50 if rnd == 0 else 5,
                                             server_pid=procs[mode].pid))
            print(f"   round {rnd + 1}: " + ", ".join(f"{m} {runs[m][-1]['throughput']:,.0f}" for m in modes)
                  + " utt/s")
    finally:
        codes = {m: _stop_proc(p) for m, p in procs.items()}
    out = {}
    for mode in modes:
        rs = runs[mode]
        r = {"throughput": float(np.median([q["throughput"] for q in rs])),
             "errors": sum(q["errors"] for q in rs), "first_errors": [e for q in rs for e in q["first_errors"]][:3],
             "server_cpu_us": float(np.median([q["server_cpu_us"] for q in rs])),
             "client_cpu_us": float(np.median([q["client_cpu_us"] for q in rs]))}
        r["p50"], r["p99"] = _pct([v for q in rs for v in q["latencies"]])
        out[mode] = r
        cpu = f"CPU per utterance: server {r['server_cpu_us']:.0f} us, clients {r['client_cpu_us']:.0f} us"
        if mode.startswith("ceiling"):
            what = "grpc.aio" if mode == "ceiling-aio" else "gRPC"
            print(f"   {what} ceiling (no-op Predict servicer, same clients): {r['throughput']:,.0f} req/s  "
                  f"p50 {r['p50']:.2f} ms  p99 {r['p99']:.2f} ms  ({cpu})")
            continue
        answers = {}
        for q in rs:
            answers.update(q["answers"])
        diff = max(float(np.abs(v - fn(features=tf.constant(x[i:i + 1]))["latent"].numpy()).max())
                   for i, v in answers.items())
        extra = ""
        stats = files[mode][1]
        if stats.exists():
            st = next(iter(json.loads(stats.read_text()).values()), None)
            if st and st["batches"]:
                extra = f", mean {st['rows'] / st['batches']:.1f} utterances per batch"
                r["batch_stats"] = st
        label = "batched, grpc.aio prototype" if mode == "batched-aio" else mode
        print(f"   {label:<9}: {r['throughput']:,.0f} utt/s  p50 {r['p50']:.2f} ms  p99 {r['p99']:.2f} ms  "
              f"({r['errors']} errors, max |diff| vs in-process {diff:.1e}{extra}; {cpu}; "
              f"server exit {codes[mode]})")
        if r["errors"]:
            print("     first errors:", r["first_errors"])
    out["ratio"] = out["batched"]["throughput"] / out["unbatched"]["throughput"]
    ceiling = out["ceiling"]["throughput"] / out["unbatched"]["throughput"]
    if "batched-aio" in out:
        out["ratio_aio"] = out["batched-aio"]["throughput"] / out["unbatched"]["throughput"]
        print(f"   (grpc.aio prototype) batched/unbatched throughput ratio = {out['ratio_aio']:.2f}, "
              f"batched p99 = {out['batched-aio']['p99']:.2f} ms")
    print(f"   batched/unbatched throughput ratio = {out['ratio']:.2f} (goal >= 3)")
    print(f"   batched p99 = {out['batched']['p99']:.2f} ms (goal <= 20 ms)")
    print(f"   (ceiling/unbatched = {ceiling:.2f}: no model server on this gRPC stack, however fast its model, "
          "can exceed that ratio with these clients)")
    return out


def main() -> int:
    if len(sys.argv) == 3 and sys.argv[1] == "--serve_child":
        return _serve_child(sys.argv[2])
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--saved_model", help="a SavedModel version directory (default: export a paper-size model)")
    p.add_argument("--signature", default="identity_free")
    p.add_argument("--iterations", type=int, default=2000, help="in-process and single-client requests per test")
    p.add_argument("--clients", type=int, default=8, help="concurrent clients of the load run")
    p.add_argument("--requests", type=int, default=2000, help="requests per client in the load run")
    p.add_argument("--batch_clients", type=int, default=4, help="concurrent gRPC clients sending batches of 128")
    p.add_argument("--batch_requests", type=int, default=200, help="requests per client at batch 128")
    p.add_argument("--batch_test_clients", type=int, default=8, help="section 6: concurrent one-utterance clients")
    p.add_argument("--batch_test_requests", type=int, default=500, help="section 6: requests per client per round")
    p.add_argument("--batch_test_rounds", type=int, default=5,
                   help="section 6: interleaved rounds against the three servers (throughput: the median)")
    p.add_argument("--batching_parameters_file", help="section 6: TF Serving BatchingParameters (text format); "
                   "default: tfvae's defaults (tfvae.serving.batching.BatchingOptions)")
    p.add_argument("--grpc_max_threads", type=int, default=16, help="section 6: gRPC worker threads of the servers")
    p.add_argument("--only_batching", action="store_true", help="run section 6 only")
    p.add_argument("--aio_prototype", action="store_true",
                   help="section 6: also a batched server on grpc.aio (a bench-only prototype awaiting "
                        "Servable.predict_async) and a no-op grpc.aio server")
    args = p.parse_args()

    import grpc
    import tensorflow as tf
    from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

    tmp = Path(tempfile.mkdtemp(prefix="tfvae-bench-"))
    try:
        path = Path(args.saved_model) if args.saved_model else _export_default(tmp / "models")
        model_root, name = path.parent, path.parent.name
        print(f"model: {path}  signature: {args.signature}  cores: {os.cpu_count()}  TF {tf.__version__}")
        fn = tf.saved_model.load(str(path)).signatures[args.signature]
        dim = fn.structured_input_signature[1]["features"].shape[-1]
        rng = np.random.default_rng(0)
        x = rng.lognormal(size=(128, dim)).astype(np.float32)
        results = {}

        if not args.only_batching:
            # 1. in process
            for b in (1, 128):
                xb = x[:b]
                for _ in range(50):
                    fn(features=tf.constant(xb))["latent"].numpy()
                ts = []
                for _ in range(args.iterations if b == 1 else args.iterations // 4):
                    t0 = time.perf_counter()
                    fn(features=tf.constant(xb))["latent"].numpy()
                    ts.append(time.perf_counter() - t0)
                p50, p99 = _pct(ts)
                results[f"inproc_b{b}"] = (p50, p99, b * len(ts) / sum(ts))
                print(f"in-process batch {b:>3}: p50 {p50:.3f} ms  p99 {p99:.3f} ms  {b * len(ts) / sum(ts):,.0f} utt/s")

            # the server, in its own process
            ready = tmp / "ready.json"
            log = open(tmp / "serve.log", "w")
            proc = subprocess.Popen(
                [sys.executable, "-m", "tfvae.serve", "--model_name", name, "--model_base_path", str(model_root),
                 "--host", "127.0.0.1", "--port", "0", "--rest_api_port", "0", "--ready_file", str(ready),
                 "--max_batch_size", "128"],
                stdout=log, stderr=subprocess.STDOUT, cwd=REPO, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})
            try:
                t0 = time.monotonic()
                while not ready.exists():
                    if proc.poll() is not None or time.monotonic() - t0 > 300:
                        raise RuntimeError("server did not start:\n" + (tmp / "serve.log").read_text()[-3000:])
                    time.sleep(0.1)
                info = json.loads(ready.read_text())
                rest_port, grpc_port = info["rest_api_port"], info["port"]
                channel = grpc.insecure_channel(f"127.0.0.1:{grpc_port}",
                                                options=[("grpc.max_send_message_length", -1)])
                stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
                rest_path = f"/v1/models/{name}:predict"
                bodies = [json.dumps({"signature_name": args.signature, "instances": x[i:i + 1].tolist()}).encode()
                          for i in range(16)]

                def grpc_req(b, i=0):
                    req = predict_pb2.PredictRequest()
                    req.model_spec.name = name
                    req.model_spec.signature_name = args.signature
                    req.inputs["features"].CopyFrom(tf.make_tensor_proto(np.roll(x, i, axis=0)[:b]))
                    return req

                def rest_once(conn, body):
                    conn.request("POST", rest_path, body=body, headers={"Content-Type": "application/json"})
                    r = conn.getresponse()
                    data = r.read()
                    if r.status != 200:
                        raise RuntimeError(f"REST {r.status}: {data[:200]!r}")
                    return data

                # 2. REST, one client
                conn = http.client.HTTPConnection("127.0.0.1", rest_port, timeout=60)
                for i in range(100):
                    rest_once(conn, bodies[i % 16])
                ts = []
                for i in range(args.iterations):
                    t0 = time.perf_counter()
                    rest_once(conn, bodies[i % 16])
                    ts.append(time.perf_counter() - t0)
                conn.close()
                results["rest_b1"] = (*_pct(ts), len(ts) / sum(ts))
                print(f"REST one client, 1 utterance:  p50 {results['rest_b1'][0]:.3f} ms  "
                      f"p99 {results['rest_b1'][1]:.3f} ms  {results['rest_b1'][2]:,.0f} req/s")

                # 3. gRPC, one client
                reqs = [grpc_req(1, i) for i in range(16)]
                for i in range(100):
                    stub.Predict(reqs[i % 16], timeout=60)
                ts = []
                for i in range(args.iterations):
                    t0 = time.perf_counter()
                    stub.Predict(reqs[i % 16], timeout=60)
                    ts.append(time.perf_counter() - t0)
                results["grpc_b1"] = (*_pct(ts), len(ts) / sum(ts))
                print(f"gRPC one client, 1 utterance:  p50 {results['grpc_b1'][0]:.3f} ms  "
                      f"p99 {results['grpc_b1'][1]:.3f} ms  {results['grpc_b1'][2]:,.0f} req/s")

                # 4. gRPC throughput, batches of 128
                big = [grpc_req(128, i) for i in range(4)]
                for i in range(20):
                    stub.Predict(big[i % 4], timeout=60)
                lat, errs = [], []

                def batch_client(k):
                    own = prediction_service_pb2_grpc.PredictionServiceStub(channel)
                    for i in range(args.batch_requests):
                        t0 = time.perf_counter()
                        try:
                            own.Predict(big[(i + k) % 4], timeout=60)
                        except Exception as e:  # noqa: BLE001
                            errs.append(repr(e))
                        lat.append(time.perf_counter() - t0)

                threads = [threading.Thread(target=batch_client, args=(k,)) for k in range(args.batch_clients)]
                t0 = time.perf_counter()
                for t in threads:
                    t.start()
                for t in threads:
                    t.join()
                wall = time.perf_counter() - t0
                n_req = args.batch_clients * args.batch_requests
                results["grpc_b128"] = (*_pct(lat), 128 * n_req / wall)
                print(f"gRPC {args.batch_clients} clients, batches of 128: p50 {results['grpc_b128'][0]:.2f} ms  "
                      f"p99 {results['grpc_b128'][1]:.2f} ms  {128 * n_req / wall:,.0f} utt/s  ({len(errs)} errors)")

                # 5. load run: clients x requests, half REST, half gRPC, one utterance each
                rss0 = _rss_mib(proc.pid)
                lat = {"rest": [], "grpc": []}
                load_errs = []

                def rest_client(k):
                    c = http.client.HTTPConnection("127.0.0.1", rest_port, timeout=60)
                    for i in range(args.requests):
                        t0 = time.perf_counter()
                        try:
                            rest_once(c, bodies[(i + k) % 16])
                        except Exception as e:  # noqa: BLE001
                            load_errs.append(repr(e))
                            c.close()
                            c = http.client.HTTPConnection("127.0.0.1", rest_port, timeout=60)
                        lat["rest"].append(time.perf_counter() - t0)
                    c.close()

                def grpc_client(k):
                    own = prediction_service_pb2_grpc.PredictionServiceStub(channel)
                    for i in range(args.requests):
                        t0 = time.perf_counter()
                        try:
                            own.Predict(reqs[(i + k) % 16], timeout=60)
                        except Exception as e:  # noqa: BLE001
                            load_errs.append(repr(e))
                        lat["grpc"].append(time.perf_counter() - t0)

                threads = [threading.Thread(target=rest_client if k % 2 == 0 else grpc_client, args=(k,))
                           for k in range(args.clients)]
                t0 = time.perf_counter()
                for t in threads:
                    t.start()
                for t in threads:
                    t.join()
                wall = time.perf_counter() - t0
                rss1 = _rss_mib(proc.pid)
                total = args.clients * args.requests
                print(f"load run: {args.clients} clients x {args.requests} requests = {total} in {wall:.1f} s "
                      f"({total / wall:,.0f} req/s), {len(load_errs)} errors, server RSS {rss0:.0f} -> {rss1:.0f} MiB")
                for kind in ("rest", "grpc"):
                    if lat[kind]:
                        p50, p99 = _pct(lat[kind])
                        print(f"  {kind:<4} under load: p50 {p50:.2f} ms  p99 {p99:.2f} ms")
                if load_errs:
                    print("  first errors:", load_errs[:3])
                channel.close()
            finally:
                proc.send_signal(signal.SIGTERM)
                try:
                    code = proc.wait(timeout=60)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    code = "killed"
                print(f"server stopped on SIGTERM with exit code {code}")

        # 6. server-side batching: 8 concurrent one-utterance gRPC clients, without and with batching
        results["batching"] = batching_section(args, model_root, name, x, tmp)

        goals = []
        if "inproc_b1" in results:
            goals += [("in-process batch-1 p50 < 1 ms", results["inproc_b1"][0], "ms", results["inproc_b1"][0] < 1),
                      ("REST p99 < 10 ms (one utterance)", results["rest_b1"][1], "ms", results["rest_b1"][1] < 10),
                      (">= 20,000 utt/s over gRPC, batches of 128", results["grpc_b128"][2], "utt/s",
                       results["grpc_b128"][2] >= 20000)]
        if "batching" in results:
            ratio, p99 = results["batching"]["ratio"], results["batching"]["batched"]["p99"]
            goals += [("batched/unbatched throughput >= 3 (8 clients)", ratio, "x", ratio >= 3),
                      ("batched p99 <= 20 ms (8 clients, 1 utterance)", p99, "ms", p99 <= 20)]
        print("\ngoals:")
        for what, value, unit, ok in goals:
            fmt = ",.3f" if unit == "ms" else ",.2f" if unit == "x" else ",.0f"
            print(f"  {'met   ' if ok else 'MISSED'} {what:<48} measured {value:{fmt}} {unit}")
        return 0
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
