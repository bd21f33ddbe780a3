"""How much speaker information a low-dimensional representation can hold, and how much a trained
latent uses (reports/ravdess/quality.md, "Where the speaker information goes").

    python bench/latent_capacity.py --dataset ravdess --manual_dir ../shared/data/ravdess \
        [--dims 8,16,32,64,128,200] [--run_dir runs/ravdess-IS10-lrvae ...]

1. Raw features: for each k of ``--dims``, the validation-speaker EER of PCA(k) + LDA + cosine scoring
   (the ``lda_cosine`` attacker of :mod:`tfvae.attackers` after a k-dimensional PCA), fit on each fold's
   training speakers (the 6 speaker-disjoint folds of ``tfvae.experiments``; test speakers unused).
2. Each ``--run_dir`` (a ``python -m tfvae.train`` run): the KL of every latent node on the run's
   training split (nats, batch mean), and how many nodes carry more than 0.1 / 0.5 nats.

Prints its measurements; seed 0 throughout.
"""

from __future__ import annotations

import argparse
import json
import warnings
from pathlib import Path

import numpy as np


def raw_capacity(dataset: str, manual_dir: str | None, dims: list[int], seed: int = 0) -> dict[int, float]:
    """Mean validation EER (%) over folds of PCA(k) + LDA + cosine on the standardised raw features."""
    from sklearn.decomposition import PCA
    from sklearn.discriminant_analysis import LinearDiscriminantAnalysis
    from sklearn.preprocessing import StandardScaler

    from tfvae.data import load_corpus
    from tfvae.experiments import make_folds
    from tfvae.metrics import cosine_trials, eer

    pool, folds = make_folds(load_corpus(dataset, "IS10", manual_dir=manual_dir), 6, None, seed)
    out = {k: [] for k in dims}
    for f in folds:
        tr, va = (pool.select(np.isin(pool.speaker, s)) for s in (f.train, f.validation))
        scaler = StandardScaler().fit(tr.features)
        x_tr, x_va = scaler.transform(tr.features), scaler.transform(va.features)
        for k in dims:
            pca = PCA(k, random_state=seed).fit(x_tr)
            lda = LinearDiscriminantAnalysis().fit(pca.transform(x_tr), tr.speaker)
            out[k].append(eer(*cosine_trials(lda.transform(pca.transform(x_va)), va.speaker, seed=seed)))
    return {k: 100 * float(np.mean(v)) for k, v in out.items()}


def node_kl(run_dir: str) -> np.ndarray:
    """KL(q(z_i|x) || N(0, 1)) of every latent node, mean over the run's training split."""
    from tfvae.config import TrainConfig
    from tfvae.data import load_corpus
    from tfvae.runs import load_run

    model, _, meta = load_run(run_dir)
    cfg = TrainConfig.from_dict(json.loads((Path(run_dir) / "config.json").read_text()))
    corpus = load_corpus(cfg.dataset, meta["feature_set"], data_dir=cfg.data_dir, manual_dir=cfg.manual_dir)
    q = model.posterior(corpus.splits["train"].features)
    mu, sd = q.mean().numpy(), q.stddev().numpy()
    return (0.5 * (sd ** 2 + mu ** 2 - 1.0 - np.log(sd ** 2))).mean(axis=0)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dataset", default="ravdess")
    p.add_argument("--manual_dir", default=None)
    p.add_argument("--dims", default="8,16,32,64,128,200", help="PCA sizes of part 1 (empty: skip it)")
    p.add_argument("--run_dir", nargs="*", default=[], help="training runs of part 2")
    args = p.parse_args()
    warnings.filterwarnings("ignore")
    dims = [int(d) for d in args.dims.split(",") if d]
    if dims:
        print("raw features, PCA(k) + LDA + cosine, validation-speaker EER (%, mean of 6 folds):")
        for k, e in raw_capacity(args.dataset, args.manual_dir, dims).items():
            print(f"  k={k:4d}  EER {e:5.2f}")
    for run in args.run_dir:
        kl = node_kl(run)
        print(f"{run}: total KL {kl.sum():.1f} nats over {len(kl)} nodes; > 0.1 nats: {(kl > 0.1).sum()}, "
              f"> 0.5 nats: {(kl > 0.5).sum()}")
        print("  KL per node (node 0 = emotion end):", " ".join(f"{v:.2f}" for v in kl))


if __name__ == "__main__":
    main()
