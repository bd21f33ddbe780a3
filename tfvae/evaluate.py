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


# ---------------------------------------------------------------------------------------------
# The privacy protocol's attacker suite (paper section 3.1: the attacker holds the encoded
# training set and its labels). Privacy claims use the strongest attacker.
# ---------------------------------------------------------------------------------------------

EMOTION_ATTACKERS = ("mlp", "logreg", "knn_cosine")
SPEAKER_ATTACKERS = ("mlp_embedding", "lda_cosine", "logreg_posteriors", "cosine")


def _mlp(seed: int, hidden=(256, 128)):
    from sklearn.neural_network import MLPClassifier

    return MLPClassifier(hidden_layer_sizes=hidden, alpha=1e-4, max_iter=300, early_stopping=True,
                         validation_fraction=0.15, n_iter_no_change=15, random_state=seed)


def _hidden(mlp, x):
    """Last hidden layer (ReLU) of a fitted sklearn MLP: the speaker embedding of the paper."""
    h = x
    for w, b in zip(mlp.coefs_[:-1], mlp.intercepts_[:-1]):
        h = np.maximum(h @ w + b, 0.0)
    return h


def _standardized(z_train, labels, z_eval, seed):
    """Training rows (subsampled beyond MAX_FIT_ROWS) and eval rows, standardised on training."""
    x, y = _subsample(np.asarray(z_train, np.float64), np.asarray(labels), seed)
    scaler = StandardScaler().fit(x)
    return scaler.transform(x), y, scaler.transform(np.asarray(z_eval, np.float64))


def emotion_attacks(z_train, y_train, z_eval, y_eval, seed: int = 0,
                    attackers=EMOTION_ATTACKERS) -> dict:
    """Weighted F1 and unweighted average recall of each emotion attacker on ``z_eval``."""
    from sklearn.metrics import balanced_accuracy_score
    from sklearn.neighbors import KNeighborsClassifier

    xs, y, es = _standardized(z_train, y_train, z_eval, seed)
    out = {}
    for name in attackers:
        if name == "mlp":
            clf = _mlp(seed)
        elif name == "logreg":
            clf = LogisticRegression(max_iter=3000, random_state=seed)
        elif name == "knn_cosine":
            clf = KNeighborsClassifier(n_neighbors=min(10, len(xs)), metric="cosine", weights="distance")
        else:
            raise ValueError(f"unknown emotion attacker {name!r}; choose from {EMOTION_ATTACKERS}")
        pred = clf.fit(xs, y).predict(es)
        out[name] = {"wf1": float(f1_score(y_eval, pred, average="weighted")),
                     "uar": float(balanced_accuracy_score(y_eval, pred))}
    return out


def speaker_attacks(z_train, spk_train, z_eval, spk_eval, seed: int = 0, attackers=SPEAKER_ATTACKERS,
                    max_trials: int | None = 2_000_000, p_target: float = 0.01) -> dict:
    """Speaker verification on unseen speakers: each attacker maps ``z`` to an embedding,
    trials are all pairs of ``z_eval`` (or a seeded sample of ``max_trials``), scored by cosine."""
    from tfvae.metrics import min_dcf

    xs, y, es = _standardized(z_train, spk_train, z_eval, seed)
    out = {}
    for name in attackers:
        if name == "mlp_embedding":
            emb = _hidden(_mlp(seed).fit(xs, y), es)
        elif name == "lda_cosine":
            n_comp = max(1, min(len(set(y.tolist())) - 1, xs.shape[1]))
            emb = LinearDiscriminantAnalysis(n_components=n_comp).fit(xs, y).transform(es)
        elif name == "logreg_posteriors":
            emb = LogisticRegression(max_iter=3000, random_state=seed).fit(xs, y).predict_log_proba(es)
            emb = emb - emb.mean(axis=1, keepdims=True)
        elif name == "cosine":
            emb = es
        else:
            raise ValueError(f"unknown speaker attacker {name!r}; choose from {SPEAKER_ATTACKERS}")
        scores, labels = cosine_trials(emb, spk_eval, max_trials=max_trials, seed=seed)
        out[name] = {"eer": eer(scores, labels), "min_dcf": min_dcf(scores, labels, p_target),
                     "target_trials": int(labels.sum()), "nontarget_trials": int(len(labels) - labels.sum())}
    return out


def strongest(results: dict, metric: str, chance: float) -> tuple[str, dict]:
    """The attacker whose ``metric`` is furthest from ``chance`` (most harmful to privacy)."""
    name = max(results, key=lambda k: abs(results[k][metric] - chance))
    return name, results[name]


def chance_wf1(y_eval) -> dict:
    """Weighted F1 of two trivial predictors on the evaluation labels: stratified random guessing
    (expected value, sum of squared class shares) and always predicting the majority class."""
    _, counts = np.unique(np.asarray(y_eval), return_counts=True)
    shares = counts / counts.sum()
    top = float(shares.max())
    return {"stratified": float(np.sum(shares ** 2)), "majority": top * 2 * top / (1 + top)}
