"""Speaker-verification metrics and trial lists in bounded memory (paper section 3.1: EER).

Trials are pairs of evaluation utterances, scored by cosine similarity. :func:`sample_trials`
never materialises all O(n^2) pairs: it enumerates target (same-speaker) pairs when there are at
most ``max_target`` of them and otherwise samples them, and it samples ``max_nontarget``
different-speaker pairs by rejection, so memory is O(n + max_target + max_nontarget).

Classification metrics of confusion matrices (weighted F1, UAR) close the module: the evaluation
(:mod:`tfvae.evaluate`) and its per-group breakdown (:mod:`tfvae.fairness`) share them.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from sklearn.metrics import roc_curve

#: Default trial budget: all target pairs up to this many, then a seeded sample.
MAX_TARGET_TRIALS = 300_000
#: Default number of sampled non-target pairs (all of them when there are fewer).
MAX_NONTARGET_TRIALS = 1_000_000


def _check(scores, labels):
    scores = np.asarray(scores, dtype=np.float64).ravel()
    labels = np.asarray(labels).ravel().astype(int)
    if scores.shape != labels.shape:
        raise ValueError(f"scores {scores.shape} and labels {labels.shape} differ in shape")
    if labels.min(initial=1) == labels.max(initial=0) or not set(np.unique(labels)) <= {0, 1}:
        raise ValueError("EER needs both target (1) and non-target (0) trials")
    return scores, labels


def _eer_from_rates(fpr, fnr) -> float:
    """Where ``fnr - fpr`` (decreasing in the threshold order of a ROC) crosses 0, interpolated."""
    d = fnr - fpr
    j = int(np.argmax(d <= 0))
    if j == 0:
        return float(fpr[0])
    i = j - 1
    t = d[i] / (d[i] - d[j])
    return float(fpr[i] + t * (fpr[j] - fpr[i]))


def eer(scores, labels) -> float:
    """Equal error rate: where miss rate equals false-alarm rate on the ROC.

    ``labels`` are 1 for target (same-speaker) trials, 0 for non-target trials. The EER is
    linearly interpolated between the two ROC points that bracket the crossing.
    """
    scores, labels = _check(scores, labels)
    fpr, tpr, _ = roc_curve(labels, scores, drop_intermediate=False)
    return _eer_from_rates(fpr, 1.0 - tpr)


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


def miss_at_fa(scores, labels, fa_rate: float = 0.01) -> float:
    """Miss rate at the operating point whose false-alarm rate is at most ``fa_rate``."""
    scores, labels = _check(scores, labels)
    fpr, tpr, _ = roc_curve(labels, scores, drop_intermediate=False)
    ok = fpr <= fa_rate
    return float(1.0 - tpr[ok].max()) if ok.any() else 1.0


def sv_metrics(scores, labels, p_target: float = 0.01) -> dict:
    """EER, minDCF at ``p_target``, miss rate at 1 % false alarms and the trial counts."""
    labels = np.asarray(labels)
    return {"eer": eer(scores, labels), "min_dcf": min_dcf(scores, labels, p_target),
            "miss_at_1pct_fa": miss_at_fa(scores, labels, 0.01),
            "target_trials": int(labels.sum()), "nontarget_trials": int(len(labels) - labels.sum())}


# ---------------------------------------------------------------------------------------- trials
@dataclass
class Trials:
    """Pairs ``(i, j)`` of evaluation rows with ``label`` 1 for same speaker, 0 otherwise."""

    i: np.ndarray
    j: np.ndarray
    label: np.ndarray

    def __len__(self) -> int:
        return int(self.label.size)

    def score(self, embeddings, chunk: int = 262_144) -> np.ndarray:
        """Cosine scores of every trial, computed in chunks (float32, O(trials) memory; wide embeddings,
        e.g. the posteriors of thousands of speakers, in chunks of at most ~64 MiB of gathered rows)."""
        e = np.asarray(embeddings, dtype=np.float32)
        e = e / np.maximum(np.linalg.norm(e, axis=1, keepdims=True), 1e-12)
        chunk = max(1, min(chunk, (64 << 20) // (8 * max(1, e.shape[1]))))
        out = np.empty(len(self), np.float32)
        for s in range(0, len(self), chunk):
            a, b = self.i[s:s + chunk], self.j[s:s + chunk]
            out[s:s + chunk] = np.einsum("ij,ij->i", e[a], e[b])
        return out


def sample_trials(speakers, max_target: int | None = MAX_TARGET_TRIALS,
                  max_nontarget: int | None = MAX_NONTARGET_TRIALS, seed: int = 0) -> Trials:
    """Verification trials over the rows of ``speakers`` in O(n + trials) memory.

    Target pairs: all i < j of each speaker when there are at most ``max_target`` (None: no
    limit), else ``max_target`` pairs drawn uniformly (with replacement) from them. Non-target
    pairs: all pairs when there are at most ``max_nontarget``, else ``max_nontarget`` drawn
    uniformly (with replacement) by rejection sampling. Seeded: the same speakers and seed give
    the same trials, so every representation of a fold is scored on the same list.
    """
    _, codes, counts = np.unique(np.asarray(speakers), return_inverse=True, return_counts=True)
    n = codes.size
    if counts.size < 2 or int(counts.max()) < 2:
        raise ValueError(f"verification trials need >= 2 speakers and a speaker with >= 2 utterances; "
                         f"got {counts.size} speaker(s), at most {int(counts.max(initial=0))} utterance(s) each")
    rng = np.random.default_rng(seed)
    order = np.argsort(codes, kind="stable")
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    n_target = int(np.sum(counts * (counts - 1) // 2))
    n_nontarget = n * (n - 1) // 2 - n_target
    if max_target is None or n_target <= max_target:
        ti, tj = [], []
        for s, c in zip(starts, counts):
            if c > 1:
                a, b = np.triu_indices(int(c), k=1)
                rows = order[s:s + c]
                ti.append(rows[a])
                tj.append(rows[b])
        ti, tj = np.concatenate(ti), np.concatenate(tj)
    else:
        pairs = counts * (counts - 1) / 2.0
        spk = rng.choice(counts.size, size=max_target, p=pairs / pairs.sum())
        c = counts[spk]
        a = rng.integers(0, c)
        b = (a + rng.integers(1, c)) % c  # a different utterance of the same speaker
        ti, tj = order[starts[spk] + a], order[starts[spk] + b]
    if max_nontarget is None or n_nontarget <= max_nontarget:
        ni, nj = [], []
        for r in range(n - 1):  # row by row: O(n) extra memory per step
            j = np.arange(r + 1, n)
            j = j[codes[j] != codes[r]]
            ni.append(np.full(j.size, r))
            nj.append(j)
        ni, nj = np.concatenate(ni), np.concatenate(nj)
    else:
        ni, nj = np.empty(0, np.int64), np.empty(0, np.int64)
        while ni.size < max_nontarget:
            k = 2 * (max_nontarget - ni.size) + 16
            a, b = rng.integers(0, n, k), rng.integers(0, n, k)
            ok = codes[a] != codes[b]
            ni, nj = np.concatenate([ni, a[ok]]), np.concatenate([nj, b[ok]])
        ni, nj = ni[:max_nontarget], nj[:max_nontarget]
    i = np.concatenate([ti, ni]).astype(np.int64)
    j = np.concatenate([tj, nj]).astype(np.int64)
    label = np.concatenate([np.ones(len(ti), np.int8), np.zeros(len(ni), np.int8)])
    return Trials(i, j, label)


def cosine_trials(embeddings, speakers, max_target: int | None = MAX_TARGET_TRIALS,
                  max_nontarget: int | None = MAX_NONTARGET_TRIALS, seed: int = 0):
    """Cosine scores and target labels of :func:`sample_trials` over ``embeddings``."""
    t = sample_trials(speakers, max_target, max_nontarget, seed)
    return t.score(embeddings), t.label.astype(int)


# ------------------------------------------------------------------------ speaker-level bootstrap
def weighted_eer(scores_sorted_desc, labels_sorted, weights) -> np.ndarray:
    """EER of each row of trial ``weights`` (R x T) over trials sorted by descending score."""
    w = np.asarray(weights, np.float64)
    tgt = labels_sorted.astype(bool)
    wt = np.where(tgt, w, 0.0)
    wn = np.where(tgt, 0.0, w)
    tp = np.cumsum(wt, axis=1)
    fp = np.cumsum(wn, axis=1)
    # only at the last trial of each run of equal scores (ROC points, as roc_curve)
    last = np.r_[scores_sorted_desc[1:] != scores_sorted_desc[:-1], True]
    tp, fp = tp[:, last], fp[:, last]
    p, n = tp[:, -1:], fp[:, -1:]
    fpr = np.hstack([np.zeros_like(n), fp / np.maximum(n, 1e-300)])
    fnr = 1.0 - np.hstack([np.zeros_like(p), tp / np.maximum(p, 1e-300)])
    out = np.empty(len(w))
    for r in range(len(w)):
        out[r] = _eer_from_rates(fpr[r], fnr[r]) if p[r, 0] > 0 and n[r, 0] > 0 else np.nan
    return out


# ---------------------------------------------------------------------------- classification
def confusion(y_true, y_pred, n_classes: int) -> np.ndarray:
    """Counts ``C[true, predicted]``."""
    c = np.zeros((n_classes, n_classes), np.int64)
    np.add.at(c, (np.asarray(y_true, int), np.asarray(y_pred, int)), 1)
    return c


def wf1_uar(c) -> tuple[np.ndarray, np.ndarray]:
    """Weighted F1 (scikit-learn's ``average="weighted"``, zero where undefined) and UAR of one
    confusion matrix or a stack of them (..., K, K)."""
    c = np.asarray(c, np.float64)
    tp = np.diagonal(c, axis1=-2, axis2=-1)
    support, predicted = c.sum(-1), c.sum(-2)
    prec = np.divide(tp, predicted, out=np.zeros_like(tp), where=predicted > 0)
    rec = np.divide(tp, support, out=np.zeros_like(tp), where=support > 0)
    f1 = np.divide(2 * prec * rec, prec + rec, out=np.zeros_like(tp), where=(prec + rec) > 0)
    total = support.sum(-1)
    wf1 = (f1 * support).sum(-1) / np.maximum(total, 1)
    present = support > 0
    uar = (rec * present).sum(-1) / np.maximum(present.sum(-1), 1)
    return wf1, uar
