"""Paper Table 1 from per-fold evaluations: cells, intervals, paired tests, goals, Markdown.

A column is a (method, view) pair. In each column the *utility* cells (emotion under origin and
PP-SER, identity under origin and PP-SV) use the downstream model chosen on the fold's validation
speakers (the paper's MLP is kept beside it), and the *privacy* cells (identity under PP-SER,
emotion under PP-SV) use the worst case over the attacker suite on the test speakers, counted only
above chance (:func:`tfvae.evaluate.privacy_cell`). ``Raw features`` is the standardised input
through the same suite, folds and trials: the anchor every representation is compared with.
"""

from __future__ import annotations

# before any import that loads TensorFlow: its C++ start-up logs off when run as a CLI (TFVAE_TF_LOG=1 keeps them)
from tfvae.quiet import quiet_main

quiet_main(__name__)

import json
from pathlib import Path

import numpy as np

from tfvae.evaluate import interval, privacy_cell, public

#: Table 1 columns: (method, protect, view, label). ``raw`` is the standardised input features.
COLUMNS = [
    ("raw", None, "origin", "Raw features"),
    ("dnn", None, "origin", "DNN origin"),
    ("vae", None, "origin", "VAE origin"),
    ("a-vae", "identity", "identity_free", "A-VAE PP-SER"),
    ("a-vae", "emotion", "emotion_free", "A-VAE PP-SV"),
    ("a-vae", "identity", "identity_free_leace", "A-VAE+LEACE PP-SER"),
    ("a-vae", "emotion", "emotion_free_leace", "A-VAE+LEACE PP-SV"),
    ("lrvae-noadv", None, "origin", "LR-VAE (w/o adv) origin"),
    ("lrvae-noadv", None, "identity_free", "LR-VAE (w/o adv) PP-SER"),
    ("lrvae-noadv", None, "emotion_free", "LR-VAE (w/o adv) PP-SV"),
    ("lrvae", None, "origin", "LR-VAE origin"),
    ("lrvae", None, "identity_free", "LR-VAE PP-SER"),
    ("lrvae", None, "emotion_free", "LR-VAE PP-SV"),
    ("lrvae", None, "identity_free_leace", "LR-VAE+LEACE PP-SER"),
    ("lrvae", None, "emotion_free_leace", "LR-VAE+LEACE PP-SV"),
]
#: Paired comparisons shown under the table: (column, reference column).
PAIRED = [("LR-VAE PP-SER", "A-VAE PP-SER"), ("LR-VAE PP-SV", "A-VAE PP-SV"),
          ("LR-VAE origin", "Raw features"), ("LR-VAE PP-SER", "Raw features"), ("LR-VAE PP-SV", "Raw features")]
TASK = {"emo": ("emotion", "wf1"), "id": ("speaker", "eer")}


def model_key(method: str, protect: str | None) -> str:
    return method + (f"-{protect}" if protect else "")


def is_privacy(view: str, key: str) -> bool:
    """Emotion is protected by the emotion-free views, identity by the identity-free views (with or
    without LEACE)."""
    return (view.startswith("emotion_free") and key == "emo") or (view.startswith("identity_free") and key == "id")


def fold_cells(view_result: dict, view: str, chance_wf1: float) -> dict:
    """The two cells of one column in one fold (with replicates and per-speaker values)."""
    out = {}
    for key, (task, metric) in TASK.items():
        r = view_result[task]
        if is_privacy(view, key):
            c = privacy_cell(r["worst"], task, chance_wf1 if task == "emotion" else 0.5)
            c["_per_speaker"] = np.maximum(c["_per_speaker"], chance_wf1) if task == "emotion" \
                else np.minimum(c["_per_speaker"], 0.5)
            out[key] = {**c, "role": "privacy (worst case on test, above chance)"}
        else:
            out[key] = {**r["utility"], "role": "utility (chosen on validation)",
                        "paper_mlp": r["paper"][metric] if "paper" in r else None}
    return out


def table1(folds: list[dict], chance: list[dict]) -> dict:
    """Columns of Table 1 over ``folds`` (each ``{model_key: {"views": {view: evaluation}}}``).

    Per cell: mean and std over folds, a 95 % interval of the fold mean from the speaker-level
    bootstrap (test speakers resampled within each fold), per-fold values and attackers.
    """
    cols = {}
    for method, protect, view, label in COLUMNS:
        key = model_key(method, protect)
        if key not in folds[0] or view not in folds[0][key]["views"]:
            continue
        per = [fold_cells(f[key]["views"][view], view, ch["stratified"]) for f, ch in zip(folds, chance)]
        col = {"method": method, "protect": protect, "view": view}
        for k, (_, metric) in TASK.items():
            vals = np.array([p[k][metric] for p in per])
            boots = [p[k]["_boot"] for p in per]
            n = min(len(b) for b in boots)
            col[k] = {"metric": metric, "mean": float(vals.mean()), "std": float(vals.std()),
                      "ci95": interval(np.mean([b[:n] for b in boots], axis=0)) if n else [float("nan")] * 2,
                      "per_fold": [public(p[k]) for p in per],
                      "by": sorted({p[k]["by"] for p in per}), "role": per[0][k]["role"],
                      "_per_speaker": np.concatenate([p[k]["_per_speaker"] for p in per])}
            mlp = [p[k].get("paper_mlp") for p in per]
            if all(m is not None for m in mlp):
                col[k]["paper_mlp_mean"] = float(np.mean(mlp))
        cols[label] = col
    return cols


def paired_tests(cols: dict) -> list[dict]:
    """Wilcoxon signed-rank tests over test speakers (pooled over folds) for :data:`PAIRED`."""
    from scipy.stats import wilcoxon

    rows = []
    for a, b in PAIRED:
        if a not in cols or b not in cols:
            continue
        for k, (_, metric) in TASK.items():
            x, y = cols[a][k]["_per_speaker"], cols[b][k]["_per_speaker"]
            ok = np.isfinite(x) & np.isfinite(y)
            d = x[ok] - y[ok]
            p = float("nan")
            if ok.sum() >= 2 and np.any(d != 0):
                p = float(wilcoxon(x[ok], y[ok]).pvalue)
            rows.append({"column": a, "reference": b, "cell": k, "metric": metric,
                         "mean_difference": float(cols[a][k]["mean"] - cols[b][k]["mean"]),
                         "speakers": int(ok.sum()), "wilcoxon_p": p})
    return rows


def goals(cols: dict, chance: list[dict]) -> list[dict]:
    """The project's goals on the fold means, against the raw-feature anchor and the DNN."""
    need = {"Raw features", "LR-VAE origin", "LR-VAE PP-SER", "LR-VAE PP-SV"}
    if not need <= set(cols):
        return []
    raw, org = cols["Raw features"], cols["LR-VAE origin"]
    strat = float(np.mean([c["stratified"] for c in chance]))
    pt = lambda v: 100 * v  # noqa: E731
    rows = [
        ("LR-VAE origin emotion WF1 >= raw - 1 point", pt(org["emo"]["mean"] - raw["emo"]["mean"]), lambda d: d >= -1),
        ("LR-VAE origin SV EER <= raw + 1 point", pt(org["id"]["mean"] - raw["id"]["mean"]), lambda d: d <= 1),
    ]
    for name in ("LR-VAE", "LR-VAE+LEACE"):  # the masked views, then the same with post-hoc erasure
        if f"{name} PP-SER" not in cols or f"{name} PP-SV" not in cols:
            continue
        pps, ppv = cols[f"{name} PP-SER"], cols[f"{name} PP-SV"]
        rows += [
            (f"{name} PP-SER emotion WF1 >= raw - 2 points", pt(pps["emo"]["mean"] - raw["emo"]["mean"]),
             lambda d: d >= -2),
            (f"{name} PP-SER SV EER (worst-case attacker) >= 45 %", pt(pps["id"]["mean"]), lambda v: v >= 45),
            (f"{name} PP-SV SV EER <= raw + 2 points", pt(ppv["id"]["mean"] - raw["id"]["mean"]), lambda d: d <= 2),
            (f"{name} PP-SV emotion WF1 (worst-case attacker) <= chance + 3 points", pt(ppv["emo"]["mean"] - strat),
             lambda d: d <= 3),
        ]
        if "DNN origin" in cols:
            dnn = cols["DNN origin"]
            rows += [(f"{name} PP-SER emotion WF1 >= DNN - 2 points", pt(pps["emo"]["mean"] - dnn["emo"]["mean"]),
                      lambda d: d >= -2),
                     (f"{name} PP-SV SV EER <= DNN + 2 points", pt(ppv["id"]["mean"] - dnn["id"]["mean"]),
                      lambda d: d <= 2)]
    out = [{"goal": g, "measured": round(float(v), 2), "unit": "points" if "%" not in g else "%", "met": bool(ok(v))}
           for g, v, ok in rows]
    for scope, labels in (("LR-VAE", [c for c in ("LR-VAE origin", "LR-VAE PP-SER", "LR-VAE PP-SV") if c in cols]),
                          ("all columns", list(cols))):
        worst_std = max(100 * cols[c][k]["std"] for c in labels for k in ("emo", "id")
                        if not is_privacy(cols[c]["view"], k))
        out.append({"goal": f"{scope}: fold std of every utility cell <= 5 points", "measured": round(worst_std, 2),
                    "unit": "points", "met": bool(worst_std <= 5)})
    return out


def rerender(path: str | Path) -> str:
    """Recompute the goals of a written ``table1.json`` from its columns and rewrite it and its
    ``table1.md`` (after a change of the goal definitions; the measurements are not touched)."""
    path = Path(path)
    doc = json.loads(path.read_text())
    doc["goals"] = goals(doc["columns"], doc["chance"])
    path.write_text(json.dumps(doc, indent=2, default=float))
    md = markdown(path.parent.name, doc["columns"], doc["paired_tests"], doc["goals"], doc["meta"], doc["chance"])
    path.with_suffix(".md").write_text(md)
    return md



def _cell(c: dict) -> str:
    lo, hi = c["ci95"]
    return f"{100 * c['mean']:.2f} ± {100 * c['std']:.2f} [{100 * lo:.1f}, {100 * hi:.1f}]"


def markdown(name: str, cols: dict, tests: list[dict], goal_rows: list[dict], meta: dict, chance: list[dict]) -> str:
    lines = [f"# Table 1 on {name}", "",
             f"Command: `{meta['command']}` (seed {meta['seed']}); {meta['protocol']}; settings: {meta['settings']}; "
             f"wall time {meta['wall_seconds']:.0f} s on {meta['cores']} cores.", "",
             "Emotion: weighted F1 (%); identity: speaker-verification EER (%). Each cell: mean ± std over folds "
             "[95 % speaker-level bootstrap interval of the mean]. **Utility** cells use the downstream model "
             "chosen on each fold's validation speakers (the paper's MLP in its own column); **privacy** cells "
             "(emo under PP-SV, id under PP-SER, in bold) use the worst case over the attacker suite on the test "
             "speakers, counted only above chance.", "",
             "| column | emo WF1 | emo by | id EER | id by | paper MLP emo | paper MLP id |",
             "|---|---|---|---|---|---|---|"]
    for label, c in cols.items():
        cells = []
        for k in ("emo", "id"):
            txt = _cell(c[k])
            cells += [f"**{txt}**" if is_privacy(c["view"], k) else txt, ", ".join(c[k]["by"])]
        mlp = [f"{100 * c[k]['paper_mlp_mean']:.2f}" if "paper_mlp_mean" in c[k] else "" for k in ("emo", "id")]
        lines.append(f"| {label} | " + " | ".join(cells + mlp) + " |")
    if meta.get("subsampling"):
        sub = meta["subsampling"]
        lines += ["", f"Subsampled at this size ({sub.get('training_rows', '?')} training rows, "
                      f"{sub.get('training_speakers', '?')} training speakers): "
                  + "; ".join(f"{k.replace('_', ' ')}: {v}" for k, v in sub.items()
                              if k not in ("training_rows", "training_speakers")) + "."]
    strat = 100 * np.mean([c["stratified"] for c in chance])
    major = 100 * np.mean([c["majority"] for c in chance])
    lines += ["", f"Chance emotion WF1 of the test folds: stratified {strat:.2f}, majority class {major:.2f}; "
                  "chance EER 50.00."]
    if tests:
        lines += ["", "## Paired tests (Wilcoxon signed-rank over test speakers, all folds)", "",
                  "| column | reference | cell | mean difference (points) | speakers | p |", "|---|---|---|---|---|---|"]
        lines += [f"| {t['column']} | {t['reference']} | {t['cell']} | {100 * t['mean_difference']:+.2f} | "
                  f"{t['speakers']} | {t['wilcoxon_p']:.3g} |" for t in tests]
    if goal_rows:
        lines += ["", "## Goals (fold means)", "", "| goal | measured | met |", "|---|---|---|"]
        lines += [f"| {g['goal']} | {g['measured']:+.2f} {g['unit']} | {'yes' if g['met'] else 'no'} |"
                  for g in goal_rows]
    if meta.get("tuning"):
        lines += ["", "## Settings per fold (nested tuning on validation speakers)", "",
                  "| fold | " + " | ".join(meta["tuning"][0]) + " |", "|---|" + "---|" * len(meta["tuning"][0])]
        for f, choice in enumerate(meta["tuning"]):
            lines.append(f"| {f} | " + " | ".join(
                ", ".join(f"{k}={v}" for k, v in choice[m].items()) or "defaults" for m in choice) + " |")
    return "\n".join(lines) + "\n"


#: Columns of the per-feature table (the paper's Table 1 layout: one block of rows per input feature).
FEATURE_COLUMNS = ("Raw features", "A-VAE PP-SER", "A-VAE PP-SV", "LR-VAE origin", "LR-VAE PP-SER", "LR-VAE PP-SV",
                   "LR-VAE+LEACE PP-SER", "LR-VAE+LEACE PP-SV")


def feature_label(meta: dict) -> str:
    """``IS10``, or ``<arch> (<encoder folder>)`` for speaker-encoder embeddings."""
    from tfvae.features import encoder_name, is_encoder, split_encoder

    fs = str(meta.get("feature_set", "?"))
    if not is_encoder(fs):
        return fs
    arch, folder = encoder_name(fs)
    return f"{arch} ({folder or split_encoder(fs)[1]})"


def features_markdown(paths) -> str:
    """One table over several Table 1 reports of the same corpus and folds, one row block per input feature."""
    docs = [(Path(p), json.loads(Path(p).read_text())) for p in paths]
    name = docs[0][1]["meta"]["dataset"].split("/")[0]
    lines = [f"# Table 1 on {name}: input features", "",
             "Emotion weighted F1 (%) and speaker-verification EER (%), mean ± std over folds; privacy cells (bold) "
             "are the worst case over the attacker suite on the test speakers. Each block comes from its own report "
             "(command, seed and settings below).", "",
             "| input feature | column | emo WF1 | id EER |", "|---|---|---|---|"]
    for path, doc in docs:
        label = feature_label(doc["meta"])
        for col in FEATURE_COLUMNS:
            c = doc["columns"].get(col)
            if c is None:
                continue
            cells = [(f"**{_cell(c[k])}**" if is_privacy(c["view"], k) else _cell(c[k])) for k in ("emo", "id")]
            lines.append(f"| {label} | {col} | {cells[0]} | {cells[1]} |")
    lines += ["", "| input feature | report | command | settings |", "|---|---|---|---|"]
    lines += [f"| {feature_label(d['meta'])} | `{p.name}` | `{d['meta']['command']}` | {d['meta']['settings']} |"
              for p, d in docs]
    return "\n".join(lines) + "\n"


def compare_markdown(before_path, after_path) -> str:
    """Two Table 1 reports of the same corpus, folds and settings side by side: per cell the fold means
    and stds and whether the difference is within fold noise (|difference| <= the larger fold std)."""
    before, after = (json.loads(Path(p).read_text()) for p in (before_path, after_path))
    lines = [f"# Table 1 before and after: {Path(before_path).name} vs {Path(after_path).name}", "",
             f"Before: `{before['meta']['command']}` (seed {before['meta']['seed']}).",
             f"After: `{after['meta']['command']}` (seed {after['meta']['seed']}).", "",
             "Cells in %, mean ± std over folds. Within fold noise: |after - before| <= the larger of the two "
             "fold standard deviations.", "",
             "| column | cell | before | after | after - before | within fold noise |", "|---|---|---|---|---|---|"]
    n = within = 0
    for label, b in before["columns"].items():
        a = after["columns"].get(label)
        if a is None:
            continue
        for k in ("emo", "id"):
            d = 100 * (a[k]["mean"] - b[k]["mean"])
            ok = abs(d) <= 100 * max(a[k]["std"], b[k]["std"]) + 1e-9
            n, within = n + 1, within + ok
            lines.append(f"| {label} | {k} | {100 * b[k]['mean']:.2f} ± {100 * b[k]['std']:.2f} | "
                         f"{100 * a[k]['mean']:.2f} ± {100 * a[k]['std']:.2f} | {d:+.2f} | {'yes' if ok else 'no'} |")
    lines += ["", f"{within} of {n} cells within fold noise."]
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    import argparse

    p = argparse.ArgumentParser(prog="python -m tfvae.table1",
                                description="Re-derive a Table 1 report's goals and Markdown, (--features) join "
                                            "the reports of several input features into one table, or (--compare) "
                                            "set two reports side by side.")
    p.add_argument("reports", nargs="+", help="reports/<dataset>/table1*.json")
    p.add_argument("--features", action="store_true", help="one table, one block of rows per report's input feature")
    p.add_argument("--compare", action="store_true", help="two reports (before, after) cell by cell")
    p.add_argument("--out", help="write the Markdown here as well")
    args = p.parse_args(argv)
    if args.compare and len(args.reports) != 2:
        p.error("--compare takes two reports: before and after")
    if not (args.features or args.compare) and len(args.reports) != 1:
        p.error("give one report, or --features with several")
    text = features_markdown(args.reports) if args.features else compare_markdown(*args.reports) if args.compare \
        else rerender(args.reports[0])
    if args.out:
        Path(args.out).write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    import sys

    sys.exit(main())
