"""``python -m tfvae.train``: train the LR-VAE (or a baseline), choose the mask cuts, export.

With no arguments it trains ``lrvae`` on the built-in synthetic demo corpus (built on first
use). A run named ``R`` writes

- ``<output_dir>/R/``: ``config.json``, ``tb/`` (TensorBoard), ``best.weights.h5`` (the epoch
  with the lowest ``val_selection``), ``history.csv``, ``normalization.npz`` (training-split
  statistics, also inside the exported graph), ``mask.json`` (cuts chosen on validation),
  ``summary.json`` (final loss terms and test probes);
- ``<export_dir>/R/<version>/``: the encoder SavedModel (see :mod:`tfvae.export`).
"""

from __future__ import annotations

import json
import math
import sys
import time
from pathlib import Path

from tfvae.config import ConfigError, TrainConfig
from tfvae.data import DataError
from tfvae.features import FEATURE_SETS, FeatureError, feature_dim


def selection_checkpoint(path: Path, start_epoch: int):
    """Keep the weights with the lowest ``val_selection`` among epochs ``>= start_epoch`` (1-based).

    Earlier epochs are skipped because the gradient-reversal strength is still ramping up there:
    a checkpoint from them has not been shaped by the adversaries yet.
    """
    import keras

    class SelectionCheckpoint(keras.callbacks.ModelCheckpoint):
        def on_epoch_end(self, epoch, logs=None):
            if epoch + 1 >= start_epoch:
                super().on_epoch_end(epoch, logs)

    return SelectionCheckpoint(str(path), monitor="val_selection", mode="min", save_best_only=True,
                               save_weights_only=True)


def make_strategy(name: str):
    """``auto``: MirroredStrategy over local GPUs if there are any, else the default strategy."""
    import tensorflow as tf

    gpus = tf.config.list_logical_devices("GPU")
    if name == "default" or (name == "auto" and not gpus):
        return tf.distribute.get_strategy()
    return tf.distribute.MirroredStrategy()


def encode_splits(model, corpus) -> dict[str, dict]:
    """Model outputs at inference (posterior mean etc.) for every split, as numpy."""
    return {s: model.predict(corpus.splits[s].features, batch_size=1024, verbose=0) for s in corpus.splits}


def fit_model(cfg: TrainConfig, corpus, strategy, protect: str | None, run_dir: Path, announce: bool = True):
    """Train one model; return it with the selected checkpoint loaded, its history and best epoch.

    Writes ``normalization.npz``, ``best.weights.h5``, ``history.csv`` and TensorBoard logs
    into ``run_dir``.
    """
    import keras
    import numpy as np

    from tfvae.data import make_dataset
    from tfvae.model import build_model

    run_dir.mkdir(parents=True, exist_ok=True)
    keras.utils.set_random_seed(cfg.seed)  # here: building a dataset first must not change results
    replicas = strategy.num_replicas_in_sync
    global_batch = cfg.batch_size * replicas
    train = corpus.splits["train"]
    steps_per_epoch = math.ceil(len(train) / global_batch)
    train_ds = make_dataset(corpus, "train", global_batch, training=True, seed=cfg.seed)
    val_ds = make_dataset(corpus, "validation", global_batch)
    spk_index = corpus.speaker_index()
    with strategy.scope():
        model = build_model(cfg, corpus.dim, len(corpus.emotion_names), len(spk_index),
                            total_steps=steps_per_epoch * cfg.epochs, protect=protect)
        model.compile(optimizer=keras.optimizers.Adam(cfg.learning_rate))
    model.adapt_normalizer(train.features)
    norm = {w.name: np.asarray(w.numpy()) for w in model.normalizer.weights}
    np.savez(run_dir / "normalization.npz", mean=norm["mean"].ravel(), variance=norm["variance"].ravel(),
             feature_names=np.asarray(corpus.feature_names or []))

    best = run_dir / "best.weights.h5"
    start_epoch = max(1, min(cfg.epochs, math.ceil(cfg.select_after * cfg.epochs))) if model.grls else 1
    callbacks = [
        keras.callbacks.TensorBoard(log_dir=str(run_dir / "tb" / time.strftime("%Y%m%d-%H%M%S"))),
        selection_checkpoint(best, start_epoch),
        keras.callbacks.CSVLogger(str(run_dir / "history.csv")),
    ]
    if announce:
        print(f"[tfvae] training {cfg.method}{'/' + protect if cfg.method == 'a-vae' else ''} on {corpus.name}: "
              f"{len(train)} train / {len(corpus.splits['validation'])} validation utterances, "
              f"{len(spk_index)} training speakers, {replicas} replica(s), global batch {global_batch}")
    history = model.fit(train_ds, validation_data=val_ds, epochs=cfg.epochs, callbacks=callbacks,
                        shuffle=False, verbose=cfg.verbose)  # tf.data shuffles
    model.load_weights(str(best))
    hist = history.history
    best_epoch = start_epoch - 1 + int(np.argmin(hist["val_selection"][start_epoch - 1:]))
    return model, hist, best_epoch + 1


def choose_masks(cfg: TrainConfig, model, outputs: dict, corpus, protect: str | None):
    """Mask cuts chosen on the validation split (layered methods) and the keep vectors."""
    import numpy as np

    from tfvae.masking import choose_cuts, keep_mask

    n = outputs["train"]["latent"].shape[1]
    if model.parts["layered"]:
        sp = corpus.splits
        cuts = choose_cuts(outputs["train"]["latent"], sp["train"].emotion, sp["train"].speaker,
                           outputs["validation"]["latent"], sp["validation"].emotion, sp["validation"].speaker,
                           groups=cfg.mask_groups, tolerance=cfg.cut_tolerance, seed=cfg.seed)
        return cuts, {"identity_free": keep_mask(n, "identity_free", cuts["identity_free_cut"]),
                      "emotion_free": keep_mask(n, "emotion_free", cuts["emotion_free_cut"])}
    if cfg.method == "a-vae":  # the whole latent is the protected representation
        view = "identity_free" if protect == "identity" else "emotion_free"
        return ({"chosen_on": "fixed: a-vae protects the whole latent",
                 f"{view}_cut": n if protect == "identity" else 0}, {view: np.ones(n, np.float32)})
    return {"chosen_on": f"no masks: {cfg.method} latents are not ordered"}, {}


def train_one(cfg: TrainConfig, corpus, strategy, protect: str | None = None) -> dict:
    """Train one model on ``corpus``, choose its masks, report test probes, export; return its summary."""
    from tfvae.evaluate import evaluate_views
    from tfvae.export import export_encoder

    name = cfg.default_run_name() + (f"-{protect}" if cfg.method == "a-vae" else "")
    run_dir = Path(cfg.output_dir) / name
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "config.json").write_text(cfg.to_json())
    model, hist, best_epoch = fit_model(cfg, corpus, strategy, protect, run_dir)

    outputs = encode_splits(model, corpus)
    spk = {s: corpus.splits[s].speaker for s in corpus.splits}
    emo = {s: corpus.splits[s].emotion for s in corpus.splits}
    n = outputs["train"]["latent"].shape[1]
    cuts, masks = choose_masks(cfg, model, outputs, corpus, protect)
    (run_dir / "mask.json").write_text(json.dumps(
        {**cuts, "masks": {k: v.astype(int).tolist() for k, v in masks.items()}}, indent=2))

    test = evaluate_views(outputs, emo, spk, masks, seed=cfg.seed)
    meta = {"run_name": name, "method": cfg.method, "protect": protect, "dataset": corpus.name,
            "feature_set": corpus.feature_set, "input_dim": corpus.dim, "latent_dim": n,
            "emotion_names": corpus.emotion_names, "cuts": {k: v for k, v in cuts.items() if k.endswith("_cut")},
            "latent_order": "node 0 = emotion end, node N-1 = identity end"}
    export_path = export_encoder(model, cfg.export_dir, name, masks, meta)
    final = {k: float(v[-1]) for k, v in hist.items()}
    summary = {**meta, "run_dir": str(run_dir), "export_path": str(export_path), "best_epoch": best_epoch,
               "final_epoch_metrics": final, "test": test}
    (run_dir / "summary.json").write_text(json.dumps(summary, indent=2))
    _print_summary(summary)
    return summary


def _print_summary(s: dict) -> None:
    terms = {k: v for k, v in s["final_epoch_metrics"].items() if not k.startswith("val_")}
    print(f"\n[tfvae] {s['run_name']}: best epoch {s['best_epoch']} (lowest val_selection)")
    print("  final training loss terms: " + ", ".join(f"{k}={v:.4f}" for k, v in sorted(terms.items())))
    if s["cuts"]:
        print("  mask cuts (chosen on validation): " + ", ".join(f"{k}={v}" for k, v in s["cuts"].items()))
    print("  test (probes fit on the encoded training split):")
    print(f"    {'view':<16}{'emotion WF1':>12}{'speaker EER':>13}")
    for view, r in s["test"].items():
        print(f"    {view:<16}{100 * r['emotion_wf1']:>11.2f}%{100 * r['speaker_eer']:>12.2f}%")
    print(f"  SavedModel: {s['export_path']}  (run dir {s['run_dir']})")


def run(cfg: TrainConfig) -> list[dict]:
    """Load and validate the data, then train every model the method needs."""
    from tfvae.data import load_corpus, validate_corpus

    strategy = make_strategy(cfg.strategy)
    corpus = load_corpus(cfg.dataset, cfg.feature_set, data_dir=cfg.data_dir, manual_dir=cfg.manual_dir,
                         skip_bad_items=cfg.skip_bad_items)
    if corpus.feature_set != cfg.feature_set:
        raise DataError(f"dataset {corpus.name} holds {corpus.feature_set} features but --feature_set is "
                        f"{cfg.feature_set}; pass --feature_set {corpus.feature_set}")
    validate_corpus(corpus, expected_dim=feature_dim(cfg.feature_set))
    protects = [None]
    if cfg.method == "a-vae":
        protects = ["identity", "emotion"] if cfg.protect == "both" else [cfg.protect]
    return [train_one(cfg, corpus, strategy, p) for p in protects]


def main(argv=None) -> int:
    cfg = TrainConfig.from_args(argv)
    try:
        cfg.validate(feature_sets=list(FEATURE_SETS))
        t0 = time.time()
        run(cfg)
    except (ConfigError, DataError, FeatureError) as e:
        print(f"tfvae.train: error: {e}", file=sys.stderr)
        return 2
    print(f"[tfvae] done in {time.time() - t0:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
