"""The one configuration dataclass of tfvae, and its command-line form.

Every option of ``python -m tfvae.train`` is a field of :class:`TrainConfig`; the
argparse parser is generated from the fields, so the help text lives in one place.
Defaults follow the paper (section 3.1): Adam, learning rate 5e-4, batch 128,
L2 1e-6 on all weights and biases, ReLU, and unit weights in eq. 4. Beyond the paper, the
defaults chosen on RAVDESS validation actors (reports/ravdess/quality.md): a 64-node latent, a
learned decoder variance, an HSIC weight of 1 between the latent halves, lambda 0.3, mixup with
alpha 1 and speed-perturbed training copies where the dataset has them (``--speed_perturb auto``).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from tfvae.order import BATCH_ORDERS

#: Training methods: the paper's LR-VAE and its baselines (section 3.1.1).
METHODS = ("dnn", "vae", "a-vae", "lrvae-noadv", "lrvae")
#: Which attribute an A-VAE model removes with its adversary ("both" trains one model each for emotion
#: and identity; any attribute of ``--attributes`` may be named).
PROTECT = ("identity", "emotion", "both")
#: Keep-rate schedule families for layered dropout (eq. 2).
KEEP_SCHEDULES = ("linear", "exponential", "sigmoid", "cosine")
#: Gradient-reversal strength schedules.
LAMBDA_SCHEDULES = ("constant", "dann", "linear")
#: Distribution strategies of the train CLI (see :mod:`tfvae.distribute`).
STRATEGIES = ("auto", "default", "mirrored", "multiworker")
#: Keras dtype policies: float32, mixed_float16 (GPU), mixed_bfloat16 (CPU/TPU).
PRECISIONS = ("float32", "mixed_float16", "mixed_bfloat16")
#: How the learning rate follows the number of replicas (global batch = batch_size x replicas).
LR_SCALING = ("none", "linear", "sqrt")
LR_SCHEDULES = ("constant", "cosine")

#: Decoder likelihood scales of L_VAE: unit variance (paper), a learned variance per feature, or the
#: calibrated shared variance of sigma-VAE (Rybkin et al. 2021: the batch MSE, not learned).
DECODER_VARIANCES = ("unit", "learned", "calibrated")
#: Speaker-ID classifier: softmax over a dense layer (paper), or a cosine classifier with additive
#: angular margin (ArcFace/AAM-softmax, as x-vector/ECAPA systems train their embeddings).
SPEAKER_HEADS = ("softmax", "aam")

#: Kernels of the HSIC penalty between the latent halves.
HSIC_KERNELS = ("linear", "rbf")
#: Probe sets of the mask-cut choice (tfvae.evaluate.CUT_ATTACKERS).
CUT_ATTACKERS = ("fast", "strong")
#: Kinds of identity adversary (:mod:`tfvae.pairs`) and what a distilled projection's read-out sees.
IDENTITY_ADVERSARIES = ("classifier", "pairs")
LDA_READOUTS = ("branch", "band")

#: Speed perturbation of the training split (tfvae.speed): decided by the data, always, never.
SPEED_PERTURB = ("auto", "true", "false")

#: Attacker suites of the evaluation: every attacker, or the fast linear ones (quick looks, tests).
EVAL_ATTACKERS = ("full", "fast")

#: The loss terms of eq. 4, in the order they are reported.
LOSS_TERMS = ("vae", "emo", "id", "emo_adv", "id_adv")


class ConfigError(ValueError):
    """A configuration value is invalid; raised before any data is read."""


def _opt(default: Any, help: str, **kw) -> Any:
    """A dataclass field carrying its command-line help."""
    if isinstance(default, (list, tuple)):
        return field(default_factory=lambda: tuple(default), metadata={"help": help, **kw})
    return field(default=default, metadata={"help": help, **kw})


@dataclass
class TrainConfig:
    """All options of a tfvae training run."""

    # data
    dataset: str = _opt(
        "tfvae_demo",
        "TFDS dataset name, optionally name/config (e.g. tfvae_demo/is10_small), or the path of a CSV "
        "manifest of any labelled audio folder (columns path, speaker, emotion, optional split, "
        "utterance_id; see tfvae_datasets.audio_manifest). "
        "The default is the built-in synthetic demo corpus, generated on first use.")
    data_dir: str | None = _opt(None, "TFDS data directory (default: TFDS's, ~/tensorflow_datasets).")
    label_columns: str = _opt(
        "", "CSV manifests only: extra label columns (comma-separated) that become class labels of the dataset, "
        "usable as attributes (--attributes emotion,accent,identity); gender is always read.")
    manual_dir: str | None = _opt(None, "Directory holding a manually downloaded corpus (MSP-Podcast, RAVDESS).")
    feature_set: str = _opt("IS10", "openSMILE functionals set; IS10 is the paper's emobase2010 (1582 features).")
    skip_bad_items: bool = _opt(
        False, "Skip unusable audio/label items (unreadable, silent or too short audio, bad labels) and write "
        "their list (bad_items.json) beside the dataset instead of stopping; matters when the dataset is built.")
    speed_perturb: str = _opt(
        "auto", "Train on speed-perturbed copies too: the dataset's <set>_sp config stores each utterance's features "
        "at speeds 0.9 and 1.1 (pitch, formants and tempo scaled), and every training speaker's copies join the "
        "training split as new speakers <speaker>@sp<f> (tfvae.speed). Validation, test and every evaluation use "
        "the recorded utterances only. auto: on for openSMILE feature sets of corpora tfvae builds from audio "
        "(ravdess, msp_podcast, tfvae_demo, CSV manifests), off otherwise; true: required; false: off.",
        choices=SPEED_PERTURB, nargs="?", const="true")
    in_memory_mb: float = _opt(
        128.0, "When the float32 features of a corpus take more MiB than this, they are not loaded into memory: "
        "training and evaluation stream them from the TFDS files (shuffled files, shuffle buffer, prefetch).")
    shuffle_buffer: int = _opt(8192, "Rows of the shuffle buffer of streamed training splits.")
    encoded_memory_mb: float = _opt(
        256.0, "Encoded outputs (latents, head outputs) of a split larger than this many MiB are written to "
        "<run dir>/encoded/*.npy and memory-mapped instead of held in RAM.")
    # model
    method: str = _opt("lrvae", "Training method (paper section 3.1.1).", choices=METHODS)
    protect: str = _opt(
        "both", "A-VAE only: attribute its adversary removes (one of --attributes); 'both' trains one model for "
        "identity and one for emotion.")
    attributes: str = _opt(
        "emotion,identity", "Attributes aligned in the latent, in latent order from node 0 (tfvae.attributes): "
        "emotion, gender, identity (the speaker label, exactly once) or any class label of the dataset.")
    views: str = _opt(
        "", "Masked views to choose, export and report: comma-separated sets of kept attributes joined by '+', "
        "e.g. 'emotion,identity,emotion+gender' (default: one view per attribute, keeping only it). "
        "identity_free / emotion_free name the paper's two views.")
    adversaries: str = _opt(
        "all", "LR-VAE adversaries behind gradient reversal: all (every attribute's branch hides every other "
        "attribute), none, or predicted@branch pairs, e.g. 'identity@emotion,gender@emotion'.")
    band_width: float = _opt(
        1.0, "Width of each attribute's keep-rate band in units of the spacing between band centres "
        "(tfvae.schedules.band_keep_rates); 1 = a profile falls to keep_min at the neighbouring band's centre.")
    band_centres: str = _opt(
        "", "Band centres as fractions of the latent, one per attribute, strictly increasing "
        "(default: equally spaced from 0 to 1).")
    latent_dim: int = _opt(64, "Number of latent nodes N (node 0 = emotion end, node N-1 = identity end).")
    encoder_units: tuple[int, ...] = _opt((512, 256), "Hidden layer sizes of the encoder MLP.")
    decoder_units: tuple[int, ...] = _opt((256, 512), "Hidden layer sizes of the decoder MLP.")
    head_units: tuple[int, ...] = _opt(
        (256, 128), "Hidden sizes of each classifier/discriminator MLP; the last is the speaker embedding.")
    keep_schedule: str = _opt("linear", "Layered-dropout keep-rate family (eq. 2).", choices=KEEP_SCHEDULES)
    keep_min: float = _opt(0.0, "Smallest keep rate p_i of the layered dropout.")
    keep_max: float = _opt(1.0, "Largest keep rate p_i of the layered dropout.")
    adv_lambda: float = _opt(
        0.3, "Final gradient-reversal strength lambda (0.3: chosen on RAVDESS validation actors, "
        "reports/ravdess/quality.md; the paper does not state it).")
    disc_lr_scale: float = _opt(
        1.0, "Learning-rate multiplier of the two adversarial discriminators: > 1 makes them learn faster than "
        "the encoder that fights them through gradient reversal.")
    lambda_schedule: str = _opt("dann", "Gradient-reversal ramp over training.", choices=LAMBDA_SCHEDULES)
    # objective (eq. 4)
    vae_weight: float = _opt(1.0, "Weight of L_VAE (negative ELBO per feature, eq. 1).")
    kl_weight: float = _opt(1.0, "Weight of the KL term inside L_VAE (beta).")
    decoder_variance: str = _opt(
        "learned", "Decoder likelihood p(x|z): unit variance (paper), learned (one trainable variance per feature) or "
        "calibrated (sigma-VAE: shared variance = batch MSE); a learned/calibrated variance rebalances eq. 1.",
        choices=DECODER_VARIANCES)
    kl_warmup: float = _opt(0.0, "KL annealing: the KL weight ramps linearly from 0 over this fraction of training.")
    free_bits: float = _opt(0.0, "Free bits: KL per latent node below this many nats (batch mean) costs nothing.")
    kl_identity_weight: float = _opt(
        0.3, "Layered methods (lrvae, lrvae-noadv): KL weight of the identity-end latent node relative to the emotion "
        "end: node weights ramp linearly from 1 at node 0 to this at node N-1 (a beta per node; 1 = the paper's "
        "uniform KL, which the other VAEs keep; 0.3 with "
        "--linear_band 0.5: chosen on RAVDESS validation actors over five seeds, reports/ravdess/quality.md "
        "runs FA-GD).")
    speaker_head: str = _opt(
        "softmax", "Speaker-ID classifier: softmax (paper) or aam (cosine classifier with additive angular margin).",
        choices=SPEAKER_HEADS)
    aam_margin: float = _opt(0.2, "Additive angular margin m of the aam speaker head (radians).")
    aam_scale: float = _opt(30.0, "Logit scale s of the aam speaker head.")
    hsic_weight: float = _opt(
        1.0, "Weight of a linear-kernel HSIC penalty (squared cross-correlation) between the emotion half and the "
        "identity half of the latent, on top of layered dropout (LR-VAE only).")
    hsic_kernel: str = _opt(
        "linear", "Kernel of the HSIC penalty: linear (cross-correlation) or rbf (Gaussian kernels, median bandwidth: "
        "also penalises non-linear dependence between the latent halves).", choices=HSIC_KERNELS)
    lda_target: float = _opt(
        0.0, "Weight of the distilled class projections: a linear read-out of each --lda_attributes branch predicts "
        "the PCA + LDA projection of the input fitted on that attribute's training labels (tfvae.distill; metric "
        "<short>_lda, the fraction of its variance missed); 0 = off.")
    lda_attributes: str = _opt(
        "identity", "Attributes (separated by , or +) whose branch distils its class projection with --lda_target "
        "(identity: the training speakers' LDA space; emotion: the emotions').")
    identity_adversary: str = _opt(
        "classifier", "The identity adversaries: classifier (the paper's speaker discriminator over the training "
        "speakers) or pairs (a same-speaker judge on every pair of the batch, scored by the cosine of learned "
        "embeddings, as the verification attackers score unseen speakers; tfvae.pairs).",
        choices=IDENTITY_ADVERSARIES)
    lda_readout: str = _opt(
        "branch", "What each distilled projection's read-out sees: branch (the attribute's layered-dropout branch) "
        "or band (only the attribute's nominal band of latent nodes).", choices=LDA_READOUTS)
    club_weight: float = _opt(
        0.0, "Weight of the CLUB mutual-information upper bound (Cheng et al. 2020) between the attributes' latent "
        "bands, each pair with a learned Gaussian variational net (LR-VAE only; 0 = off).")
    swap_weight: float = _opt(
        0.0, "Weight of the cross-reconstruction term across speed-perturbed copies (needs --speed_perturb): each "
        "training utterance's latent, its identity end replaced by that of another speed of the same recording, "
        "must decode to that copy, so the voice has to sit at the identity end (LR-VAE only; 0 = off).")
    input_noise: float = _opt(0.0, "Std of Gaussian noise added to the standardised encoder input in training.")
    hidden_dropout: float = _opt(
        0.0, "Dropout rate after each hidden layer of the encoder and of the attribute heads (not the "
        "discriminators), against over-fitting the few training speakers of small corpora.")
    mixup: float = _opt(
        1.0, "Mixup alpha: each training batch is mixed with a shuffled copy of itself by lam ~ Kumaraswamy(alpha, "
        "alpha) (a Beta-like law XLA can sample) and every cross-entropy term is mixed likewise (0 = off).")
    mixup_within: str = _opt(
        "", "Mixup partners share this attribute's label (e.g. emotion: only voices are mixed; identity: only "
        "emotions are mixed); empty = any two utterances of the batch.")
    guard_weight: float = _opt(
        0.0, "Weight of the linear-guardedness penalty: for every adversary pair, the squared correlation "
        "between the attribute's labels and its branch's expected input (the training-time form of LEACE's "
        "condition; tfvae.terms.linear_leakage). 0 = off.")
    encoder_skip: bool = _opt(
        False, "Add a linear map of the standardised input to the encoder MLP's output (mean and "
        "log-variance), a linear path like the raw-feature models that verify unseen speakers best.")
    linear_band: float = _opt(
        0.5, "Layered methods (lrvae, lrvae-noadv; the other VAEs keep the paper's encoder): fraction of the "
        "latent nodes, counted from the identity end, whose posterior (mean and "
        "log-variance) is a linear map of the standardised input instead of the encoder MLP's output: an "
        "identity end that cannot memorise the training speakers' voices non-linearly. 0 = every node from "
        "the MLP (the paper); must be below 1. 0.5 (with --kl_identity_weight 0.3): chosen on RAVDESS validation "
        "actors over five seeds, reports/ravdess/quality.md runs FA-GD.")
    emo_weight: float = _opt(1.0, "Weight of L_emo (emotion cross-entropy).")
    id_weight: float = _opt(1.0, "Weight of L_id (speaker-ID cross-entropy).")
    emo_adv_weight: float = _opt(1.0, "Weight of L_emo-adv (emotion discriminator on the speaker branch).")
    id_adv_weight: float = _opt(1.0, "Weight of L_id-adv (speaker discriminator on the emotion branch).")
    term_weights: str = _opt(
        "", "Weights of other attributes' terms, e.g. 'gen=1,gen_adv=0.5' (default 1; see tfvae.methods.loss_terms).")
    # optimisation
    epochs: int = _opt(30, "Training epochs.")
    batch_size: int = _opt(128, "Batch size per replica; the global batch is this times the replicas.")
    batch_order: str = _opt(
        "random", "Order of each training epoch (tfvae.order): random, or speaker (speaker-stratified batches: each "
        "training speaker's utterances spread evenly over the epoch, so every batch holds each voice in proportion "
        "to its utterances). Streamed training splits are batched from their shuffle buffer either way.",
        choices=BATCH_ORDERS)
    learning_rate: float = _opt(5e-4, "Adam learning rate.")
    disc_steps: int = _opt(
        1, "Discriminator updates per encoder update: before each joint step (eq. 4), disc_steps - 1 updates of "
        "the adversarial discriminators alone on the same batch, with their own Adam (1 = the paper).")
    ema_epochs: float = _opt(
        0.0, "Weight averaging: validate, select and keep an exponential moving average of the weights over about "
        "this many epochs (Keras' optimizer EMA, momentum 1 - 1/(ema_epochs x steps per epoch)); 0 = the "
        "weights themselves.")
    lr_schedule: str = _opt(
        "constant", "Learning rate over training: constant (the paper) or cosine (cosine decay from learning_rate "
        "to a tenth of it over all epochs).", choices=LR_SCHEDULES)
    l2: float = _opt(1e-6, "L2 regularisation on all weights and biases.")
    select_after: float = _opt(
        0.5, "Methods with adversaries: checkpoint selection considers only the checkpoints taken at or after "
        "this fraction of training, i.e. from epoch ceil(select_after x epochs) on (the gradient reversal ramps up "
        "before).")
    seed: int = _opt(0, "Random seed (weights, dropout masks, shuffling, cut selection).")
    strategy: str = _opt(
        "auto", "tf.distribute strategy: auto = MirroredStrategy over local GPUs if any, else default; "
        "mirrored = all local GPUs (or logical CPUs); multiworker = MultiWorkerMirroredStrategy from TF_CONFIG.",
        choices=STRATEGIES)
    lr_scaling: str = _opt(
        "none", "Learning rate for N replicas: none = learning_rate as given, linear = learning_rate x N, "
        "sqrt = learning_rate x sqrt(N) (the global batch is batch_size x N).", choices=LR_SCALING)
    jit_compile: bool = _opt(False, "Compile the train step with XLA: all of it (optimizer update included) on one "
                                    "replica, the forward and backward pass with several.")
    precision: str = _opt(
        "float32", "Keras dtype policy: mixed_float16 (GPUs, with dynamic loss scaling) or mixed_bfloat16 "
        "(CPUs with AVX512-BF16/AMX, TPUs); KL, likelihood and cross-entropies stay float32.",
        choices=PRECISIONS)
    backup_every: int = _opt(
        50, "Fault tolerance: back up the training state every this many steps and at each epoch end into "
        "<run dir>/backup; running the same command again resumes from it. 0 = epoch ends only.")
    # masking
    mask_groups: int = _opt(32, "Number of node groups the mask cut moves by (paper Fig. 2 uses 32).")
    cut_tolerance: float = _opt(
        0.02, "Utility loss tolerated when choosing a mask cut on validation (absolute, e.g. 0.02 = 2 points).")
    cut_attackers: str = _opt(
        "fast", "Probes that score each candidate cut on validation: fast (logistic regression, PCA/LDA cosine) or "
        "strong (the strongest of logreg/kNN-cosine and PCA/LDA/logreg-posterior/plain cosine: attacker in the loop).",
        choices=CUT_ATTACKERS)
    # evaluation
    eval_attackers: str = _opt(
        "full", "Attacker suite of the test report and Table 1: full (every attacker of tfvae.attackers; "
        "reported numbers use it) or fast (logistic regression and PCA/LDA cosine only, for quick looks).",
        choices=EVAL_ATTACKERS)
    # outputs
    output_dir: str = _opt("runs", "Where run directories (TensorBoard, checkpoint, statistics) go.")
    run_name: str | None = _opt(None, "Run name (default: <dataset>-<feature_set>-<method>).")
    export_dir: str = _opt("saved_models", "SavedModel root; models go to <export_dir>/<run-name>/<version>/.")
    verbose: int = _opt(1, "Keras verbosity: 0 silent, 1 progress bar, 2 one line per epoch.")

    # ------------------------------------------------------------------
    def validate(self, feature_sets: Sequence[str] | None = None) -> "TrainConfig":
        """Check every value; raise :class:`ConfigError` naming the bad option."""
        errs = []
        if self.method not in METHODS:
            errs.append(f"method={self.method!r} is unknown; choose one of {', '.join(METHODS)}")
        try:
            attrs = self.attribute_list()
            order = [a.name for a in attrs]
            if self.protect != "both" and self.protect not in order:
                errs.append(f"protect={self.protect!r} is unknown; choose both or one of {', '.join(order)}")
            bad = [n for n in self.lda_attribute_names() if n not in order]
            if bad:
                errs.append(f"lda_attributes names {', '.join(map(repr, bad))}, not an attribute; choose from "
                            f"{', '.join(order)}")
            if self.mixup_within and self.mixup_within not in order:
                errs.append(f"mixup_within={self.mixup_within!r} is not an attribute; choose one of {', '.join(order)}")
            if self.protect == "both" and self.method == "a-vae" and not {"emotion", "identity"} <= set(order):
                errs.append("protect=both trains an A-VAE for emotion and for identity; name one attribute instead")
            self.view_map()
            from tfvae.methods import parse_adversaries

            parse_adversaries(self.adversaries, attrs)
            self.band_centre_list()
            self.loss_weights
        except ValueError as e:
            errs.append(str(e))
        if self.band_width <= 0:
            errs.append(f"band_width={self.band_width} must be > 0")
        if feature_sets is not None and self.feature_set not in feature_sets:
            errs.append(f"feature_set={self.feature_set!r} is unknown; choose one of {', '.join(feature_sets)}")
        if self.keep_schedule not in KEEP_SCHEDULES:
            errs.append(f"keep_schedule={self.keep_schedule!r} is unknown; choose one of {', '.join(KEEP_SCHEDULES)}")
        if self.lambda_schedule not in LAMBDA_SCHEDULES:
            errs.append(f"lambda_schedule={self.lambda_schedule!r} is unknown")
        for name, allowed in (("strategy", STRATEGIES), ("precision", PRECISIONS), ("lr_scaling", LR_SCALING),
                              ("eval_attackers", EVAL_ATTACKERS), ("decoder_variance", DECODER_VARIANCES),
                              ("speaker_head", SPEAKER_HEADS), ("lr_schedule", LR_SCHEDULES),
                              ("cut_attackers", CUT_ATTACKERS), ("hsic_kernel", HSIC_KERNELS),
                              ("lda_readout", LDA_READOUTS), ("identity_adversary", IDENTITY_ADVERSARIES),
                              ("speed_perturb", SPEED_PERTURB), ("batch_order", BATCH_ORDERS)):
            if getattr(self, name) not in allowed:
                errs.append(f"{name}={getattr(self, name)!r} is unknown; choose one of {', '.join(allowed)}")
        if self.backup_every < 0:
            errs.append(f"backup_every={self.backup_every} must be >= 0")
        if self.mask_groups < 2:
            errs.append(f"mask_groups={self.mask_groups} must be at least 2")
        elif self.latent_dim < self.mask_groups or self.latent_dim % self.mask_groups:
            errs.append(
                f"latent_dim={self.latent_dim} cannot be split into mask_groups={self.mask_groups} equal "
                f"groups; use a multiple of {self.mask_groups}")
        if not 0.0 <= self.keep_min <= self.keep_max <= 1.0:
            errs.append(f"keep rates must satisfy 0 <= keep_min ({self.keep_min}) <= keep_max ({self.keep_max}) <= 1")
        for name in ("vae_weight", "kl_weight", "emo_weight", "id_weight", "emo_adv_weight",
                     "id_adv_weight", "adv_lambda", "l2", "cut_tolerance", "select_after", "free_bits", "kl_identity_weight",
                     "aam_margin", "hsic_weight", "club_weight", "swap_weight", "lda_target", "input_noise",
                     "hidden_dropout", "mixup", "guard_weight", "ema_epochs", "in_memory_mb", "encoded_memory_mb",
                     "shuffle_buffer"):
            if getattr(self, name) < 0:
                errs.append(f"{name}={getattr(self, name)} must be >= 0")
        for name in ("epochs", "batch_size", "disc_steps"):
            if getattr(self, name) < 1:
                errs.append(f"{name}={getattr(self, name)} must be >= 1")
        if not 0.0 <= self.kl_warmup <= 1.0:
            errs.append(f"kl_warmup={self.kl_warmup} must be a fraction in [0, 1]")
        if self.disc_lr_scale <= 0:
            errs.append(f"disc_lr_scale={self.disc_lr_scale} must be > 0")
        if self.aam_scale <= 0:
            errs.append(f"aam_scale={self.aam_scale} must be > 0")
        if self.hidden_dropout >= 1:
            errs.append(f"hidden_dropout={self.hidden_dropout} must be a rate in [0, 1)")
        if not 0 <= self.linear_band < 1:
            errs.append(f"linear_band={self.linear_band} must be a fraction in [0, 1)")
        if self.select_after > 1:
            errs.append(f"select_after={self.select_after} must be a fraction in [0, 1]")
        if self.learning_rate <= 0:
            errs.append(f"learning_rate={self.learning_rate} must be > 0")
        for name in ("encoder_units", "decoder_units", "head_units"):
            units = getattr(self, name)
            if not units or any(u < 1 for u in units):
                errs.append(f"{name}={units} must be a non-empty list of positive sizes")
        if errs:
            raise ConfigError("invalid configuration:\n  - " + "\n  - ".join(errs))
        return self

    @property
    def loss_weights(self) -> dict[str, float]:
        """The named weights of eq. 4's terms plus ``--term_weights``."""
        out = {t: getattr(self, f"{t}_weight") for t in LOSS_TERMS}
        for item in filter(None, (i.strip() for i in self.term_weights.split(","))):
            key, _, val = item.partition("=")
            try:
                out[key.strip()] = float(val)
            except ValueError:
                raise ValueError(f"term_weights: {item!r} is not term=number") from None
            if out[key.strip()] < 0:
                raise ValueError(f"term_weights: {item!r} must be >= 0")
        return out

    def attribute_list(self):
        """The attributes (:class:`tfvae.attributes.Attribute`) in latent order."""
        from tfvae.attributes import parse_attributes

        return parse_attributes(self.attributes)

    def view_map(self) -> dict[str, tuple[str, ...]]:
        """``{view name: kept attributes}`` of ``--views`` (:func:`tfvae.attributes.parse_views`)."""
        from tfvae.attributes import parse_views

        return parse_views(self.views, self.attribute_list())

    def lda_attribute_names(self) -> list[str]:
        """The attributes of ``lda_attributes`` (separated by ``,`` or ``+``: ``emotion+identity`` fits a
        ``tune --grid`` value)."""
        return [n.strip() for n in self.lda_attributes.replace("+", ",").split(",") if n.strip()]

    def band_centre_list(self) -> tuple[float, ...] | None:
        if not self.band_centres.strip():
            return None
        try:
            c = tuple(float(v) for v in self.band_centres.split(","))
        except ValueError:
            raise ValueError(f"band_centres={self.band_centres!r} must be comma-separated fractions") from None
        n = len(self.attribute_list())
        if len(c) != n or any(not 0 <= v <= 1 for v in c) or any(b <= a for a, b in zip(c, c[1:])):
            raise ValueError(f"band_centres={self.band_centres!r}: need {n} strictly increasing fractions in [0, 1], "
                             "one per attribute (equal or decreasing centres make overlapping bands)")
        return c

    def label_column_list(self) -> tuple[str, ...]:
        return tuple(c.strip() for c in self.label_columns.split(",") if c.strip())

    def default_protect(self) -> str:
        """The attribute an A-VAE removes when ``protect`` is ``both`` (its first model)."""
        return "identity" if self.protect == "both" else self.protect

    def default_run_name(self) -> str:
        if self.run_name:
            return self.run_name
        ds = Path(self.dataset).stem if self.dataset.endswith(".csv") else self.dataset.replace("/", "-")
        from tfvae.features import FeatureError, feature_tag

        try:
            fs = self.feature_set if "@" not in self.feature_set else feature_tag(self.feature_set)
        except FeatureError:
            fs = self.feature_set
        return f"{ds}-{fs}-{self.method}"

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), indent=2, sort_keys=True)

    @classmethod
    def from_dict(cls, d: dict) -> "TrainConfig":
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - names
        if unknown:
            raise ConfigError(f"unknown configuration keys: {sorted(unknown)}")
        d = {k: tuple(v) if isinstance(v, list) else v for k, v in d.items()}
        return cls(**d)

    # ------------------------------------------------------------------
    @classmethod
    def parser(cls, prog: str = "python -m tfvae.train", description: str | None = None,
               add_help: bool = True) -> argparse.ArgumentParser:
        """An argparse parser with one ``--flag`` per field."""
        p = argparse.ArgumentParser(prog=prog, description=description, add_help=add_help,
                                    formatter_class=argparse.ArgumentDefaultsHelpFormatter)
        for f in dataclasses.fields(cls):
            meta = dict(f.metadata)
            help_ = meta.pop("help", "")
            default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
            kw: dict[str, Any] = {"default": default, "help": help_, **meta}
            if isinstance(default, tuple):
                kw.update(type=int, nargs="+")
            elif isinstance(default, bool):
                kw.update(type=_bool, nargs="?", const=True, metavar="{true,false}")  # bare --flag = true
            elif default is not None:
                kw["type"] = type(default)
            p.add_argument(f"--{f.name}", **kw)
        return p

    @classmethod
    def from_args(cls, argv: Sequence[str] | None = None) -> "TrainConfig":
        ns = cls.parser().parse_args(argv)
        return cls.from_dict(vars(ns))


def _bool(s: str) -> bool:
    if s.lower() in ("1", "true", "yes"):
        return True
    if s.lower() in ("0", "false", "no"):
        return False
    raise argparse.ArgumentTypeError(f"expected true/false, got {s!r}")
