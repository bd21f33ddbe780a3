"""Downstream probes on (masked) representations: emotion WF1 and speaker-verification EER.

An attacker or host who holds the encoded training set and its labels (paper section 3.1)
fits a model on it and applies it to unseen speakers.
"""

from __future__ import annotations

import numpy as np
from sklearn.discriminant_analysis import LinearDiscriminantAnalysis
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import f1_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from tfvae.metrics import cosine_trials, eer

#: Largest number of training rows a probe is fit on (a seeded sample beyond that).
MAX_FIT_ROWS = 20000


def _subsample(x, y, seed):
    if len(x) <= MAX_FIT_ROWS:
        return x, y
    idx = np.random.default_rng(seed).choice(len(x), MAX_FIT_ROWS, replace=False)
    return x[idx], y[idx]


def emotion_probe(z_train, y_train, z_eval, y_eval, seed: int = 0) -> float:
    """Weighted F1 of a logistic-regression emotion classifier fit on ``z_train``."""
    x, y = _subsample(np.asarray(z_train), np.asarray(y_train), seed)
    clf = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000, random_state=seed))
    clf.fit(x, y)
    return float(f1_score(y_eval, clf.predict(z_eval), average="weighted"))


def speaker_probe(z_train, spk_train, z_eval, spk_eval, max_trials: int | None = 2_000_000) -> float:
    """EER of cosine scoring in an LDA space fit on the training speakers."""
    x, y = _subsample(np.asarray(z_train), np.asarray(spk_train), 0)
    n_comp = max(1, min(len(set(y.tolist())) - 1, x.shape[1]))
    lda = make_pipeline(StandardScaler(), LinearDiscriminantAnalysis(n_components=n_comp))
    lda.fit(x, y)
    scores, labels = cosine_trials(lda.transform(z_eval), spk_eval, max_trials=max_trials)
    return eer(scores, labels)


def evaluate_views(outputs: dict, emotion: dict, speaker: dict, masks: dict, seed: int = 0,
                   split: str = "test") -> dict:
    """Emotion WF1 and speaker EER on ``split`` for the full latent ("origin"), each masked view,
    and the model's own heads (emotion classifier, speaker-embedding cosine scoring).

    ``outputs[s]`` are the model's inference outputs for split ``s`` (``latent`` and, where the
    model has them, ``emotion_probabilities`` and ``speaker_embedding``).
    """
    z_tr, z_ev = outputs["train"]["latent"], outputs[split]["latent"]
    views = {"origin": np.ones(z_tr.shape[1], bool), **{k: np.asarray(m) > 0 for k, m in masks.items()}}
    res = {}
    for view, keep in views.items():
        res[view] = {
            "nodes": int(keep.sum()),
            "emotion_wf1": emotion_probe(z_tr[:, keep], emotion["train"], z_ev[:, keep], emotion[split], seed=seed),
            "speaker_eer": speaker_probe(z_tr[:, keep], speaker["train"], z_ev[:, keep], speaker[split]),
        }
    out = outputs[split]
    if "emotion_probabilities" in out or "speaker_embedding" in out:
        heads = {"nodes": int(z_tr.shape[1]), "emotion_wf1": float("nan"), "speaker_eer": float("nan")}
        if "emotion_probabilities" in out:
            pred = np.argmax(out["emotion_probabilities"], axis=1)
            heads["emotion_wf1"] = float(f1_score(emotion[split], pred, average="weighted"))
        if "speaker_embedding" in out:
            heads["speaker_eer"] = eer(*cosine_trials(out["speaker_embedding"], speaker[split]))
        res["model_heads"] = heads
    return res
