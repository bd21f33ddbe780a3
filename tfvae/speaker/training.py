"""Training a speaker encoder as a speaker classifier (softmax or additive angular margin).

:class:`SpeakerClassifier` wraps a :class:`~tfvae.speaker.encoders.SpeakerEncoder` with a speaker
head and exposes the step interface :class:`tfvae.loop.Loop` drives (``train_step`` with an optional
XLA-compiled ``gradient_fn``, ``test_step``, ``compute_gradients``, ``trackers``), so speaker
encoders train with tfvae's one loop, every ``tf.distribute`` strategy, TensorBoard and
backup/resume. :class:`SpeakerLoop` selects the epoch with the lowest verification EER on the
validation speakers (cosine scoring of whole utterances, never seen in training).

Heads: ``softmax`` (x-vector recipe: ReLU, batch norm, a hidden layer, softmax over training
speakers) or ``aam`` (cosine classifier with additive angular margin, Deng et al. 2019, as
ECAPA-style systems train; :class:`tfvae.layers.CosineMarginClassifier`).
"""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf
from keras import ops

from tfvae.layers import CosineMarginClassifier
from tfvae.loop import Loop
from tfvae.speaker.encoders import SpeakerEncoder
from tfvae.speaker.presets import EncoderConfig

HEADS = ("softmax", "aam")


@keras.saving.register_keras_serializable(package="tfvae")
class SpeakerClassifier(keras.Model):
    """Encoder + speaker head; ``call`` returns ``{"embedding", "logits"}``."""

    def __init__(self, config: EncoderConfig | dict, n_speakers: int, head: str = "softmax",
                 margin: float = 0.2, scale: float = 30.0, **kwargs):
        kwargs.setdefault("name", "speaker_classifier")
        super().__init__(**kwargs)
        if head not in HEADS:
            raise ValueError(f"speaker head {head!r} is unknown; choose one of {', '.join(HEADS)}")
        if n_speakers < 2:
            raise ValueError(f"a speaker classifier needs at least 2 training speakers, got {n_speakers}")
        self.encoder = SpeakerEncoder(config)
        self.n_speakers, self.head, self.margin, self.scale = int(n_speakers), head, float(margin), float(scale)
        if head == "aam":
            self.classifier = CosineMarginClassifier(self.n_speakers, margin=margin, scale=scale, name="aam")
        else:
            self.head_bn = keras.layers.BatchNormalization(name="head_bn")
            self.hidden = keras.layers.Dense(self.encoder.config.embedding_dim, activation="relu", name="segment7")
            self.hidden_bn = keras.layers.BatchNormalization(name="segment7_bn")
            self.classifier = keras.layers.Dense(self.n_speakers, name="softmax")
        self.trackers = {"loss": keras.metrics.Mean(name="loss"), "accuracy": keras.metrics.Mean(name="accuracy")}

    @property
    def metrics(self):
        return list(self.trackers.values())

    def call(self, inputs, training=False, labels=None):
        emb = self.encoder(inputs, training=training)
        if self.head == "aam":
            logits = self.classifier(emb, labels if training else None)
        else:
            h = self.head_bn(tf.nn.relu(emb), training=training)
            logits = self.classifier(self.hidden_bn(self.hidden(h), training=training))
        return {"embedding": emb, "logits": logits}

    def compute_losses(self, data, training: bool):
        labels = tf.cast(data["speaker"], tf.int32)
        out = self({"waveform": data["waveform"], "lengths": data["lengths"]}, training=training, labels=labels)
        logits = tf.cast(out["logits"], tf.float32)
        known = labels >= 0  # validation speakers have no class
        ce = tf.nn.sparse_softmax_cross_entropy_with_logits(tf.maximum(labels, 0), logits)
        w = tf.cast(known, tf.float32)
        n = tf.reduce_sum(w)
        loss = tf.math.divide_no_nan(tf.reduce_sum(ce * w), n)
        acc = tf.math.divide_no_nan(tf.reduce_sum(tf.cast(tf.argmax(logits, -1, output_type=tf.int32) == labels, tf.float32) * w), n)
        if self.losses:
            loss = loss + tf.add_n([tf.cast(v, tf.float32) for v in self.losses])
        return loss, {"accuracy": acc, "_n": n}

    def replica_share(self, data):
        n = tf.cast(tf.shape(data["speaker"])[0], tf.float32)
        ctx = tf.distribute.get_replica_context()
        if ctx is None or ctx.num_replicas_in_sync == 1:
            return tf.ones_like(n)
        return tf.math.divide_no_nan(n, ctx.all_reduce(tf.distribute.ReduceOp.SUM, n))

    def compute_gradients(self, data, share):
        with tf.GradientTape() as tape:
            loss, terms = self.compute_losses(data, training=True)
            scaled = self.optimizer.scale_loss(loss * share)
        return tape.gradient(scaled, self.trainable_variables), loss, terms

    def _record(self, loss, terms, training: bool):
        self.trackers["loss"].update_state(loss, sample_weight=terms["_n"])
        self.trackers["accuracy"].update_state(terms["accuracy"], sample_weight=terms["_n"])
        return self.metric_results(training)

    def metric_results(self, training: bool) -> dict:
        return {k: ops.where(t.count > 0, t.result(), float("nan")) for k, t in self.trackers.items()}

    def train_step(self, data, gradient_fn=None):
        grads, loss, terms = (gradient_fn or self.compute_gradients)(data, self.replica_share(data))
        self.optimizer.apply_gradients(zip(grads, self.trainable_variables))
        return self._record(loss, terms, training=True)

    def test_step(self, data):
        loss, terms = self.compute_losses(data, training=False)
        return self._record(loss, terms, training=False)

    def get_config(self):
        return {"config": self.encoder.config.to_dict(), "n_speakers": self.n_speakers, "head": self.head,
                "margin": self.margin, "scale": self.scale, "name": self.name}

    def build_all(self, seconds: float = 1.0):
        """Create every weight by one call (before restoring or distributing)."""
        n = int(seconds * 16000)
        self({"waveform": tf.zeros([2, n]), "lengths": tf.constant([n, n])}, training=False)
        return self


class SpeakerLoop(Loop):
    """:class:`tfvae.loop.Loop` for speaker encoders: the epoch with the lowest validation EER is kept.

    ``val_batches``: whole validation utterances (:func:`tfvae.speaker.pipeline.utterance_batches`), cached in
    memory after the first epoch; their trials are drawn once (seeded) and scored by cosine after every epoch.
    """

    selection_keys = ("eer", "score")

    def __init__(self, model: SpeakerClassifier, strategy, train_pipe, val_batches, batch_size: int,
                 seed: int = 0, **kwargs):
        self._val_batches = val_batches.cache()  # read and padded once, scored after every epoch
        self._embed = tf.function(lambda x: model.encoder(x, training=False), reduce_retracing=True)
        self._trials = None
        super().__init__(model, strategy, train_pipe, batch_size, seed=seed, **kwargs)

    def validation_embeddings(self):
        from tfvae.speaker.pipeline import embed

        return embed(self._embed, self._val_batches)

    def selection_scores(self) -> dict[str, float]:
        from tfvae.metrics import eer, sample_trials

        emb, speakers = self.validation_embeddings()
        if self._trials is None:
            self._trials = sample_trials(speakers, seed=self.seed)
        value = float(eer(self._trials.score(emb), self._trials.label.astype(int)))
        return {"eer": value, "score": value}


def verification_eer(encoder_fn, batches, seed: int = 0) -> dict:
    """EER (and minDCF) of cosine scoring over seeded trials of the utterances in ``batches``."""
    from tfvae.metrics import cosine_trials, sv_metrics
    from tfvae.speaker.pipeline import embed

    emb, speakers = embed(encoder_fn, batches)
    scores, labels = cosine_trials(emb, speakers, seed=seed)
    out = sv_metrics(scores, labels)
    out.update({"utterances": int(len(speakers)), "speakers": int(len(np.unique(speakers)))})
    return out
