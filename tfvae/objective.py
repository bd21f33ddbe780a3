"""The objective of :class:`tfvae.model.LRVAE` (paper eq. 4), a mixin of the model class.

``L = w_vae L_VAE + w_emo L_emo + w_id L_id + w_emo-adv L_emo-adv + w_id-adv L_id-adv + L2``, each
term visible as a metric; beyond the paper, optional terms and mixup of the cross-entropy terms (the
options are documented on :class:`tfvae.model.LRVAE`); with ``disc_steps`` > 1, extra updates of the
discriminators alone (:meth:`Objective.discriminator_step`).

Loss terms (running means in one Keras metric, :class:`tfvae.terms.TermMeans`; all per example, batch mean):

- ``recon``: -log p(x|z) / D, Gaussian likelihood with unit variance over the D standardised
  features (nats per feature); ``kl``: KL(q(z|x) || N(0, I)) / N (``tfd.kl_divergence``, nats
  per latent node); ``vae`` = recon + kl_weight * kl. Both parts of eq. 1 are means over their
  dimensions, so unit weights in eq. 4 balance L_VAE against the cross-entropies; relative to
  the plain ELBO this weights KL by beta = kl_weight * D / N (a beta-VAE, which favours the
  factorised latent the paper relies on).
  Options that rebalance eq. 1 (``decoder_variance``, ``kl_warmup``, ``free_bits``,
  ``kl_identity_weight``) are described in :class:`tfvae.config.TrainConfig`.
- ``hsic``: linear-kernel HSIC (mean squared cross-correlation) between the attributes' nominal bands
  of the latent sample (the emotion and identity halves for the paper's attributes; the mean over
  pairs of bands for more), weighted by ``hsic_weight`` (LR-VAE only); with
  ``hsic_kernel="rbf"`` the biased HSIC estimate with Gaussian kernels (median bandwidth), which
  also sees non-linear dependence.
- ``guard``: the linear-guardedness penalty of every adversary pair (``guard_weight``): the squared
  correlation between the attribute's labels and its branch's expected input, the training-time form of
  LEACE's condition (:func:`tfvae.terms.linear_leakage`). With ``mixup``, every cross-entropy is mixed as
  its batch is (:meth:`tfvae.objective.Objective.compute_losses`).
- ``club`` / ``club_fit``: the CLUB bound between the bands (``club_weight``; the encoder minimises it)
  and its variational nets' fit (:mod:`tfvae.club`).
- ``swap``: cross-reconstruction across speed-perturbed versions of one recording (``swap_weight``;
  :meth:`Objective._swap`): ``recon`` of the row's sibling from the row's latent whose identity end is
  the sibling's, so that the voice must come from the identity end.
- ``<short>_lda``: the fraction of an attribute's distilled class projection its branch's linear
  read-out misses (``lda_target_weight``; :mod:`tfvae.distill`).
- ``emo`` / ``id`` / ``<short>``: cross-entropy of each attribute's classifier (emotion, speaker ID,
  gender ``gen``...).
- ``id_adv``: cross-entropy of the speaker discriminator behind gradient reversal on the
  emotion branch; ``emo_adv``: of the emotion discriminator on the speaker branch; in general
  ``<short>_adv`` (``<short>_adv_<branch short>`` when several branches hide the attribute). The
  discriminators minimise them; through the reversal the encoder maximises them. With
  ``identity_adversary="pairs"`` an identity adversary's term is the class-balanced binary
  cross-entropy of its same-speaker judgements on the batch's pairs (:func:`tfvae.pairs.pair_bce`).
- ``loss`` = sum of the weighted terms + L2 (eq. 4); ``selection`` = the weighted
  non-adversarial terms, monitored on validation to choose the checkpoint.
"""

from __future__ import annotations

import keras
import tensorflow as tf
from keras import ops

from tfvae.club import band_pairs
from tfvae.layers import random_normal
from tfvae.pairs import pair_bce
from tfvae.terms import (band_independence, cross_correlation, in_xla, kl_per_node, linear_leakage, masked_acc,
                         masked_ce, rbf_hsic, reconstruction_nll, sum_of_squares)


def _mixed_ce(y: dict, mixed, name: str, logits):
    """(mean CE, count) of one head or adversary; under mixup (``mixed = (lam, partners' labels)``), of
    both label sets. A module function, not a closure: AutoGraph converts it once for every trace."""
    if mixed is None:
        return masked_ce(y[name], logits)
    lam, y_b = mixed
    (first, n), (second, _) = masked_ce(y[name], logits), masked_ce(y_b[name], logits)
    return lam * first + (1.0 - lam) * second, n


class Objective:
    """Eq. 4 over the parts :class:`tfvae.model.LRVAE` builds (``self.parts``, heads, adversaries)."""

    def compute_losses(self, data: dict, training: bool = False):
        """Return ``(loss, terms)`` for a batch ``{"features", <each attribute's label>}`` (``emotion``,
        ``speaker``, ``gender``...; label -1 = unknown, it counts in no term of that attribute).

        ``terms`` holds every unweighted term, accuracies and the ``selection`` value.
        """
        y = {a.name: data[a.label] for a in self.attributes}
        x, mixed = data["features"], None
        sibling = data.get("sibling") if training and self.use_swap else None
        if training and self.use_swap and sibling is None:
            raise ValueError("swap_weight > 0 needs training batches with 'sibling' features (a pipeline with "
                             "siblings=True over a split with speed-perturbed copies)")
        if sibling is not None:  # mixed with the same partners and lam as the rows themselves
            x = ops.concatenate([ops.cast(x, "float32"), ops.cast(sibling, "float32")], axis=1)
        if training and self.mixup > 0:
            x, mixed = self._mix(x, y)
        if sibling is not None:
            x, sibling = ops.split(x, 2, axis=1)
        id_name = next(a.name for a in self.attributes if a.is_identity)
        out = self.forward(x, training=training, labels=y[id_name] if training else None)

        terms, counts = {}, {}
        if self.parts["vae"]:
            terms["recon"] = self._recon(out["x_loc"], out["x_std"])
            terms["kl"] = self._kl(out["q"], out["z"])
            beta = self.kl_weight * (ops.convert_to_tensor(self.kl_anneal) if training and self.kl_warmup_steps else 1.0)
            terms["vae"] = terms["recon"] + beta * terms["kl"]
        if self.use_hsic:
            terms["hsic"] = self._independence(out["z"])
        if sibling is not None:
            terms["swap"] = self._swap(out["z"], sibling)
        if self.use_club:
            fits, bounds = zip(*(est(a, b) for est, (a, b) in
                                 zip(self.club_estimators, band_pairs(out["z"], len(self.attributes)))))
            terms["club"], terms["club_fit"] = ops.mean(ops.stack(bounds)), ops.mean(ops.stack(fits))
        for a in self.attributes:
            if a.name in self.parts["heads"]:
                logits = out[f"{a.short}_logits"]
                terms[a.short], counts[a.short] = _mixed_ce(y, mixed, a.name, logits)
                terms[f"{a.short}_acc"] = masked_acc(y[a.name], logits)
        for (pred, _), term in self.adversary_terms.items():
            if self.pairs_adversary(pred):  # same-speaker judgements on the batch's pairs (tfvae.pairs)
                terms[term], counts[term] = pair_bce(y[pred], out[f"{term}_logits"],
                                                     None if mixed is None else (mixed[0], mixed[1][pred]))
            else:
                terms[term], counts[term] = _mixed_ce(y, mixed, pred, out[f"{term}_logits"])
        for a in self.lda_attributes:
            terms[f"{a.short}_lda"] = out[f"{a.short}_lda"]
        if self.use_guard:
            terms["guard"] = self._guard(out["z"] if self.parts["vae"] else out["x_std"], y)
        w = self.loss_weights
        terms["l2"] = self._weight_penalty()
        terms["selection"] = sum(w[t] * terms[t] for t in ("vae", *(a.short for a in self.attributes)) if t in terms)
        loss = sum(w[t] * terms[t] for t in self.loss_terms if t in terms) + terms["l2"]
        if self.use_hsic:
            loss = loss + self.hsic_weight * terms["hsic"]
        if self.use_guard:
            loss = loss + self.guard_weight * terms["guard"]
        for a in self.lda_attributes:
            loss = loss + self.lda_target_weight * terms[f"{a.short}_lda"]
        if self.use_club:  # the bound trains the encoder, the fit the variational nets (tfvae.club)
            loss = loss + self.club_weight * terms["club"] + terms["club_fit"]
        if sibling is not None:
            loss = loss + self.swap_weight * terms["swap"]
        terms["_counts"] = counts
        return loss, terms

    @property
    def discriminator_variables(self) -> list:
        """The trainable variables of the critics: the adversarial discriminators (behind the gradient
        reversals) and the CLUB variational nets."""
        return [v for term in self.adversary_terms.values() for v in getattr(self, f"{term}_head").trainable_variables] \
            + [v for est in getattr(self, "club_estimators", []) for v in est.trainable_variables]

    def discriminator_step(self, data: dict, share):
        """One update of the discriminators alone with ``disc_optimizer`` (``disc_steps``): the gradient of
        eq. 4 with respect to their variables is that of their own cross-entropies; the encoder is not
        updated. ``share``: this replica's share of the global batch (:meth:`replica_share`)."""
        variables = self.discriminator_variables
        with tf.GradientTape() as tape:
            loss, _ = self.compute_losses(data, training=True)
            scaled = self.disc_optimizer.scale_loss(loss * share)
        self.disc_optimizer.apply_gradients(zip(tape.gradient(scaled, variables), variables))

    def _mix(self, x, y):
        """Mixup of a batch with a shuffled copy: ``(mixed features, (lam, shuffled labels))``; with
        ``mixup_within``, each row's partner is drawn among the other rows with its label of that attribute
        (a row without one keeps itself)."""
        n = ops.shape(x)[0]
        u = keras.random.uniform((), 1e-6, 1.0 - 1e-6, seed=self.seed_generator)
        lam = (1.0 - (1.0 - u) ** (1.0 / self.mixup)) ** (1.0 / self.mixup)  # inverse CDF of Kumaraswamy(a, a)
        lam = ops.maximum(lam, 1.0 - lam)
        if self.mixup_within:
            label = y[self.mixup_within]
            rows = ops.arange(n)
            same = ops.logical_and(ops.equal(label[:, None], label[None, :]),
                                   ops.not_equal(rows[:, None], rows[None, :]))
            gumbel = -ops.log(-ops.log(keras.random.uniform((n, n), 1e-6, 1.0 - 1e-6, seed=self.seed_generator)))
            perm = ops.argmax(ops.where(same, gumbel, -1e9), axis=1)  # a uniform draw among the allowed partners
            perm = ops.where(ops.any(same, axis=1), perm, rows)
        else:
            perm = keras.random.shuffle(ops.arange(n), seed=self.seed_generator)
        x = ops.cast(x, "float32")
        return lam * x + (1.0 - lam) * ops.take(x, perm, axis=0), (lam, {k: ops.take(v, perm, axis=0)
                                                                       for k, v in y.items()})

    def _swap(self, z, sibling):
        """-log p(x'|z_swap) per feature: the sibling ``x'`` (another speed of the same recording: the same
        words and emotion, another voice) decoded from ``z_swap = (1 - p) * z + p * z'``, where ``p`` are the
        identity branch's keep rates (0 at the emotion end, 1 at the identity end, paper eq. 2) and ``z'``
        a sample of the sibling's posterior. What tells the two voices apart must then sit at the
        identity end (a soft form of the latent swaps of disentangling VAEs)."""
        ident = next(a for a in self.attributes if a.is_identity)
        p = ops.convert_to_tensor(getattr(self, f"{ident.short}_dropout").keep_rates, "float32")
        q = self.posterior(sibling, training=True)
        z_sib = q.mean() + q.stddev() * random_normal(ops.shape(q.mean()), self.seed_generator)
        x_loc = ops.cast(self.decoder((1.0 - p) * z + p * z_sib, training=True), "float32")
        return self._recon(x_loc, ops.cast(self.normalizer(sibling), "float32"))

    def _guard(self, rep, y):
        """Mean linear leakage of each adversary pair's attribute on its branch (eq. 4's adversaries,
        as a closed-form statistic instead of a discriminator)."""
        vals = []
        for pred, branch in self.adversary_terms:
            keep = getattr(self, f"{self._attr(branch).short}_dropout").keep_rates if self.parts["layered"] else None
            vals.append(linear_leakage(rep, y[pred], self.n_classes[pred], keep))
        return vals[0] if len(vals) == 1 else ops.mean(ops.stack(vals))

    def _independence(self, z):
        """The HSIC penalty between the attributes' nominal bands (:func:`tfvae.terms.band_independence`)."""
        return band_independence(z, len(self.attributes), rbf_hsic if self.hsic_kernel == "rbf" else cross_correlation)

    def _weight_penalty(self):
        """The L2 term of eq. 4: the sum of the weights' regularisation losses (``self.losses``).

        Compiled by XLA, each weight matrix's ``l2 * sum(w ** 2)`` is reduced by
        :func:`tfvae.terms.sum_of_squares` (the same sum up to float rounding; XLA's own reduction would cost
        more than the rest of the loss); otherwise it is exactly ``sum(self.losses)``.
        """
        losses = self.losses
        if not losses:
            return ops.zeros(())
        if in_xla():
            regularized = [v for v in self.trainable_weights if getattr(v, "regularizer", None) is not None]
            if len(regularized) == len(losses):  # nothing but weight regularisers (the model adds no loss)
                losses = [v.regularizer.l2 * sum_of_squares(v) if type(v.regularizer) is keras.regularizers.L2
                          else v.regularizer(v) for v in regularized]
        return ops.cast(ops.sum(losses), "float32")

    def _recon(self, x_loc, x_std):
        """-log p(x|z) per feature (nats), under the decoder variance of ``decoder_variance``."""
        log_scale = self.decoder_log_scale if self.decoder_variance == "learned" else None
        return reconstruction_nll(x_loc, x_std, self.decoder_variance, log_scale)

    def _kl(self, q, z):
        """KL(q(z|x) || N(0, I)) per latent node; with ``free_bits``, nodes under the floor cost nothing."""
        return kl_per_node(q, z, self.free_bits, self._kl_weights)
