"""The order in which an in-memory training split is batched, one epoch at a time (``--batch_order``).

Both orders are drawn from ``(seed, epoch)`` alone (stateless), so every worker of a multi-worker run
computes the same order and takes its own shard of it, and a resumed run replays the epoch it was
interrupted in.

- ``random``: a uniform permutation of the rows.
- ``speaker``: speaker-stratified batches. Each speaker's rows (in random order) are spread evenly
  over the epoch, each speaker starting at its own random phase, so every run of ``b`` consecutive
  rows holds each speaker's share of the epoch (``b x n_s / n`` rows, rounded up or down): no batch
  over- or under-represents a voice, and the speaker classifier and the identity adversary see
  every training speaker in every batch that has room for them. Every row is still seen once per
  epoch. (The stratified counterpart of the class-balanced batches speaker-embedding systems train
  with; with the speed-perturbed copies of ``--speed_perturb`` each copy is a speaker of its own.)
"""

from __future__ import annotations

import numpy as np

BATCH_ORDERS = ("random", "speaker")


def _seed(seed, epoch, salt: int = 0):
    import tensorflow as tf

    return tf.stack([tf.cast(seed, tf.int64) + salt, tf.cast(epoch, tf.int64)])


def random_order(n: int, seed, epoch):
    """Epoch ``epoch``'s uniform permutation of ``n`` rows (int32 tensor)."""
    import tensorflow as tf

    keys = tf.random.stateless_uniform([n], seed=_seed(seed, epoch))
    return tf.cast(tf.argsort(keys, stable=True), tf.int32)


def speaker_order(groups, seed, epoch):
    """Epoch ``epoch``'s speaker-stratified permutation of the rows whose speakers are ``groups``
    (int tensor of speaker indices >= 0): row ``k`` (0-based, in a random order) of a speaker with
    ``n_s`` rows goes to position ``(k + u_s) / n_s`` of the epoch, ``u_s`` the speaker's random phase."""
    import tensorflow as tf

    groups = tf.cast(groups, tf.int32)
    n = tf.shape(groups)[0]
    shuffled = random_order(n, seed, epoch)
    by_speaker = tf.gather(shuffled, tf.argsort(tf.gather(groups, shuffled), stable=True))
    g = tf.gather(groups, by_speaker)
    counts = tf.math.bincount(groups, minlength=tf.reduce_max(groups) + 1, dtype=tf.int32)
    rank = tf.range(n) - tf.gather(tf.cumsum(counts, exclusive=True), g)
    phase = tf.random.stateless_uniform(tf.shape(counts), seed=_seed(seed, epoch, salt=7919))
    key = (tf.cast(rank, tf.float32) + tf.gather(phase, g)) / tf.cast(tf.gather(counts, g), tf.float32)
    return tf.gather(by_speaker, tf.argsort(key, stable=True))


def epoch_order(n: int, seed: int, epoch: int, groups=None) -> np.ndarray:
    """The training order of ``epoch`` as numpy: :func:`random_order`, or :func:`speaker_order` of
    ``groups`` (one speaker index per row) when given."""
    if groups is None:
        return random_order(n, seed, epoch).numpy()
    groups = np.asarray(groups)
    if len(groups) != n:
        raise ValueError(f"groups holds {len(groups)} rows, expected {n}")
    return speaker_order(groups, seed, epoch).numpy()


def check_batch_order(name: str) -> str:
    """``name`` when it is one of :data:`BATCH_ORDERS`, else a ValueError listing them."""
    if name not in BATCH_ORDERS:
        raise ValueError(f"batch_order={name!r} is unknown; choose one of {', '.join(BATCH_ORDERS)}")
    return name
