"""Table 1 over any attributes (issue 13), with its fairness report.

The paper's Table 1 (:mod:`tfvae.table1`) has two attributes and three views. With the attributes
of ``--attributes`` (e.g. ``emotion, gender, identity``) a column is (model, view) and a view keeps a
set of attributes (:mod:`tfvae.attributes`): a kept attribute's cell is **utility** (the downstream
model chosen on the fold's validation speakers), a masked attribute's cell is **privacy** (the worst
case over the attacker suite on the test speakers, counted only above chance:
:func:`tfvae.evaluate.privacy_cell`). ``origin`` (the full latent) and the raw features keep every
attribute.

The fairness report (:mod:`tfvae.fairness`) gives, for every column, the group attribute's (gender's)
leakage by the worst-case attacker, whatever the view keeps, and the per-group values and gap of
every other attribute's utility cell (emotion WF1 by gender, SV EER by gender).
"""

from __future__ import annotations

import numpy as np

from tfvae.attributes import Attribute, view_attributes
from tfvae.erasure import SUFFIX
from tfvae.evaluate import CHANCE_EER, interval, privacy_cell, public

#: Method names in column labels.
METHOD_LABELS = {"raw": "Raw features", "dnn": "DNN", "vae": "VAE", "a-vae": "A-VAE", "lrvae-noadv": "LR-VAE (w/o adv)",
                 "lrvae": "LR-VAE"}


def kept_attributes(view: str, attrs, protect: str | None) -> tuple[str, ...]:
    """What a column's view keeps: every attribute for ``origin`` (an A-VAE's whole latent hides ``protect``)."""
    names = [a.name for a in attrs]
    if view == "origin":
        return tuple(n for n in names if n != protect)
    return view_attributes(view, attrs)


def column_label(method: str, protect: str | None, view: str) -> str:
    base = METHOD_LABELS.get(method, method) + (f"[{protect}]" if protect else "")
    if view == "origin":
        return f"{base} origin"
    leace = view.endswith(SUFFIX)
    return f"{base}{'+LEACE' if leace else ''} {view.removesuffix(SUFFIX)}"


def _fold_cell(r: dict, a: Attribute, kept: bool, chance: float) -> dict:
    task = a.task
    if kept:
        c = {**r[task]["utility"], "role": "utility (chosen on validation)"}
        return c
    c = privacy_cell(r[task]["worst"], task, chance)
    c["_per_speaker"] = np.minimum(c["_per_speaker"], CHANCE_EER) if a.is_identity else \
        np.maximum(c["_per_speaker"], chance)
    return {**c, "role": "privacy (worst case on test, above chance)"}


def _aggregate(per: list[dict], metric: str) -> dict:
    vals = np.array([p[metric] for p in per])
    boots = [p["_boot"] for p in per]
    n = min(len(b) for b in boots)
    return {"metric": metric, "mean": float(vals.mean()), "std": float(vals.std()),
            "ci95": interval(np.mean([b[:n] for b in boots], axis=0)) if n else [float("nan")] * 2,
            "per_fold": [public(p) for p in per], "by": sorted({p["by"] for p in per}), "role": per[0]["role"]}


def _chance(ch: dict, a: Attribute) -> float:
    return CHANCE_EER if a.is_identity else ch[a.task]["stratified"]


def attribute_table(folds: list[dict], chances: list[dict], attrs, group: str | None = "gender") -> dict:
    """Columns over ``folds`` (each ``{model_key: {"method", "protect", "views": {view: evaluation}}}``);
    ``chances``: per fold, ``{task: chance_wf1 dict}``. Each column: ``kept`` attributes and, per attribute
    name, a cell (mean/std over folds, 95 % bootstrap interval of the fold mean, role, per-fold values);
    ``fairness``: the group attribute's worst-case leakage and the per-group values/gap of the other
    attributes' utility cells (fold means)."""
    cols = {}
    group_attr = next((a for a in attrs if a.name == group or a.label == group), None)
    for key, first in folds[0].items():
        method, protect = first["method"], first.get("protect")
        for view in first["views"]:
            if view == "model_heads" or any(view not in f[key]["views"] for f in folds):
                continue
            if view == "origin" and method == "a-vae":  # an A-VAE's whole latent is its view: one column
                continue
            kept = kept_attributes(view, attrs, protect)
            col = {"method": method, "protect": protect, "view": view, "kept": list(kept)}
            for a in attrs:
                if a.task not in first["views"][view]:
                    continue
                per = [_fold_cell(f[key]["views"][view], a, a.name in kept, _chance(ch, a))
                       for f, ch in zip(folds, chances)]
                col[a.name] = _aggregate(per, "eer" if a.is_identity else "wf1")
            col["fairness"] = _fairness(folds, chances, key, view, attrs, group_attr)
            cols[column_label(method, protect, view)] = col
    return cols


def _fairness(folds, chances, key, view, attrs, group_attr) -> dict:
    out = {}
    if group_attr is not None and group_attr.task in folds[0][key]["views"][view]:
        per = [privacy_cell(f[key]["views"][view][group_attr.task]["worst"], group_attr.task, _chance(ch, group_attr))
               for f, ch in zip(folds, chances)]
        vals = np.array([p["wf1"] for p in per])
        out["leakage"] = {"attribute": group_attr.name, "metric": "wf1 (worst case, above chance)",
                          "mean": float(vals.mean()), "std": float(vals.std()), "by": sorted({p["by"] for p in per}),
                          "chance": float(np.mean([_chance(ch, group_attr) for ch in chances]))}
    for a in attrs:
        if group_attr is not None and a.name == group_attr.name:
            continue
        cells = [f[key]["views"][view].get(a.task, {}).get("utility", {}).get("by_group") for f in folds]
        if any(c is None for c in cells):
            continue
        groups = sorted({g for c in cells for g in c["values"]})
        values = {g: _mean([c["values"].get(g) for c in cells]) for g in groups}
        out[a.name] = {"metric": "eer" if a.is_identity else "wf1", "values": values,
                       "gap": _mean([c.get("gap") for c in cells]),
                       "gap_std": _std([c.get("gap") for c in cells])}
    return out


def _mean(v) -> float | None:
    v = [x for x in v if x is not None]
    return float(np.mean(v)) if v else None


def _std(v) -> float | None:
    v = [x for x in v if x is not None]
    return float(np.std(v)) if v else None


def _cell(c: dict) -> str:
    lo, hi = c["ci95"]
    txt = f"{100 * c['mean']:.2f} ± {100 * c['std']:.2f} [{100 * lo:.1f}, {100 * hi:.1f}]"
    return f"**{txt}**" if c["role"].startswith("privacy") else txt


def _pt(v) -> str:
    return "" if v is None else f"{100 * v:.2f}"


def markdown(name: str, cols: dict, attrs, meta: dict, chances: list[dict]) -> str:
    """The table and the fairness report as Markdown."""
    heads = [("identity: SV EER" if a.is_identity else f"{a.name}: WF1") for a in attrs]
    lines = [f"# Table 1 on {name}: attributes {', '.join(a.name for a in attrs)}", "",
             f"Command: `{meta['command']}` (seed {meta['seed']}); {meta['protocol']}; settings: {meta['settings']}; "
             f"wall time {meta['wall_seconds']:.0f} s on {meta['cores']} cores.", "",
             "Cells in %: mean ± std over folds [95 % speaker-level bootstrap interval of the mean]. A view keeps "
             "the attributes in its name (origin and raw features keep all). **Utility** cells (kept attributes) use "
             "the downstream model chosen on each fold's validation speakers; **privacy** cells (masked attributes, "
             "in bold) the worst case over the attacker suite on the test speakers, counted only above chance.", "",
             "| column | keeps | " + " | ".join(heads) + " |", "|---|---|" + "---|" * len(attrs)]
    for label, c in cols.items():
        cells = [_cell(c[a.name]) if a.name in c else "" for a in attrs]
        lines.append(f"| {label} | {', '.join(c['kept'])} | " + " | ".join(cells) + " |")
    lines += ["", "Chance of the test folds: " + "; ".join(
        f"{t} WF1 {100 * np.mean([ch[t]['stratified'] for ch in chances]):.2f} (stratified)" for t in chances[0])
        + "; EER 50.00."]
    lines += _fairness_markdown(cols, attrs)
    return "\n".join(lines) + "\n"


def _fairness_markdown(cols: dict, attrs) -> list[str]:
    first = next(iter(cols.values()))["fairness"]
    leak = first.get("leakage")
    others = [a for a in attrs if a.name in first]
    if leak is None and not others:
        return []
    group = leak["attribute"] if leak else "gender"
    groups = sorted({g for c in cols.values() for a in others for g in c["fairness"].get(a.name, {}).get("values", {})})
    head = ([f"{group} leakage: WF1 (worst case)"] if leak else []) + \
        [f"{'SV EER' if a.is_identity else a.name + ' WF1'} {g}" for a in others for g in groups] + \
        [f"{'SV EER' if a.is_identity else a.name + ' WF1'} gap" for a in others]
    lines = ["", f"## Fairness by {group}", "",
             f"Leakage of {group}: the worst-case attacker's WF1 on the test speakers, counted above chance "
             f"({100 * leak['chance']:.2f}), whatever the view keeps. Per-{group} values: the utility cell's downstream "
             f"model on the test rows (WF1) or same-{group} trials (EER) of each {group}; gap = max - min (mean over "
             f"folds, in points). Same-{group} trials are harder than all trials (a different-{group} non-target "
             "pair is easy to reject), so the per-group EERs lie above the column's overall EER.", "",
             "| column | " + " | ".join(head) + " |", "|---|" + "---|" * len(head)]
    for label, c in cols.items():
        f = c["fairness"]
        row = [f"{_pt(f['leakage']['mean'])} ± {_pt(f['leakage']['std'])}"] if leak and "leakage" in f else \
            ([""] if leak else [])
        row += [_pt(f.get(a.name, {}).get("values", {}).get(g)) for a in others for g in groups]
        row += [_pt(f.get(a.name, {}).get("gap")) for a in others]
        lines.append(f"| {label} | " + " | ".join(row) + " |")
    return lines
