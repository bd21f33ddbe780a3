"""``python -m tfvae.experiments table1|masking``: the paper's Table 1 and Figure 2 on any dataset.

Privacy protocol (paper section 3.1): the attacker holds the encoded *training* set and its
labels and attacks unseen test speakers. For every representation we report

- SER: emotion weighted F1 (and UAR) of downstream models fit on the (masked) training
  representation -- the paper's MLP is the utility number, every attacker in
  :data:`tfvae.evaluate.EMOTION_ATTACKERS` is reported, and privacy cells use the strongest;
- SV: EER (and minDCF at p_target 0.01, trial counts) of cosine-scored trials over all test
  pairs, embeddings from each attacker in :data:`tfvae.evaluate.SPEAKER_ATTACKERS` (the paper's
  speaker-ID MLP hidden layer is the utility number; privacy cells use the strongest).

Small corpora use speaker-disjoint k-fold cross-validation (:mod:`tfvae.folds`; RAVDESS: 6
folds of 4 actors, 4 validation actors inside each training part); the checkpoint and the
mask cuts of each fold are chosen on its validation speakers only. Larger corpora use their
own train/validation/test splits (``--folds 0``).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import re
import sys
import time
from pathlib import Path

import numpy as np

from tfvae.config import ConfigError, TrainConfig
from tfvae.data import Corpus, DataError, Split
from tfvae.features import FEATURE_SETS, FeatureError

#: Table 1 columns: (method, protect, view) -> column label.
COLUMNS = [
    ("dnn", None, "origin", "DNN origin"),
    ("vae", None, "origin", "VAE origin"),
    ("a-vae", "identity", "identity_free", "A-VAE PP-SER"),
    ("a-vae", "emotion", "emotion_free", "A-VAE PP-SV"),
    ("lrvae-noadv", None, "origin", "LR-VAE (w/o adv) origin"),
    ("lrvae-noadv", None, "identity_free", "LR-VAE (w/o adv) PP-SER"),
    ("lrvae-noadv", None, "emotion_free", "LR-VAE (w/o adv) PP-SV"),
    ("lrvae", None, "origin", "LR-VAE origin"),
    ("lrvae", None, "identity_free", "LR-VAE PP-SER"),
    ("lrvae", None, "emotion_free", "LR-VAE PP-SV"),
]
MODELS = [("dnn", None), ("vae", None), ("a-vae", "identity"), ("a-vae", "emotion"),
          ("lrvae-noadv", None), ("lrvae", None)]


# ----------------------------------------------------------------------------------- folds
def _natural_key(s: str):
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", s)]


def pooled(corpus: Corpus) -> Split:
    """All splits of ``corpus`` in one."""
    sp = [corpus.splits[s] for s in ("train", "validation", "test")]
    return Split(np.concatenate([s.features for s in sp]), np.concatenate([s.emotion for s in sp]),
                 np.concatenate([s.speaker for s in sp]), np.concatenate([s.utterance_id for s in sp]))


def fold_corpus(corpus: Corpus, pool: Split, fold) -> Corpus:
    """A corpus whose train/validation/test splits are the fold's speaker groups."""
    splits = {}
    for name, speakers in (("train", fold.train), ("validation", fold.validation), ("test", fold.test)):
        keep = np.isin(pool.speaker, np.asarray(speakers))
        splits[name] = Split(pool.features[keep], pool.emotion[keep], pool.speaker[keep], pool.utterance_id[keep])
    return Corpus(name=f"{corpus.name}#fold{fold.index}", feature_set=corpus.feature_set,
                  emotion_names=corpus.emotion_names, splits=splits, feature_names=corpus.feature_names,
                  info=corpus.info)


def make_folds(corpus: Corpus, k: int, n_validation: int, seed: int):
    from tfvae.folds import speaker_folds

    pool = pooled(corpus)
    speakers = sorted(set(pool.speaker.tolist()), key=_natural_key)
    return pool, speaker_folds(speakers, k, n_validation, seed=seed, order=speakers)


# ----------------------------------------------------------------------------------- one fold
def evaluate_representations(model, outputs, corpus: Corpus, masks: dict, views, seed: int) -> dict:
    """Utility and every attacker for each requested view of one trained model."""
    from sklearn.metrics import balanced_accuracy_score, f1_score

    from tfvae.evaluate import emotion_attacks, speaker_attacks
    from tfvae.metrics import cosine_trials, eer, min_dcf

    tr, te = corpus.splits["train"], corpus.splits["test"]
    res = {}
    for view in views:
        if model.method == "dnn":  # the paper's DNN baseline: its own classifiers
            out = outputs["test"]
            pred = np.argmax(out["emotion_probabilities"], axis=1)
            scores, labels = cosine_trials(out["speaker_embedding"], te.speaker, seed=seed)
            res[view] = {
                "emotion": {"model": {"wf1": float(f1_score(te.emotion, pred, average="weighted")),
                                      "uar": float(balanced_accuracy_score(te.emotion, pred))}},
                "speaker": {"model": {"eer": eer(scores, labels), "min_dcf": min_dcf(scores, labels),
                                      "target_trials": int(labels.sum()),
                                      "nontarget_trials": int(len(labels) - labels.sum())}}}
            continue
        keep = np.ones(outputs["train"]["latent"].shape[1], bool) if view == "origin" else masks[view] > 0
        z_tr, z_te = outputs["train"]["latent"][:, keep], outputs["test"]["latent"][:, keep]
        res[view] = {"nodes": int(keep.sum()),
                     "emotion": emotion_attacks(z_tr, tr.emotion, z_te, te.emotion, seed=seed),
                     "speaker": speaker_attacks(z_tr, tr.speaker, z_te, te.speaker, seed=seed)}
    return res


def run_fold(cfg: TrainConfig, corpus: Corpus, strategy, run_root: Path, models=MODELS) -> dict:
    """Train every model of Table 1 on one fold and evaluate its representations on test."""
    from tfvae.train import choose_masks, encode_splits, fit_model

    out = {}
    for method, protect in models:
        mcfg = dataclasses.replace(cfg, method=method, protect=protect or "both", verbose=0)
        key = method + (f"-{protect}" if protect else "")
        model, _, best_epoch = fit_model(mcfg, corpus, strategy, protect, run_root / key, announce=False)
        outputs = encode_splits(model, corpus)
        cuts, masks = choose_masks(mcfg, model, outputs, corpus, protect)
        views = [v for (m, p, v, _) in COLUMNS if m == method and p == protect]
        out[key] = {"best_epoch": best_epoch, "cuts": {k: v for k, v in cuts.items() if k.endswith("_cut")},
                    "views": evaluate_representations(model, outputs, corpus, masks, views, cfg.seed),
                    "masks": masks, "outputs": outputs}
    return out


# ----------------------------------------------------------------------------------- Table 1
def cell(fold_result: dict, method: str, protect: str | None, view: str, chance_wf1: float) -> dict:
    """The two Table 1 numbers of a column for one fold, plus the attacker used for each."""
    from tfvae.evaluate import strongest

    r = fold_result[method + (f"-{protect}" if protect else "")]["views"][view]
    if method == "dnn":
        return {"emo": r["emotion"]["model"]["wf1"], "id": r["speaker"]["model"]["eer"],
                "emo_by": "dnn classifier", "id_by": "dnn speaker embedding"}
    pp_ser, pp_sv = view == "identity_free", view == "emotion_free"
    if pp_sv:  # emotion is the protected attribute: the strongest emotion attacker
        emo_by, emo = strongest(r["emotion"], "wf1", chance=chance_wf1)
    else:
        emo_by, emo = "mlp", r["emotion"]["mlp"]
    if pp_ser:  # identity is protected: the strongest speaker attacker (EER furthest from 0.5)
        id_by, idr = strongest(r["speaker"], "eer", chance=0.5)
    else:
        id_by, idr = "mlp_embedding", r["speaker"]["mlp_embedding"]
    return {"emo": emo["wf1"], "id": idr["eer"], "emo_by": emo_by, "id_by": id_by}


def table1(folds: list[dict], chance: list[dict]) -> dict:
    cols = {}
    for method, protect, view, label in COLUMNS:
        if method + (f"-{protect}" if protect else "") not in folds[0]:
            continue
        per = [cell(f, method, protect, view, ch["stratified"]) for f, ch in zip(folds, chance)]
        cols[label] = {"emo_mean": float(np.mean([c["emo"] for c in per])), "emo_std": float(np.std([c["emo"] for c in per])),
                       "id_mean": float(np.mean([c["id"] for c in per])), "id_std": float(np.std([c["id"] for c in per])),
                       "per_fold": per}
    return cols


def goals(cols: dict, chance: list[dict]) -> list[dict]:
    """The project's RAVDESS goals, checked on the fold means (differences in points)."""
    if not {"DNN origin", "LR-VAE PP-SER", "LR-VAE PP-SV"} <= set(cols):
        return []
    dnn, pps, ppv = cols["DNN origin"], cols["LR-VAE PP-SER"], cols["LR-VAE PP-SV"]
    strat = float(np.mean([c["stratified"] for c in chance]))
    major = float(np.mean([c["majority"] for c in chance]))
    d_ser = 100 * (pps["emo_mean"] - dnn["emo_mean"])
    d_sv = 100 * (ppv["id_mean"] - dnn["id_mean"])
    d_chance = 100 * (ppv["emo_mean"] - strat)
    return [
        {"goal": "LR-VAE PP-SER emotion WF1 within 2 points of DNN origin",
         "measured": f"{d_ser:+.2f} points", "met": d_ser >= -2.0},
        {"goal": "LR-VAE PP-SER speaker EER >= 45 % (strongest attacker)",
         "measured": f"{100 * pps['id_mean']:.2f} %", "met": pps["id_mean"] >= 0.45},
        {"goal": "LR-VAE PP-SV EER within 2 points of DNN origin",
         "measured": f"{d_sv:+.2f} points", "met": d_sv <= 2.0},
        {"goal": "LR-VAE PP-SV emotion WF1 within 3 points of chance (strongest attacker)",
         "measured": f"{d_chance:+.2f} points from stratified chance {100 * strat:.2f} "
                     f"(majority-class WF1 {100 * major:.2f})", "met": abs(d_chance) <= 3.0},
    ]


def markdown_table1(name: str, cols: dict, goal_rows: list[dict], meta: dict, chance: list[dict]) -> str:
    labels = [c[3] for c in COLUMNS if c[3] in cols]
    lines = [f"# Table 1 on {name}", "",
             f"Command: `{meta['command']}` (seed {meta['seed']}); {meta['protocol']}; wall time "
             f"{meta['wall_seconds']:.0f} s on {meta['cores']} cores.", "",
             "Emotion: weighted F1 (%); identity: speaker-verification EER (%); mean +- std over folds. "
             "Utility cells use the paper's MLP downstream models; privacy cells (emo under PP-SV, "
             "id under PP-SER) use the strongest attacker.", "",
             "| | " + " | ".join(labels) + " |", "|---|" + "---|" * len(labels)]
    for key in ("emo", "id"):
        cells = [f"{100 * cols[lab][key + '_mean']:.2f} +- {100 * cols[lab][key + '_std']:.2f}" for lab in labels]
        lines.append(f"| {key} | " + " | ".join(cells) + " |")
    strat = 100 * np.mean([c["stratified"] for c in chance])
    major = 100 * np.mean([c["majority"] for c in chance])
    lines += ["", f"Chance emotion WF1 of the test folds: stratified {strat:.2f}, majority class {major:.2f}."]
    if goal_rows:
        lines += ["", "## Goals", "", "| goal | measured | met |", "|---|---|---|"]
        lines += [f"| {g['goal']} | {g['measured']} | {'yes' if g['met'] else 'no'} |" for g in goal_rows]
    return "\n".join(lines) + "\n"


# ----------------------------------------------------------------------------------- Figure 2
def masking_keep(n: int, groups: int, step: int, protect: str) -> np.ndarray:
    """Nodes kept after masking ``step`` of ``groups`` equal groups (paper Fig. 2).

    ``protect="identity"`` masks bottom-up (from the identity end, node N-1);
    ``protect="emotion"`` masks top-down (from the emotion end, node 0).
    """
    if n % groups or not 0 <= step <= groups:
        raise ValueError(f"cannot mask {step} of {groups} groups of a {n}-node latent")
    keep = np.ones(n, bool)
    size = n // groups
    if step and protect == "identity":
        keep[n - step * size:] = False
    elif step and protect == "emotion":
        keep[: step * size] = False
    elif protect not in ("identity", "emotion"):
        raise ValueError(f"protect must be 'identity' or 'emotion', got {protect!r}")
    return keep


def masking_curves(fold_results: list[dict], corpora: list[Corpus], groups: int, seed: int,
                   emotion_attacker: str = "logreg", speaker_attacker: str = "lda_cosine") -> list[dict]:
    """Paper Fig. 2: mask one more group per step and retrain the downstream models.

    ``protect identity`` masks bottom-up (from the identity end), ``protect emotion`` top-down.
    The downstream models default to the linear attackers (logistic regression, LDA + cosine):
    the curves need 2 x 2 x ``groups`` refits per fold, which the MLPs make ~10x slower; pass
    ``--curve_attackers mlp,mlp_embedding`` for the paper's MLPs.
    """
    from tfvae.evaluate import emotion_attacks, speaker_attacks

    rows = []
    for f, (res, corpus) in enumerate(zip(fold_results, corpora)):
        tr, te = corpus.splits["train"], corpus.splits["test"]
        for model_key, direction in (("lrvae", "identity"), ("lrvae", "emotion"),
                                     ("a-vae-identity", "identity"), ("a-vae-emotion", "emotion")):
            z_tr_full, z_te_full = res[model_key]["outputs"]["train"]["latent"], res[model_key]["outputs"]["test"]["latent"]
            for step in range(groups):  # 0 .. groups-1 groups masked (all groups masked leaves nothing)
                keep = masking_keep(z_tr_full.shape[1], groups, step, direction)
                z_tr, z_te = z_tr_full[:, keep], z_te_full[:, keep]
                emo = emotion_attacks(z_tr, tr.emotion, z_te, te.emotion, seed=seed, attackers=(emotion_attacker,))
                spk = speaker_attacks(z_tr, tr.speaker, z_te, te.speaker, seed=seed, attackers=(speaker_attacker,))
                rows.append({"fold": f, "model": "lrvae" if model_key == "lrvae" else "a-vae", "protect": direction,
                             "masked_groups": step, "kept_nodes": int(keep.sum()),
                             "emotion_wf1": emo[emotion_attacker]["wf1"], "speaker_eer": spk[speaker_attacker]["eer"]})
    return rows


def plot_masking(rows: list[dict], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, 2, figsize=(10, 7), sharex=True)
    for r, protect in enumerate(("identity", "emotion")):
        for c, (metric, label) in enumerate((("emotion_wf1", "emotion WF1 (%)"), ("speaker_eer", "speaker EER (%)"))):
            ax = axes[r, c]
            for model, style in (("lrvae", "o-"), ("a-vae", "s--")):
                sel = [x for x in rows if x["model"] == model and x["protect"] == protect]
                steps = sorted({x["masked_groups"] for x in sel})
                mean = [100 * np.mean([x[metric] for x in sel if x["masked_groups"] == s]) for s in steps]
                ax.plot(steps, mean, style, ms=3, label=model.upper().replace("LRVAE", "LR-VAE"))
            ax.set_ylabel(label)
            ax.set_title(f"protect {protect} ({'bottom-up' if protect == 'identity' else 'top-down'} masking)")
            ax.grid(alpha=0.3)
            ax.legend()
    for ax in axes[1]:
        ax.set_xlabel("masked groups")
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


# ----------------------------------------------------------------------------------- CLI
def parser() -> argparse.ArgumentParser:
    base = TrainConfig.parser(prog="python -m tfvae.experiments", add_help=False)
    p = argparse.ArgumentParser(prog="python -m tfvae.experiments", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="experiment", required=True)
    for name, help_ in (("table1", "paper Table 1: all five methods, origin / PP-SER / PP-SV"),
                        ("masking", "paper Figure 2: masking curves of LR-VAE vs A-VAE")):
        sp = sub.add_parser(name, help=help_, parents=[base],
                            formatter_class=argparse.ArgumentDefaultsHelpFormatter)
        sp.add_argument("--folds", type=int, default=None,
                        help="speaker-disjoint folds (default: 6 for ravdess, else 0 = the dataset's own splits)")
        sp.add_argument("--validation_speakers", type=int, default=None,
                        help="validation speakers inside each fold's training part (default: one fold's worth)")
        sp.add_argument("--reports_dir", default="reports", help="reports go to <reports_dir>/<dataset>/")
        sp.add_argument("--curve_attackers", default="logreg,lda_cosine",
                        help="masking only: emotion attacker,speaker attacker refit at every masking step")
        sp.add_argument("--methods", default=None,
                        help="table1 only: comma-separated subset of dnn,vae,a-vae,lrvae-noadv,lrvae "
                             "(default all; e.g. dnn,lrvae for quick tuning runs)")
    return p


def _split_args(ns) -> tuple[TrainConfig, dict]:
    extra = {k: getattr(ns, k) for k in ("experiment", "folds", "validation_speakers", "reports_dir", "methods",
                                         "curve_attackers")}
    d = {k: v for k, v in vars(ns).items() if k not in extra}
    return TrainConfig.from_dict(d), extra


def main(argv=None) -> int:
    ns = parser().parse_args(argv)
    cfg, extra = _split_args(ns)
    t0 = time.time()
    try:
        cfg.validate(feature_sets=list(FEATURE_SETS))
        report = run(cfg, **extra, argv=argv if argv is not None else sys.argv[1:])
    except (ConfigError, DataError, FeatureError) as e:
        print(f"tfvae.experiments: error: {e}", file=sys.stderr)
        return 2
    print(f"[tfvae] {extra['experiment']} done in {time.time() - t0:.0f} s; reports in {report}")
    return 0


def run(cfg: TrainConfig, experiment: str, folds: int | None, validation_speakers: int | None,
        reports_dir: str, argv, methods: str | None = None, curve_attackers: str = "logreg,lda_cosine") -> Path:
    import os

    from tqdm.auto import tqdm

    from tfvae.data import load_corpus, validate_corpus
    from tfvae.evaluate import chance_wf1
    from tfvae.features import default_workers, feature_dim
    from tfvae.distribute import make_strategy

    t0 = time.time()
    if cfg.strategy == "multiworker":
        raise ConfigError("--strategy multiworker: the experiments run on one machine; use default or mirrored")
    corpus = load_corpus(cfg.dataset, cfg.feature_set, data_dir=cfg.data_dir, manual_dir=cfg.manual_dir,
                         skip_bad_items=cfg.skip_bad_items)
    validate_corpus(corpus, expected_dim=feature_dim(cfg.feature_set))
    ds_name = corpus.name.split("/")[0] if not cfg.dataset.endswith(".csv") else Path(cfg.dataset).stem
    if folds is None:
        folds = 6 if ds_name == "ravdess" else 0
    strategy = make_strategy(cfg.strategy)
    if folds:
        pool, fold_list = make_folds(corpus, folds, validation_speakers or
                                     len(set(pooled(corpus).speaker.tolist())) // folds, cfg.seed)
        corpora = [fold_corpus(corpus, pool, f) for f in fold_list]
        protocol = f"{folds}-fold speaker-disjoint cross-validation, validation speakers inside each training part"
    else:
        corpora = [corpus]
        protocol = "the dataset's own speaker-disjoint train/validation/test splits"
    for c in corpora:
        validate_corpus(c)
    out_dir = Path(reports_dir) / ds_name
    out_dir.mkdir(parents=True, exist_ok=True)
    run_root = Path(cfg.output_dir) / "experiments" / ds_name
    models = MODELS if experiment == "table1" else [("lrvae", None), ("a-vae", "identity"), ("a-vae", "emotion")]
    if methods:
        wanted = [m.strip() for m in methods.split(",") if m.strip()]
        unknown = set(wanted) - {m for m, _ in MODELS}
        if unknown:
            raise ConfigError(f"--methods: unknown method(s) {sorted(unknown)}; choose from dnn, vae, a-vae, "
                              "lrvae-noadv, lrvae")
        models = [(m, p) for m, p in models if m in wanted]
    results = []
    for i, c in enumerate(tqdm(corpora, desc=f"{experiment} folds", unit="fold")):
        results.append(run_fold(cfg, c, strategy, run_root / f"fold{i}", models=models))
    chance = [chance_wf1(c.splits["test"].emotion) for c in corpora]
    meta = {"command": "python -m tfvae.experiments " + " ".join(argv), "seed": cfg.seed, "protocol": protocol,
            "cores": default_workers(), "dataset": corpus.name, "feature_set": cfg.feature_set,
            "config": dataclasses.asdict(cfg), "host_cpu_count": os.cpu_count()}
    if experiment == "table1":
        cols = table1(results, chance)
        goal_rows = goals(cols, chance)
        meta["wall_seconds"] = time.time() - t0
        detail = [{k: {"best_epoch": v["best_epoch"], "cuts": v["cuts"], "views": v["views"]}
                   for k, v in r.items()} for r in results]
        (out_dir / "table1.json").write_text(json.dumps(
            {"meta": meta, "columns": cols, "goals": goal_rows, "chance": chance, "folds": detail},
            indent=2, default=float))
        (out_dir / "table1.md").write_text(markdown_table1(ds_name, cols, goal_rows, meta, chance))
        print((out_dir / "table1.md").read_text())
    else:
        emo_att, spk_att = (a.strip() for a in curve_attackers.split(","))
        rows = masking_curves(results, corpora, cfg.mask_groups, cfg.seed, emo_att, spk_att)
        meta["wall_seconds"] = time.time() - t0
        import csv

        with open(out_dir / "masking.csv", "w", newline="") as fh:
            w = csv.DictWriter(fh, fieldnames=list(rows[0]))
            w.writeheader()
            w.writerows(rows)
        (out_dir / "masking.json").write_text(json.dumps({"meta": meta}, indent=2, default=float))
        plot_masking(rows, out_dir / "masking.png",
                     f"{ds_name}: masking {cfg.mask_groups} groups ({protocol.split(',')[0]}, seed {cfg.seed}; "
                     f"downstream {emo_att} / {spk_att})")
    return out_dir


if __name__ == "__main__":
    sys.exit(main())
