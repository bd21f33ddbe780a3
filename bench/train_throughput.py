"""Train-step throughput of tfvae's training loop against this CPU's own matmul peak.

    python bench/train_throughput.py [--steps 300] [--method lrvae] [--dataset tfvae_demo/is10 --data_dir ...]

Measured in one run, on whatever devices TensorFlow sees (2 CPU cores in CI):

1. the matmul peak: float32 ``[128, 1582] x [1582, 512]`` (the train step's largest GEMM: batch x
   IS10 features x first encoder layer) in a compiled loop, with and without XLA; the larger is the peak;
2. the model's FLOPs per example (forward + backward), counted by TensorFlow's profiler on the graph
   of ``LRVAE.compute_gradients`` at batch 128, and the analytic count of its dense layers;
3. examples/s of ``Trainer.train_function`` -- the step the train CLI runs (``tfvae.train.build_trainer``,
   default layer sizes, batch 128, Adam update included) -- without and with ``--jit_compile``, fed
   (a) by the CLI's own ``tf.data`` pipeline and (b) by one cached batch (no input pipeline);
4. the same for a single-function reference (:func:`reference_steps`): a minimal train step of the same
   model -- ``LRVAE.compute_losses``, its gradients and the ``FusedAdam`` update -- written as ONE
   ``tf.function(jit_compile=True)`` (and, for comparison, without XLA), fed the same two ways. Every
   step of 3 and 4 is timed side by side in interleaved rounds (medians), so the ratios
   ``production / reference`` and ``XLA / no XLA`` printed at the end compare like with like on a
   shared machine; the goal is a production step at least as fast as the reference;
5. achieved FLOP/s = FLOPs/example x examples/s, as a fraction of the matmul peak;
6. where the time goes: the forward + backward pass alone and the optimizer update alone (fused
   Adam as trained, and Keras' element-wise Adam for comparison).

Without ``--dataset`` the corpus is an in-memory stand-in with the IS10 shape (1582 features, 5
emotions, 32 training speakers, 8192 training utterances, values drawn from a seeded normal
distribution): throughput does not depend on the feature values. With ``--dataset`` it is loaded
like the train CLI does.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

PEAK_SHAPE = (128, 1582, 512)


def matmul_peak(jit: bool, seconds: float = 3.0, inner: int = 50) -> float:
    """FLOP/s of ``a @ b`` at :data:`PEAK_SHAPE`, ``inner`` products per call, best of repeated calls."""
    import tensorflow as tf

    m, k, n = PEAK_SHAPE
    rng = np.random.default_rng(0)
    a = tf.constant(rng.normal(size=(m, k)).astype(np.float32))
    b = tf.constant(rng.normal(size=(k, n)).astype(np.float32))

    @tf.function(jit_compile=jit)
    def loop(a, b):
        acc = tf.zeros((m, n))
        for i in tf.range(inner):
            # each product depends on the loop variable, so none is hoisted or merged
            acc += tf.matmul(a + tf.cast(i, tf.float32) * 1e-9, b)
        return acc

    loop(a, b).numpy()
    best, t_end = 0.0, time.perf_counter() + seconds
    while time.perf_counter() < t_end:
        t0 = time.perf_counter()
        loop(a, b).numpy()
        best = max(best, 2.0 * m * k * n * inner / (time.perf_counter() - t0))
    return best


def analytic_flops(model) -> float:
    """Forward + backward FLOPs per example of the dense layers (2 per multiply-add): forward 2*in*out;
    backward the weight gradient (2*in*out) and, except for the first encoder layer, the input gradient."""
    total, first = 0.0, None
    for layer in model._flatten_layers(include_self=False):
        kernel = getattr(layer, "kernel", None)
        if kernel is None:
            continue
        fi, fo = kernel.shape
        total += 6.0 * fi * fo
        if layer.name == "encoder_dense0":
            first = 2.0 * fi * fo
    return total - (first or 0.0)


def profiled_flops(model, batch: int) -> float:
    """FLOPs per example that TensorFlow's profiler counts in the graph of ``compute_gradients``."""
    import tensorflow as tf

    spec = {"features": tf.TensorSpec([batch, model.input_dim], tf.float32),
            "emotion": tf.TensorSpec([batch], tf.int32), "speaker": tf.TensorSpec([batch], tf.int32)}
    graph = tf.function(model.compute_gradients).get_concrete_function(spec, tf.TensorSpec([], tf.float32)).graph
    opts = tf.compat.v1.profiler.ProfileOptionBuilder.float_operation()
    opts["output"] = "none"
    prof = tf.compat.v1.profiler.profile(graph=graph, options=opts)
    return prof.total_float_ops / batch


def stand_in_corpus(n_train: int, seed: int = 0):
    from tfvae.data import Corpus, Split

    rng = np.random.default_rng(seed)

    def split(n, prefix, speakers):
        return Split(rng.normal(size=(n, 1582)).astype(np.float32), rng.integers(0, 5, n),
                     np.array([f"{prefix}{i % speakers}" for i in range(n)]), np.array([f"{prefix}u{i}" for i in range(n)]))

    return Corpus("stand-in/is10", "IS10", ["neutral", "angry", "sad", "happy", "disgust"],
                  {"train": split(n_train, "tr", 32), "validation": split(512, "va", 8), "test": split(512, "te", 8)})


def production_steps(trainer) -> dict:
    """One train step per call, returning the loss: ``Trainer.train_function`` fed by the CLI's ``tf.data``
    pipeline (one iterator over many epochs, as ``Trainer.fit``), and the same step on one cached batch."""
    it = iter(trainer.distributed(trainer.train_pipe, seed=0, epochs=range(1000)))
    cached = trainer.cached_step_function(next(iter(trainer.train_batches(0))))
    return {"tf.data pipeline": lambda: trainer.train_function(it)["loss"], "cached batch": lambda: cached()["loss"]}


def reference_steps(model, trainer, jit: bool = True) -> dict:
    """The single-function reference: a minimal train step of the same model -- ``LRVAE.compute_losses``
    (forward and every loss term of eq. 4), its gradients and the Adam update (``FusedAdam``, the
    optimizer the CLI trains with, a fresh instance) -- as ONE ``tf.function(jit_compile=jit)``. It
    schedules the gradient-reversal lambda (and the KL warm-up, when configured) as ``LRVAE.train_step``
    does, since they change the update; it keeps no metrics and runs under no distribution strategy.
    Fed like :func:`production_steps`."""
    import tensorflow as tf

    from tfvae.optimizers import FusedAdam

    optimizer = FusedAdam(float(model.optimizer.learning_rate.numpy()))
    optimizer.build(model.trainable_variables)

    @tf.function(jit_compile=jit)
    def step(batch):
        if model.grls:
            lam = model.lambda_schedule(optimizer.iterations)
            for grl in model.grls:
                grl.lambda_.assign(lam)
        if model.parts["vae"] and model.kl_warmup_steps:
            model.kl_anneal.assign(tf.minimum(tf.cast(optimizer.iterations, tf.float32) / model.kl_warmup_steps, 1.0))
        with tf.GradientTape() as tape:
            loss, _ = model.compute_losses(batch, training=True)
        optimizer.apply_gradients(zip(tape.gradient(loss, model.trainable_variables), model.trainable_variables))
        return loss

    it = iter(trainer.distributed(trainer.train_pipe, seed=0, epochs=range(1000)))
    batch = next(iter(trainer.train_batches(0)))
    piped = tf.function(lambda: step(next(it)))  # the batch is taken inside the graph, as in train_function
    cached = tf.function(lambda: step(batch))
    return {"tf.data pipeline": piped, "cached batch": cached}


def interleaved_rates(steps: dict, n_steps: int, batch: int, rounds: int = 30, warmup: int = 64) -> dict:
    """Examples/s of every one-step callable in ``steps``, per round, measured side by side: ``rounds``
    rounds, each timing ``n_steps // rounds`` steps of every callable in turn (in reverse order every
    other round, so a drifting machine load favours none). Each callable first runs ``warmup`` steps
    (tracing, XLA compilation, thread pools)."""
    for fn in steps.values():
        for _ in range(warmup):
            out = fn()
        float(out)
    per_round = max(1, n_steps // rounds)
    rates = {k: [] for k in steps}
    for r in range(rounds):
        for k in (list(steps) if r % 2 == 0 else list(steps)[::-1]):
            fn = steps[k]
            t0 = time.perf_counter()
            for _ in range(per_round):
                out = fn()
            float(out)  # the last step has finished: every step before it has too
            rates[k].append(per_round * batch / (time.perf_counter() - t0))
    return rates


def paired_ratio(rates: dict, a, b) -> float:
    """Median over rounds of ``a``'s rate / ``b``'s rate in the same round (robust to load drift)."""
    import statistics

    return statistics.median(x / y for x, y in zip(rates[a], rates[b]))


def breakdown(model, trainer, reps: int = 100) -> dict[str, float]:
    """ms per call of the step's parts on one cached batch: forward + backward, optimizer update."""
    import keras
    import tensorflow as tf

    batch = next(iter(trainer.train_batches(0)))
    share = tf.constant(1.0)
    grads_fn = tf.function(model.compute_gradients)
    grads = grads_fn(batch, share)[0]
    update = tf.function(lambda g: model.optimizer.apply_gradients(zip(g, model.trainable_variables)))
    keras_adam = keras.optimizers.Adam(float(model.optimizer.learning_rate.numpy()))
    keras_adam.build(model.trainable_variables)
    keras_update = tf.function(lambda g: keras_adam.apply_gradients(zip(g, model.trainable_variables)))
    out = {}
    for name, fn in (("forward+backward (compute_gradients)", lambda: grads_fn(batch, share)[1]),
                     ("optimizer update (fused Adam, as trained)", lambda: update(grads)),
                     ("optimizer update (Keras' Adam, for comparison)", lambda: keras_update(grads))):
        fn()
        t0 = time.perf_counter()
        for _ in range(reps):
            r = fn()
        if r is not None:
            float(r)
        out[name] = (time.perf_counter() - t0) / reps * 1e3
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--steps", type=int, default=300, help="timed steps per measurement")
    p.add_argument("--rounds", type=int, default=30, help="interleaved rounds the timed steps are split into")
    p.add_argument("--method", default="lrvae")
    p.add_argument("--dataset", help="a tfvae dataset (default: an in-memory IS10-shaped stand-in)")
    p.add_argument("--data_dir")
    p.add_argument("--n_train", type=int, default=8192, help="stand-in training utterances")
    args = p.parse_args()

    import os
    import statistics

    import tensorflow as tf

    from tfvae.config import TrainConfig
    from tfvae.distribute import make_strategy
    from tfvae.train import build_trainer

    if args.dataset:
        from tfvae.data import load_corpus

        corpus = load_corpus(args.dataset, "IS10", data_dir=args.data_dir)
    else:
        corpus = stand_in_corpus(args.n_train)
    peaks = {jit: matmul_peak(jit) for jit in (False, True)}
    peak = max(peaks.values())
    m, k, n = PEAK_SHAPE
    print(f"TF {tf.__version__}, {os.cpu_count()} CPU cores, corpus {corpus.name} "
          f"({len(corpus.splits['train'])} training utterances x {corpus.dim} features)")
    print(f"matmul peak [{m}x{k}] x [{k}x{n}] float32: {peaks[False] / 1e9:.1f} GFLOP/s (TF kernels), "
          f"{peaks[True] / 1e9:.1f} GFLOP/s (XLA) -> peak {peak / 1e9:.1f} GFLOP/s")

    steps, batch = {}, None
    for jit in (False, True):
        cfg = TrainConfig(dataset=corpus.name, method=args.method, jit_compile=jit, verbose=0)
        model, trainer = build_trainer(cfg, corpus, make_strategy(cfg.strategy))
        batch = trainer.global_batch
        if not jit:
            parts = breakdown(model, trainer)
            flops, flops_a = profiled_flops(model, cfg.batch_size), analytic_flops(model)
            print(f"{args.method}, batch {cfg.batch_size}, encoder {cfg.encoder_units}, latent {cfg.latent_dim}, "
                  f"heads {cfg.head_units}: {flops / 1e6:.2f} MFLOP/example forward+backward (profiler), "
                  f"{flops_a / 1e6:.2f} MFLOP/example (dense layers, analytic)")
        for feed, fn in production_steps(trainer).items():
            steps["XLA" if jit else "no XLA", feed] = fn
    # the reference trains its own copy of the model (same configuration, same initial weights)
    model, trainer = build_trainer(TrainConfig(dataset=corpus.name, method=args.method, verbose=0), corpus,
                                   make_strategy("default"))
    for jit in (True, False):
        for feed, fn in reference_steps(model, trainer, jit).items():
            steps[f"single-function reference{'' if jit else ' without XLA'}", feed] = fn
    per_round = interleaved_rates(steps, args.steps, batch, rounds=args.rounds)
    rates = {k: statistics.median(v) for k, v in per_round.items()}

    print(f"\n| train step ({args.method}, batch {batch}) | examples/s | ms/step | GFLOP/s | fraction of peak |")
    print("|---|---|---|---|---|")
    for (label, feed), rate in rates.items():
        name = f"{label}, {feed}" + (" (as the CLI runs it)" if (label, feed) == ("no XLA", "tf.data pipeline") else "")
        print(f"| {name} | {rate:,.0f} | {batch * 1e3 / rate:.2f} | {rate * flops / 1e9:.1f} | "
              f"{rate * flops / peak:.1%} |")
    print(f"(medians of {args.rounds} interleaved rounds of {max(1, args.steps // args.rounds)} steps each)")
    for jit in ("no XLA", "XLA"):
        print(f"input pipeline ({jit}): step time with tf.data / cached = "
              f"{rates[jit, 'cached batch'] / rates[jit, 'tf.data pipeline']:.3f}")
    for name, ms in parts.items():
        print(f"part of the step (no XLA, cached batch): {name}: {ms:.2f} ms")
    ref = "single-function reference"
    print("\nratios: medians over the rounds of the two rates measured in the same round")
    for feed in ("tf.data pipeline", "cached batch"):
        ratio = paired_ratio(per_round, ("XLA", feed), ("no XLA", feed))
        print(f"--jit_compile / no XLA (production, {feed}) = {ratio:.2f}x "
              f"(goal >= 1.0x: {'met' if ratio >= 1.0 else 'not met'})")
    for feed in ("tf.data pipeline", "cached batch"):
        print(f"production step (no XLA, the CLI default) / {ref} ({feed}) = "
              f"{paired_ratio(per_round, ('no XLA', feed), (ref, feed)):.2f}x")
    for feed in ("cached batch", "tf.data pipeline"):
        ratio = paired_ratio(per_round, ("XLA", feed), (ref, feed))
        print(f"production step / {ref} = {ratio:.2f}x (goal >= 1.0x: {'met' if ratio >= 1.0 else 'not met'}) "
              f"[--jit_compile, {feed}: {rates['XLA', feed]:,.0f} vs {rates[ref, feed]:,.0f} examples/s]")
    xla = rates["XLA", "tf.data pipeline"]
    print(f"\ngoal: lrvae train step with XLA >= 90% of the matmul peak: measured {xla * flops / peak:.1%} "
          f"({'met' if xla * flops / peak >= 0.9 else 'not met'}); best {max(rates.values()) * flops / peak:.1%}")


if __name__ == "__main__":
    main()
