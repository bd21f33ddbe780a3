"""Analysis of quality.md runs EA-GD. Usage, from the repository root:
``python reports/ravdess/prototypes/speaker_overfit.py <fold> <seed> [option=value ...]``, or
``python reports/ravdess/prototypes/speaker_overfit.py <fold> pca`` for the raw features and their PCA.

Trains the LR-VAE with the defaults (plus the given options, ``tune --grid`` syntax) on one tuning fold
and prints, for the posterior means of the recorded training rows and of the validation actors: the
validation EER of the PCA + LDA cosine attacker, the validation emotion WF1 of a logistic regression, and
the four largest eigenvalues of the between- / within-speaker scatter (Fisher ratios) on each side. A
latent whose training-side ratios far exceed its validation-side ones has memorised the training voices.
"""
import sys
import time
from pathlib import Path

import numpy as np
from sklearn.metrics import f1_score

from tfvae.attackers import fit_emotion_attacker, fit_speaker_attacker
from tfvae.config import TrainConfig
from tfvae.data import load_corpus
from tfvae.distribute import make_strategy
from tfvae.experiments import fold_corpus, make_folds
from tfvae.metrics import cosine_trials, eer
from tfvae.train import fit_model
from tfvae.tuning import parse_grid, validation_corpus


def fisher(a, lab, k: int = 4):
    """The ``k`` largest eigenvalues of Sw^-1 Sb (between / within speaker scatter) of rows ``a``."""
    a = a - a.mean(0)
    labs = np.unique(lab)
    sw = sum(np.cov(a[lab == s].T, bias=True) * (lab == s).sum() for s in labs) / len(lab)
    sb = np.cov(a.T, bias=True) - sw
    from scipy.linalg import eigh

    return eigh(sb, sw + 1e-6 * np.eye(a.shape[1]), eigvals_only=True)[::-1][:k]  # the symmetric-definite pencil


def report(name: str, z_tr, z_va, split_tr, split_va, rec) -> None:
    """Print the attacker scores and Fisher ratios of representations of the recorded training rows
    (``z_tr``) and of the validation rows (``z_va``)."""
    s_tr, s_va = split_tr.speaker.astype(str)[rec], split_va.speaker.astype(str)
    m, sd = z_tr.mean(0), z_tr.std(0) + 1e-8
    a, b = (z_tr - m) / sd, (z_va - m) / sd
    val_eer = 100 * eer(*cosine_trials(fit_speaker_attacker("lda_cosine", a, s_tr, seed=0).embed(b), s_va, seed=0))
    clf = fit_emotion_attacker("logreg", a, np.asarray(split_tr.emotion)[rec], seed=0)
    wf1 = 100 * f1_score(np.asarray(split_va.emotion), clf.predict(b), average="weighted")
    print(f"{name} val_EER={val_eer:.1f} val_WF1={wf1:.1f} fisher_train={np.round(fisher(a, s_tr), 1)} "
          f"fisher_val={np.round(fisher(b, s_va), 1)}", flush=True)


def raw_and_pca(fold: int, dims=(64,)) -> None:
    """The raw standardised features and their PCA (fit on the recorded training rows)."""
    corpus = load_corpus("ravdess", "IS10", manual_dir="../shared/data/ravdess")
    pool, folds = make_folds(corpus, 6, None, 0)
    c = fold_corpus(corpus, pool, folds[fold])
    tr, va = c.splits["train"], c.splits["validation"]
    rec = np.array(["@" not in s for s in tr.speaker.astype(str)])
    x_tr, x_va = np.asarray(tr.features)[rec], np.asarray(va.features)
    m, sd = x_tr.mean(0), x_tr.std(0) + 1e-8
    z_tr, z_va = (x_tr - m) / sd, (x_va - m) / sd
    vt = np.linalg.svd(z_tr - z_tr.mean(0), full_matrices=False)[2]
    for k in dims:
        report(f"raw PCA-{k} fold={fold}", z_tr @ vt[:k].T, z_va @ vt[:k].T, tr, va, rec)


def main(fold: int, seed: int, options: list[str]) -> None:
    over = {k: v[0] for k, v in parse_grid(";".join(options)).items()} if options else {}
    cfg = TrainConfig(dataset="ravdess", manual_dir="../shared/data/ravdess", seed=seed, verbose=0,
                      output_dir=f"/tmp/quality/overfit/{fold}-{seed}-{'_'.join(options)}", **over)
    corpus = load_corpus("ravdess", "IS10", manual_dir=cfg.manual_dir, speed_perturb=cfg.speed_perturb)
    pool, folds = make_folds(corpus, 6, None, seed)
    c = validation_corpus(fold_corpus(corpus, pool, folds[fold]))
    t = time.time()
    model, _, best = fit_model(cfg, c, make_strategy("default"), None, Path(cfg.output_dir), announce=False)
    seconds = time.time() - t
    tr, va = c.splits["train"], c.splits["validation"]
    rec = np.array(["@" not in s for s in tr.speaker.astype(str)])  # the recorded rows (no speed copies)
    mu_tr = np.asarray(model.posterior(np.asarray(tr.features, np.float32)).mean())[rec]
    mu_va = np.asarray(model.posterior(np.asarray(va.features, np.float32)).mean())
    report(f"{' '.join(options) or 'defaults'} fold={fold} seed={seed} best_epoch={best} train_s={seconds:.0f}",
           mu_tr, mu_va, tr, va, rec)


if __name__ == "__main__":
    if sys.argv[2] == "pca":
        raw_and_pca(int(sys.argv[1]))
    else:
        main(int(sys.argv[1]), int(sys.argv[2]), sys.argv[3:])
