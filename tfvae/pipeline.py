"""In-memory or streamed splits -> ``tf.data`` pipelines of training and validation batches.

:class:`SplitPipeline` batches a split held in memory, :class:`tfvae.stream.StreamPipeline` one streamed
from the TFDS files; :func:`split_pipeline` picks the one a split needs. Batches are
``{"features", "emotion", "speaker", *labels}`` (and ``sibling`` for ``--swap_weight``).
"""

from __future__ import annotations

import numpy as np

from tfvae.data import Corpus


class SplitPipeline:
    """``tf.data`` pipelines over one split held in memory as tensors (created once).

    :meth:`dataset` streams ``{"features", "emotion", "speaker"}`` batches (and each of ``labels``:
    extra labels as int32, -1 where unknown) for a range of epochs
    through one iterator: each epoch in its own order (training) or in file order, restricted to one
    shard (``tf.distribute`` input pipeline), padded with empty batches to a fixed number per epoch
    so that every replica of every worker takes the same number of steps, and optionally skipping the
    batches a resumed run has already trained on. Rows are gathered per batch. ``batch_order``: the
    training order of each epoch (:mod:`tfvae.order`: ``random`` or speaker-stratified ``speaker``).
    ``siblings``: batches also carry ``sibling``, the features of each row's next version of the same
    recording (:func:`tfvae.speed.sibling_rows`, for ``--swap_weight``).
    """

    def __init__(self, corpus: Corpus, split: str, labels=(), batch_order: str = "random", siblings: bool = False):
        import tensorflow as tf

        from tfvae.order import check_batch_order

        sp = corpus.splits[split]
        self.size = len(sp)
        self.batch_order = check_batch_order(batch_order)
        extra = {k: corpus.labels(split, k).astype(np.int32) for k in pipeline_labels(labels)}
        with tf.device("/cpu:0"):
            self.tensors = {"features": tf.constant(sp.features, tf.float32),
                            "emotion": tf.constant(sp.emotion.astype(np.int32)),
                            "speaker": tf.constant(corpus.speaker_labels(split)),
                            **{k: tf.constant(v, tf.int32) for k, v in extra.items()}}
            if siblings:  # gathered per batch: the sibling rows' features are not held twice
                from tfvae.speed import sibling_rows

                self.tensors["_sibling_row"] = tf.constant(sibling_rows(sp.utterance_id), tf.int32)

    def dataset(self, batch_size: int, *, seed: int | None = None, epochs: range = range(1),
                num_shards: int = 1, shard_index: int = 0, batches_per_epoch: int | None = None,
                skip_batches: int = 0):
        """Batches of ``epochs`` (shuffled per epoch when ``seed`` is given), ``batches_per_epoch``
        per epoch (the shard's own count if None; more are padded with empty batches)."""
        import tensorflow as tf

        from tfvae.order import random_order, speaker_order

        n = self.size
        own = -(-len(range(shard_index, n, num_shards)) // batch_size)
        pad = (batches_per_epoch or own) - own
        if pad < 0:
            raise ValueError(f"shard {shard_index} has {own} batches, more than batches_per_epoch={batches_per_epoch}")
        empty = tf.data.Dataset.from_tensors(tf.zeros([0], tf.int32)).repeat(pad)

        speakers = self.tensors["speaker"]
        stratified = self.batch_order == "speaker"

        def one_epoch(e):
            if seed is None:
                idx = tf.range(n, dtype=tf.int32)
            else:
                idx = speaker_order(speakers, seed, e) if stratified else random_order(n, seed, e)
            ds = tf.data.Dataset.from_tensor_slices(idx)
            if num_shards > 1:
                ds = ds.shard(num_shards, shard_index)  # before batching: every worker gets distinct rows
            return ds.batch(batch_size).concatenate(empty)

        ds = tf.data.Dataset.range(epochs.start, epochs.stop).flat_map(one_epoch)
        if skip_batches:
            ds = ds.skip(skip_batches)
        # flat_map hides the length; state it (Keras' fit and progress bars use it)
        ds = ds.apply(tf.data.experimental.assert_cardinality(max(0, len(epochs) * (own + pad) - skip_batches)))
        tensors = self.tensors

        def rows(i):
            out = {k: tf.gather(v, i) for k, v in tensors.items()}
            if "_sibling_row" in out:
                out["sibling"] = tf.gather(tensors["features"], out.pop("_sibling_row"))
            return out
        ds = ds.map(rows, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
        return ds.prefetch(tf.data.AUTOTUNE)


def pipeline_labels(labels) -> tuple[str, ...]:
    """The extra labels a pipeline adds to its batches: ``labels`` without ``emotion`` (always there), once each."""
    if isinstance(labels, str):
        labels = (labels,)
    return tuple(dict.fromkeys(k for k in labels if k != "emotion"))


def split_pipeline(corpus: Corpus, split: str, shuffle_buffer: int | None = None, labels=(),
                   batch_order: str = "random", siblings: bool = False):
    """The training/validation input of ``split``: :class:`SplitPipeline` over in-memory features,
    :class:`tfvae.stream.StreamPipeline` over streamed ones. ``labels``: extra labels (``["gender"]``)
    the batches carry as int32 (-1 where unknown), beside ``features``, ``emotion`` and ``speaker``.
    ``batch_order`` (:mod:`tfvae.order`) orders in-memory splits; a streamed split is batched from its
    shuffle buffer whatever the order (said once: at that scale a batch rarely holds a voice twice).
    ``siblings``: the batches carry each row's ``sibling`` too (:class:`SplitPipeline`)."""
    from tfvae.order import check_batch_order
    from tfvae.stream import SHUFFLE_BUFFER, StreamPipeline, is_streamed

    check_batch_order(batch_order)
    for k in pipeline_labels(labels):
        corpus.class_names(k)  # DataError naming the label when the dataset lacks it
    features = corpus.splits[split].features
    if is_streamed(features):
        if batch_order != "random":
            print(f"[tfvae] batch_order={batch_order}: the {split} split of {corpus.name} is streamed, so its "
                  f"batches come from a shuffle buffer of {shuffle_buffer or SHUFFLE_BUFFER} rows in random order")
        return StreamPipeline(features, corpus.speaker_index(), shuffle_buffer or SHUFFLE_BUFFER, labels=labels,
                              siblings=siblings)
    return SplitPipeline(corpus, split, labels=labels, batch_order=batch_order, siblings=siblings)


def make_dataset(corpus: Corpus, split: str, batch_size: int, training: bool = False, seed: int = 0,
                 epoch: int = 0, labels=()):
    """A ``tf.data`` pipeline of one epoch of ``{"features", "emotion", "speaker", *labels}`` batches;
    ``training`` shuffles in the order :func:`tfvae.order.random_order` gives for ``(seed, epoch)``."""
    return SplitPipeline(corpus, split, labels=labels).dataset(batch_size, seed=seed if training else None,
                                                               epochs=range(epoch, epoch + 1))
