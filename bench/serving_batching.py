"""Server-side batching benchmark: "8 concurrent clients sending one utterance each over gRPC".

    python bench/serving_batching.py [--saved_model saved_models/<run>/<version>] [--designs]

Default (also section 6 of ``bench/serving.py``): ``--batch_test_clients`` clients, each on its own
channel, sending back to back, against a server without batching, one with it (``python -m tfvae.serve
--enable_batching``; parameters from ``--batching_parameters_file`` or tfvae's defaults) and a no-op
``grpc.aio`` server (the ceiling of the Python gRPC stack the server runs on), in
``--batch_test_rounds`` interleaved rounds of ``--batch_test_requests`` requests per client:
throughput (utterances/s, median of the rounds), p50/p99 latency per request, CPU per utterance of
server and clients. Goal (2 cores): batched /
unbatched throughput >= 3 at batched p99 <= 20 ms.

``--designs`` measures, under the same load, the batching designs tried for that goal (each server a
process of ``bench/serving_servers.py``), with two load generators: the threads above (one
blocking stub per thread) and one asyncio loop driving the 8 clients (``grpc.aio`` channels, lower
client CPU). Designs: tfvae's server without and with batching (``python -m tfvae.serve``), and with
batching at one TF intra/inter-op thread; a ``grpc.aio`` front end that runs each batch in its event
loop, closing a batch at the size of the last batch closed by its timeout (re-probing one more every
16 batches) or after a quiet gap of 150 us without a new request; and the no-op servers (sync and
aio). ``--baseline_repo`` adds the servers of another checkout (an A/B test of a change). Results:
``reports/serving/batching-designs.md``.

Without ``--saved_model`` it exports an untrained model of the paper's size (1582 IS10 features,
encoder 512-256, 128 latent nodes) to a temporary directory.
"""

from __future__ import annotations

import argparse
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


def _requests(name: str, signature: str, x: np.ndarray) -> list:
    """16 one-utterance ``PredictRequest``s (rows 0-15 of ``x``), shared by every load generator."""
    import tensorflow as tf
    from tensorflow_serving.apis import predict_pb2

    reqs = []
    for i in range(16):
        req = predict_pb2.PredictRequest()
        req.model_spec.name = name
        req.model_spec.signature_name = signature
        req.inputs["features"].CopyFrom(tf.make_tensor_proto(x[i:i + 1]))
        reqs.append(req)
    return reqs


def _load_result(lat: list[list[float]], errs: list[str], answers: dict, wall: float, n: int,
                 server_cpu: float, client_cpu: float) -> dict:
    p50, p99 = _pct([v for own in lat for v in own])
    return {"throughput": n / wall, "p50": p50, "p99": p99, "errors": len(errs), "first_errors": errs[:3],
            "wall": wall, "answers": answers, "server_cpu_us": server_cpu / n * 1e6,
            "client_cpu_us": client_cpu / n * 1e6, "latencies": [v for own in lat for v in own]}


def _grpc_load(port: int, name: str, signature: str, x: np.ndarray, clients: int, requests: int,
               warmup: int = 50, server_pid: int | None = None) -> dict:
    """``clients`` threads, each on its own channel, each sending ``requests`` one-utterance predicts
    back to back (after ``warmup`` each): utterances/s, per-request p50/p99 latency, and the CPU time
    per utterance of the server and of this (client) process."""
    import grpc
    import tensorflow as tf
    from tensorflow_serving.apis import prediction_service_pb2_grpc

    reqs = _requests(name, signature, x)
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
    s0 = _cpu_s(server_pid) if server_pid else float("nan")
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    return _load_result(lat, errs, answers, wall, clients * requests,
                        (_cpu_s(server_pid) if server_pid else float("nan")) - s0, _cpu_s(os.getpid()) - c0)


def _grpc_load_aio(port: int, name: str, signature: str, x: np.ndarray, clients: int, requests: int,
                   warmup: int = 50, server_pid: int | None = None) -> dict:
    """:func:`_grpc_load` with one asyncio loop driving the ``clients`` (each its own ``grpc.aio``
    channel, one request in flight each): the same load at a lower client CPU cost."""
    import asyncio

    import grpc
    import tensorflow as tf
    from tensorflow_serving.apis import prediction_service_pb2_grpc

    reqs = _requests(name, signature, x)
    lat = [[] for _ in range(clients)]
    errs: list[str] = []
    answers: dict[int, np.ndarray] = {}

    async def main():
        channels = [grpc.aio.insecure_channel(f"127.0.0.1:{port}") for _ in range(clients)]
        stubs = [prediction_service_pb2_grpc.PredictionServiceStub(c) for c in channels]

        async def warm(k):
            for i in range(warmup):
                resp = await stubs[k].Predict(reqs[(i + k) % 16], timeout=60)
                answers.setdefault((i + k) % 16, tf.make_ndarray(resp.outputs["latent"]))

        async def client(k):
            own = lat[k]
            for i in range(requests):
                t0 = time.perf_counter()
                try:
                    await stubs[k].Predict(reqs[(i + k) % 16], timeout=60)
                except Exception as e:  # noqa: BLE001
                    errs.append(repr(e)[:300])
                own.append(time.perf_counter() - t0)

        await asyncio.gather(*(warm(k) for k in range(clients)))
        t0, c0 = time.perf_counter(), _cpu_s(os.getpid())
        s0 = _cpu_s(server_pid) if server_pid else float("nan")
        await asyncio.gather(*(client(k) for k in range(clients)))
        wall = time.perf_counter() - t0
        cpu = ((_cpu_s(server_pid) if server_pid else float("nan")) - s0, _cpu_s(os.getpid()) - c0)
        for c in channels:
            await c.close()
        return wall, cpu

    wall, (server_cpu, client_cpu) = asyncio.run(main())
    return _load_result(lat, errs, answers, wall, clients * requests, server_cpu, client_cpu)


#: --designs: (mode, what it is). "unbatched", "batched" and "ceiling" are the default section's.
DESIGNS = (
    ("unbatched", "python -m tfvae.serve (no batching; grpc.aio front end, model in a pool of 16 threads)"),
    ("batched", "python -m tfvae.serve --enable_batching (grpc.aio front end awaiting the batch thread)"),
    ("batched-1thread", "the same with --tensorflow_intra_op_parallelism 1 --tensorflow_inter_op_parallelism 1"),
    ("inloop-adaptive", "grpc.aio, batches run in the event loop, close at the last timed-out size, TF 1 thread"),
    ("inloop-gap", "grpc.aio, batches run in the event loop, close 150 us after the newest request, TF 1 thread"),
    ("ceiling", "no-op Predict servicer, grpc.server + 16 threads"),
    ("ceiling-aio", "no-op Predict servicer, grpc.aio"),
)
LOADERS = {"threads": _grpc_load, "asyncio": _grpc_load_aio}
_CLI_MODES = {"unbatched": [], "batched": ["--enable_batching"],
              "batched-1thread": ["--enable_batching", "--tensorflow_intra_op_parallelism", "1",
                                  "--tensorflow_inter_op_parallelism", "1"]}


def _command(mode: str, args, model_root: Path, name: str, tmp: Path, options, cli: bool) -> tuple[list[str], Path]:
    """The command line of the server of ``mode`` (see :data:`DESIGNS`; ``<mode>@base``: that mode of
    ``python -m tfvae.serve`` from the ``--baseline_repo`` checkout) and the checkout it runs from."""
    ready, stats = tmp / f"ready-{mode}.json", tmp / f"stats-{mode}.json"
    child = [sys.executable, str(Path(__file__).resolve().with_name("serving_servers.py"))]
    if mode.startswith("ceiling"):
        return child + [json.dumps({"noop": True, "ready": str(ready), "grpc_max_threads": args.grpc_max_threads,
                                    "aio": mode == "ceiling-aio"})], REPO
    design, _, base = mode.partition("@")
    if design in _CLI_MODES and (cli or base):
        cmd = [sys.executable, "-m", "tfvae.serve", "--model_name", name, "--model_base_path", str(model_root),
               "--host", "127.0.0.1", "--port", "0", "--rest_api_port", "-1", "--ready_file", str(ready),
               "--grpc_max_threads", str(args.grpc_max_threads), "--file_system_poll_wait_seconds", "0",
               *_CLI_MODES[design]]
        if design != "unbatched" and args.batching_parameters_file:
            cmd += ["--batching_parameters_file", str(args.batching_parameters_file)]
        return cmd, Path(args.baseline_repo).resolve() if base else REPO
    spec = {"base": str(model_root), "name": name, "ready": str(ready), "stats": str(stats), "max_batch_size": 1024,
            "grpc_max_threads": args.grpc_max_threads,
            "batching": None if mode == "unbatched" or mode.startswith("inloop") else {**options.__dict__}}
    if mode not in ("unbatched", "batched"):
        spec["intra_op"] = 1
    if mode.startswith("inloop"):
        spec.update(inloop=True, max_rows=options.max_batch_size, timeout=2 * options.batch_timeout_micros / 1e6,
                    close=mode.split("-")[1], gap=150e-6)
    return child + [json.dumps(spec)], REPO


def _measure(args, model_root: Path, name: str, x: np.ndarray, tmp: Path, modes, loaders) -> dict:
    """Start a server per mode, then ``--batch_test_rounds`` interleaved rounds (per loader, per mode):
    {(loader, mode): {throughput (median of rounds), p50/p99 (all requests), CPU per utterance (median),
    errors, max |diff| of the answers vs in-process, batch_stats}}."""
    import tensorflow as tf

    from tfvae.serving.batching import BatchingOptions, read_batching_parameters

    options = read_batching_parameters(args.batching_parameters_file) if args.batching_parameters_file \
        else BatchingOptions()
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2",
           "PYTHONPATH": os.pathsep.join([str(REPO), *filter(None, [os.environ.get("PYTHONPATH")])])}
    helptext = subprocess.run([sys.executable, "-m", "tfvae.serve", "--help"], capture_output=True, text=True,
                              cwd=REPO, env=env, timeout=300).stdout
    cli = "--enable_batching" in helptext
    print(f"   {args.batch_test_clients} clients x {args.batch_test_requests} requests per round, "
          f"{args.batch_test_rounds} rounds; batching parameters: {options.describe()}; server of "
          f"unbatched/batched: {'python -m tfvae.serve' if cli else 'ModelManager + ServingApp'}")
    version = max(int(p.name) for p in model_root.iterdir() if p.name.isdigit())
    fn = tf.saved_model.load(str(model_root / str(version))).signatures[args.signature]
    procs, ports = {}, {}
    runs = {(ld, m): [] for ld in loaders for m in modes}
    try:
        for mode in modes:
            cmd, repo = _command(mode, args, model_root, name, tmp, options, cli)
            with open(tmp / f"serve-{mode}.log", "w") as log:
                procs[mode] = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, cwd=repo,
                                               env={**env, "PYTHONPATH": str(repo)})
        for mode in modes:
            ports[mode] = _wait_ready(procs[mode], tmp / f"ready-{mode}.json", tmp / f"serve-{mode}.log")["port"]
        for rnd in range(args.batch_test_rounds):
            for ld in loaders:
                for mode in modes:
                    runs[ld, mode].append(LOADERS[ld](ports[mode], name, args.signature, x, args.batch_test_clients,
                                                      args.batch_test_requests, warmup=50 if rnd == 0 else 5,
                                                      server_pid=procs[mode].pid))
                print(f"   round {rnd + 1} ({ld} clients): "
                      + ", ".join(f"{m} {runs[ld, m][-1]['throughput']:,.0f}" for m in modes) + " utt/s")
    finally:
        codes = {m: _stop_proc(p) for m, p in procs.items()}
    out = {}
    for (ld, mode), rs in runs.items():
        r = {"throughput": float(np.median([q["throughput"] for q in rs])),
             "errors": sum(q["errors"] for q in rs), "first_errors": [e for q in rs for e in q["first_errors"]][:3],
             "server_cpu_us": float(np.median([q["server_cpu_us"] for q in rs])),
             "client_cpu_us": float(np.median([q["client_cpu_us"] for q in rs])), "exit": codes[mode]}
        r["p50"], r["p99"] = _pct([v for q in rs for v in q["latencies"]])
        answers = {i: v for q in rs for i, v in q["answers"].items()}
        r["diff"] = max((float(np.abs(v - fn(features=tf.constant(x[i:i + 1]))["latent"].numpy()).max())
                         for i, v in answers.items()), default=float("nan")) if not mode.startswith("ceiling") else None
        stats = tmp / f"stats-{mode}.json"
        st = next(iter(json.loads(stats.read_text()).values()), None) if stats.exists() else None
        if st and st["batches"]:
            r["batch_stats"] = st  # counted over every loader's rounds
        out[ld, mode] = r
    return out


def _line(label: str, r: dict) -> str:
    extra = f", mean {r['batch_stats']['rows'] / r['batch_stats']['batches']:.1f} utterances per batch" \
        if "batch_stats" in r else ""
    diff = "" if r["diff"] is None else f", max |diff| vs in-process {r['diff']:.1e}"
    return (f"{label}: {r['throughput']:,.0f} utt/s  p50 {r['p50']:.2f} ms  p99 {r['p99']:.2f} ms  ({r['errors']} "
            f"errors{diff}{extra}; CPU per utterance: server {r['server_cpu_us']:.0f} us, clients "
            f"{r['client_cpu_us']:.0f} us; server exit {r['exit']})")


def batching_section(args, model_root: Path, name: str, x: np.ndarray, tmp: Path) -> dict:
    """Section 6: the same gRPC load against a server without batching, one with it, and a no-op
    ``grpc.aio`` server (the ceiling of the gRPC stack the server runs on); ``--batch_test_rounds``
    interleaved rounds against the running servers, so that a disturbance of the machine hits all alike.
    Throughput: the median of the rounds; latency: p50/p99 of every request of every round."""
    print(f"\n6. {args.batch_test_clients} concurrent clients sending one utterance each over gRPC "
          f"({args.grpc_max_threads} gRPC threads)")
    base = ("unbatched@base", "batched@base") if args.baseline_repo else ()
    res = _measure(args, model_root, name, x, tmp, ("unbatched", "batched", *base, "ceiling-aio"), ("threads",))
    out = {m: res["threads", m] for m in ("unbatched", "batched", *base)}
    out["ceiling"] = res["threads", "ceiling-aio"]
    for mode in ("unbatched", "batched", *base):
        print("   " + _line(f"{mode:<9}", out[mode]))
        if out[mode]["errors"]:
            print("     first errors:", out[mode]["first_errors"])
    if base:
        print(f"   (@base: python -m tfvae.serve of {args.baseline_repo}; this checkout / base: unbatched "
              f"{out['unbatched']['throughput'] / out['unbatched@base']['throughput']:.2f}x, batched "
              f"{out['batched']['throughput'] / out['batched@base']['throughput']:.2f}x)")
    c = out["ceiling"]
    print(f"   gRPC ceiling (no-op Predict servicer on grpc.aio, same clients): {c['throughput']:,.0f} req/s  "
          f"p50 {c['p50']:.2f} ms  p99 {c['p99']:.2f} ms  (CPU per request: server {c['server_cpu_us']:.0f} us, "
          f"clients {c['client_cpu_us']:.0f} us)")
    out["ratio"] = out["batched"]["throughput"] / out["unbatched"]["throughput"]
    ceiling = c["throughput"] / out["unbatched"]["throughput"]
    print(f"   batched/unbatched throughput ratio = {out['ratio']:.2f} (goal >= 3)")
    print(f"   batched p99 = {out['batched']['p99']:.2f} ms (goal <= 20 ms)")
    print(f"   (ceiling/unbatched = {ceiling:.2f}: no model server on this gRPC stack, however fast its model, "
          "can exceed that ratio with these clients)")
    return out


def designs_section(args, model_root: Path, name: str, x: np.ndarray, tmp: Path) -> dict:
    """``--designs``: every design of :data:`DESIGNS` under both load generators; a table of throughput,
    ratio to the unbatched server under the same load generator, p99 and CPU per utterance."""
    print(f"\nbatching designs: {args.batch_test_clients} concurrent clients sending one utterance each over gRPC")
    designs = list(DESIGNS)
    if args.baseline_repo:
        designs += [(f"{m}@base", f"{m}, python -m tfvae.serve of {args.baseline_repo}")
                    for m in ("unbatched", "batched")]
    modes = [m for m, _ in designs]
    res = _measure(args, model_root, name, x, tmp, modes, tuple(LOADERS))
    rows = []
    for ld in LOADERS:
        base = res[ld, "unbatched"]["throughput"]
        for mode, what in designs:
            r = res[ld, mode]
            per_batch = f"{r['batch_stats']['rows'] / r['batch_stats']['batches']:.1f}" if "batch_stats" in r else ""
            rows.append((ld, mode, f"{r['throughput']:,.0f}", f"{r['throughput'] / base:.2f}", f"{r['p99']:.2f}",
                         f"{r['server_cpu_us']:.0f}", f"{r['client_cpu_us']:.0f}", per_batch, str(r["errors"])))
            if r["errors"]:
                print(f"   {ld}/{mode} first errors:", r["first_errors"])
    head = ("clients", "design", "utt/s", "x unbatched", "p99 ms", "server us/utt", "client us/utt",
            "utt/batch", "errors")
    print("\n| " + " | ".join(head) + " |\n|" + "---|" * len(head))
    for row in rows:
        print("| " + " | ".join(row) + " |")
    print("\n" + "\n".join(f"- {m}: {w}" for m, w in designs))
    print("(utt/batch is counted over both load generators' rounds)")
    return {f"{ld}/{m}": {k: v for k, v in r.items() if k != "first_errors"} for (ld, m), r in res.items()}


def prepare(args, tmp: Path) -> tuple[Path, object, np.ndarray]:
    """The benchmarked version directory (``--saved_model`` or the exported paper-size model), its
    ``--signature`` function (the in-process reference) and 128 seeded input rows; prints what it is."""
    import tensorflow as tf

    path = Path(args.saved_model) if args.saved_model else _export_default(tmp / "models")
    print(f"model: {path}  signature: {args.signature}  cores: {os.cpu_count()}  TF {tf.__version__}")
    fn = tf.saved_model.load(str(path)).signatures[args.signature]
    dim = fn.structured_input_signature[1]["features"].shape[-1]
    return path, fn, np.random.default_rng(0).lognormal(size=(128, dim)).astype(np.float32)


def add_batching_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--batch_test_clients", type=int, default=8, help="concurrent one-utterance clients")
    p.add_argument("--batch_test_requests", type=int, default=500, help="requests per client per round")
    p.add_argument("--batch_test_rounds", type=int, default=5,
                   help="interleaved rounds against the running servers (throughput: the median)")
    p.add_argument("--batching_parameters_file", help="TF Serving BatchingParameters (text format); "
                   "default: tfvae's defaults (tfvae.serving.batching.BatchingOptions)")
    p.add_argument("--grpc_max_threads", type=int, default=16, help="gRPC worker threads of the servers")
    p.add_argument("--baseline_repo", help="also run the unbatched and batched servers of this other checkout of "
                   "tfvae (e.g. a git worktree of an earlier commit), interleaved with this one's: an A/B test")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--saved_model", help="a SavedModel version directory (default: export a paper-size model)")
    p.add_argument("--signature", default="identity_free")
    p.add_argument("--designs", action="store_true", help="measure every batching design (see above)")
    p.add_argument("--json_out", help="also write the results as JSON here")
    add_batching_args(p)
    args = p.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="tfvae-bench-"))
    try:
        path, _, x = prepare(args, tmp)
        model_root, name = path.parent, path.parent.name
        out = (designs_section if args.designs else batching_section)(args, model_root, name, x, tmp)
        if args.json_out:
            Path(args.json_out).write_text(json.dumps(out, indent=1, default=lambda o: None))
        return 0
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
