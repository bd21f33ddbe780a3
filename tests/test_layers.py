import keras
import numpy as np
import pytest
import tensorflow as tf

from tfvae.layers import GradientReversal, LayeredDropout
from tfvae.schedules import keep_rates


def test_layered_dropout_empirical_keep_rate_per_node():
    p = keep_rates(16, "linear", p_min=0.05, p_max=0.95)
    layer = LayeredDropout(p, seed=3)
    n = 40000
    x = tf.ones((n, 16))
    y = layer(x, training=True).numpy()
    assert set(np.unique(y)) <= {0.0, 1.0}, "training output is m * x with m in {0, 1}"
    rate = y.mean(axis=0)
    tol = 4 * np.sqrt(p * (1 - p) / n)  # 4 binomial standard errors
    assert np.all(np.abs(rate - p) <= tol), (rate, p)
    # masks are independent across nodes: correlation of two middle nodes ~ 0
    c = np.corrcoef(y[:, 7], y[:, 8])[0, 1]
    assert abs(c) < 0.03


def test_layered_dropout_inference_scales_by_p_exactly():
    p = keep_rates(8, "cosine", "identity", 0.0, 1.0)
    x = np.random.default_rng(0).normal(size=(5, 8)).astype("float32")
    out = LayeredDropout(p)(x, training=False).numpy()
    np.testing.assert_array_equal(out, x * p)


def test_layered_dropout_in_tf_function_and_fit():
    layer = LayeredDropout([1.0, 0.0, 0.5])

    @tf.function
    def f(x):
        return layer(x, training=True)

    y = f(tf.ones((20000, 3))).numpy()
    assert y[:, 0].mean() == 1.0 and y[:, 1].mean() == 0.0 and abs(y[:, 2].mean() - 0.5) < 0.02
    inputs = keras.Input((3,))
    dense = keras.layers.Dense(1)
    model = keras.Model(inputs, dense(LayeredDropout([1.0, 0.0, 0.5])(inputs)))
    model.compile("adam", "mse")
    w0 = dense.kernel.numpy().copy()
    x = np.random.default_rng(1).normal(size=(64, 3)).astype("float32")
    hist = model.fit(x, x[:, :1], epochs=3, verbose=0)
    assert np.isfinite(hist.history["loss"]).all()
    w = dense.kernel.numpy()
    # node 1 is always dropped in training, so its weight never receives a gradient
    assert w[1, 0] == w0[1, 0] and w[0, 0] != w0[0, 0]


def test_layered_dropout_validation_and_config():
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        LayeredDropout([0.5, 1.5])
    layer = LayeredDropout([0.2, 0.4], seed=7, name="ld")
    with pytest.raises(ValueError, match="2 keep rates but its input has 3"):
        layer(tf.ones((1, 3)))
    clone = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(layer))
    assert isinstance(clone, LayeredDropout)
    assert clone.keep_rates == pytest.approx([0.2, 0.4]) and clone.seed == 7


@pytest.mark.parametrize("lam", [0.0, 0.5, 2.0])
def test_gradient_reversal_sign_and_scale(lam):
    layer = GradientReversal(lam)
    x = tf.constant([[1.0, -2.0, 3.0]])
    with tf.GradientTape() as tape:
        tape.watch(x)
        y = layer(x)
        loss = tf.reduce_sum(y * tf.constant([[1.0, 2.0, 3.0]]))
    np.testing.assert_array_equal(y.numpy(), x.numpy())
    np.testing.assert_allclose(tape.gradient(loss, x).numpy(), -lam * np.array([[1.0, 2.0, 3.0]]))


def test_gradient_reversal_lambda_can_be_scheduled_inside_tf_function():
    layer = GradientReversal(1.0)
    layer.build((None, 2))

    @tf.function
    def grad(x):
        with tf.GradientTape() as tape:
            tape.watch(x)
            s = tf.reduce_sum(layer(x))
        return tape.gradient(s, x)

    x = tf.ones((1, 2))
    np.testing.assert_allclose(grad(x).numpy(), [[-1.0, -1.0]])
    layer.lambda_.assign(0.25)
    np.testing.assert_allclose(grad(x).numpy(), [[-0.25, -0.25]])
    clone = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(GradientReversal(0.3)))
    assert clone.initial_lambda == pytest.approx(0.3)
    with pytest.raises(ValueError, match=">= 0"):
        GradientReversal(-1.0)


def test_layers_in_exported_savedmodel(tmp_path):
    p = [1.0, 0.75, 0.5, 0.25]
    inputs = keras.Input((4,))
    model = keras.Model(inputs, GradientReversal(1.0)(LayeredDropout(p)(inputs)))
    model.export(str(tmp_path / "m"), verbose=False)
    loaded = tf.saved_model.load(str(tmp_path / "m"))
    x = np.arange(8, dtype="float32").reshape(2, 4)
    out = loaded.serve(tf.constant(x)).numpy()
    np.testing.assert_array_equal(out, x * np.array(p, "float32"))


@pytest.mark.parametrize("mode", ["eager", "graph", "xla"])
def test_philox_draws_are_keras_random_draws(mode):
    """tfvae's random_normal / random_uniform name the Philox algorithm (fast under XLA) but draw exactly
    the numbers keras.random draws from the same seed generator, with and without XLA."""
    from tfvae.layers import random_normal, random_uniform

    for ours, theirs in ((random_normal, keras.random.normal), (random_uniform, keras.random.uniform)):
        a_gen, b_gen = keras.random.SeedGenerator(11), keras.random.SeedGenerator(11)
        a = lambda: ours((16, 5), a_gen, dtype="float32")  # noqa: E731
        b = lambda: theirs((16, 5), seed=b_gen, dtype="float32")  # noqa: E731
        if mode != "eager":
            a, b = tf.function(a, jit_compile=mode == "xla"), tf.function(b, jit_compile=mode == "xla")
        for _ in range(3):  # the generators advance alike
            np.testing.assert_array_equal(a().numpy(), b().numpy())
