"""The one mapping from a :class:`tfvae.config.TrainConfig` to an :class:`tfvae.model.LRVAE`: the train
CLI, the experiments and :func:`tfvae.runs.load_run` all build their models here."""

from __future__ import annotations

from tfvae.methods import method_parts
from tfvae.model import LRVAE


def build_model(cfg, input_dim: int, n_emotions: int, n_speakers: int, total_steps: int,
                protect: str | None = None, n_classes: dict | None = None, lda_target_dims: dict | None = None) -> LRVAE:
    """An :class:`LRVAE` from a :class:`tfvae.config.TrainConfig`; ``n_classes``: classes of the class
    attributes other than emotion (e.g. ``{"gender": 2}``); ``lda_target_dims``: ``{attribute: outputs}``
    of the distilled class projections (:func:`tfvae.distill.projection_dim`; with ``--lda_target``)."""
    attrs = cfg.attribute_list()
    # the identity end exists only in the layered methods: the other VAEs keep the paper's encoder and KL
    layered = method_parts(cfg.method, protect or cfg.default_protect(), [a.name for a in attrs])["layered"]
    model = LRVAE(
        input_dim=input_dim, n_emotions=n_emotions, n_speakers=n_speakers, method=cfg.method,
        protect=protect or cfg.default_protect(), attributes=[a.name for a in attrs], n_classes=n_classes,
        adversaries=cfg.adversaries, band_width=cfg.band_width, band_centres=cfg.band_centre_list(),
        latent_dim=cfg.latent_dim, encoder_units=cfg.encoder_units, decoder_units=cfg.decoder_units,
        head_units=cfg.head_units, keep_schedule=cfg.keep_schedule, keep_min=cfg.keep_min,
        keep_max=cfg.keep_max,
        lambda_schedule={"kind": cfg.lambda_schedule, "max_lambda": cfg.adv_lambda, "total_steps": total_steps},
        loss_weights=cfg.loss_weights, kl_weight=cfg.kl_weight, l2=cfg.l2, seed=cfg.seed,
        decoder_variance=cfg.decoder_variance, kl_warmup_steps=int(round(cfg.kl_warmup * total_steps)),
        free_bits=cfg.free_bits, kl_identity_weight=cfg.kl_identity_weight if layered else 1.0,
        speaker_head=cfg.speaker_head,
        aam_margin=cfg.aam_margin, aam_scale=cfg.aam_scale,
        hsic_weight=cfg.hsic_weight, hsic_kernel=cfg.hsic_kernel, input_noise=cfg.input_noise,
        hidden_dropout=cfg.hidden_dropout, encoder_skip=cfg.encoder_skip,
        linear_nodes=round(cfg.linear_band * cfg.latent_dim) if layered else 0, mixup=cfg.mixup,
        mixup_within=cfg.mixup_within, guard_weight=cfg.guard_weight, disc_steps=cfg.disc_steps,
        club_weight=cfg.club_weight, lda_target_weight=cfg.lda_target,
        lda_target_dims=lda_target_dims, lda_readout=cfg.lda_readout,
        identity_adversary=cfg.identity_adversary, swap_weight=cfg.swap_weight, name="lrvae")
    model.build()
    return model
