"""PROTOTYPE analysis (quality.md, runs DA-SD). Usage, from the repository root:
``python reports/ravdess/prototypes/node_analysis.py <fold> [seed]``.

Per-node analysis of a default LR-VAE on one tuning fold: KL, speaker / emotion F-ratio of the posterior
mean on validation actors and the chosen masks, printed and saved to /tmp/quality/nodes/fold<k>.npz for
view_leakage.py."""
import sys
from pathlib import Path

import numpy as np
from tfvae.config import TrainConfig
from tfvae.data import load_corpus
from tfvae.experiments import make_folds, fold_corpus
from tfvae.tuning import validation_corpus
from tfvae.train import fit_model, encode_splits, choose_masks
from tfvae.distribute import make_strategy

Path("/tmp/quality/nodes").mkdir(parents=True, exist_ok=True)
fold = int(sys.argv[1]); seed = int(sys.argv[2]) if len(sys.argv) > 2 else 0
cfg = TrainConfig(dataset="ravdess", manual_dir="../shared/data/ravdess", seed=seed, verbose=0, output_dir=f"/tmp/quality/nodes/run{fold}")
corpus = load_corpus("ravdess", "IS10", manual_dir=cfg.manual_dir, speed_perturb=True)
pool, folds = make_folds(corpus, 6, None, seed)
c = validation_corpus(fold_corpus(corpus, pool, folds[fold]))
model, _, _ = fit_model(cfg, c, make_strategy("default"), None, Path(cfg.output_dir), announce=False)
out = encode_splits(model, c)
cuts, masks = choose_masks(cfg, model, out, c, None)
print("cuts", {k: v for k, v in cuts.items() if k.endswith("_cut")})
res = {}
for s in ("train", "validation"):
    x = c.splits[s].features
    q = model.posterior(np.asarray(x, np.float32))
    mu, sd = np.asarray(q.mean()), np.asarray(q.stddev())
    kl = 0.5 * (mu ** 2 + sd ** 2 - 1 - 2 * np.log(sd))
    res[s] = dict(mu=mu, kl=kl.mean(0))
    spk = c.splits[s].speaker; emo = c.splits[s].emotion
    def ratio(lab):
        tot = mu.var(0) + 1e-12
        means = np.stack([mu[lab == l].mean(0) for l in np.unique(lab)])
        counts = np.array([(lab == l).sum() for l in np.unique(lab)])
        return (counts[:, None] * (means - mu.mean(0)) ** 2).sum(0) / len(lab) / tot
    res[s]["spk"] = ratio(spk); res[s]["emo"] = ratio(emo)
np.set_printoptions(precision=2, suppress=True, linewidth=200)
print("KL(val)", res["validation"]["kl"])
print("spkF(val)", res["validation"]["spk"])
print("emoF(val)", res["validation"]["emo"])
print("masks", {k: int(np.sum(v)) for k, v in masks.items()})
np.savez(f"/tmp/quality/nodes/fold{fold}.npz", kl=res["validation"]["kl"], spk=res["validation"]["spk"], emo=res["validation"]["emo"],
         kl_tr=res["train"]["kl"], spk_tr=res["train"]["spk"], emo_tr=res["train"]["emo"], pp_ser=masks["identity_free"], pp_sv=masks["emotion_free"],
         mu_tr=res["train"]["mu"], mu_va=res["validation"]["mu"], spk_tr_lab=c.splits["train"].speaker.astype(str), spk_va_lab=c.splits["validation"].speaker.astype(str),
         emo_tr_lab=c.splits["train"].emotion, emo_va_lab=c.splits["validation"].emotion)
