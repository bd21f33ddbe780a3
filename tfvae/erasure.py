"""Post-hoc linear concept erasure of a protected attribute (LEACE, Belrose et al. 2023).

An optional last step after the mask (paper section 2.3 masks nodes; this goes beyond the
paper): on the kept nodes of a view, the LEACE eraser of the protected attribute is fit on the
*training* split and applied as a fixed affine map ``x' = x - (x - mean) @ P.T``. After it, no
linear classifier (of any loss that is a function of class-conditional means, e.g. least squares,
logistic regression) does better on the training distribution than a constant one: every class
has the same mean. ``P = W^+ Q Q^T W`` with ``W`` the whitening of the features and ``Q`` an
orthonormal basis of ``W Cov(x, z)`` (``z`` the one-hot attribute), the least-squares-optimal
erasure of Belrose et al. (theorem 4.3).

The map is baked into exports as constants (:func:`tfvae.export.export_encoder`), so a served
view is exactly the one evaluated. It removes *linear* information only: Table 1 reports it as
its own rows against the non-linear attackers of the suite.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

#: The label each of the paper's masked views protects, and so erases (a view over other attributes
#: erases the labels of every attribute it masks: :func:`view_erasers`).
PROTECTED = {"identity_free": "speaker", "emotion_free": "emotion"}
#: Suffix of the views with erasure.
SUFFIX = "_leace"


@dataclass(frozen=True)
class LinearEraser:
    """``x -> x - (x - mean) @ projection.T`` (float64 parameters)."""

    mean: np.ndarray
    projection: np.ndarray

    def __call__(self, x: np.ndarray) -> np.ndarray:
        x = np.asarray(x, np.float64)
        if x.ndim != 2 or x.shape[1] != self.mean.shape[0]:
            raise ValueError(f"eraser expects [n, {self.mean.shape[0]}] inputs, got {x.shape}")
        return (x - (x - self.mean) @ self.projection.T).astype(np.float32)

    @property
    def rank(self) -> int:
        """Dimensions removed."""
        return int(np.linalg.matrix_rank(self.projection)) if self.projection.any() else 0


def fit_leace(x: np.ndarray, labels, rtol: float = 1e-6, max_rank: int | None = None) -> LinearEraser:
    """The LEACE eraser of the categorical attribute ``labels`` (one per row of ``x``), or of several
    attributes at once (a list of label arrays: z is the concatenation of their one-hot codes).

    Integer labels < 0 are unknown: such a row has no one-hot entry for that attribute.
    Rank-deficient features (masked nodes are constant zeros) are handled with pseudo-inverses:
    directions without variance are left as they are. ``max_rank`` erases only the strongest
    ``max_rank`` directions of the whitened cross-covariance (full LEACE removes up to
    ``classes - 1``, which for many speakers can be every kept dimension).
    """
    x = np.asarray(x, np.float64)
    many = isinstance(labels, (list, tuple))
    columns = [np.asarray(y) for y in (labels if many else [labels])]
    if x.ndim != 2 or any(len(x) != len(y) for y in columns):
        raise ValueError(f"fit_leace needs [n, d] features and n labels, got {x.shape} and "
                         f"{[y.shape for y in columns]}")
    mean = x.mean(axis=0)
    xc = x - mean
    n = len(x)
    cov = xc.T @ xc / n
    # Cov(x, one-hot z) without the [n, k] one-hot matrix (k can be thousands of speakers): the centred
    # features summed per class (sum_i xc_i z_i^T, and sum_i xc_i = 0 removes z's mean)
    blocks = []
    for y in columns:
        known = y >= 0 if np.issubdtype(y.dtype, np.integer) else np.ones(len(y), bool)
        classes = np.unique(y[known])
        if len(classes) < 2:
            raise ValueError(f"fit_leace needs at least 2 classes of the protected attribute, got {classes.tolist()}")
        block = np.zeros((x.shape[1], classes.size))
        np.add.at(block.T, np.searchsorted(classes, y[known]), xc[known])
        blocks.append(block / n)
    cross = np.concatenate(blocks, axis=1)  # [d, k]
    evals, evecs = np.linalg.eigh(cov)
    keep = evals > rtol * max(evals.max(), 1e-30)
    root = np.sqrt(evals[keep])
    whiten = (evecs[:, keep] / root) @ evecs[:, keep].T
    unwhiten = (evecs[:, keep] * root) @ evecs[:, keep].T
    u, s, _ = np.linalg.svd(whiten @ cross, full_matrices=False)
    basis = u[:, s > rtol * max(s.max(initial=0.0), 1e-30)]
    if max_rank is not None:
        basis = basis[:, :max(0, int(max_rank))]
    projection = unwhiten @ basis @ basis.T @ whiten
    return LinearEraser(mean=mean, projection=projection)


def view_erasers(latent_train: np.ndarray, emotion: np.ndarray, speaker: np.ndarray,
                 masks: dict[str, np.ndarray], validation: tuple | None = None, seed: int = 0,
                 attributes=None, labels: dict | None = None, validation_labels: dict | None = None
                 ) -> dict[str, LinearEraser]:
    """One eraser per masked view of ``masks``, each fit on the kept nodes of the *training* latents.

    With the paper's attributes (``attributes`` None) ``identity_free`` erases the training speakers and
    ``emotion_free`` the emotions. With ``attributes`` (:mod:`tfvae.attributes`) a view erases every
    attribute it masks at once; ``labels`` / ``validation_labels`` map the class attributes' label
    names (``gender``...) to their training / validation labels (emotion and speaker are the arguments).

    ``validation = (latent, emotion, speaker)`` of validation speakers chooses how many directions
    to erase among full LEACE, half and a quarter of the kept nodes: the rank whose view scores best
    on validation (the kept attributes' probe scores above chance minus the masked ones', the fast
    probes of mask-cut selection). Without it, full LEACE.
    """
    from tfvae.attributes import DEFAULT, parse_attributes, view_attributes

    attrs = parse_attributes(attributes or DEFAULT)
    train = {"emotion": emotion, "speaker": speaker, **(labels or {})}
    probe = None
    if validation is not None:  # the validation trials and chance are the same for every candidate
        from tfvae.evaluate import chance_wf1
        from tfvae.metrics import sample_trials

        z_val, emo_val, spk_val = validation
        val = {"emotion": emo_val, **(validation_labels or {})}
        probe = (z_val, {a.task: val[a.label] for a in attrs if not a.is_identity}, sample_trials(spk_val, seed=seed),
                 {a.task: chance_wf1(np.asarray(val[a.label])[np.asarray(val[a.label]) >= 0])["stratified"]
                  for a in attrs if not a.is_identity})
    out = {}
    for view, mask in masks.items():
        try:
            kept = view_attributes(view, attrs)
        except ValueError:
            continue
        hidden = [a for a in attrs if a.name not in kept]
        if not hidden:
            continue
        keep = np.asarray(mask) > 0
        ranks = [None]
        if probe is not None:
            n_kept = int(keep.sum())
            ranks += sorted({r for r in (n_kept // 2, n_kept // 4) if r >= 1}, reverse=True)
        erase = [train[a.label] for a in hidden]
        fits = [fit_leace(latent_train[:, keep], erase if len(erase) > 1 else erase[0], max_rank=r) for r in ranks]
        eraser = fits[0] if len(fits) == 1 else max(
            fits, key=lambda e: _validation_score(e, kept, attrs, keep, latent_train, train, probe, seed))
        # lift to all N nodes: masked nodes are zeros in and out
        n = keep.size
        mean, proj = np.zeros(n), np.zeros((n, n))
        mean[keep] = eraser.mean
        proj[np.ix_(keep, keep)] = eraser.projection
        out[view + SUFFIX] = LinearEraser(mean=mean, projection=proj)
    return out


def _validation_score(eraser, kept, attrs, keep, z_train, train: dict, probe, seed) -> float:
    """Kept attributes' probe gains over chance minus the masked ones' (EER: 0.5 - EER)."""
    from tfvae.evaluate import probe_scores_all

    z_val, val_labels, trials, chance = probe
    tr_labels = {a.task: train[a.label] for a in attrs if not a.is_identity}
    scores = probe_scores_all(eraser(z_train[:, keep]), tr_labels, train["speaker"], eraser(z_val[:, keep]),
                              val_labels, trials, seed)
    gain = {a.name: (0.5 - scores["speaker"]) if a.is_identity else scores[a.task] - chance[a.task] for a in attrs}
    return sum(gain[a.name] if a.name in kept else -gain[a.name] for a in attrs)


def save_erasers(path: str | Path, erasers: dict[str, LinearEraser]) -> None:
    """Write ``erasers`` to one ``.npz`` (``<view>.mean`` and ``<view>.projection`` arrays)."""
    arrays = {}
    for view, e in erasers.items():
        arrays[f"{view}.mean"], arrays[f"{view}.projection"] = e.mean, e.projection
    np.savez(path, **arrays)


def load_erasers(path: str | Path) -> dict[str, LinearEraser]:
    """The erasers :func:`save_erasers` wrote; ``{}`` when ``path`` does not exist."""
    path = Path(path)
    if not path.exists():
        return {}
    with np.load(path) as f:
        views = sorted({k.rsplit(".", 1)[0] for k in f.files})
        return {v: LinearEraser(mean=f[f"{v}.mean"], projection=f[f"{v}.projection"]) for v in views}
