"""The one train step is correct under tf.distribute: 2 replicas == 1 replica."""

import subprocess
import sys

SCRIPT = r'''
import tensorflow as tf
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
import keras, numpy as np
from tfvae.model import LRVAE
rng = np.random.default_rng(0)
x = rng.normal(size=(64, 20)).astype("float32")
e, s = rng.integers(0, 3, 64).astype("int32"), rng.integers(0, 4, 64).astype("int32")
ds = tf.data.Dataset.from_tensor_slices({"features": x, "emotion": e, "speaker": s}).batch(32)
out = {}
for name, strategy in [("one", tf.distribute.get_strategy()),
                       ("two", tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"]))]:
    keras.utils.set_random_seed(0)
    with strategy.scope():
        m = LRVAE(20, 3, 4, method="dnn", head_units=(8,), seed=0)
        m.build()
        m.compile(optimizer=keras.optimizers.SGD(0.1))
    m.adapt_normalizer(x)
    loss = m.fit(ds, epochs=2, verbose=0, shuffle=False).history["loss"][-1]
    out[name] = ([w.numpy() for w in m.trainable_weights], loss, strategy.num_replicas_in_sync)
diff = max(float(np.abs(a - b).max()) for a, b in zip(out["one"][0], out["two"][0]))
print("REPLICAS", out["one"][2], out["two"][2])
print("LOSS", out["one"][1], out["two"][1])
print("MAXDIFF", diff)
'''


def test_mirrored_two_replicas_match_one_replica():
    r = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    lines = dict(line.split(" ", 1) for line in r.stdout.splitlines() if line.split(" ")[0].isupper())
    assert lines["REPLICAS"] == "1 2"
    one, two = map(float, lines["LOSS"].split())
    assert abs(one - two) < 1e-5 * max(1.0, abs(one))
    assert float(lines["MAXDIFF"]) < 1e-5, "gradients are averaged over the global batch exactly once"
