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

#: The attribute each masked view protects, and so erases.
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


def fit_leace(x: np.ndarray, labels: np.ndarray, rtol: float = 1e-6, max_rank: int | None = None) -> LinearEraser:
    """The LEACE eraser of the categorical attribute ``labels`` (one per row of ``x``).

    Rank-deficient features (masked nodes are constant zeros) are handled with pseudo-inverses:
    directions without variance are left as they are. ``max_rank`` erases only the strongest
    ``max_rank`` directions of the whitened cross-covariance (full LEACE removes up to
    ``classes - 1``, which for many speakers can be every kept dimension).
    """
    x = np.asarray(x, np.float64)
    labels = np.asarray(labels)
    if x.ndim != 2 or len(x) != len(labels):
        raise ValueError(f"fit_leace needs [n, d] features and n labels, got {x.shape} and {labels.shape}")
    classes = np.unique(labels)
    if len(classes) < 2:
        raise ValueError(f"fit_leace needs at least 2 classes of the protected attribute, got {classes.tolist()}")
    mean = x.mean(axis=0)
    xc = x - mean
    n = len(x)
    cov = xc.T @ xc / n
    # Cov(x, one-hot z) without the [n, k] one-hot matrix (k can be thousands of speakers): the centred
    # features summed per class (sum_i xc_i z_i^T, and sum_i xc_i = 0 removes z's mean)
    codes = np.searchsorted(classes, labels)
    cross = np.zeros((x.shape[1], classes.size))
    np.add.at(cross.T, codes, xc)
    cross /= n  # [d, k]
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
                 masks: dict[str, np.ndarray], validation: tuple | None = None, seed: int = 0) -> dict[str, LinearEraser]:
    """One eraser per masked view of ``masks`` (``identity_free`` erases the training speakers,
    ``emotion_free`` the emotions), each fit on the kept nodes of the *training* latents.

    ``validation = (latent, emotion, speaker)`` of validation speakers chooses how many directions
    to erase among full LEACE, half and a quarter of the kept nodes: the rank whose view scores best
    on validation (utility minus leakage above chance, the fast probes of mask-cut selection).
    Without it, full LEACE.
    """
    labels = {"speaker": speaker, "emotion": emotion}
    probe = None
    if validation is not None:  # the validation trials and chance are the same for every candidate
        from tfvae.evaluate import chance_wf1
        from tfvae.metrics import sample_trials

        z_val, emo_val, spk_val = validation
        probe = (z_val, emo_val, sample_trials(spk_val, seed=seed), chance_wf1(emo_val)["stratified"])
    out = {}
    for view, mask in masks.items():
        if view not in PROTECTED:
            continue
        keep = np.asarray(mask) > 0
        ranks = [None]
        if probe is not None:
            kept = int(keep.sum())
            ranks += sorted({r for r in (kept // 2, kept // 4) if r >= 1}, reverse=True)
        fits = [fit_leace(latent_train[:, keep], labels[PROTECTED[view]], max_rank=r) for r in ranks]
        eraser = fits[0] if len(fits) == 1 else max(
            fits, key=lambda e: _validation_score(e, view, keep, latent_train, emotion, speaker, probe, seed))
        # lift to all N nodes: masked nodes are zeros in and out
        n = keep.size
        mean, proj = np.zeros(n), np.zeros((n, n))
        mean[keep] = eraser.mean
        proj[np.ix_(keep, keep)] = eraser.projection
        out[view + SUFFIX] = LinearEraser(mean=mean, projection=proj)
    return out


def _validation_score(eraser, view, keep, z_train, emo_train, spk_train, probe, seed) -> float:
    from tfvae.evaluate import probe_scores

    z_val, emo_val, trials, chance = probe
    wf1, eer = probe_scores(eraser(z_train[:, keep]), emo_train, spk_train, eraser(z_val[:, keep]), emo_val,
                            trials, seed)
    emo_gain, spk_gain = wf1 - chance, 0.5 - eer
    return emo_gain - spk_gain if view == "identity_free" else spk_gain - emo_gain


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
