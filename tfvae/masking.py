"""Masks over the ordered latent and their choice on validation data (paper section 2.3.2, Fig. 2).

The latent holds the attributes' bands in their order (:mod:`tfvae.attributes`); attribute k's band
runs from boundary b_k to b_{k+1} (b_0 = 0, b_K = N). A *view* keeps the bands of a set of attributes
and zeroes the rest. Only the boundaries between a kept and a masked attribute matter to a view
(:func:`relevant_boundaries`), and each view chooses its own on the validation speakers
(:func:`choose_views`). With the paper's two attributes the identity-free view keeps the top ``cut``
nodes and the emotionless one the nodes from ``cut`` on (:func:`keep_mask`, :func:`choose_cuts`).
"""

from __future__ import annotations

from itertools import combinations
from typing import Sequence

import numpy as np

from tfvae.attributes import ALIASES, DEFAULT, Attribute, parse_attributes
from tfvae.evaluate import chance_wf1, probe_scores_all
from tfvae.metrics import sample_trials

VIEWS = tuple(ALIASES)  # ("identity_free", "emotion_free"): the paper's two views
#: Most candidate boundary sets scored per view (views with two or more boundaries use a coarser grid).
MAX_CANDIDATES = 64


def keep_mask(n: int, view: str, cut: int) -> np.ndarray:
    """0/1 float32 vector of length ``n`` for the paper's views: 1 for the nodes the view keeps."""
    if view not in VIEWS:
        raise ValueError(f"mask view {view!r} is unknown; choose one of {VIEWS}")
    return view_keep(n, ALIASES[view], DEFAULT, (cut,))


def relevant_boundaries(kept: Sequence[str], order: Sequence[str]) -> list[int]:
    """Indices j (1..K-1) of the boundaries between attribute j-1 and j where a view keeping ``kept``
    switches between keeping and masking."""
    return [j for j in range(1, len(order)) if (order[j - 1] in kept) != (order[j] in kept)]


def view_keep(n: int, kept: Sequence[str], order: Sequence[str], positions: Sequence[int]) -> np.ndarray:
    """0/1 float32 keep vector of the view keeping ``kept``, its relevant boundaries at ``positions``
    (node indices, increasing)."""
    rel = relevant_boundaries(kept, order)
    if len(positions) != len(rel):
        raise ValueError(f"view keeping {'+'.join(kept)} has {len(rel)} boundar(ies), got positions {list(positions)}")
    if any(not 0 <= p <= n for p in positions):
        raise ValueError(f"boundary position(s) {list(positions)} outside 0..{n}")
    if any(b < a for a, b in zip(positions, positions[1:])):
        raise ValueError(f"boundary positions {list(positions)} must not decrease (overlapping bands)")
    m = np.zeros(n, np.float32)
    keep, start = order[0] in kept, 0
    for p in [*positions, n]:
        if keep:
            m[start:p] = 1.0
        keep, start = not keep, p
    return m


def candidate_cuts(n: int, groups: int) -> list[int]:
    """Group boundaries 1..groups-1 (paper Fig. 2 masks one group of n/groups nodes per step)."""
    if groups < 2 or n % groups:
        raise ValueError(f"latent size {n} cannot be split into {groups} equal groups")
    size = n // groups
    return [k * size for k in range(1, groups)]


def candidate_positions(n: int, groups: int, count: int, max_candidates: int = MAX_CANDIDATES) -> list[tuple]:
    """Strictly increasing tuples of ``count`` group boundaries: every one for one boundary, on the
    finest sub-grid of group boundaries that gives at most ``max_candidates`` tuples for more."""
    grid = candidate_cuts(n, groups)
    if count == 0:
        return [()]
    step = 1
    while count > 1 and len(list(combinations(grid[step - 1::step], count))) > max_candidates and step < len(grid):
        step += 1
    return list(combinations(grid[step - 1::step] if count > 1 else grid, count))


def _score(a: Attribute, scores: dict) -> float:
    """Utility of an attribute's probe, higher is better: WF1, or -EER for identity."""
    return -scores[a.task] if a.is_identity else scores[a.task]


def choose_views(z_train, labels_train: dict, spk_train, z_val, labels_val: dict, spk_val,
                 attributes, views: dict[str, Sequence[str]], groups: int, tolerance: float = 0.02, seed: int = 0,
                 attackers: str = "fast") -> dict:
    """Choose each view's boundaries on validation data only.

    For every candidate (:func:`candidate_positions`), probes (:func:`tfvae.evaluate.probe_scores_all`)
    are fit on the masked *training* latents and scored on the masked *validation* latents: WF1 of each
    class attribute (labels per task in ``labels_train``/``labels_val``, e.g. ``{"emotion": ...}``) and the
    speaker EER on validation trials (validation speakers are unseen in training). A view
    keeps the candidates whose every kept attribute is within ``tolerance`` of the full latent's score
    (WF1 no lower, EER no higher); among them, those whose most leaking masked attribute is closest to
    chance (``|WF1 - chance|``, ``|EER - 0.5|``: a WF1 below chance still leaks), within ``tolerance``
    of the closest; of these the best summed utility of the kept attributes, then the most nodes.
    """
    attrs = parse_attributes([a.name if isinstance(a, Attribute) else a for a in attributes])
    order = [a.name for a in attrs]
    n = z_train.shape[1]
    trials = sample_trials(spk_val, seed=seed)
    full = probe_scores_all(z_train, labels_train, spk_train, z_val, labels_val, trials, seed, attackers)
    chance = {t: chance_wf1(np.asarray(y)[np.asarray(y) >= 0])["stratified"] for t, y in labels_val.items()}
    chosen, tables = {}, {}
    for name, kept in views.items():
        keep_a = [a for a in attrs if a.name in kept]
        hide_a = [a for a in attrs if a.name not in kept]
        table = []
        for pos in candidate_positions(n, groups, len(relevant_boundaries(kept, order))):
            keep = view_keep(n, kept, order, pos).astype(bool)
            scores = probe_scores_all(z_train[:, keep], labels_train, spk_train, z_val[:, keep], labels_val,
                                      trials, seed, attackers)
            leak = max(abs(scores[a.task] - (0.5 if a.is_identity else chance[a.task])) for a in hide_a)
            table.append({"positions": list(pos), "nodes": int(keep.sum()), "scores": scores, "leak": leak,
                          "useful": all(_score(a, scores) >= _score(a, full) - tolerance for a in keep_a),
                          "utility": sum(_score(a, scores) for a in keep_a)})
        ok = [r for r in table if r["useful"]] or table
        best = min(r["leak"] for r in ok)
        row = max((r for r in ok if r["leak"] <= best + tolerance), key=lambda r: (r["utility"], r["nodes"]))
        chosen[name] = {"kept": list(kept), "positions": row["positions"], "nodes": row["nodes"],
                        "validation": row["scores"], "keep": view_keep(n, kept, order, row["positions"])}
        tables[name] = table
    return {"views": chosen, "full": full, "chance": chance, "tolerance": tolerance, "groups": groups,
            "tables": tables, "chosen_on": "validation", "probes": attackers, "attributes": order}


def choose_cuts(z_train, emo_train, spk_train, z_val, emo_val, spk_val, groups: int,
                tolerance: float = 0.02, seed: int = 0, attackers: str = "fast") -> dict:
    """The paper's two views (:func:`choose_views` with ``emotion, identity``): the identity-free cut
    (top nodes kept) and the emotion-free cut (bottom nodes kept), with the candidate table."""
    res = choose_views(z_train, {"emotion": emo_train}, spk_train, z_val, {"emotion": emo_val}, spk_val,
                       DEFAULT, {v: ALIASES[v] for v in VIEWS}, groups, tolerance, seed, attackers)
    n = z_train.shape[1]
    table = []
    for i, cut in enumerate(candidate_cuts(n, groups)):
        row = {"cut": cut}
        for view in VIEWS:
            r = res["tables"][view][i]
            row[f"{view}_emotion_wf1"], row[f"{view}_speaker_eer"] = r["scores"]["emotion"], r["scores"]["speaker"]
            row[f"{view}_nodes"] = r["nodes"]
        table.append(row)
    return {
        "identity_free_cut": int(res["views"]["identity_free"]["positions"][0]),
        "emotion_free_cut": int(res["views"]["emotion_free"]["positions"][0]),
        "full_emotion_wf1": res["full"]["emotion"], "full_speaker_eer": res["full"]["speaker"],
        "chance_emotion_wf1": res["chance"]["emotion"], "tolerance": tolerance, "groups": groups, "table": table,
        "chosen_on": "validation", "probes": attackers,
    }
