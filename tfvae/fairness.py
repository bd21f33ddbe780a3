"""Fairness breakdown of evaluation cells by a group label (by default ``gender``).

A representation can serve (or protect) one group of speakers better than another. Every cell of
:func:`tfvae.evaluate.evaluate_view` gets, when the corpus has the group label with known values
on its test split, a ``by_group`` entry::

    {"label": "gender",                       # the group label
     "values": {"female": 0.71, "male": 0.64}, # per group: WF1 (class task) or EER (speaker)
     "gap": 0.07,                              # max - min over the groups with a value (None: < 2)
     "rows": {"female": 812, "male": 790}}     # class task: test rows per group
                                               # speaker: "trials" (test trials per group) instead

- a class task (emotion, any extra label): the weighted F1 of the test rows of each group (rows
  with an unknown group or an unknown task label are left out);
- speaker verification: the EER over the test trials whose two utterances both belong to the group
  (``None`` for a group with no target or no non-target trial).

The breakdown of a task over its own label (gender WF1 by gender) is meaningless and never made.
:func:`group_gaps` collects the breakdowns of one evaluation result for reports.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from tfvae.metrics import Trials, confusion, eer, wf1_uar


@dataclass
class Groups:
    """Group membership of the rows of one split: ``codes[i]`` indexes ``names`` (-1: unknown)."""

    label: str
    names: list[str]
    codes: np.ndarray
    _trials: dict = field(default_factory=dict, repr=False)

    @property
    def present(self) -> list[int]:
        """Codes of the groups with at least one row, ascending."""
        return [int(c) for c in np.unique(self.codes[self.codes >= 0])]

    def trial_rows(self, trials: Trials) -> dict[int, np.ndarray]:
        """Per present group, the positions of the trials whose two rows both belong to it (cached per trial list)."""
        hit = self._trials.get(id(trials))
        if hit is None or hit[0] is not trials:
            gi, gj = self.codes[trials.i], self.codes[trials.j]
            same = gi == gj
            hit = (trials, {g: np.flatnonzero(same & (gi == g)) for g in self.present})
            self._trials[id(trials)] = hit
        return hit[1]


def split_groups(corpus, group: str | None, split: str = "test") -> Groups | None:
    """The groups of ``group`` (an extra label of the corpus, or ``emotion``) on ``split``; None when
    ``group`` is None or the split has no known value of it. Group names come from
    ``corpus.label_names`` (``emotion_names``), else the codes themselves."""
    if not group:
        return None
    sp = corpus.splits[split]
    if group == "emotion":
        codes, names = sp.emotion, corpus.emotion_names
    else:
        labels = getattr(sp, "labels", None) or {}
        if group not in labels:
            return None
        codes, names = labels[group], (getattr(corpus, "label_names", None) or {}).get(group)
    codes = np.asarray(codes, np.int64)
    if not (codes >= 0).any():
        return None
    names = [str(n) for n in (names or [])]
    names += [str(i) for i in range(len(names), int(codes.max()) + 1)]
    return Groups(group, names, codes)


def _summary(groups: Groups, values: dict, count_key: str, counts: dict) -> dict:
    known = [v for v in values.values() if v is not None]
    gap = float(max(known) - min(known)) if len(known) >= 2 else None
    return {"label": groups.label, "values": values, "gap": gap, count_key: counts}


def class_by_group(groups: Groups, y_true, y_pred, n_classes: int, rows=None) -> dict:
    """Weighted F1 of the predictions of each group. ``y_true``/``y_pred`` cover the split's rows
    ``rows`` (a boolean mask or positions; None: every row)."""
    g = groups.codes if rows is None else groups.codes[rows]
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    values, counts = {}, {}
    for code in groups.present:
        m = g == code
        name = groups.names[code]
        counts[name] = int(m.sum())
        values[name] = float(wf1_uar(confusion(y_true[m], y_pred[m], n_classes))[0]) if m.any() else None
    return _summary(groups, values, "rows", counts)


def speaker_by_group(groups: Groups, scores, trials: Trials) -> dict:
    """EER over the trials whose two utterances both belong to each group (None: no target or no
    non-target trial in the group)."""
    scores = np.asarray(scores)
    values, counts = {}, {}
    for code, idx in groups.trial_rows(trials).items():
        name = groups.names[code]
        lab = trials.label[idx].astype(bool)
        counts[name] = int(idx.size)
        values[name] = float(eer(scores[idx], lab)) if lab.any() and (~lab).any() else None
    return _summary(groups, values, "trials", counts)


def group_gaps(result: dict) -> dict:
    """``{task: {"utility": by_group, "worst": by_group}}`` of one :func:`tfvae.evaluate.evaluate_view`
    result, for the tasks whose utility or worst cell has a breakdown (None for a cell without one)."""
    out = {}
    for task, cells in result.items():
        if not isinstance(cells, dict):
            continue
        got = {k: cells[k].get("by_group") if isinstance(cells.get(k), dict) else None for k in ("utility", "worst")}
        if any(v is not None for v in got.values()):
            out[task] = got
    return out
