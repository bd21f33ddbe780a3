"""Speaker-verification metrics over cosine-scored trials (paper section 3.1: EER)."""

from __future__ import annotations

import numpy as np
from sklearn.metrics import roc_curve


def eer(scores, labels) -> float:
    """Equal error rate: where miss rate equals false-alarm rate on the ROC.

    ``labels`` are 1 for target (same-speaker) trials, 0 for non-target trials. The EER is
    linearly interpolated between the two ROC points that bracket the crossing.
    """
    scores = np.asarray(scores, dtype=np.float64).ravel()
    labels = np.asarray(labels).ravel().astype(int)
    if scores.shape != labels.shape:
        raise ValueError(f"scores {scores.shape} and labels {labels.shape} differ in shape")
    if labels.min(initial=1) == labels.max(initial=0) or not set(np.unique(labels)) <= {0, 1}:
        raise ValueError("EER needs both target (1) and non-target (0) trials")
    fpr, tpr, _ = roc_curve(labels, scores, drop_intermediate=False)
    fnr = 1.0 - tpr
    d = fnr - fpr  # decreasing from +1 to -1
    j = int(np.argmax(d <= 0))
    if j == 0:
        return float(fpr[0])
    i = j - 1
    t = d[i] / (d[i] - d[j])
    return float(fpr[i] + t * (fpr[j] - fpr[i]))


def cosine_trials(embeddings, speakers, max_trials: int | None = None, seed: int = 0):
    """Scores and target labels of all pairs i < j (or a uniform sample of ``max_trials``)."""
    e = np.asarray(embeddings, dtype=np.float64)
    e = e / np.maximum(np.linalg.norm(e, axis=1, keepdims=True), 1e-12)
    spk = np.asarray(speakers)
    i, j = np.triu_indices(len(e), k=1)
    if max_trials is not None and i.size > max_trials:
        pick = np.random.default_rng(seed).choice(i.size, size=max_trials, replace=False)
        i, j = i[pick], j[pick]
    scores = np.einsum("ij,ij->i", e[i], e[j])
    return scores, (spk[i] == spk[j]).astype(int)


def min_dcf(scores, labels, p_target: float = 0.01, c_miss: float = 1.0, c_fa: float = 1.0) -> float:
    """Normalised minimum detection cost over all thresholds (NIST SRE convention).

    DCF(t) = c_miss * P_miss(t) * p_target + c_fa * P_fa(t) * (1 - p_target), divided by
    min(c_miss * p_target, c_fa * (1 - p_target)), the cost of the best fixed decision.
    """
    scores = np.asarray(scores, dtype=np.float64).ravel()
    labels = np.asarray(labels).ravel().astype(int)
    if labels.min(initial=1) == labels.max(initial=0):
        raise ValueError("minDCF needs both target (1) and non-target (0) trials")
    fpr, tpr, _ = roc_curve(labels, scores, drop_intermediate=False)
    dcf = c_miss * (1.0 - tpr) * p_target + c_fa * fpr * (1.0 - p_target)
    return float(dcf.min() / min(c_miss * p_target, c_fa * (1.0 - p_target)))
