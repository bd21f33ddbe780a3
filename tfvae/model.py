"""The LR-VAE (paper section 2.3) and its baselines (section 3.1.1) as one Keras model.

``compute_losses`` (:class:`tfvae.objective.Objective`, a mixin of the model) is the single place where
the objective of eq. 4 is computed; ``train_step`` / ``test_step`` (:class:`tfvae.steps.Steps`, another mixin)
wrap it for ``model.fit`` and any custom ``strategy.run`` loop can call ``train_step`` directly.

Latent node order: the attributes of :mod:`tfvae.attributes` in their listed order; with the paper's
``emotion, identity`` node 0 is the top, *emotion* end and node N-1 the bottom, *identity* end. Every
attribute has its own branch (layered dropout with the keep-rate profile of its band,
:func:`tfvae.schedules.attribute_keep_rates`), head and loss term; adversaries behind gradient
reversal predict an attribute from another's branch.

Loss terms: see :mod:`tfvae.objective` (running means in one Keras metric, :class:`TermMeans`).

Labels < 0 are unknown: speakers unknown to the classifier (validation and test speakers are
disjoint from training speakers), an unlabelled gender; they contribute nothing to that attribute's terms.
"""

from __future__ import annotations

from typing import Sequence

import keras
import numpy as np
import tensorflow_probability as tfp
from keras import ops

from tfvae.attributes import DEFAULT as DEFAULT_ATTRIBUTES, parse_attributes
from tfvae.club import ClubEstimator
from tfvae.distill import ProjectionTarget
from tfvae.config import IDENTITY_ADVERSARIES, LDA_READOUTS, LOSS_TERMS
from tfvae.methods import _base, adversary_terms, loss_terms, method_parts
from tfvae.layers import CosineMarginClassifier, GradientReversal, LayeredDropout, dense_stack, random_normal
from tfvae.schedules import LambdaSchedule, attribute_keep_rates
from tfvae.objective import Objective
from tfvae.steps import Steps
from tfvae.pairs import PairDiscriminator
from tfvae.terms import TermMeans, band_bounds, kl_node_weights

tfd = tfp.distributions

@keras.saving.register_keras_serializable(package="tfvae")
class LRVAE(Objective, Steps, keras.Model):
    """Layered-representation VAE and baselines, chosen by ``method``.

    Args:
        input_dim: feature dimension D.
        n_emotions, n_speakers: classes of the emotion and speaker-ID classifiers.
        method: ``dnn``, ``vae``, ``a-vae``, ``lrvae-noadv`` or ``lrvae``.
        protect: for ``a-vae``, the attribute the adversary removes.
        latent_dim: N.
        keep_schedule, keep_min, keep_max: layered-dropout keep rates (eq. 2).
        lambda_schedule: config dict of :class:`LambdaSchedule` for gradient reversal.
        loss_weights: weights of the terms of :func:`loss_terms` in eq. 4 (``vae, emo, id, emo_adv, id_adv``
            for the paper's attributes; 1 for a term not given; ``<short>_adv_<branch>`` falls back to
            ``<short>_adv``).
        kl_weight: beta, the weight of KL inside L_VAE.
        decoder_variance, kl_warmup_steps, free_bits: the balance of eq. 1 (see the module docstring).
        kl_identity_weight: KL weight of the identity-end node; the weights ramp from 1 at node 0
            (:func:`tfvae.terms.kl_node_weights`; 1 = the paper's uniform KL).
        speaker_head: ``softmax`` or ``aam`` (:class:`tfvae.layers.CosineMarginClassifier`).
        hsic_weight: weight of the cross-correlation penalty between the two latent halves.
        input_noise: std of Gaussian noise on the standardised encoder input in training.
        hidden_dropout: dropout rate after each hidden layer of the encoder and the attribute heads.
        mixup: alpha of mixup (Zhang et al. 2018) in training: each batch is mixed with a shuffled copy
            of itself by lam ~ Kumaraswamy(alpha, alpha) (Beta's closed-form cousin: XLA has no gamma
            sampler; the larger share kept first), every cross-entropy
            term is lam * CE(labels) + (1 - lam) * CE(shuffled labels); 0 = off.
        mixup_within: an attribute whose label mixup partners share (``""``: any two utterances).
        guard_weight: weight of the linear-guardedness penalty (:func:`tfvae.terms.linear_leakage`) of
            every adversary pair: the attribute's labels against its branch's expected input (``z``
            weighted by the branch's keep rates); 0 = off.
        lda_target_weight, lda_target_dims: weight and ``{attribute: outputs}`` of the distilled class
            projections (:mod:`tfvae.distill`; :meth:`set_class_projection` sets each); 0 = off.
        identity_adversary: ``classifier`` (the paper's speaker discriminator) or ``pairs`` (a
            same-speaker judge on every pair of the batch, :class:`tfvae.pairs.PairDiscriminator`).
        lda_readout: what each projection's read-out sees: ``branch`` (the attribute's layered-dropout
            branch, every node at its keep rate) or ``band`` (only the attribute's nominal band of nodes).
        club_weight: weight of the CLUB bound between the attributes' bands (:mod:`tfvae.club`; its
            variational nets learn from the ``club_fit`` term); 0 = off.
        swap_weight: weight of the cross-reconstruction term across each training row's speed-perturbed
            sibling (:meth:`tfvae.objective.Objective._swap`; training batches carry ``sibling``); 0 = off.
        disc_steps: discriminator updates per joint step (the extra ``disc_steps - 1`` with
            ``disc_optimizer``, :meth:`tfvae.objective.Objective.discriminator_step`); 1 = the paper.
        encoder_skip: add a linear map of the standardised input to the encoder's output (a linear
            path like the raw-feature models that verify unseen speakers best; it did not help on
            RAVDESS, reports/ravdess/quality.md run T).
        linear_nodes: the last ``linear_nodes`` nodes (the identity end) take their posterior mean and
            log-variance from a linear map of the standardised input (``encoder_band``) instead of the
            encoder MLP (which then outputs the other nodes only); 0 = the paper.
        attributes: attribute names in latent order (:func:`tfvae.attributes.parse_attributes`).
        n_classes: classes of class attributes other than emotion (e.g. ``{"gender": 2}``).
        adversaries: ``all``, ``none`` or ``predicted@branch,...`` (:func:`parse_adversaries`; lrvae).
        band_width, band_centres: the keep-rate profiles of the bands (:func:`tfvae.schedules.band_keep_rates`).
        l2: L2 on all weights and biases (paper: 1e-6).
    """

    def __init__(self, input_dim: int, n_emotions: int, n_speakers: int, method: str = "lrvae",
                 protect: str = "identity", latent_dim: int = 128,
                 encoder_units: Sequence[int] = (512, 256), decoder_units: Sequence[int] = (256, 512),
                 head_units: Sequence[int] = (256, 128), keep_schedule: str = "linear",
                 keep_min: float = 0.0, keep_max: float = 1.0, lambda_schedule: dict | None = None,
                 loss_weights: dict | None = None, kl_weight: float = 1.0, l2: float = 1e-6,
                 seed: int | None = None, decoder_variance: str = "unit", kl_warmup_steps: int = 0,
                 free_bits: float = 0.0, speaker_head: str = "softmax", aam_margin: float = 0.2,
                 aam_scale: float = 30.0, hsic_weight: float = 0.0, input_noise: float = 0.0,
                 hsic_kernel: str = "linear", attributes: Sequence[str] = DEFAULT_ATTRIBUTES,
                 n_classes: dict | None = None, adversaries: str = "all", band_width: float = 1.0,
                 band_centres: Sequence[float] | None = None, kl_identity_weight: float = 1.0,
                 hidden_dropout: float = 0.0, encoder_skip: bool = False, mixup: float = 0.0,
                 guard_weight: float = 0.0, mixup_within: str = "", disc_steps: int = 1,
                 club_weight: float = 0.0, lda_target_weight: float = 0.0,
                 lda_target_dims: dict | None = None, lda_readout: str = "branch",
                 identity_adversary: str = "classifier", swap_weight: float = 0.0, linear_nodes: int = 0,
                 **kwargs):
        super().__init__(**kwargs)
        self.attributes = parse_attributes(attributes)
        self.parts = method_parts(method, protect, self.attributes, adversaries)
        #: classes of each class attribute's head (emotion: n_emotions; identity: the training speakers)
        self.n_classes = {a.name: int((n_classes or {}).get(a.name, 0)) for a in self.attributes}
        self.n_classes.update({a.name: int(n_speakers) for a in self.attributes if a.is_identity})
        if "emotion" in self.n_classes:
            self.n_classes["emotion"] = int(n_emotions)
        for a in self.attributes:
            if a.name in self.parts["heads"] or any(a.name == p for p, _ in self.parts["adversaries"]):
                if self.n_classes[a.name] < 2:
                    what = "training speakers" if a.is_identity else f"{a.name} classes"
                    raise ValueError(f"need at least 2 {what}, got {self.n_classes[a.name]}")
        self.input_dim, self.n_emotions, self.n_speakers = int(input_dim), int(n_emotions), int(n_speakers)
        self.method, self.protect, self.latent_dim = method, protect, int(latent_dim)
        self.adversaries, self.band_width = adversaries, float(band_width)
        self.band_centres = None if band_centres is None else tuple(float(c) for c in band_centres)
        self.encoder_units, self.decoder_units = tuple(encoder_units), tuple(decoder_units)
        self.head_units = tuple(head_units)
        self.keep_schedule, self.keep_min, self.keep_max = keep_schedule, float(keep_min), float(keep_max)
        self.lambda_schedule = LambdaSchedule(**(lambda_schedule or {}))
        self.adversary_terms = adversary_terms(self.attributes, self.parts["adversaries"])
        self.loss_terms = loss_terms(self.attributes, self.parts["adversaries"])
        unknown = set(loss_weights or {}) - set(self.loss_terms) - set(LOSS_TERMS)
        if unknown:
            raise ValueError(f"unknown loss weights {sorted(unknown)}; terms are {self.loss_terms}")
        self.loss_weights = {t: float((loss_weights or {}).get(t, (loss_weights or {}).get(_base(t), 1.0)))
                             for t in self.loss_terms}
        self.kl_weight, self.l2, self.seed = float(kl_weight), float(l2), seed
        self.seed_generator = keras.random.SeedGenerator(seed)
        if decoder_variance not in ("unit", "learned", "calibrated"):
            raise ValueError(f"decoder_variance {decoder_variance!r} is unknown; choose unit, learned or calibrated")
        if speaker_head not in ("softmax", "aam"):
            raise ValueError(f"speaker_head {speaker_head!r} is unknown; choose softmax or aam")
        self.decoder_variance, self.kl_warmup_steps = decoder_variance, int(kl_warmup_steps)
        self.free_bits, self.speaker_head = float(free_bits), speaker_head
        self.kl_identity_weight = float(kl_identity_weight)
        self._kl_weights = kl_node_weights(self.latent_dim, self.kl_identity_weight)
        self.aam_margin, self.aam_scale = float(aam_margin), float(aam_scale)
        self.hsic_weight, self.input_noise = float(hsic_weight), float(input_noise)
        if hsic_kernel not in ("linear", "rbf"):
            raise ValueError(f"hsic_kernel {hsic_kernel!r} is unknown; choose linear or rbf")
        self.hsic_kernel = hsic_kernel
        self.hidden_dropout, self.encoder_skip, self.mixup = float(hidden_dropout), bool(encoder_skip), float(mixup)
        if not 0 <= int(linear_nodes) < self.latent_dim:
            raise ValueError(f"linear_nodes must be in [0, latent_dim={self.latent_dim}), got {linear_nodes}")
        self.linear_nodes = int(linear_nodes)
        if mixup_within and mixup_within not in [a.name for a in self.attributes]:
            raise ValueError(f"mixup_within {mixup_within!r} is not one of the attributes")
        self.mixup_within = mixup_within
        if int(disc_steps) < 1:
            raise ValueError(f"disc_steps must be >= 1, got {disc_steps}")
        #: discriminator updates per joint step; the extra ones use ``disc_optimizer`` (set by the trainer)
        self.disc_steps, self.disc_optimizer = int(disc_steps), None
        drop = {"dropout": self.hidden_dropout, "seed": None if seed is None else seed + 101}

        p = self.parts
        # float32 under any mixed-precision policy: raw openSMILE features span many decades
        self.normalizer = keras.layers.Normalization(axis=-1, name="normalizer", dtype="float32")
        rep_dim = self.latent_dim if p["vae"] else self.input_dim
        if p["vae"]:
            mlp_nodes = self.latent_dim - self.linear_nodes
            self.encoder = dense_stack(self.encoder_units, l2, "encoder", out=2 * mlp_nodes, **drop)
            if self.encoder_skip:
                self.encoder_linear = dense_stack((), l2, "encoder_linear", out=2 * mlp_nodes)
            if self.linear_nodes:
                self.encoder_band = dense_stack((), l2, "encoder_band", out=2 * self.linear_nodes)
            self.decoder = dense_stack(self.decoder_units, l2, "decoder", out=self.input_dim)
        # Layers live under fixed attribute names (``emo_dropout``, ``emo_head``, ``id_body``, ``id_adv_head``...)
        # so that the paper's two-attribute model keeps its checkpoint layout.
        if p["layered"]:
            profiles = attribute_keep_rates(rep_dim, len(self.attributes), keep_schedule, keep_min, keep_max,
                                            width=self.band_width, centres=self.band_centres)
            for k, a in enumerate(self.attributes):
                setattr(self, f"{a.short}_dropout", LayeredDropout(
                    profiles[k], seed=None if seed is None else seed + 1 + k, name=f"{a.short}_layered_dropout"))
        for a in self.attributes:
            if a.name not in p["heads"]:
                continue
            if a.is_identity:
                self.id_body = dense_stack(self.head_units, l2, "speaker_embedding", **drop)
                if speaker_head == "aam":
                    self.id_out = CosineMarginClassifier(self.n_speakers, aam_margin, aam_scale,
                                                         name="speaker_classifier")
                else:
                    self.id_out = dense_stack((), l2, "speaker_classifier", out=self.n_speakers)
            else:
                setattr(self, f"{a.short}_head", dense_stack(self.head_units, l2, f"{a.name}_classifier",
                                                             out=self.n_classes[a.name], **drop))
        self.grls = []
        if identity_adversary not in IDENTITY_ADVERSARIES:
            raise ValueError(f"identity_adversary {identity_adversary!r} is unknown; choose classifier or pairs")
        self.identity_adversary = identity_adversary
        for (pred, branch), term in self.adversary_terms.items():
            a = self._attr(pred)
            grl = GradientReversal(self.lambda_schedule.max_lambda, name=f"{term}_reversal")
            suffix = "" if term == f"{a.short}_adv" else f"_on_{branch}"
            name = ("speaker" if a.is_identity else a.name) + "_discriminator" + suffix
            head = PairDiscriminator(self.head_units, l2, name=name) if self.pairs_adversary(pred) else \
                dense_stack(self.head_units, l2, name, out=self.n_classes[pred])
            setattr(self, f"{term}_grl", grl)
            setattr(self, f"{term}_head", head)
            self.grls.append(grl)

        self.use_hsic = p["layered"] and self.hsic_weight > 0
        self.lda_target_weight = float(lda_target_weight)
        self.lda_target_dims = {k: int(v) for k, v in (lda_target_dims or {}).items()}
        if lda_readout not in LDA_READOUTS:
            raise ValueError(f"lda_readout {lda_readout!r} is unknown; choose branch or band")
        self.lda_readout = lda_readout
        unknown = set(self.lda_target_dims) - {a.name for a in self.attributes}
        if unknown:
            raise ValueError(f"lda_target_dims names {sorted(unknown)}, not attributes of this model")
        #: the attributes whose branch distils a class projection (fixed maps, set by set_class_projection)
        self.lda_attributes = [a for a in self.attributes if a.name in self.lda_target_dims] \
            if p["vae"] and self.lda_target_weight > 0 else []
        for a in self.lda_attributes:
            setattr(self, f"{a.short}_target", ProjectionTarget(self.lda_target_dims[a.name],
                                                                name=f"{a.name}_projection_target"))
        self.club_weight = float(club_weight)
        self.use_club = p["layered"] and self.club_weight > 0
        if self.use_club:  # one variational net q(b|a) per pair of bands (i < j), predicting band j
            bounds = band_bounds(rep_dim, len(self.attributes))
            self.club_estimators = [ClubEstimator(bounds[j + 1] - bounds[j], name=f"club_{i}_{j}")
                                    for i in range(len(self.attributes)) for j in range(i + 1, len(self.attributes))]
        self.swap_weight = float(swap_weight)
        #: whether training batches must carry ``sibling`` (layered LR-VAEs with ``swap_weight`` > 0)
        self.use_swap = p["layered"] and p["vae"] and self.swap_weight > 0
        self.guard_weight = float(guard_weight)
        self.use_guard = bool(self.adversary_terms) and self.guard_weight > 0
        self.term_names = ([t for t in ("recon", "kl") if p["vae"]] + [t for t in self.loss_terms if p.get(t)]
                           + (["hsic"] if self.use_hsic else []) + (["guard"] if self.use_guard else [])
                           + (["club", "club_fit"] if self.use_club else []) + (["swap"] if self.use_swap else [])
                           + [f"{a.short}_lda" for a in self.lda_attributes])
        tracked = ["loss", "selection", *self.term_names, "l2"]
        tracked += [f"{a.short}_acc" for a in self.attributes if a.name in p["heads"]]
        tracked += ["grl_lambda"] if self.grls else []
        #: names of the tracked terms, in log order; their running means live in one metric
        self.trackers = tuple(tracked)
        self.term_means = TermMeans(tracked)

    def _attr(self, name: str):
        return next(a for a in self.attributes if a.name == name)

    def branch(self, name: str, rep, training: bool = False):
        """The input of attribute ``name``'s head and of the adversaries on its branch: ``rep`` through
        the attribute's layered dropout (eq. 2-3; at inference ``rep * p``), or ``rep`` without it."""
        if not self.parts["layered"]:
            return rep
        return getattr(self, f"{self._attr(name).short}_dropout")(rep, training=training)

    def head(self, name: str):
        """Attribute ``name``'s classifier (identity: the speaker-embedding body)."""
        a = self._attr(name)
        return self.id_body if a.is_identity else getattr(self, f"{a.short}_head")


    # ------------------------------------------------------------------ structure
    def build(self, input_shape=None):
        d = self.input_dim
        self.normalizer.build((None, d))
        rep = self.latent_dim if self.parts["vae"] else d
        if self.parts["vae"]:
            self.encoder.build((None, d))
            if self.encoder_skip:
                self.encoder_linear.build((None, d))
            if self.linear_nodes:
                self.encoder_band.build((None, d))
            self.decoder.build((None, self.latent_dim))
            if self.decoder_variance == "learned":
                self.decoder_log_scale = self.add_weight(name="decoder_log_scale", shape=(d,), initializer="zeros")
            if self.kl_warmup_steps:
                self.kl_anneal = self.add_weight(name="kl_anneal", shape=(), initializer="zeros", trainable=False,
                                                 aggregation="only_first_replica")
        for a in self.attributes:
            if self.parts["layered"]:
                getattr(self, f"{a.short}_dropout").build((None, rep))
            if a.name in self.parts["heads"]:
                self.head(a.name).build((None, rep))
                if a.is_identity:
                    self.id_out.build((None, self.head_units[-1]))
        for term in self.adversary_terms.values():
            getattr(self, f"{term}_grl").build((None, rep))
            getattr(self, f"{term}_head").build((None, rep))
        for a in self.lda_attributes:
            nodes = self._lda_nodes(a.name, rep)
            getattr(self, f"{a.short}_target").build((None, nodes.stop - nodes.start), d)
        if self.use_club:
            bounds = band_bounds(rep, len(self.attributes))
            pairs = [(i, j) for i in range(len(self.attributes)) for j in range(i + 1, len(self.attributes))]
            for est, (i, _) in zip(self.club_estimators, pairs):
                est.build((None, bounds[i + 1] - bounds[i]))
        self.built = True

    def adapt_normalizer(self, features) -> None:
        """Set the standardisation statistics from *training* features: a numpy array, or streamed
        features (:class:`tfvae.stream.StreamedFeatures`, one chunked float64 pass)."""
        from tfvae.stream import is_streamed, moments

        if not self.built:
            self.build()
        if not is_streamed(features):
            self.normalizer.adapt(features)
            return
        m = moments(features)
        self.normalizer.adapt_mean.assign(m.mean.astype(np.float32))
        self.normalizer.adapt_variance.assign(m.variance.astype(np.float32))
        self.normalizer.finalize_state()

    def pairs_adversary(self, pred: str) -> bool:
        """Whether the adversaries that predict attribute ``pred`` judge pairs (``identity_adversary``)."""
        return self.identity_adversary == "pairs" and self._attr(pred).is_identity

    def _lda_nodes(self, name: str, n: int) -> slice:
        """The latent nodes attribute ``name``'s read-out sees: all (``branch``) or its nominal band."""
        if self.lda_readout == "branch":
            return slice(0, n)
        k = [a.name for a in self.attributes].index(name)
        bounds = band_bounds(n, len(self.attributes))
        return slice(bounds[k], bounds[k + 1])

    def set_class_projection(self, name: str, kernel, bias) -> None:
        """The fixed map attribute ``name``'s branch distils (:func:`tfvae.distill.fit_class_projection`)."""
        getattr(self, f"{self._attr(name).short}_target").set_projection(kernel, bias)

    @property
    def metrics(self):
        return [self.term_means]

    # ------------------------------------------------------------------ forward
    def _check_dim(self, x):
        d = x.shape[-1]
        if d is not None and d != self.input_dim:
            raise ValueError(f"the model expects {self.input_dim} features per example, got {d}")

    def posterior(self, x, training: bool = False):
        """q(z|x) as a ``tfd.MultivariateNormalDiag`` (paper eq. 1), from raw features."""
        self._check_dim(x)
        x_std = self.normalizer(x)
        if training and self.input_noise > 0:
            x_std = x_std + self.input_noise * random_normal(ops.shape(x_std), self.seed_generator)
        params = self.encoder(x_std, training=training)
        if self.encoder_skip:
            params = params + self.encoder_linear(x_std)
        mean, log_var = ops.split(ops.cast(params, "float32"), 2, axis=-1)
        if self.linear_nodes:  # the identity end: a linear map of the input
            band_mean, band_log_var = ops.split(ops.cast(self.encoder_band(x_std), "float32"), 2, axis=-1)
            mean = ops.concatenate([mean, band_mean], axis=-1)
            log_var = ops.concatenate([log_var, band_log_var], axis=-1)
        log_var = ops.clip(log_var, -12.0, 8.0)
        return tfd.MultivariateNormalDiag(loc=mean, scale_diag=ops.exp(0.5 * log_var))

    def encode(self, x):
        """The representation used downstream: posterior mean (or standardised features for dnn)."""
        if not self.parts["vae"]:
            self._check_dim(x)
            return self.normalizer(x)
        return self.posterior(x).mean()

    def forward(self, x, training: bool = False, labels=None) -> dict:
        """Every intermediate the objective needs: ``<short>_logits`` of each head (the speaker head:
        ``speaker_embedding`` and ``id_logits``; ``labels`` = speaker labels for its margin) and
        ``<term>_logits`` of each adversary."""
        self._check_dim(x)
        out = {"x_std": ops.cast(self.normalizer(x), "float32")}
        if self.parts["vae"]:
            q = self.posterior(x, training=training)
            out["q"] = q
            if training:
                eps = random_normal(ops.shape(q.mean()), self.seed_generator)
                z = q.mean() + q.stddev() * eps  # reparameterised sample
            else:
                z = q.mean()
            out["z"] = z
            out["x_loc"] = ops.cast(self.decoder(z, training=training), "float32")
            rep = z
        else:
            rep = out["x_std"]
        branches = {a.name: self.branch(a.name, rep, training) for a in self.attributes}
        for a in self.attributes:
            if a.name not in self.parts["heads"]:
                continue
            if a.is_identity:
                out["speaker_embedding"] = self.id_body(branches[a.name], training=training)
                if self.speaker_head == "aam":  # the margin needs the labels; inference gets plain cosines
                    out["id_logits"] = self.id_out(out["speaker_embedding"], labels=labels)
                else:
                    out["id_logits"] = self.id_out(out["speaker_embedding"], training=training)
            else:
                out[f"{a.short}_logits"] = self.head(a.name)(branches[a.name], training=training)
        for a in self.lda_attributes:
            seen = branches[a.name] if self.lda_readout == "branch" else rep[:, self._lda_nodes(a.name, int(rep.shape[-1]))]
            out[f"{a.short}_lda"] = getattr(self, f"{a.short}_target")(seen, out["x_std"])
        for (_, branch), term in self.adversary_terms.items():
            grl, head = getattr(self, f"{term}_grl"), getattr(self, f"{term}_head")
            out[f"{term}_logits"] = head(grl(branches[branch]), training=training)
        return out

    def call(self, inputs, training=False):
        """``latent`` (a sample in training, the posterior mean at inference), ``<attribute>_probabilities``
        of each class head and ``speaker_embedding``."""
        out = self.forward(inputs, training=training)
        res = {"latent": out["z"] if self.parts["vae"] else out["x_std"]}
        for a in self.attributes:
            if a.name in self.parts["heads"]:
                if a.is_identity:
                    res["speaker_embedding"] = out["speaker_embedding"]
                else:
                    res[a.output] = ops.softmax(ops.cast(out[f"{a.short}_logits"], "float32"))
        return res

    # ------------------------------------------------------------------ serialisation
    def get_config(self):
        return {
            "input_dim": self.input_dim, "n_emotions": self.n_emotions, "n_speakers": self.n_speakers,
            "method": self.method, "protect": self.protect, "latent_dim": self.latent_dim,
            "encoder_units": list(self.encoder_units), "decoder_units": list(self.decoder_units),
            "head_units": list(self.head_units), "keep_schedule": self.keep_schedule,
            "keep_min": self.keep_min, "keep_max": self.keep_max,
            "lambda_schedule": self.lambda_schedule.get_config(), "loss_weights": dict(self.loss_weights),
            "kl_weight": self.kl_weight, "l2": self.l2, "seed": self.seed, "name": self.name,
            "decoder_variance": self.decoder_variance, "kl_warmup_steps": self.kl_warmup_steps,
            "free_bits": self.free_bits, "kl_identity_weight": self.kl_identity_weight,
            "speaker_head": self.speaker_head, "aam_margin": self.aam_margin,
            "aam_scale": self.aam_scale, "hsic_weight": self.hsic_weight, "input_noise": self.input_noise,
            "hsic_kernel": self.hsic_kernel, "attributes": [a.name for a in self.attributes],
            "n_classes": dict(self.n_classes), "adversaries": self.adversaries, "band_width": self.band_width,
            "band_centres": None if self.band_centres is None else list(self.band_centres),
            "hidden_dropout": self.hidden_dropout, "encoder_skip": self.encoder_skip, "mixup": self.mixup, "mixup_within": self.mixup_within,
            "guard_weight": self.guard_weight, "disc_steps": self.disc_steps, "club_weight": self.club_weight,
            "lda_target_weight": self.lda_target_weight, "lda_target_dims": dict(self.lda_target_dims),
            "lda_readout": self.lda_readout, "identity_adversary": self.identity_adversary,
            "swap_weight": self.swap_weight, "linear_nodes": self.linear_nodes,
        }

