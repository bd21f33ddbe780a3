"""Peak memory and wall time of the whole evaluation of one fold, by test-set size.

    python bench/evaluation.py [--sizes 1000,10000,50000] [--seed 0] [--bootstrap 1000]

"The whole evaluation of one fold" is what a trained LR-VAE's fold costs: building
``tfvae.evaluate.EvalSplits`` (the seeded, bounded-memory verification trials of the validation
and test splits and the speaker-bootstrap weights), then ``tfvae.evaluate.evaluate_view`` on the
three views of its 64-dim latent -- ``origin`` (all 64 dims), ``identity_free`` (first 32) and
``emotion_free`` (last 32) -- i.e. the full attacker suite (6 emotion + 6 speaker attackers,
validation-chosen utility, worst case, bootstrap intervals) three times.

The embeddings are synthetic stand-ins, not a trained model's latents: seeded normal draws with
emotion structure (a class mean) in the first 32 dims and speaker structure (a speaker mean) in the
last 32, plus noise. Training split: 10,000 utterances of 250 speakers; validation: 2,000 of 50;
test: N utterances of max(20, N // 100) speakers; 5 emotions with MSP-Podcast-like shares.

Each size runs in a fresh subprocess (``--one N``), which reports its own peak RSS
(``getrusage(RUSAGE_SELF).ru_maxrss``) and the wall time of data generation, EvalSplits and the
evaluation; the parent prints one table row per size.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

import numpy as np

DIM, HALF = 64, 32
EMOTIONS = ["neutral", "happy", "angry", "disgust", "sad"]
SHARES = np.array([0.53, 0.27, 0.09, 0.07, 0.04])
TRAIN, VALIDATION = (10_000, 250), (2_000, 50)
VIEWS = {"origin": slice(0, DIM), "identity_free": slice(0, HALF), "emotion_free": slice(HALF, DIM)}
GIB = 1024 ** 3


def test_speakers(n: int) -> int:
    return max(20, n // 100)


def standin_corpus(n_test: int, seed: int):
    """A ``tfvae.data.Corpus`` of synthetic 64-dim latents (features = the latents themselves)."""
    from tfvae.data import Corpus, Split

    rng = np.random.default_rng(seed)
    emo_means = rng.normal(0.0, 0.6, (len(EMOTIONS), HALF))
    splits = {}
    for name, (n, n_spk) in {"train": TRAIN, "validation": VALIDATION,
                             "test": (n_test, test_speakers(n_test))}.items():
        spk = rng.permutation(np.arange(n) % n_spk)  # balanced: every speaker has >= 2 utterances
        emo = rng.choice(len(EMOTIONS), size=n, p=SHARES)
        spk_means = rng.normal(0.0, 0.6, (n_spk, DIM - HALF))
        z = rng.normal(0.0, 1.0, (n, DIM)).astype(np.float32)
        z[:, :HALF] += emo_means[emo]
        z[:, HALF:] += spk_means[spk]
        ids = np.array([f"{name}_{i}" for i in range(n)])
        splits[name] = Split(z, emo.astype(np.int64), np.char.add(f"{name}_spk", spk.astype(str)), ids)
    return Corpus(name="standin", feature_set="standin", emotion_names=list(EMOTIONS), splits=splits)


def one(n_test: int, seed: int, bootstrap: int) -> dict:
    """Evaluate one fold at ``n_test`` test utterances in this process; timings and peak RSS."""
    import resource

    from tfvae.evaluate import EvalSplits, evaluate_view

    t0 = time.perf_counter()
    corpus = standin_corpus(n_test, seed)
    t1 = time.perf_counter()
    ev = EvalSplits(corpus, seed=seed, bootstrap=bootstrap)
    t2 = time.perf_counter()
    z = {k: corpus.splits[k].features for k in ("train", "validation", "test")}
    res = {view: evaluate_view({k: v[:, cols] for k, v in z.items()}, ev, seed=seed)
           for view, cols in VIEWS.items()}
    t3 = time.perf_counter()
    lab = ev.trials["test"].label
    o = res["origin"]
    return {"n": n_test, "speakers": int(np.unique(ev.speaker["test"]).size),
            "target": int(lab.sum()), "nontarget": int(lab.size - lab.sum()),
            "t_data": t1 - t0, "t_trials": t2 - t1, "t_eval": t3 - t2, "t_total": t3 - t0,
            "rss_kib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
            "origin": {"wf1_utility": o["emotion"]["utility"]["wf1"], "eer_worst": o["speaker"]["worst"]["eer"]}}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--sizes", default="1000,10000,50000", help="comma-separated test-set sizes")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--bootstrap", type=int, default=1000, help="bootstrap replicates (library default 1000)")
    p.add_argument("--one", type=int, default=None, help=argparse.SUPPRESS)  # child: one size, JSON out
    a = p.parse_args()
    if a.one is not None:
        print(json.dumps(one(a.one, a.seed, a.bootstrap)), flush=True)
        return

    print("command:", " ".join([os.path.basename(sys.executable)] + sys.argv))
    print(f"seed: {a.seed}  bootstrap: {a.bootstrap}  latent dim: {DIM}  train: {TRAIN[0]} utt / {TRAIN[1]} spk"
          f"  validation: {VALIDATION[0]} utt / {VALIDATION[1]} spk  (synthetic stand-in embeddings)")
    print("views per fold: " + ", ".join(f"{v} [{s.start}:{s.stop}]" for v, s in VIEWS.items()))
    head = (f"{'test utt':>9} {'test spk':>8} {'target':>8} {'non-target':>10} {'data s':>7} {'trials s':>8}"
            f" {'eval s':>8} {'total s':>8} {'peak RSS MiB':>12}  origin: utility WF1 / worst EER")
    print(head)
    print("-" * len(head))
    rows = []
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": os.environ.get("TF_CPP_MIN_LOG_LEVEL", "3")}
    for n in (int(s) for s in a.sizes.split(",")):
        cmd = [sys.executable, os.path.abspath(__file__), "--one", str(n), "--seed", str(a.seed),
               "--bootstrap", str(a.bootstrap)]
        out = subprocess.run(cmd, env=env, check=True, stdout=subprocess.PIPE, text=True).stdout
        r = json.loads(out.strip().splitlines()[-1])
        rows.append(r)
        print(f"{r['n']:>9} {r['speakers']:>8} {r['target']:>8} {r['nontarget']:>10} {r['t_data']:>7.1f}"
              f" {r['t_trials']:>8.2f} {r['t_eval']:>8.1f} {r['t_total']:>8.1f} {r['rss_kib'] / 1024:>12.0f}"
              f"  {r['origin']['wf1_utility']:.3f} / {r['origin']['eer_worst']:.3f}", flush=True)
    big = max(rows, key=lambda r: r["n"])
    peak = big["rss_kib"] * 1024
    print(f"peak RSS at {big['n']} test utterances: {peak / GIB:.2f} GiB -> "
          f"{'under' if peak < 2 * GIB else 'NOT under'} 2 GiB")


if __name__ == "__main__":
    main()
