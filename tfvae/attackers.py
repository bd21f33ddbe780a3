"""The downstream-model / attacker suite (paper section 3.1: the attacker holds the encoded
training set and its labels and attacks unseen speakers).

Emotion attackers map a representation to an emotion prediction; speaker attackers map it to an
embedding that is scored by cosine on verification trials of unseen speakers. Every attacker is
fit on the (standardised) training rows; the ones marked *tuned* choose a hyperparameter on the
validation speakers (never on test speakers).

| name | task | model |
| --- | --- | --- |
| ``mlp`` | emotion | the paper's MLP (256, 128), sklearn ``MLPClassifier`` |
| ``mlp_large`` | emotion | MLP (512, 256), twice the paper's width, L2 in {1e-4, 1e-2} *tuned* |
| ``logreg`` | emotion | multinomial logistic regression |
| ``knn_cosine`` | emotion | 10 nearest neighbours, cosine distance |
| ``gboost`` | emotion | histogram gradient boosting, <= 100 rounds of 15-leaf trees (non-neural) |
| ``svm_rbf`` | emotion | RBF-kernel SVM, C in {1, 10} *tuned* |
| ``mlp_embedding`` | speaker | last hidden layer of the paper's speaker-ID MLP |
| ``mlp_large_embedding`` | speaker | last hidden layer of an MLP (512, 256), L2 *tuned* |
| ``lda_cosine`` | speaker | PCA (<= 200) + LDA over training speakers |
| ``kernel_lda_cosine`` | speaker | RBF Nystroem features (<= 1000) + PCA + LDA (non-neural, non-linear) |
| ``logreg_posteriors`` | speaker | centred logits of a speaker-ID logistic regression |
| ``cosine`` | speaker | the standardised representation itself |

Fits use at most :data:`MAX_FIT_ROWS` training rows (``svm_rbf``: :data:`SVM_FIT_ROWS`), a
seeded sample stratified by label (speaker attackers: every training speaker keeps rows; emotion
attackers: every (speaker, emotion) pair of the training speakers keeps rows), and the classifier-based
speaker attackers tell apart at most :data:`MAX_SPEAKER_CLASSES` training speakers (those with the most
rows), so that the cost of an attacker is bounded at any corpus size.
"""

from __future__ import annotations

import warnings

import numpy as np

EMOTION_ATTACKERS = ("mlp", "mlp_large", "logreg", "knn_cosine", "gboost", "svm_rbf")
SPEAKER_ATTACKERS = ("mlp_embedding", "mlp_large_embedding", "lda_cosine", "kernel_lda_cosine",
                     "logreg_posteriors", "cosine")
#: The paper's downstream models (reported beside the validation-chosen one).
PAPER_ATTACKERS = {"emotion": "mlp", "speaker": "mlp_embedding"}
#: Cheap linear attackers (mask-cut probes, the inner objective of nested tuning).
FAST_ATTACKERS = {"emotion": ("logreg",), "speaker": ("lda_cosine",)}
#: Largest number of training rows an attacker is fit on.
MAX_FIT_ROWS = 20000
#: Largest number of training rows the RBF SVM is fit on (its fit is quadratic in rows).
SVM_FIT_ROWS = 5000
#: Largest number of training speakers a classifier-based speaker attacker (MLP embeddings, logistic-regression
#: posteriors) learns to tell apart: those with the most training rows. Its cost grows with the classes; the
#: embedding it learns is scored on other, unseen speakers anyway.
MAX_SPEAKER_CLASSES = 1000
_LARGE = (512, 256)


def stratified_rows(y, max_rows: int, seed: int, groups=None) -> np.ndarray:
    """Sorted positions of about ``max_rows`` rows (all rows when they fit), a seeded sample stratified by
    label: every label keeps its share and at least one row.

    With ``groups`` (e.g. speakers) the strata are the ``(group, label)`` pairs and every group keeps at
    least one row (so the sample exceeds ``max_rows`` only when there are more groups than that).
    """
    y = np.asarray(y)
    n = len(y)
    if n <= max_rows:
        return np.arange(n)
    rng = np.random.default_rng(seed)
    keys = y if groups is None else np.char.add(np.char.add(np.asarray(groups).astype(str), "\x1f"), y.astype(str))
    _, codes = np.unique(keys, return_inverse=True)
    order = np.argsort(codes, kind="stable")
    counts = np.bincount(codes)
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    want = max_rows / n * counts
    m = np.floor(want).astype(int) + (rng.random(counts.size) < want - np.floor(want))  # unbiased rounding
    if groups is None:
        m = np.maximum(m, 1)
    take = np.concatenate([rng.choice(order[s:s + c], size=k, replace=False) for s, c, k in zip(starts, counts, m)
                           if k])
    if groups is not None:  # a group whose every stratum rounded to 0 rows still keeps one
        _, g = np.unique(np.asarray(groups), return_inverse=True)
        missing = np.setdiff1d(np.arange(g.max() + 1), g[take])
        if missing.size:
            g_order = np.argsort(g, kind="stable")
            g_counts = np.bincount(g)
            g_starts = np.concatenate([[0], np.cumsum(g_counts)[:-1]])
            pick = g_starts[missing] + (rng.random(missing.size) * g_counts[missing]).astype(int)
            take = np.concatenate([take, g_order[pick]])
    return np.sort(take)


def stratified_subsample(x, y, max_rows: int, seed: int, groups=None):
    """At most ``max_rows`` rows of ``(x, y)`` (:func:`stratified_rows`); ``(x, y)`` themselves when they fit."""
    if len(y) <= max_rows:
        return x, y
    idx = stratified_rows(y, max_rows, seed, groups)
    return np.asarray(x[idx]), np.asarray(y)[idx]


def top_speakers(x, s, k: int):
    """The rows of the ``k`` speakers with the most rows (ties: by name); all rows when there are <= ``k``."""
    s = np.asarray(s)
    spk, counts = np.unique(s, return_counts=True)
    if spk.size <= k:
        return x, s
    keep = np.isin(s, spk[np.lexsort((spk, -counts))[:k]])
    return np.asarray(x[keep]), s[keep]


def _mlp(seed: int, y, hidden=(256, 128), alpha: float = 1e-4):
    """sklearn MLP; early stopping on 15 % of the rows when that holds >= 2 rows per class."""
    from sklearn.neural_network import MLPClassifier

    n_iter = 15 if hidden == (256, 128) else 10
    early = 0.15 * len(y) >= 2 * len(np.unique(y))
    return MLPClassifier(hidden_layer_sizes=hidden, alpha=alpha, max_iter=300 if early else 100,
                         early_stopping=early, validation_fraction=0.15, n_iter_no_change=n_iter, random_state=seed)


def _hidden(mlp, x):
    """Last hidden layer (ReLU) of a fitted sklearn MLP: the speaker embedding of the paper."""
    h = x
    for w, b in zip(mlp.coefs_[:-1], mlp.intercepts_[:-1]):
        h = np.maximum(h @ w + b, 0.0)
    return h


def _pca_lda(n_rows: int, n_classes: int, dim: int, seed: int, kernel: bool = False):
    from sklearn.decomposition import PCA
    from sklearn.discriminant_analysis import LinearDiscriminantAnalysis
    from sklearn.pipeline import make_pipeline

    steps = []
    if kernel:
        from sklearn.kernel_approximation import Nystroem

        dim = min(1000, n_rows)
        steps.append(Nystroem(kernel="rbf", gamma=1.0 / max(1, dim), n_components=dim, random_state=seed))
    pcs = max(1, min(dim, n_rows - n_classes, 200))
    if pcs < dim:
        steps.append(PCA(n_components=pcs, random_state=seed))
    steps.append(LinearDiscriminantAnalysis(n_components=max(1, min(n_classes - 1, pcs))))
    return make_pipeline(*steps)


def single_threaded_blas():
    """One BLAS thread for the attackers' many small matrix products. OpenBLAS threads spin while
    they wait for each other; with every core busy (training, other processes) a two-thread sklearn
    MLP fit ran 10-20x slower than a one-thread fit (RAVDESS fold, 2 cores: 223 s against 12 s)."""
    from threadpoolctl import threadpool_limits

    return threadpool_limits(limits=1, user_api="blas")


def _quiet(fn, *a, **kw):
    """Fit quietly (convergence and collinearity warnings on tiny folds) with one BLAS thread."""
    from sklearn.exceptions import ConvergenceWarning

    with warnings.catch_warnings(), single_threaded_blas():
        warnings.simplefilter("ignore", ConvergenceWarning)
        warnings.simplefilter("ignore", UserWarning)  # LDA: collinear variables on tiny folds
        return fn(*a, **kw)


# ------------------------------------------------------------------------------------- emotion
def _emotion_candidates(name: str, seed: int, y):
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.linear_model import LogisticRegression
    from sklearn.neighbors import KNeighborsClassifier
    from sklearn.svm import SVC

    n_rows = len(y)
    if name == "mlp":
        return [_mlp(seed, y)]
    if name == "mlp_large":
        return [_mlp(seed, y, _LARGE, a) for a in (1e-4, 1e-2)]
    if name == "logreg":
        return [LogisticRegression(max_iter=3000, random_state=seed)]
    if name == "knn_cosine":
        return [KNeighborsClassifier(n_neighbors=min(10, n_rows), metric="cosine", weights="distance")]
    if name == "gboost":
        return [HistGradientBoostingClassifier(max_iter=100, learning_rate=0.2, max_leaf_nodes=15,
                                               early_stopping=n_rows >= 100, n_iter_no_change=5, random_state=seed)]
    if name == "svm_rbf":
        return [SVC(kernel="rbf", C=c, gamma="scale", random_state=seed) for c in (1.0, 10.0)]
    raise ValueError(f"unknown emotion attacker {name!r}; choose from {', '.join(EMOTION_ATTACKERS)}")


def fit_emotion_attacker(name: str, x_tr, y_tr, x_val=None, y_val=None, seed: int = 0, groups=None):
    """The fitted classifier of attacker ``name``; tuned ones keep the candidate with the best
    validation weighted F1 (``x_val``/``y_val``: validation speakers). Large training sets are
    subsampled stratified by emotion and by ``groups`` (the training speakers) when given."""
    from sklearn.metrics import f1_score

    rows = SVM_FIT_ROWS if name == "svm_rbf" else MAX_FIT_ROWS
    x, y = stratified_subsample(x_tr, y_tr, rows, seed, groups)
    cands = _emotion_candidates(name, seed, y)
    if len(np.unique(y)) < 2:
        raise ValueError(f"emotion attacker {name}: the training rows hold a single emotion class")
    fitted = [_quiet(c.fit, x, y) for c in cands]
    if len(fitted) == 1 or x_val is None:
        return fitted[0]
    return max(fitted, key=lambda c: f1_score(y_val, c.predict(x_val), average="weighted"))


# ------------------------------------------------------------------------------------- speaker
class _Embedder:
    def __init__(self, fn):
        self.embed = fn


def fit_speaker_attacker(name: str, x_tr, s_tr, x_val=None, s_val=None, seed: int = 0) -> _Embedder:
    """An object whose ``embed(x)`` maps representations to verification embeddings; tuned ones
    keep the candidate with the lowest EER on validation-speaker trials."""
    from sklearn.linear_model import LogisticRegression

    if name in ("mlp_embedding", "mlp_large_embedding", "logreg_posteriors"):
        x_tr, s_tr = top_speakers(x_tr, s_tr, MAX_SPEAKER_CLASSES)
    x, y = stratified_subsample(x_tr, s_tr, MAX_FIT_ROWS, seed)
    n_cls = len(np.unique(y))
    if name != "cosine" and n_cls < 2:
        raise ValueError(f"speaker attacker {name}: the training rows hold a single speaker")
    if name == "cosine":
        return _Embedder(lambda e: e)
    if name in ("mlp_embedding", "mlp_large_embedding"):
        cands = [_mlp(seed, y)] if name == "mlp_embedding" else [_mlp(seed, y, _LARGE, a) for a in (1e-4, 1e-2)]
        embs = [_Embedder(lambda e, m=_quiet(c.fit, x, y): _hidden(m, e)) for c in cands]
        if len(embs) == 1 or x_val is None:
            return embs[0]
        from tfvae.metrics import cosine_trials, eer

        return min(embs, key=lambda m: eer(*cosine_trials(m.embed(x_val), s_val, seed=seed)))
    if name in ("lda_cosine", "kernel_lda_cosine"):
        try:
            model = _quiet(_pca_lda(len(x), n_cls, x.shape[1], seed, kernel=name.startswith("kernel")).fit, x, y)
        except (IndexError, ValueError, np.linalg.LinAlgError):
            # no between-speaker scatter left (e.g. after linear erasure, tfvae.erasure): LDA has no
            # discriminant directions, so the attacker scores the representation itself by cosine
            return _Embedder(lambda e: e)
        return _Embedder(model.transform)
    if name == "logreg_posteriors":
        clf = _quiet(LogisticRegression(max_iter=3000, random_state=seed).fit, x, y)

        def logits(e):  # finite even when the training speakers are perfectly separable
            z = np.atleast_2d(clf.decision_function(e).T).T
            z = np.c_[-z, z] if z.shape[1] == 1 else z
            return z - z.mean(axis=1, keepdims=True)

        return _Embedder(logits)
    raise ValueError(f"unknown speaker attacker {name!r}; choose from {', '.join(SPEAKER_ATTACKERS)}")
