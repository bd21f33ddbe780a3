"""tf.distribute: the one training loop (tfvae.loop.Trainer) under every strategy.

- MirroredStrategy over 2 logical CPUs trains exactly like one device, uneven last batch included;
- MultiWorkerMirroredStrategy with two real ``python -m tfvae.train`` worker processes on loopback
  (TF_CONFIG): identical weights on both, only the chief's outputs remain.
"""

import json
import os
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from tfvae.distribute import Role, scaled_learning_rate

SCRIPT = r'''
import tensorflow as tf
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
import keras, numpy as np
from tfvae.data import Corpus, Split
from tfvae.distribute import make_strategy
from tfvae.loop import Trainer
from tfvae.model import LRVAE
rng = np.random.default_rng(0)
def split(n, spk):
    return Split(rng.normal(size=(n, 20)).astype("float32"), rng.integers(0, 3, n), np.array(spk * (n // len(spk))),
                 np.array([f"u{i}" for i in range(n)]))
# 70 training examples: with a global batch of 32 the last step has 6, all on replica 0 (replica 1 gets none)
corpus = Corpus("toy", "IS10", ["a", "b", "c"], {"train": split(70, ["s1", "s2", "s3", "s4", "s5"]),
                                                  "validation": split(10, ["v1", "v2"]), "test": split(10, ["t1", "t2"])})
out = {}
for name, strategy, per_replica in [("one", make_strategy("default"), 32), ("two", make_strategy("mirrored"), 16)]:
    keras.utils.set_random_seed(0)
    with strategy.scope():
        m = LRVAE(20, 3, 5, method="dnn", head_units=(8,), seed=0)
        m.build()
        m.compile(optimizer=keras.optimizers.SGD(0.1))
    m.adapt_normalizer(corpus.splits["train"].features)
    t = Trainer(m, strategy, corpus, per_replica, seed=0, verbose=0)
    sizes = [[int(v.shape[0]) for v in strategy.experimental_local_results(b["features"])] for b in t.train_batches(0)]
    assert t.steps_per_epoch == len(sizes) == 3, (t.steps_per_epoch, sizes)
    hist = {}
    for epoch in range(2):
        t._reset_metrics()
        it = iter(t.train_batches(epoch))
        for _ in range(t.steps_per_epoch):
            t.train_function(it)
        hist = t._results(training=True)
    out[name] = ([w.numpy() for w in m.trainable_weights], hist["loss"], strategy.num_replicas_in_sync, sizes,
                 t.evaluate()["emo"])
diff = max(float(np.abs(a - b).max()) for a, b in zip(out["one"][0], out["two"][0]))
print("REPLICAS", out["one"][2], out["two"][2])
print("SIZES", json.dumps(out["one"][3]), json.dumps(out["two"][3]))
print("LOSS", out["one"][1], out["two"][1])
print("VALEMO", out["one"][4], out["two"][4])
print("MAXDIFF", diff)
'''.replace("import keras,", "import json, keras,")


def test_mirrored_two_replicas_match_one_replica_with_an_uneven_last_batch():
    r = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    lines = dict(line.split(" ", 1) for line in r.stdout.splitlines() if line.split(" ")[0].isupper())
    assert lines["REPLICAS"] == "1 2"
    assert lines["SIZES"] == "[[32], [32], [6]] [[16, 16], [16, 16], [6, 0]]"
    one, two = map(float, lines["LOSS"].split())
    assert abs(one - two) < 1e-5 * max(1.0, abs(one)), "epoch metrics aggregate over both replicas"
    v1, v2 = map(float, lines["VALEMO"].split())
    assert abs(v1 - v2) < 1e-5
    assert float(lines["MAXDIFF"]) < 1e-5, "each replica is weighted by its share of the global batch"


def _free_ports(n):
    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind(("localhost", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


SMALL = ["--dataset", "tfvae_demo/is10_small", "--speed_perturb", "false", "--latent_dim", "32", "--mask_groups", "8",
         "--encoder_units", "64", "--decoder_units", "64", "--head_units", "32", "--verbose", "2", "--eval_attackers", "fast"]


@pytest.mark.parametrize("streamed", [False, True], ids=["in-memory", "streamed"])
def test_two_real_workers_on_loopback(demo_data_dir, tmp_path, streamed):
    """``streamed``: the corpus is read from the TFDS files (``--in_memory_mb 0``), each worker only its slice."""
    ports = _free_ports(2)
    cluster = {"worker": [f"localhost:{p}" for p in ports]}
    out, sm = tmp_path / "runs", tmp_path / "saved_models"
    procs = []
    for i in range(2):
        env = {**os.environ, "TF_CONFIG": json.dumps({"cluster": cluster, "task": {"type": "worker", "index": i}})}
        procs.append(subprocess.Popen(
            [sys.executable, "-m", "tfvae.train", *SMALL, "--data_dir", demo_data_dir, "--strategy", "multiworker",
             "--epochs", "3", "--batch_size", "16", "--backup_every", "2", "--output_dir", str(out),
             "--export_dir", str(sm), *(["--in_memory_mb", "0"] if streamed else [])],
            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True))
    logs = [p.communicate(timeout=600)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], "\n".join(log[-3000:] for log in logs)
    assert "2 replica(s) (worker 0 of 2 worker(s)), global batch 32" in logs[0]
    if streamed:  # 80 training rows: each worker streams its 40 (train split only), never the whole split
        for i, log in enumerate(logs):
            assert f"input pipeline {i} of 2 streams 40 of the 80 rows (train, its slice" in log, log[-2000:]
    prints = [[line for line in log.splitlines() if "trained weights fingerprint" in line] for log in logs]
    assert prints[0][0].startswith("[tfvae] worker 0:") and prints[1][0].startswith("[tfvae] worker 1:")
    assert prints[0][0].split()[-1] == prints[1][0].split()[-1], "workers end with identical weights"
    # only the chief's outputs remain: one run directory, one SavedModel, no backup, no worker temp dirs
    run = out / "tfvae_demo-is10_small-IS10-lrvae"
    assert sorted(p.name for p in out.iterdir()) == [run.name]
    assert sorted(p.name for p in run.iterdir()) == ["best.weights.h5", "config.json", "erasure.npz", "history.csv",
                                                     "mask.json", "normalization.npz", "summary.json", "tb"]
    assert [p.name for p in (sm / run.name).iterdir()] == ["1"]
    assert "best epoch" in logs[0] and "best epoch" not in logs[1], "only the chief reports"
    assert not list(Path(tempfile.gettempdir()).glob("tfvae-worker1-*")), "worker 1's temporary outputs are gone"


def test_multiworker_without_tf_config_is_a_clear_error(monkeypatch, capsys):
    from tfvae import train

    monkeypatch.delenv("TF_CONFIG", raising=False)
    assert train.main(["--strategy", "multiworker"]) == 2
    assert "--strategy multiworker needs the TF_CONFIG environment variable" in capsys.readouterr().err


def test_roles_and_learning_rate_rule():
    assert Role().is_chief and Role("chief", 0).is_chief and Role("worker", 0).is_chief
    assert not Role("worker", 1).is_chief and Role("worker", 1).name == "worker 1"
    assert scaled_learning_rate(5e-4, 4, "none") == 5e-4
    assert scaled_learning_rate(5e-4, 4, "linear") == pytest.approx(2e-3)
    assert scaled_learning_rate(5e-4, 4, "sqrt") == pytest.approx(1e-3)
    with pytest.raises(ValueError, match="lr_scaling='cubic' is unknown"):
        scaled_learning_rate(5e-4, 4, "cubic")
