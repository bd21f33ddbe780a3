"""A trained ``python -m tfvae.train`` run directory back into a model: :func:`load_run` rebuilds the
model from ``config.json`` and the layer sizes stored in ``best.weights.h5``, and returns it with the
run's keep masks and export metadata (``python -m tfvae.export --run_dir``, the waveform export,
``bench/latent_capacity.py``).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from tfvae.erasure import load_erasers

#: The run directory's LEACE erasers (written by the train CLI, read by :func:`load_run`).
ERASURE_FILE = "erasure.npz"


def _last_dense_units(h5, group: str) -> int | None:
    if f"{group}/vars/0" in h5 and f"{group}/layers" not in h5:  # a single layer (the aam speaker head)
        return int(h5[f"{group}/vars/0"].shape[-1])
    if f"{group}/layers" not in h5:
        return None
    layers = sorted(h5[f"{group}/layers"], key=lambda k: int(k.rsplit("_", 1)[1]) if "_" in k else 0)
    return int(h5[f"{group}/layers/{layers[-1]}/vars/0"].shape[-1])


def load_run(run_dir: str | Path):
    """Rebuild the trained model of a ``python -m tfvae.train`` run directory.

    Returns ``(model, masks, metadata)``: the model with ``best.weights.h5`` loaded, the keep
    masks of ``mask.json`` and the export metadata train writes (with the run's LEACE erasers of
    ``erasure.npz``, if any, under ``"erasers"``).
    """
    import h5py

    from tfvae.config import TrainConfig
    from tfvae.model_builder import build_model

    run_dir = Path(run_dir)
    missing = [f for f in ("config.json", "best.weights.h5", "mask.json", "normalization.npz")
               if not (run_dir / f).exists()]
    if missing:
        raise FileNotFoundError(f"{run_dir} is not a complete training run: missing {', '.join(missing)}")
    cfg = TrainConfig.from_dict(json.loads((run_dir / "config.json").read_text()))
    summary = json.loads((run_dir / "summary.json").read_text()) if (run_dir / "summary.json").exists() else {}
    norm = np.load(run_dir / "normalization.npz")
    input_dim = int(norm["mean"].shape[0])
    weights = run_dir / "best.weights.h5"
    with h5py.File(weights, "r") as h5:
        n_emotions = _last_dense_units(h5, "emo_head") or _last_dense_units(h5, "emo_adv_head") or 2
        n_speakers = _last_dense_units(h5, "id_out") or \
            (_last_dense_units(h5, "id_adv_head") if cfg.identity_adversary == "classifier" else None) or 2
        lda_target_dims = {a.name: _last_dense_units(h5, f"{a.short}_target") for a in cfg.attribute_list()}
    protect = summary.get("protect")
    if cfg.method == "a-vae" and protect is None:
        protect = run_dir.name.rsplit("-", 1)[-1] if run_dir.name.endswith(("-identity", "-emotion")) else \
            ("identity" if cfg.protect == "both" else cfg.protect)
    label_names = summary.get("label_names") or {}
    n_classes = {a: len(v) for a, v in label_names.items() if a != "emotion"}
    model = build_model(cfg, input_dim, n_emotions, n_speakers, total_steps=1, protect=protect, n_classes=n_classes,
                        lda_target_dims={k: v for k, v in lda_target_dims.items() if v})
    model.load_weights(str(weights))
    mask_info = json.loads((run_dir / "mask.json").read_text())
    masks = {k: np.asarray(v, np.float32) for k, v in mask_info.get("masks", {}).items()}
    meta = {"run_name": summary.get("run_name", run_dir.name), "method": cfg.method, "protect": protect,
            "dataset": summary.get("dataset", cfg.dataset), "feature_set": summary.get("feature_set", cfg.feature_set),
            "input_dim": input_dim, "latent_dim": model.latent_dim if model.parts["vae"] else input_dim,
            "emotion_names": summary.get("emotion_names") or [str(i) for i in range(n_emotions)],
            "cuts": {k: v for k, v in mask_info.items() if k.endswith("_cut")},
            "attributes": [a.name for a in model.attributes], "label_names": label_names,
            "views": summary.get("views", {}),
            "latent_order": summary.get("latent_order", "node 0 = emotion end, node N-1 = identity end"),
            "erasers": load_erasers(run_dir / ERASURE_FILE)}
    return model, masks, meta
