"""Serving benchmark: in-process signature latency, then ``python -m tfvae.serve`` over loopback.

    python bench/serving.py [--saved_model saved_models/<run>/<version>] [--requests 2000] [--clients 8]

1. in-process: ``identity_free`` called on the loaded SavedModel at batch 1 and 128 (p50/p99);
2. REST, one client, one utterance per request: p50/p99 latency;
3. gRPC (``PredictionServiceStub``), one client, one utterance: p50/p99 latency;
4. gRPC throughput in batches of 128 (``--batch_clients`` concurrent clients);
5. load run: ``--clients`` concurrent clients (half REST, half gRPC, one utterance each) x
   ``--requests`` requests; counts errors and the server's RSS before and after;
6. server-side batching, "8 concurrent clients sending one utterance each over gRPC", without and
   with ``--enable_batching`` and against a no-op gRPC server (``bench/serving_batching.py``, which
   also compares the batching designs tried: ``--designs``). ``--only_batching`` runs it alone.

Without ``--saved_model`` it exports an untrained model of the paper's size (1582 IS10
features, encoder 512-256, 128 latent nodes) to a temporary directory. The server runs in its
own process; clients are threads of this one. Goals (2 cores): in-process batch-1 p50 < 1 ms,
REST p99 < 10 ms for one utterance, >= 20,000 utterances/s over gRPC in batches of 128; with
batching, 8 one-utterance gRPC clients: batched/unbatched throughput >= 3 and batched p99 <= 20 ms.
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
sys.path.insert(0, str(Path(__file__).resolve().parent))

from serving_batching import _pct, add_batching_args, batching_section, prepare  # noqa: E402


def _latencies(call, n: int, warmup: int = 100) -> list[float]:
    """Seconds of each of ``n`` calls ``call(i)``, after ``warmup`` untimed ones."""
    for i in range(warmup):
        call(i)
    ts = []
    for i in range(n):
        t0 = time.perf_counter()
        call(i)
        ts.append(time.perf_counter() - t0)
    return ts


def _rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--saved_model", help="a SavedModel version directory (default: export a paper-size model)")
    p.add_argument("--signature", default="identity_free")
    p.add_argument("--iterations", type=int, default=2000, help="in-process and single-client requests per test")
    p.add_argument("--clients", type=int, default=8, help="concurrent clients of the load run")
    p.add_argument("--requests", type=int, default=2000, help="requests per client in the load run")
    p.add_argument("--batch_clients", type=int, default=4, help="concurrent gRPC clients sending batches of 128")
    p.add_argument("--batch_requests", type=int, default=200, help="requests per client at batch 128")
    p.add_argument("--only_batching", action="store_true", help="run section 6 only")
    add_batching_args(p)
    args = p.parse_args()

    import grpc
    import tensorflow as tf
    from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

    tmp = Path(tempfile.mkdtemp(prefix="tfvae-bench-"))
    try:
        path, fn, x = prepare(args, tmp)
        model_root, name = path.parent, path.parent.name
        results = {}

        if not args.only_batching:
            # 1. in process
            for b in (1, 128):
                xb = x[:b]
                ts = _latencies(lambda i: fn(features=tf.constant(xb))["latent"].numpy(),
                                args.iterations if b == 1 else args.iterations // 4, warmup=50)
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
                ts = _latencies(lambda i: rest_once(conn, bodies[i % 16]), args.iterations)
                conn.close()
                results["rest_b1"] = (*_pct(ts), len(ts) / sum(ts))
                print(f"REST one client, 1 utterance:  p50 {results['rest_b1'][0]:.3f} ms  "
                      f"p99 {results['rest_b1'][1]:.3f} ms  {results['rest_b1'][2]:,.0f} req/s")

                # 3. gRPC, one client
                reqs = [grpc_req(1, i) for i in range(16)]
                ts = _latencies(lambda i: stub.Predict(reqs[i % 16], timeout=60), args.iterations)
                results["grpc_b1"] = (*_pct(ts), len(ts) / sum(ts))
                print(f"gRPC one client, 1 utterance:  p50 {results['grpc_b1'][0]:.3f} ms  "
                      f"p99 {results['grpc_b1'][1]:.3f} ms  {results['grpc_b1'][2]:,.0f} req/s")

                # 4. gRPC throughput, batches of 128
                big = [grpc_req(128, i) for i in range(4)]
                for i in range(20):
                    stub.Predict(big[i % 4], timeout=60)
                lat, errs = [], []

                def grpc_client(k, reqs, n, lat, errs):
                    """``n`` predicts of ``reqs`` (from the k-th) on its own stub: latency and error of each."""
                    own = prediction_service_pb2_grpc.PredictionServiceStub(channel)
                    for i in range(n):
                        t0 = time.perf_counter()
                        try:
                            own.Predict(reqs[(i + k) % len(reqs)], timeout=60)
                        except Exception as e:  # noqa: BLE001
                            errs.append(repr(e))
                        lat.append(time.perf_counter() - t0)

                threads = [threading.Thread(target=grpc_client, args=(k, big, args.batch_requests, lat, errs))
                           for k in range(args.batch_clients)]
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

                threads = [threading.Thread(target=rest_client, args=(k,)) if k % 2 == 0 else
                           threading.Thread(target=grpc_client, args=(k, reqs, args.requests, lat["grpc"], load_errs))
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
