"""Server-side batching (``tfvae.serving.batching``): concurrent predicts merged into batches.

Every answer is compared with calling the same signature alone; the batch threads are observed
through ``BatchScheduler.stats`` and by counting the calls of the signature.
"""

import shutil
import threading
import time

import grpc
import numpy as np
import pytest
import tensorflow as tf
from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

from tfvae.export import export_encoder
from tfvae.masking import keep_mask
from tfvae.model import LRVAE
from tfvae.serving.app import ServingApp
from tfvae.serving.batching import (BatchingOptions, BatchScheduler, parse_batching_parameters,
                                    read_batching_parameters)
from tfvae.serving.errors import ServingError
from tfvae.serving.manager import ModelManager
from tfvae.serving.servable import Servable

DIM, N = 24, 16
JOIN = 20  # seconds: bound on every wait of these tests


@pytest.fixture(scope="module")
def model_root(tmp_path_factory):
    rng = np.random.default_rng(0)
    m = LRVAE(DIM, 3, 4, latent_dim=N, encoder_units=(32,), decoder_units=(16,), head_units=(8,), seed=0)
    m.build()
    m.adapt_normalizer(rng.lognormal(size=(64, DIM)).astype(np.float32))
    root = tmp_path_factory.mktemp("batching_models")
    masks = {"identity_free": keep_mask(N, "identity_free", 6), "emotion_free": keep_mask(N, "emotion_free", 8)}
    export_encoder(m, root, "enc", masks, {"emotion_names": ["a", "b", "c"]})
    return root


@pytest.fixture(scope="module")
def reference(model_root):
    """The signatures called alone, in this process: what every batched answer must equal."""
    return tf.saved_model.load(str(model_root / "enc" / "1")).signatures


@pytest.fixture
def x():
    return np.random.default_rng(1).lognormal(size=(40, DIM)).astype(np.float32)


def _servable(model_root, **opts):
    return Servable("enc", 1, model_root / "enc" / "1", 1024, batching=BatchingOptions(**opts))


def _concurrently(fns, timeout=JOIN):
    """Run the callables at once (released together by a barrier); their results or exceptions."""
    out = [None] * len(fns)
    barrier = threading.Barrier(len(fns))

    def go(i):
        barrier.wait()
        try:
            out[i] = fns[i]()
        except Exception as e:  # noqa: BLE001
            out[i] = e

    threads = [threading.Thread(target=go, args=(i,), daemon=True) for i in range(len(fns))]
    for t in threads:
        t.start()
    deadline = time.monotonic() + timeout
    for t in threads:
        t.join(max(deadline - time.monotonic(), 0))
    assert not any(t.is_alive() for t in threads), "a request never got its answer"
    return out


def _grpc_row(stub, x, i) -> np.ndarray:
    """Row ``i`` of ``x`` through ``identity_free`` of model ``enc`` over gRPC: the latent row."""
    req = predict_pb2.PredictRequest()
    req.model_spec.name = "enc"
    req.model_spec.signature_name = "identity_free"
    req.inputs["features"].CopyFrom(tf.make_tensor_proto(x[i:i + 1]))
    return tf.make_ndarray(stub.Predict(req, timeout=JOIN).outputs["latent"])


def _assert_rows(outs, reference, x) -> None:
    for i, out in enumerate(outs):
        np.testing.assert_allclose(out, reference["identity_free"](features=tf.constant(x[i:i + 1]))["latent"],
                                   rtol=1e-5, atol=1e-6)


def _count_runs(servable):
    """Count the calls of the signatures (batches and requests run alone) of ``servable``."""
    calls = []
    run = servable._run

    def counted(sig, inputs, wanted):
        calls.append({k: v.shape for k, v in inputs.items()})
        return run(sig, inputs, wanted)

    servable._run = counted
    return calls


def test_concurrent_requests_are_merged_and_each_gets_its_own_rows(model_root, reference, x):
    s = _servable(model_root, max_batch_size=64, batch_timeout_micros=300_000, num_batch_threads=1)
    try:
        calls = _count_runs(s)
        sig = s.signature("identity_free", "grpc")
        # 12 requests of 1..3 rows, some with an output filter
        parts, start = [], 0
        for i in range(12):
            n = 1 + i % 3
            parts.append(x[start:start + n])
            start += n
        fns = [lambda p=p, i=i: s.predict(sig, {"features": p}, ["latent"] if i % 2 else ())
               for i, p in enumerate(parts)]
        outs = _concurrently(fns)
        assert s.batcher.stats["tasks"] == 12
        assert len(calls) < 12 and s.batcher.stats["batches"] == len(calls), (calls, s.batcher.stats)
        assert max(c["features"][0] for c in calls) > 3  # at least one call merged several requests
        for p, out in zip(parts, outs):
            assert not isinstance(out, Exception), out
            assert set(out) == {"latent"} and out["latent"].shape == (len(p), N)
            want = reference["identity_free"](features=tf.constant(p))["latent"].numpy()
            np.testing.assert_allclose(out["latent"], want, rtol=1e-5, atol=1e-6)
        keep = keep_mask(N, "identity_free", 6) > 0
        assert all(np.all(o["latent"][:, ~keep] == 0.0) for o in outs)  # masked nodes stay exactly 0
    finally:
        s.close()


def test_string_outputs_and_two_signatures_are_batched_separately(model_root, reference, x):
    s = _servable(model_root, max_batch_size=64, batch_timeout_micros=200_000)
    try:
        calls = _count_runs(s)
        emo, ident = s.signature("emotion", "rest"), s.signature("identity_free", "rest")
        fns = [lambda i=i: s.predict(emo if i % 2 else ident, {"features": x[i:i + 1]}) for i in range(8)]
        outs = _concurrently(fns)
        assert len(calls) < 8
        for i, out in enumerate(outs):
            want = reference["emotion" if i % 2 else "identity_free"](features=tf.constant(x[i:i + 1]))
            assert set(out) == set(want)
            for k, v in want.items():
                if v.dtype == tf.string:
                    assert out[k].tolist() == v.numpy().tolist()
                else:
                    np.testing.assert_allclose(out[k], v.numpy(), rtol=1e-5, atol=1e-6)
    finally:
        s.close()


def test_predict_async_for_asyncio_front_ends(model_root, reference, x):
    import asyncio

    s = _servable(model_root, max_batch_size=64, batch_timeout_micros=200_000)
    plain = Servable("enc", 1, model_root / "enc" / "1", 1024)  # batching off: runs in the loop's thread
    try:
        calls = _count_runs(s)
        sig = s.signature("identity_free", "grpc")

        async def go():
            outs = await asyncio.wait_for(asyncio.gather(
                *[s.predict_async(sig, {"features": x[i:i + 1]}) for i in range(6)],
                s.predict_async(s.signature("mask", "grpc"), {"features": x[:1], "keep": np.full((1, N), 0.5,
                                                                                                  np.float32)}),
                return_exceptions=True), JOIN)
            with pytest.raises(ServingError, match="NaN"):  # invalid inputs raise at once, before any await
                s.predict_async(sig, {"features": np.full((1, DIM), np.nan, np.float32)})
            alone = await plain.predict_async(plain.signature("identity_free", "grpc"), {"features": x[:2]})
            return outs, alone

        outs, alone = asyncio.run(go())
        assert len(calls) < 6  # the six were merged
        for i in range(6):
            np.testing.assert_allclose(outs[i]["latent"], reference["identity_free"](
                features=tf.constant(x[i:i + 1]))["latent"], rtol=1e-5, atol=1e-6)
        assert isinstance(outs[6], ServingError) and "keep must hold only 0 and 1" in outs[6].message
        np.testing.assert_allclose(alone["latent"], reference["identity_free"](features=tf.constant(x[:2]))["latent"],
                                   rtol=1e-5, atol=1e-6)
    finally:
        s.close()


def test_timeout_flushes_a_lone_request(model_root, reference, x):
    s = _servable(model_root, max_batch_size=64, batch_timeout_micros=250_000)
    try:
        sig = s.signature("identity_free", "grpc")
        t0 = time.perf_counter()
        out, = _concurrently([lambda: s.predict(sig, {"features": x[:1]})])
        waited = time.perf_counter() - t0
        assert 0.2 <= waited < 5, waited  # held for the batch timeout, then run although the batch is not full
        assert s.batcher.stats == {"batches": 1, "tasks": 1, "rows": 1, "retried_batches": 0, "rejected": 0}
        np.testing.assert_allclose(out["latent"], reference["identity_free"](features=tf.constant(x[:1]))["latent"],
                                   rtol=1e-5, atol=1e-6)
    finally:
        s.close()
    fast = _servable(model_root, max_batch_size=64, batch_timeout_micros=0)
    try:
        sig = fast.signature("identity_free", "grpc")
        _concurrently([lambda: fast.predict(sig, {"features": x[:1]})])  # thread start, first call
        t0 = time.perf_counter()
        _concurrently([lambda: fast.predict(sig, {"features": x[:1]})])
        assert time.perf_counter() - t0 < 0.2
    finally:
        fast.close()


def test_full_batch_runs_before_the_timeout(model_root, x):
    s = _servable(model_root, max_batch_size=4, batch_timeout_micros=30_000_000)
    try:
        sig = s.signature("identity_free", "grpc")
        t0 = time.perf_counter()
        outs = _concurrently([lambda i=i: s.predict(sig, {"features": x[i:i + 1]}) for i in range(4)])
        assert time.perf_counter() - t0 < 10  # not the 30 s timeout
        assert all(o["latent"].shape == (1, N) for o in outs)
        assert s.batcher.stats["batches"] == 1 and s.batcher.stats["rows"] == 4
    finally:
        s.close()


def test_a_nan_request_fails_alone_and_its_batch_mates_succeed(model_root, reference, x):
    """The graph's check_numerics fails the whole merged batch; each request is then run alone."""
    s = _servable(model_root)  # only for its validated-input runner
    sig = s.signature("identity_free", "grpc")
    sched = BatchScheduler(BatchingOptions(max_batch_size=64, batch_timeout_micros=300_000), "nan-test")
    calls = []

    def fn(inputs, wanted):  # the servable's runner, without predict's NaN check in front of it
        calls.append(inputs["features"].shape[0])
        return Servable._run(sig, inputs, wanted)

    try:
        rows = [x[i:i + 1].copy() for i in range(8)]
        rows[3][0, 5] = np.nan
        outs = _concurrently([lambda r=r: sched.run("k", fn, {"features": r}, 1, ["latent"]) for r in rows])
        assert isinstance(outs[3], ServingError), outs[3]
        assert outs[3].code == grpc.StatusCode.INVALID_ARGUMENT and "finite" in outs[3].message
        for i, out in enumerate(outs):
            if i != 3:
                assert not isinstance(out, Exception), out
                np.testing.assert_allclose(out["latent"], reference["identity_free"](features=tf.constant(rows[i]))
                                           ["latent"], rtol=1e-5, atol=1e-6)
        assert sched.stats["retried_batches"] >= 1 and max(calls) > 1  # a merged batch failed and was split
    finally:
        sched.close()
        s.close()


def test_a_bad_keep_in_a_batch_fails_alone_through_predict(model_root, reference, x):
    """The 'mask' signature's assertion (keep must be 0/1) raised by one request of a batch."""
    s = _servable(model_root, max_batch_size=64, batch_timeout_micros=300_000)
    try:
        calls = _count_runs(s)
        sig = s.signature("mask", "grpc")
        keeps = [np.ones((1, N), np.float32) for _ in range(6)]
        keeps[2][0, 0] = 0.5
        outs = _concurrently([lambda i=i: s.predict(sig, {"features": x[i:i + 1], "keep": keeps[i]})
                              for i in range(6)])
        assert isinstance(outs[2], ServingError) and "keep must hold only 0 and 1" in outs[2].message
        assert outs[2].http_status == 400
        for i in (0, 1, 3, 4, 5):
            want = reference["mask"](features=tf.constant(x[i:i + 1]), keep=tf.constant(keeps[i]))["latent"]
            np.testing.assert_allclose(outs[i]["latent"], want, rtol=1e-5, atol=1e-6)
        assert s.batcher.stats["retried_batches"] >= 1 and max(c["features"][0] for c in calls) > 1
        # a NaN request is refused by predict's own check before it can reach a batch
        with pytest.raises(ServingError, match="NaN"):
            s.predict(sig, {"features": np.full((1, DIM), np.nan, np.float32), "keep": keeps[0]})
        # 'keep' with 1 row broadcast over 3 rows of features cannot be stacked: it runs alone, correctly
        before = s.batcher.stats["tasks"]
        out = s.predict(sig, {"features": x[:3], "keep": keeps[0]})
        assert s.batcher.stats["tasks"] == before
        np.testing.assert_allclose(out["latent"], reference["mask"](features=tf.constant(x[:3]),
                                                                    keep=tf.constant(keeps[0]))["latent"],
                                   rtol=1e-5, atol=1e-6)
    finally:
        s.close()


def test_different_non_batch_shapes_never_share_a_batch():
    sched = BatchScheduler(BatchingOptions(max_batch_size=64, batch_timeout_micros=300_000), "shapes")
    seen = []

    def fn(inputs, wanted):
        seen.append(inputs["x"].shape)
        return {"y": inputs["x"].sum(axis=tuple(range(1, inputs["x"].ndim)))}

    try:
        arrays = [np.full((1, 3 + i % 2), i, np.float32) for i in range(10)]
        outs = _concurrently([lambda a=a: sched.run(("sig", a.shape[1:]), fn, {"x": a}, 1, ["y"]) for a in arrays])
        assert sorted(seen) == [(5, 3), (5, 4)], seen  # one batch per shape, each holding its 5 requests
        for a, out in zip(arrays, outs):
            assert out["y"].tolist() == [a.sum()]
    finally:
        sched.close()


def test_outputs_not_split_by_rows_fall_back_to_running_alone():
    sched = BatchScheduler(BatchingOptions(max_batch_size=64, batch_timeout_micros=200_000), "scalar")

    def fn(inputs, wanted):
        return {"total": np.float32(inputs["x"].sum())}

    try:
        arrays = [np.full((1, 2), i, np.float32) for i in range(4)]
        outs = _concurrently([lambda a=a: sched.run("k", fn, {"x": a}, 1, ["total"]) for a in arrays])
        assert [float(o["total"]) for o in outs] == [a.sum() for a in arrays]
        assert "k" in sched.unbatchable and not sched.accepts("k", 1)
    finally:
        sched.close()


def test_queue_limit_is_a_clear_unavailable_error():
    sched = BatchScheduler(BatchingOptions(max_batch_size=2, batch_timeout_micros=0, num_batch_threads=1,
                                           max_enqueued_batches=2), "full")
    release, running = threading.Event(), threading.Event()

    def fn(inputs, wanted):
        running.set()
        assert release.wait(JOIN)
        return {"y": inputs["x"] * 2}

    results = {}

    def send(i):
        try:
            results[i] = sched.run("k", fn, {"x": np.full((1, 1), i, np.float32)}, 1, ["y"])
        except Exception as e:  # noqa: BLE001
            results[i] = e

    threads = [threading.Thread(target=send, args=(0,), daemon=True)]
    try:
        threads[0].start()
        assert running.wait(JOIN)  # request 0 holds the only batch thread
        for i in range(1, 5):  # 2 queued batches of 2 rows each: the queue is full
            threads.append(threading.Thread(target=send, args=(i,), daemon=True))
            threads[-1].start()
        deadline = time.monotonic() + JOIN
        while sched.pending() < 4 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert sched.pending() == 4
        threads.append(threading.Thread(target=send, args=(5,), daemon=True))
        threads[-1].start()
        threads[-1].join(5)  # refused at once, not queued
        err = results.get(5)
        assert isinstance(err, ServingError), err
        assert err.code == grpc.StatusCode.UNAVAILABLE and err.http_status == 503
        assert "queue" in err.message and "max_enqueued_batches" in err.message
        assert sched.stats["rejected"] == 1
    finally:
        release.set()
        for t in threads:
            t.join(JOIN)
        sched.close()
    assert [float(results[i]["y"][0, 0]) for i in range(5)] == [0, 2, 4, 6, 8]


def test_parameters_file_parsing(tmp_path):
    f = tmp_path / "batching.txt"
    f.write_text("# TF Serving BatchingParameters\nmax_batch_size { value: 32 }\n"
                 "batch_timeout_micros { value: 1500 }\nnum_batch_threads { value: 2 }\n"
                 "max_enqueued_batches { value: 7 }\nthread_pool_name { value: 'mine' }\n"
                 "allowed_batch_sizes: 8\nallowed_batch_sizes: 32\npad_variable_length_inputs: true\n")
    o = read_batching_parameters(f)
    assert (o.max_batch_size, o.batch_timeout_micros, o.num_batch_threads, o.max_enqueued_batches) == (32, 1500, 2, 7)
    assert o.thread_pool_name == "mine" and o.allowed_batch_sizes == (8, 32)
    default = BatchingOptions()
    assert parse_batching_parameters("max_batch_size { value: 8 }") == BatchingOptions(
        max_batch_size=8, batch_timeout_micros=default.batch_timeout_micros,
        num_batch_threads=default.num_batch_threads, max_enqueued_batches=default.max_enqueued_batches)
    assert parse_batching_parameters("") == default


@pytest.mark.parametrize("text, message", [
    ("max_batchsize { value: 8 }", 'no field named "max_batchsize"'),
    ("max_batch_size: 8", "max_batch_size { value: 64 }"),
    ("max_batch_size { valeu: 8 }", 'no field named "valeu"'),
    ("batch_timeout_micros { value: 'soon' }", "batch_timeout_micros"),
    ("max_batch_size { value: 0 }", "max_batch_size must be an integer >= 1"),
    ("num_batch_threads { value: 0 }", "num_batch_threads must be an integer >= 1"),
    ("max_enqueued_batches { value: -3 }", "max_enqueued_batches must be an integer >= 1"),
    ("batch_timeout_micros { value: -1 }", "batch_timeout_micros must be an integer >= 0"),
    ("max_batch_size { value: 16 } allowed_batch_sizes: 8", "must equal max_batch_size (16)"),
    ("max_batch_size { value: 16 } allowed_batch_sizes: 8 allowed_batch_sizes: 4 allowed_batch_sizes: 16",
     "increasing"),
])
def test_bad_parameters_name_the_field(tmp_path, text, message):
    f = tmp_path / "bad.txt"
    f.write_text(text)
    with pytest.raises(ValueError) as err:
        read_batching_parameters(f)
    assert message in str(err.value) and str(f) in str(err.value)
    with pytest.raises(ValueError, match="cannot read"):
        read_batching_parameters(tmp_path / "missing.txt")


def test_allowed_batch_sizes_pad_the_batch(model_root, reference, x):
    s = _servable(model_root, max_batch_size=16, batch_timeout_micros=200_000, allowed_batch_sizes=(8, 16))
    try:
        calls = _count_runs(s)
        sig = s.signature("identity_free", "grpc")
        outs = _concurrently([lambda i=i: s.predict(sig, {"features": x[i:i + 1]}) for i in range(3)])
        assert {c["features"][0] for c in calls} <= {1, 8, 16}
        for i, out in enumerate(outs):
            assert out["latent"].shape == (1, N)
            np.testing.assert_allclose(out["latent"], reference["identity_free"](features=tf.constant(x[i:i + 1]))
                                       ["latent"], rtol=1e-5, atol=1e-6)
    finally:
        s.close()


def _batch_threads():
    return [t for t in threading.enumerate() if t.name.startswith("batch_threads-enc-")]


def test_batch_threads_stop_on_unload_and_on_manager_stop(model_root, reference, x, tmp_path):
    base = tmp_path / "enc"
    shutil.copytree(model_root / "enc" / "1", base / "1")
    manager = ModelManager(model_name="enc", model_base_path=str(base), poll_seconds=0, config_poll_seconds=0,
                           batching=BatchingOptions(batch_timeout_micros=1000, num_batch_threads=2))
    manager.start()
    try:
        v1 = manager.resolve("enc")
        assert v1.batcher is not None and not v1.batcher.threads  # started by the first batched request
        sig = v1.signature("identity_free", "grpc")
        _concurrently([lambda: v1.predict(sig, {"features": x[:1]})])
        assert len(v1.batcher.threads) == 2 and all(t.is_alive() for t in v1.batcher.threads)
        assert {t.name for t in _batch_threads()} >= {"batch_threads-enc-1-0", "batch_threads-enc-1-1"}
        shutil.copytree(model_root / "enc" / "1", base / "2")
        manager.refresh()  # sees version 2 (stable on the next scan)
        manager.refresh()
        assert manager.resolve("enc").version == 2
        assert v1.batcher.closed and not any(t.is_alive() for t in v1.batcher.threads)
        # a request that still holds the unloaded version is answered, unbatched
        out = v1.predict(sig, {"features": x[:2]})
        np.testing.assert_allclose(out["latent"], reference["identity_free"](features=tf.constant(x[:2]))["latent"],
                                   rtol=1e-5, atol=1e-6)
        v2 = manager.resolve("enc")
        _concurrently([lambda: v2.predict(v2.signature("identity_free", "grpc"), {"features": x[:1]})])
        assert all(t.is_alive() for t in v2.batcher.threads)
    finally:
        manager.stop()
    assert not any(t.is_alive() for t in v2.batcher.threads)
    assert not [t for t in _batch_threads() if t.name.startswith("batch_threads-enc-2")]


def test_grpc_clients_through_the_app_are_batched(model_root, reference, x):
    manager = ModelManager(model_name="enc", model_base_path=str(model_root / "enc"), poll_seconds=0,
                           config_poll_seconds=0,
                           batching=BatchingOptions(max_batch_size=64, batch_timeout_micros=200_000))
    app = ServingApp(manager, "127.0.0.1", rest_api_port=-1, port=0).start()
    channel = grpc.insecure_channel(f"127.0.0.1:{app.port}")
    try:
        stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
        outs = _concurrently([lambda i=i: _grpc_row(stub, x, i) for i in range(8)])
        stats = manager.resolve("enc").batcher.stats
        assert stats["tasks"] == 8 and stats["batches"] < 8, stats
        _assert_rows(outs, reference, x)
    finally:
        channel.close()
        app.stop()
    assert manager.resolve("enc").batcher.closed


def test_no_grpc_thread_waits_for_a_batch(model_root, reference, x):
    """gRPC runs on grpc.aio: with one pool thread, 8 concurrent one-row clients still meet in one batch
    (a thread-per-request server could hold only one of them at a time); without batching the one pool
    thread answers all 8."""
    for batching in (BatchingOptions(max_batch_size=8, batch_timeout_micros=5_000_000), None):
        manager = ModelManager(model_name="enc", model_base_path=str(model_root / "enc"), poll_seconds=0,
                               config_poll_seconds=0, batching=batching)
        app = ServingApp(manager, "127.0.0.1", rest_api_port=-1, port=0, grpc_max_threads=1).start()
        channel = grpc.insecure_channel(f"127.0.0.1:{app.port}")
        try:
            stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
            t0 = time.monotonic()
            outs = _concurrently([lambda i=i: _grpc_row(stub, x, i) for i in range(8)])
            if batching is not None:
                assert manager.resolve("enc").batcher.stats == {"batches": 1, "tasks": 8, "rows": 8,
                                                                 "retried_batches": 0, "rejected": 0}
                assert time.monotonic() - t0 < 4.0  # closed full, not by its 5 s timeout
            _assert_rows(outs, reference, x)
        finally:
            channel.close()
            app.stop()


def _cli_has_batching() -> bool:
    from tfvae.serve import parser

    return "--enable_batching" in parser()._option_string_actions


@pytest.mark.skipif(not _cli_has_batching(), reason="python -m tfvae.serve has no --enable_batching yet")
def test_cli_enable_batching_and_a_bad_parameters_file(model_root, reference, x, tmp_path):
    import json
    import os
    import signal
    import subprocess
    import sys
    from pathlib import Path

    repo = Path(__file__).resolve().parents[1]
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    base = ["--model_name", "enc", "--model_base_path", str(model_root / "enc"), "--host", "127.0.0.1",
            "--port", "0", "--rest_api_port", "-1"]
    bad = tmp_path / "bad.txt"
    bad.write_text("max_batch_size { value: 8 }\nbatch_timeout { value: 10 }\n")
    r = subprocess.run([sys.executable, "-m", "tfvae.serve", *base, "--enable_batching",
                        "--batching_parameters_file", str(bad)], capture_output=True, text=True, env=env,
                       cwd=repo, timeout=180)
    assert r.returncode == 2 and 'no field named "batch_timeout"' in r.stderr and str(bad) in r.stderr, r.stderr
    r = subprocess.run([sys.executable, "-m", "tfvae.serve", *base, "--tensorflow_intra_op_parallelism", "-2"],
                       capture_output=True, text=True, env=env, cwd=repo, timeout=180)
    assert r.returncode == 2 and "--tensorflow_intra_op_parallelism must be >= 0" in r.stderr, r.stderr
    good = tmp_path / "good.txt"
    good.write_text("max_batch_size { value: 16 }\nbatch_timeout_micros { value: 200000 }\n")
    ready = tmp_path / "ready.json"
    log = open(tmp_path / "serve.log", "w")
    proc = subprocess.Popen([sys.executable, "-m", "tfvae.serve", *base, "--enable_batching",
                             "--batching_parameters_file", str(good), "--ready_file", str(ready),
                             "--tensorflow_intra_op_parallelism", "1", "--tensorflow_inter_op_parallelism", "1"],
                            stdout=log, stderr=subprocess.STDOUT, env=env, cwd=repo)
    try:
        t0 = time.monotonic()
        while not ready.exists():
            assert proc.poll() is None and time.monotonic() - t0 < 180, (tmp_path / "serve.log").read_text()[-3000:]
            time.sleep(0.1)
        channel = grpc.insecure_channel(f"127.0.0.1:{json.loads(ready.read_text())['port']}")
        stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)

        def call(i):
            t = time.perf_counter()
            out = _grpc_row(stub, x, i)
            return out, time.perf_counter() - t

        outs = _concurrently([lambda i=i: call(i) for i in range(4)])
        channel.close()
        _assert_rows([out for out, _ in outs], reference, x)
        assert min(w for _, w in outs) >= 0.15  # held for the file's 200 ms batch timeout: batching is on
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(60) == 0
    assert "TensorFlow threads: intra-op 1, inter-op 1" in (tmp_path / "serve.log").read_text()
