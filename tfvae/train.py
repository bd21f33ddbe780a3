"""``python -m tfvae.train``: train the LR-VAE (or a baseline), choose the mask cuts, export.

With no arguments it trains ``lrvae`` on the built-in synthetic demo corpus (built on first
use). A run named ``R`` writes

- ``<output_dir>/R/``: ``config.json``, ``tb/`` (TensorBoard), ``best.weights.h5`` (the epoch
  with the lowest ``val_selection``), ``history.csv``, ``normalization.npz`` (training-split
  statistics, also inside the exported graph), ``mask.json`` (cuts chosen on validation),
  ``summary.json`` (final loss terms and test probes);
- ``<export_dir>/R/<version>/``: the encoder SavedModel (see :mod:`tfvae.export`).

Training runs in :class:`tfvae.loop.Trainer` under the strategy ``--strategy`` names
(:mod:`tfvae.distribute`); an interrupted run resumes from ``<output_dir>/R/backup`` when the same
command is run again.
"""

from __future__ import annotations

# before any import that loads TensorFlow: its C++ start-up logs off when run as a CLI (TFVAE_TF_LOG=1 keeps them)
from tfvae.quiet import quiet_main

quiet_main(__name__)

import json
import math
import sys
import time
from pathlib import Path

import numpy as np

from tfvae.config import ConfigError, TrainConfig
from tfvae.data import DataError
from tfvae.features import FeatureError, check_trainable, expected_dim
from tfvae.stages import CLOCK


def encode_splits(model, corpus, batch_size: int = 1024, keys=None, spill_dir: Path | None = None,
                  memory_mb: float = 256.0) -> dict[str, dict]:
    """Model outputs at inference (posterior mean etc.) for every split, as float32 arrays.

    A plain ``tf.function`` over the model, not ``model.predict``: it runs the same way under every
    strategy, multi-worker included. Features are read chunk by chunk (streamed splits included).
    ``keys``: the outputs to keep (default all). An output of a split larger than ``memory_mb`` MiB
    goes to ``spill_dir/<split>.<key>.npy`` and is returned memory-mapped (:class:`tfvae.stream.RowWriter`).
    """
    import tensorflow as tf

    from tfvae.stream import RowWriter, chunks

    fn = tf.function(lambda x: model(x, training=False), reduce_retracing=True)
    out = {}
    for name, sp in corpus.splits.items():
        writers = {}
        for x in chunks(sp.features, batch_size):
            res = fn(tf.constant(x))
            for k in (keys or res):
                if k not in writers:
                    writers[k] = RowWriter(len(sp), memory_mb, None if spill_dir is None else spill_dir / f"{name}.{k}.npy")
                writers[k].write(np.asarray(res[k], np.float32))
        out[name] = {k: w.close() for k, w in writers.items()}
    return out


def encoded_keys(model) -> tuple[str, ...]:
    """The outputs evaluation reads: the latent of VAE methods (a DNN's is its standardised input,
    which no view uses) and the heads' outputs (``<attribute>_probabilities``, ``speaker_embedding``)."""
    return (("latent",) if model.parts["vae"] else ()) + \
        tuple(a.output for a in model.attributes if a.name in model.parts["heads"])


def class_counts(cfg: TrainConfig, corpus) -> dict[str, int]:
    """Classes of each class attribute's head other than emotion (from the dataset's label names)."""
    return {a.name: len(corpus.label_names.get(a.label, [])) for a in cfg.attribute_list()
            if not a.is_identity and a.name != "emotion"}


def train_labels(corpus, attribute) -> np.ndarray:
    """Training-split labels of ``attribute`` (speaker-classifier indices for identity; -1 = unknown)."""
    return corpus.speaker_labels("train") if attribute.is_identity else corpus.labels("train", attribute.label)


def lda_dims(cfg: TrainConfig, corpus) -> dict[str, int]:
    """``{attribute: outputs}`` of the class projections ``--lda_target`` distils (none when it is 0)."""
    from tfvae.distill import projection_dim

    if not cfg.lda_target:
        return {}
    dims = {}
    for a in cfg.attribute_list():
        if a.name in cfg.lda_attribute_names():
            labels = train_labels(corpus, a)
            dims[a.name] = projection_dim(len(labels), corpus.dim, len(np.unique(labels[labels >= 0])))
    return dims


def extra_labels(cfg: TrainConfig) -> tuple[str, ...]:
    """Label features the attributes need beyond ``emotion`` and ``speaker`` (e.g. ``gender``)."""
    return tuple(a.label for a in cfg.attribute_list() if a.label not in ("emotion", "speaker"))


def config_fingerprint(cfg: TrainConfig, protect: str | None) -> str:
    """What a backup must match to be resumed: every option that changes the training trajectory."""
    import hashlib

    d = json.loads(cfg.to_json())
    for k in ("verbose", "output_dir", "export_dir", "run_name", "data_dir", "manual_dir", "backup_every",
              "mask_groups", "cut_tolerance", "eval_attackers", "encoded_memory_mb"):
        d.pop(k, None)
    return hashlib.sha256(json.dumps({**d, "protect": protect}, sort_keys=True).encode()).hexdigest()[:16]


def training_corpus(cfg: TrainConfig, corpus):
    """The corpus the model trains on: ``corpus``, its training split grown by the speed-perturbed copies
    with ``--speed_perturb`` (:func:`tfvae.speed.with_speed_perturbed`)."""
    from tfvae.speed import trains_on_copies, with_speed_perturbed

    return with_speed_perturbed(corpus) if trains_on_copies(cfg.speed_perturb, corpus) else corpus


def build_trainer(cfg: TrainConfig, corpus, strategy, protect: str | None = None):
    """The model (built and compiled under ``strategy.scope()``, normaliser adapted on the training
    split, :func:`training_corpus`) and the :class:`tfvae.loop.Trainer` that trains it, exactly as the
    train CLI sets them up."""
    import keras

    from tfvae.distribute import role as cluster_role
    from tfvae.distribute import scaled_learning_rate
    from tfvae.loop import Trainer
    from tfvae.distill import fit_class_projection, standardised_sample
    from tfvae.model_builder import build_model
    from tfvae.optimizers import FusedAdam, ema_momentum
    from tfvae.speed import trains_on_copies

    copies = trains_on_copies(cfg.speed_perturb, corpus)
    corpus = training_corpus(cfg, corpus)
    keras.mixed_precision.set_global_policy(cfg.precision)
    keras.utils.set_random_seed(cfg.seed)  # here: building a dataset first must not change results
    replicas = strategy.num_replicas_in_sync
    steps_per_epoch = math.ceil(len(corpus.splits["train"]) / (cfg.batch_size * replicas))
    lr = scaled_learning_rate(cfg.learning_rate, replicas, cfg.lr_scaling)
    with strategy.scope():
        model = build_model(cfg, corpus.dim, len(corpus.emotion_names), len(corpus.speaker_index()),
                            total_steps=steps_per_epoch * cfg.epochs, protect=protect,
                            n_classes=class_counts(cfg, corpus), lda_target_dims=lda_dims(cfg, corpus))
        multipliers = {"discriminator": cfg.disc_lr_scale} if cfg.disc_lr_scale != 1 else None
        if cfg.lr_schedule == "cosine":
            lr = keras.optimizers.schedules.CosineDecay(lr, decay_steps=steps_per_epoch * cfg.epochs, alpha=0.1)
        ema = {"use_ema": True, "ema_momentum": ema_momentum(cfg.ema_epochs, steps_per_epoch)} if cfg.ema_epochs else {}

        def adam(**kwargs):
            optimizer = FusedAdam(lr, lr_multipliers=multipliers, **kwargs)
            if cfg.precision == "mixed_float16":  # dynamic loss scaling keeps float16 gradients finite
                optimizer = keras.optimizers.LossScaleOptimizer(optimizer)
            return optimizer
        model.compile(optimizer=adam(**ema))
        if cfg.disc_steps > 1 and model.discriminator_variables:
            model.disc_optimizer = adam()
    model.adapt_normalizer(corpus.splits["train"].features)
    if model.lda_attributes:  # fitted on the training split, standardised by the adapted normaliser
        rows, x_std = standardised_sample(corpus.splits["train"].features, model.normalizer, seed=cfg.seed)
        for a in model.lda_attributes:
            labels = train_labels(corpus, a)[rows]
            model.set_class_projection(a.name, *fit_class_projection(x_std, labels, seed=cfg.seed))
    if model.use_swap and not copies:
        raise DataError(f"--swap_weight {cfg.swap_weight:g} pairs each training utterance with its speed-perturbed "
                        f"copies, and {corpus.name} is trained without them: pass --speed_perturb true or auto with a "
                        "dataset that has them, or --swap_weight 0")
    trainer = Trainer(model, strategy, corpus, cfg.batch_size, seed=cfg.seed, jit_compile=cfg.jit_compile,
                      role=cluster_role(strategy), verbose=cfg.verbose, shuffle_buffer=cfg.shuffle_buffer,
                      labels=extra_labels(cfg), batch_order=cfg.batch_order, siblings=model.use_swap)
    return model, trainer


def fit_model(cfg: TrainConfig, corpus, strategy, protect: str | None, run_dir: Path, announce: bool = True):
    """Train one model with :class:`tfvae.loop.Trainer`; return it with the selected checkpoint loaded,
    its history and best epoch (1-based).

    ``run_dir`` is the chief's run directory: it gets ``normalization.npz``, ``best.weights.h5``,
    ``history.csv``, TensorBoard logs and, while training, ``backup/`` (a rerun resumes from it).
    Other workers of a multi-worker run write to temporary directories instead.
    """
    model, trainer = build_trainer(cfg, corpus, strategy, protect)
    role = trainer.role
    if role.is_chief:
        run_dir.mkdir(parents=True, exist_ok=True)
        norm = {w.name: np.asarray(w.numpy()) for w in model.normalizer.weights}
        np.savez(run_dir / "normalization.npz", mean=norm["mean"].ravel(), variance=norm["variance"].ravel(),
                 feature_names=np.asarray(corpus.feature_names or []))
    select_from = max(1, min(cfg.epochs, math.ceil(cfg.select_after * cfg.epochs))) if model.grls else 1
    if announce and role.is_chief:
        print(f"[tfvae] training {cfg.method}{'/' + protect if cfg.method == 'a-vae' else ''} on {corpus.name}: "
              f"{trainer.train_pipe.size} train / {trainer.val_pipe.size} validation utterances, "
              f"{model.n_speakers} training speakers, {trainer.replicas} replica(s) ({role.name} of "
              f"{role.num_workers} worker(s)), global batch {trainer.global_batch}, learning rate "
              f"{float(model.optimizer.learning_rate.numpy()):g}, {cfg.precision}{', XLA' if cfg.jit_compile else ''}")
    result = trainer.fit(cfg.epochs, run_dir, select_from_epoch=select_from, backup_every=cfg.backup_every,
                         fingerprint=config_fingerprint(cfg, protect))
    return model, result.history, result.best_epoch


def choose_masks(cfg: TrainConfig, model, outputs: dict, corpus, protect: str | None):
    """Masks chosen on the validation split (layered methods) and the keep vectors, one per view of
    ``--views``. With the paper's attributes and views this is :func:`tfvae.masking.choose_cuts` (the
    identity-free and emotion-free cuts); otherwise :func:`tfvae.masking.choose_views`."""
    from tfvae.attributes import ALIASES, DEFAULT, view_key
    from tfvae.masking import choose_cuts, choose_views, keep_mask

    attrs = model.attributes
    views = cfg.view_map()
    if model.parts["layered"]:
        n = outputs["train"]["latent"].shape[1]
        sp = corpus.splits
        if tuple(a.name for a in attrs) == DEFAULT and set(views.values()) <= set(ALIASES.values()):
            cuts = choose_cuts(outputs["train"]["latent"], sp["train"].emotion, sp["train"].speaker,
                               outputs["validation"]["latent"], sp["validation"].emotion, sp["validation"].speaker,
                               groups=cfg.mask_groups, tolerance=cfg.cut_tolerance, seed=cfg.seed,
                               attackers=cfg.cut_attackers)
            masks = {v: keep_mask(n, v, cuts[f"{v}_cut"]) for v in ALIASES if ALIASES[v] in views.values()}
            return cuts, masks
        labels = {s: {a.task: corpus.labels(s, a.label) for a in attrs if not a.is_identity}
                  for s in ("train", "validation")}
        res = choose_views(outputs["train"]["latent"], labels["train"], sp["train"].speaker,
                           outputs["validation"]["latent"], labels["validation"], sp["validation"].speaker,
                           attrs, views, groups=cfg.mask_groups, tolerance=cfg.cut_tolerance, seed=cfg.seed,
                           attackers=cfg.cut_attackers)
        masks = {view_key(kept, attrs): res["views"][name].pop("keep") for name, kept in views.items()}
        return res, masks
    if cfg.method == "a-vae":  # the whole latent is the protected representation
        n = outputs["train"]["latent"].shape[1]
        kept = tuple(a.name for a in attrs if a.name != protect)
        view = view_key(kept, attrs)
        return ({"chosen_on": "fixed: a-vae protects the whole latent", "views": {view: {"kept": list(kept)}},
                 **({f"{view}_cut": n if protect == "identity" else 0} if view in ALIASES else {})},
                {view: np.ones(n, np.float32)})
    return {"chosen_on": f"no masks: {cfg.method} latents are not ordered"}, {}


def choose_erasers(outputs: dict, corpus, masks: dict, seed: int = 0, attributes=None) -> dict:
    """LEACE erasers of each masked view's hidden attributes, fit on the training split, their
    rank chosen on the validation split (:func:`tfvae.erasure.view_erasers`); none without masks."""
    from tfvae.erasure import view_erasers

    if not masks:
        return {}
    sp, va = corpus.splits["train"], corpus.splits["validation"]
    extra = [a.label for a in (attributes or ()) if a.label not in ("emotion", "speaker")]
    return view_erasers(outputs["train"]["latent"], sp.emotion, sp.speaker, masks,
                        validation=(outputs["validation"]["latent"], va.emotion, va.speaker), seed=seed,
                        attributes=attributes, labels={k: corpus.labels("train", k) for k in extra},
                        validation_labels={k: corpus.labels("validation", k) for k in extra})


def train_one(cfg: TrainConfig, corpus, strategy, protect: str | None = None) -> dict:
    """Train one model on ``corpus``, choose its masks, report test probes, export; return its summary.

    In a multi-worker run every worker does the same work (saving involves collectives), but only the
    chief's run directory and SavedModel remain; the others write to a temporary directory.
    """
    import shutil

    from tfvae.distribute import role as cluster_role
    from tfvae.attributes import view_attributes
    from tfvae.evaluate import EvalSplits, evaluate_model, public
    from tfvae.erasure import save_erasers
    from tfvae.export import export_encoder
    from tfvae.runs import ERASURE_FILE
    from tfvae.loop import weights_fingerprint, worker_dirs

    role = cluster_role(strategy)
    name = cfg.default_run_name() + (f"-{protect}" if cfg.method == "a-vae" else "")
    chief_run_dir = Path(cfg.output_dir) / name
    (run_dir, export_dir), tmp = worker_dirs(role, chief_run_dir, Path(cfg.export_dir))
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        (run_dir / "config.json").write_text(cfg.to_json())
        CLOCK.lap("load")
        model, hist, best_epoch = fit_model(cfg, corpus, strategy, protect, chief_run_dir)
        CLOCK.lap("train")
        print(f"[tfvae] {role.name}: trained weights fingerprint {weights_fingerprint(model)}", flush=True)

        outputs = encode_splits(model, corpus, keys=encoded_keys(model), spill_dir=run_dir / "encoded",
                                memory_mb=cfg.encoded_memory_mb)
        n = outputs["train"]["latent"].shape[1] if "latent" in outputs["train"] else corpus.dim
        CLOCK.lap("encode")
        cuts, masks = choose_masks(cfg, model, outputs, corpus, protect)
        (run_dir / "mask.json").write_text(json.dumps(
            {**cuts, "masks": {k: v.astype(int).tolist() for k, v in masks.items()}}, indent=2))

        erasers = choose_erasers(outputs, corpus, masks, seed=cfg.seed, attributes=model.attributes)
        save_erasers(run_dir / ERASURE_FILE, erasers)
        ev = EvalSplits(corpus, seed=cfg.seed, tasks=extra_labels(cfg))
        test = public(evaluate_model(model, outputs, ev, masks, seed=cfg.seed, fast=cfg.eval_attackers == "fast",
                                     erasers=erasers))
        meta = {"run_name": name, "method": cfg.method, "protect": protect, "dataset": corpus.name,
                "feature_set": corpus.feature_set, "input_dim": corpus.dim, "latent_dim": n,
                "emotion_names": corpus.emotion_names,
                "cuts": {k: v for k, v in cuts.items() if k.endswith("_cut")},
                "attributes": [a.name for a in model.attributes],
                "label_names": {a.name: (corpus.emotion_names if a.name == "emotion" else corpus.label_names[a.label])
                                for a in model.attributes if not a.is_identity},
                "views": {k: {"kept": list(view_attributes(k, model.attributes)), "nodes": int(np.sum(m))}
                          for k, m in masks.items()},
                "latent_order": f"node 0 = {model.attributes[0].name} end, node N-1 = {model.attributes[-1].name} end "
                                f"(attributes in order: {', '.join(a.name for a in model.attributes)})"}
        if corpus.info.get("encoder"):  # features are a speaker encoder's embeddings (waveform-in export needs it)
            enc = corpus.info["encoder"]
            meta["speaker_encoder"] = {"path": enc.get("path"), "arch": enc.get("arch"),
                                       "fingerprint": corpus.info.get("encoder_fingerprint")}
        CLOCK.lap("evaluate")
        export_path = export_encoder(model, export_dir, name, masks, meta,
                                     privacy_report=privacy_report(test, ev, corpus, name), erasers=erasers)
        CLOCK.lap("export")
        final = {k: float(v[-1]) for k, v in hist.items()}
        summary = {**meta, "run_dir": str(run_dir), "export_path": str(export_path), "best_epoch": best_epoch,
                   "final_epoch_metrics": final, "test": test}
        (run_dir / "summary.json").write_text(json.dumps(summary, indent=2))
        if role.is_chief:
            _print_summary(summary)
        return summary
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)


def privacy_report(test: dict, ev, corpus, name: str) -> dict:
    """``assets.extra/privacy_report.json`` of an export: per view, utility (downstream model chosen on
    validation speakers) and worst-case leakage over the attacker suite on the test speakers, with the
    attacker, its bootstrap interval, trial counts and the data it was measured on."""
    from tfvae.evaluate import CHANCE_EER, subsampling

    def cell(c, metric):
        keep = ("by", metric, f"ci_{metric}", "uar", "min_dcf", "miss_at_1pct_fa", "target_trials", "nontarget_trials")
        return {k: c[k] for k in keep if k in c}

    tasks = [*ev.class_tasks, "speaker"]
    views = {}
    for view, r in test.items():
        entry = {"nodes": r.get("nodes")}
        for task in tasks:
            metric = "eer" if task == "speaker" else "wf1"
            if task in r:
                entry[task] = {"utility": cell(r[task]["utility"], metric), "worst_case": cell(r[task]["worst"], metric)}
                for k in ("utility", "worst"):
                    if "by_group" in r[task][k]:
                        entry[task].setdefault("by_group", {})[k if k == "utility" else "worst_case"] = \
                            r[task][k]["by_group"]
        views[view] = entry
    sp = corpus.splits
    return {
        "model": name, "dataset": corpus.name,
        "measured_on": {s: {"utterances": len(sp[s]), "speakers": len(set(sp[s].speaker.tolist()))}
                        for s in ("train", "validation", "test")},
        "protocol": "attackers fit on the encoded training split; utility = the attacker best on validation "
                    "speakers; worst_case = the attacker best on the test speakers; 95 % speaker-level bootstrap "
                    "intervals",
        "chance": {**{f"{t}_wf1_stratified": ev.chances[t]["stratified"] for t in ev.class_tasks},
                   "speaker_eer": CHANCE_EER},
        "subsampling": subsampling(corpus),
        "attackers": {task: sorted({a for v in test.values() for a in v.get(task, {}).get("attackers", {})})
                      for task in tasks},
        "views": views}


def _print_summary(s: dict) -> None:
    terms = {k: v for k, v in s["final_epoch_metrics"].items() if not k.startswith("val_")}
    print(f"\n[tfvae] {s['run_name']}: best epoch {s['best_epoch']} (lowest val_score on validation speakers)")
    print("  final training loss terms: " + ", ".join(f"{k}={v:.4f}" for k, v in sorted(terms.items())))
    if s["cuts"]:
        print("  mask cuts (chosen on validation): " + ", ".join(f"{k}={v}" for k, v in s["cuts"].items()))
    print("  test speakers (attackers fit on the encoded training split; utility = chosen on validation, "
          "worst = strongest on test):")
    tasks = [t for t in ("emotion", *sorted({t for r in s["test"].values() for t in r}), "speaker")
             if t not in ("nodes",) and any(isinstance(r.get(t), dict) for r in s["test"].values())]
    tasks = list(dict.fromkeys(tasks))
    heads = "".join(f"{(t + ' WF1' if t != 'speaker' else 'SV EER'):>12} {'by':<20}{'worst':>7} {'by':<20}" for t in tasks)
    print(f"    {'view':<22}{heads}")
    for view, r in s["test"].items():
        row = ""
        for t in tasks:
            c, m = r.get(t), "eer" if t == "speaker" else "wf1"
            row += f"{100 * c['utility'][m]:>11.2f}% {c['utility']['by']:<20}{100 * c['worst'][m]:>6.2f}% " \
                   f"{c['worst']['by']:<20}" if c else " " * 62
        print(f"    {view:<22}{row.rstrip()}")
    print(f"  SavedModel: {s['export_path']}  (run dir {s['run_dir']})")


def run(cfg: TrainConfig) -> list[dict]:
    """Load and validate the data, then train every model the method needs."""
    from tfvae.data import load_corpus, validate_corpus
    from tfvae.distribute import make_strategy
    from tfvae.distribute import role as cluster_role
    from tfvae.speed import loads_copies

    try:
        strategy = make_strategy(cfg.strategy)
    except ValueError as e:
        raise ConfigError(str(e)) from e
    chief = cluster_role(strategy).is_chief
    corpus = load_corpus(cfg.dataset, cfg.feature_set, data_dir=cfg.data_dir, manual_dir=cfg.manual_dir,
                         skip_bad_items=cfg.skip_bad_items, wait_for_build=0 if chief else 3600,
                         in_memory_mb=cfg.in_memory_mb, label_columns=cfg.label_column_list(),
                         speed_perturb=loads_copies(cfg.speed_perturb, cfg.dataset, cfg.feature_set))
    if "@" not in cfg.feature_set and corpus.feature_set != cfg.feature_set:
        raise DataError(f"dataset {corpus.name} holds {corpus.feature_set} features but --feature_set is "
                        f"{cfg.feature_set}; pass --feature_set {corpus.feature_set}")
    validate_corpus(corpus, expected_dim=expected_dim(cfg.feature_set), attributes=extra_labels(cfg))
    protects = [None]
    if cfg.method == "a-vae":
        protects = ["identity", "emotion"] if cfg.protect == "both" else [cfg.protect]
    return [train_one(cfg, corpus, strategy, p) for p in protects]


def main(argv=None) -> int:
    cfg = TrainConfig.from_args(argv)
    try:
        cfg.validate()
        check_trainable(cfg.feature_set)
        t0 = time.time()
        run(cfg)
    except (ConfigError, DataError, FeatureError) as e:
        print(f"tfvae.train: error: {e}", file=sys.stderr)
        return 2
    print(CLOCK.line())
    print(f"[tfvae] done in {time.time() - t0:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
