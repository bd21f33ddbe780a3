"""Paper Figure 2: masking curves of LR-VAE against A-VAE, with the raw-feature anchor.

The latent is split into ``--mask_groups`` groups; step by step one more group is masked
(bottom-up to protect identity, top-down to protect emotion) and the downstream models are refit on
the masked training latents and scored on the test speakers. Nothing is selected from these
curves: they are a report. The raw features through the same downstream models give the dashed
horizontal reference line.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from tfvae.data import Corpus

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
    """Paper Fig. 2: mask one more group per step and refit the downstream models.

    ``protect identity`` masks bottom-up (from the identity end), ``protect emotion`` top-down.
    The downstream models default to the linear attackers (logistic regression, PCA/LDA + cosine):
    the curves need 2 x 2 x ``groups`` refits per fold, which the MLPs make ~10x slower; pass
    ``--curve_attackers mlp,mlp_embedding`` for the paper's MLPs. Rows with ``model="raw"`` are the
    standardised input features through the same models (no masking).
    """
    from tfvae.evaluate import EvalSplits, evaluate_view
    from tfvae.experiments import raw_corpus
    from tfvae.stream import materialize

    kw = {"emotion_attackers": (emotion_attacker,), "speaker_attackers": (speaker_attacker,), "seed": seed}
    rows = []
    for f, (res, corpus) in enumerate(zip(fold_results, corpora)):
        ev = EvalSplits(corpus, seed=seed, bootstrap=0)

        def row(model, protect, step, kept, z, ev=ev):
            r = evaluate_view(z, ev, **kw)
            return {"fold": f, "model": model, "protect": protect, "masked_groups": step, "kept_nodes": kept,
                    "emotion_wf1": r["emotion"]["attackers"][emotion_attacker]["test"]["wf1"],
                    "speaker_eer": r["speaker"]["attackers"][speaker_attacker]["test"]["eer"],
                    "chance_wf1": ev.chance["stratified"]}

        raw_c = raw_corpus(corpus, seed)  # streamed corpora: the attackers' training subsample
        raw = {k: materialize(raw_c.splits[k].features) for k in ("train", "validation", "test")}
        raw_row = row("raw", "none", 0, corpus.dim, raw, ev if raw_c is corpus else EvalSplits(raw_c, seed=seed,
                                                                                              bootstrap=0))
        rows += [{**raw_row, "protect": d} for d in ("identity", "emotion")]
        for model_key, direction in (("lrvae", "identity"), ("lrvae", "emotion"),
                                     ("a-vae-identity", "identity"), ("a-vae-emotion", "emotion")):
            lat = {k: res[model_key]["outputs"][k]["latent"] for k in ("train", "validation", "test")}
            for step in range(groups):  # 0 .. groups-1 groups masked (all groups masked leaves nothing)
                keep = masking_keep(lat["train"].shape[1], groups, step, direction)
                rows.append(row("lrvae" if model_key == "lrvae" else "a-vae", direction, step, int(keep.sum()),
                                {k: v[:, keep] for k, v in lat.items()}))
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
            raw = [x[metric] for x in rows if x["model"] == "raw" and x["protect"] == protect]
            if raw:
                ax.axhline(100 * np.mean(raw), color="grey", ls=":", label="raw features")
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




#: Trade-off axes per view: (utility metric, leakage metric, axis labels).
TRADEOFF_VIEWS = {
    "identity": ("PP-SER (identity-free)", "emotion WF1 (%)", "speaker leakage: 50 - EER (points)"),
    "emotion": ("PP-SV (emotionless)", "SV utility: 50 - EER (points)", "emotion leakage: WF1 - chance (points)"),
}


def tradeoff_points(rows: list[dict], model: str, protect: str) -> np.ndarray:
    """Fold-mean (utility, leakage) points of one model's masking curve, in points (higher utility
    and lower leakage are better); ``protect="identity"`` is the PP-SER trade-off, ``"emotion"`` PP-SV."""
    sel = [r for r in rows if r["model"] == model and r["protect"] == protect]
    pts = []
    for step in sorted({r["masked_groups"] for r in sel}):
        at = [r for r in sel if r["masked_groups"] == step]
        emo = 100 * np.mean([r["emotion_wf1"] for r in at])
        spk = 100 * (0.5 - np.mean([r["speaker_eer"] for r in at]))
        chance = 100 * np.mean([r.get("chance_wf1", 0.0) for r in at])
        pts.append((emo, spk) if protect == "identity" else (spk, max(emo - chance, 0.0)))
    return np.asarray(pts, float).reshape(-1, 2)


def dominance(better: np.ndarray, other: np.ndarray, tolerance: float = 1.0) -> float:
    """Fraction of ``other``'s trade-off points that some point of ``better`` matches or beats
    (utility >= u - tolerance and leakage <= l + tolerance, in points): 1.0 means the ``better``
    curve lies on or above the other everywhere."""
    if not len(other):
        return float("nan")
    ok = [np.any((better[:, 0] >= u - tolerance) & (better[:, 1] <= l + tolerance)) for u, l in other]
    return float(np.mean(ok))


def plot_tradeoff(rows: list[dict], path: Path, title: str, table_points: dict | None = None) -> dict:
    """The privacy-utility trade-off of both views: x utility, y worst-case leakage, one curve per
    method (its masking sweep, fast attackers), the raw features as a point and, from Table 1,
    each column's point with the full attacker suite (worst case). Returns the dominance of the
    LR-VAE curve over A-VAE's per view (:func:`dominance`)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(12, 5))
    dom = {}
    for ax, (protect, (name, xlab, ylab)) in zip(axes, TRADEOFF_VIEWS.items()):
        curves = {m: tradeoff_points(rows, m, protect) for m in ("lrvae", "a-vae")}
        for m, style in (("lrvae", "o-"), ("a-vae", "s--")):
            if len(curves[m]):
                ax.plot(curves[m][:, 0], curves[m][:, 1], style, ms=3, alpha=0.8,
                        label=f"{'LR-VAE' if m == 'lrvae' else 'A-VAE'} masking sweep (fast attackers)")
        raw = tradeoff_points(rows, "raw", protect)
        if len(raw):
            ax.plot(raw[:, 0], raw[:, 1], "k*", ms=12, label="raw features (fast attackers)")
        for label, (u, lk) in (table_points or {}).get(protect, {}).items():
            kind = "validation-chosen model" if label == "Raw features" else "worst case"
            ax.plot([u], [lk], "D", ms=7, label=f"{label} (Table 1, {kind})")
        dom[protect] = dominance(curves["lrvae"], curves["a-vae"])
        ax.set_xlabel(f"{xlab} - higher is better")
        ax.set_ylabel(f"{ylab} - lower is better")
        ax.set_title(f"{name}: LR-VAE covers {100 * dom[protect]:.0f} % of A-VAE's points")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return dom


def table_tradeoff_points(table1_doc: dict, chance: float) -> dict:
    """Per view, Table 1's (utility, worst-case leakage) points in the axes of :func:`plot_tradeoff`."""
    out = {"identity": {}, "emotion": {}}
    for label, col in table1_doc.get("columns", {}).items():
        emo, eer = 100 * col["emo"]["mean"], 100 * (0.5 - col["id"]["mean"])
        if label == "Raw features":
            out["identity"][label] = (emo, eer)
            out["emotion"][label] = (eer, max(emo - 100 * chance, 0.0))
        elif "PP-SER" in label:
            out["identity"][label] = (emo, eer)
        elif "PP-SV" in label:
            out["emotion"][label] = (eer, max(emo - 100 * chance, 0.0))
    return out
