"""PROTOTYPE analysis (quality.md, runs DA-SD): the speaker attackers' validation EERs, emotion WF1 and gender
accuracy of the identity-free view saved by node_analysis.py, without and with LEACE of gender.
``python reports/ravdess/prototypes/view_leakage.py /tmp/quality/nodes/fold0.npz``."""
import sys, numpy as np
from tfvae.attackers import fit_speaker_attacker, fit_emotion_attacker
from tfvae.metrics import sample_trials
from tfvae.erasure import fit_leace
from sklearn.metrics import f1_score
from tfvae.metrics import eer
d = np.load(sys.argv[1])
keep = d["pp_ser"] > 0
spk_tr, spk_va = d["spk_tr_lab"], d["spk_va_lab"]
gender = lambda s: np.array([int(x.split("@")[0].split("_")[-1]) % 2 for x in s])
g_tr, g_va = gender(spk_tr), gender(spk_va)
def std(a, b):
    m, s = a.mean(0), a.std(0) + 1e-8
    return (a - m) / s, (b - m) / s
tri = sample_trials(spk_va, seed=0)
def eval_view(ztr, zva, tag):
    xtr, xva = std(ztr, zva)
    eers = {}
    for n in ("lda_cosine", "logreg_posteriors", "mlp_embedding", "kernel_lda_cosine", "cosine"):
        emb = fit_speaker_attacker(n, xtr, spk_tr, xva, spk_va, 0)
        sc = tri.score(emb.embed(xva))
        eers[n] = round(100 * eer(sc, tri.label), 1)
    clf = fit_emotion_attacker("logreg", xtr, d["emo_tr_lab"], xva, d["emo_va_lab"], 0)
    wf1 = 100 * f1_score(d["emo_va_lab"], clf.predict(xva), average="weighted")
    gclf = fit_emotion_attacker("logreg", xtr, g_tr, xva, g_va, 0)
    gacc = 100 * (gclf.predict(xva) == g_va).mean()
    print(f"{tag}: worst EER {min(eers.values())} {eers} emo WF1 {wf1:.1f} gender acc {gacc:.1f}")
ztr, zva = d["mu_tr"][:, keep], d["mu_va"][:, keep]
eval_view(ztr, zva, f"PP-SER ({keep.sum()} nodes)")
er = fit_leace(ztr, g_tr)
eval_view(er(ztr) if callable(er) else er.transform(ztr), er(zva) if callable(er) else er.transform(zva), "PP-SER + gender LEACE")
