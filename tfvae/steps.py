"""The training and evaluation steps of :class:`tfvae.model.LRVAE` (a mixin of the model class):
metric recording, each replica's share of a distributed batch, gradients of eq. 4
(:meth:`tfvae.objective.Objective.compute_losses`) and the optimizer step that ``model.fit`` and
:class:`tfvae.loop.Trainer` call under every ``tf.distribute`` strategy.
"""

from __future__ import annotations

import tensorflow as tf
from keras import ops


class Steps:
    """``train_step`` / ``test_step`` / ``predict_step`` over the model's parts and objective."""

    def _record(self, loss, terms, batch_size, training: bool):
        counts = terms.pop("_counts")
        values, weights = {}, {}
        for name in self.trackers:
            if name == "loss":
                values[name], weights[name] = loss, batch_size
            elif name == "grl_lambda":
                values[name], weights[name] = ops.convert_to_tensor(self.grls[0].lambda_), 1.0
            elif name == "swap" and not training:  # validation batches carry no siblings: NaN, like val_id
                values[name], weights[name] = ops.zeros(()), 0.0
            else:
                values[name], weights[name] = terms[name], counts.get(name.replace("_acc", ""), batch_size)
        self.term_means.update_state(values, weights)
        return self.metric_results(training)

    def metric_results(self, training: bool) -> dict:
        """Current value of every tracked term; in cross-replica context, aggregated over all replicas.

        NaN, not 0, for a term no example counted in (validation speakers are unseen: no ``id``)."""
        logs = dict(zip(self.trackers, ops.unstack(self.term_means.result())))
        if not training:
            logs.pop("grl_lambda", None)
        return logs

    def replica_share(self, data):
        """This replica's share of the global batch, n_local / n_global (1 without distribution).

        The gradients of all replicas are summed (Keras' optimizer all-reduces them), so scaling each
        replica's mean loss by its share gives exactly the gradient of the global batch mean, even when
        the last batch of an epoch is split unevenly or leaves a replica empty.
        """
        n = ops.cast(ops.shape(data["features"])[0], "float32")
        ctx = tf.distribute.get_replica_context()
        if ctx is None or ctx.num_replicas_in_sync == 1:
            return ops.ones_like(n)
        return ops.divide_no_nan(n, ctx.all_reduce(tf.distribute.ReduceOp.SUM, n))

    def compute_gradients(self, data, share):
        """Loss (eq. 4), its terms and the gradients of ``share * loss`` (loss-scaled under mixed_float16).

        The forward and backward pass without the optimizer update (and its gradient all-reduce), so a
        training loop can compile it with XLA (``tfvae.loop.Trainer(jit_compile=True)`` with several
        replicas; with one it compiles the whole :meth:`train_step`).
        """
        with tf.GradientTape() as tape:
            loss, terms = self.compute_losses(data, training=True)
            scaled = self.optimizer.scale_loss(loss * share)
        return tape.gradient(scaled, self.trainable_variables), loss, terms

    def train_step(self, data, gradient_fn=None):
        """One optimizer step; ``model.fit`` and :class:`tfvae.loop.Trainer` (any strategy) both call it.

        ``gradient_fn`` replaces :meth:`compute_gradients`, e.g. by its XLA-compiled version.
        """
        if self.grls:
            lam = self.lambda_schedule(self.optimizer.iterations)
            for grl in self.grls:
                grl.lambda_.assign(lam)
        if self.parts["vae"] and self.kl_warmup_steps:
            self.kl_anneal.assign(ops.minimum(ops.cast(self.optimizer.iterations, "float32") / self.kl_warmup_steps, 1.0))
        share = self.replica_share(data)
        if self.disc_optimizer is not None:
            for _ in range(self.disc_steps - 1):
                self.discriminator_step(data, share)
        grads, loss, terms = (gradient_fn or self.compute_gradients)(data, share)
        self.optimizer.apply_gradients(zip(grads, self.trainable_variables))
        return self._record(loss, terms, ops.cast(ops.shape(data["features"])[0], "float32"), training=True)

    def test_step(self, data):
        loss, terms = self.compute_losses(data, training=False)
        return self._record(loss, terms, ops.cast(ops.shape(data["features"])[0], "float32"), training=False)

    def predict_step(self, data):
        x = data["features"] if isinstance(data, dict) else data
        return self(x, training=False)
