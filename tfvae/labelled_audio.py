"""Labelled utterances of a corpus, their checks, and the bad-item report.

Builders (``tfvae_datasets``) list :class:`Utterance` records; :func:`check_utterances` finds
the records that cannot become examples (duplicate IDs, unknown emotion labels, missing files),
feature extraction adds the files that yield no features, and :func:`settle_bad_items` either
stops with one report of every bad item or, when asked to skip, writes the report beside the
dataset and prints the counts. Nothing is dropped silently. TensorFlow-free.
"""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Iterable, Mapping, Sequence

#: The label value of an utterance whose class is not known (a class of every extra label feature;
#: :func:`tfvae.data.load_corpus` reads it as -1).
UNKNOWN = "unknown"
#: Classes of the ``gender`` label feature (ClassLabel order).
GENDERS = ("female", "male", UNKNOWN)
_GENDER_VALUES = {"female": "female", "f": "female", "male": "male", "m": "male", "unknown": UNKNOWN, "": UNKNOWN}


@dataclass(frozen=True)
class Utterance:
    """One labelled utterance; ``labels``: its extra class labels by feature name (``{"gender": "male"}``)."""

    utterance_id: str
    path: str
    speaker: str
    emotion: str
    split: str
    labels: Mapping[str, str] = field(default_factory=dict, hash=False)


def parse_gender(value: str | None) -> str | None:
    """``female``/``f``, ``male``/``m`` (any case), ``unknown``, empty or None -> a :data:`GENDERS`
    class; any other value -> None (the caller reports it)."""
    return _GENDER_VALUES.get(str(value or "").strip().lower())


@dataclass(frozen=True)
class BadItem:
    utterance_id: str
    path: str
    reason: str


class BadItemsError(ValueError):
    """Some items cannot be used; the message lists them (all of them in the report file)."""

    def __init__(self, bad: Sequence[BadItem], report: Path | None = None, listed: int = 50):
        self.bad, self.report = list(bad), report
        lines = [f"{len(self.bad)} bad item(s); none were skipped (pass skip_bad_items=True to skip them):"]
        lines += [f"  {b.utterance_id} ({b.path}): {b.reason}" for b in self.bad[:listed]]
        if len(self.bad) > listed:
            lines.append(f"  ... and {len(self.bad) - listed} more")
        if report is not None:
            lines.append(f"full report: {report}")
        super().__init__("\n".join(lines))


def check_utterances(utts: Sequence[Utterance], emotion_names: Sequence[str],
                     splits: Sequence[str] = ("train", "validation", "test"),
                     check_files: bool = True, labels: Mapping[str, Sequence[str]] | None = None
                     ) -> tuple[list[Utterance], list[BadItem]]:
    """Split ``utts`` into usable ones and :class:`BadItem` records with their reasons.

    ``labels``: the extra label features and their classes (``{"gender": GENDERS}``); a usable
    utterance is returned with every one of them set (:data:`UNKNOWN` where it has none, when
    that is a class), a value outside the classes is a bad item."""
    names = set(emotion_names)
    where = defaultdict(list)
    for i, u in enumerate(utts):
        where[u.utterance_id].append(i)
    good, bad = [], []
    for i, u in enumerate(utts):
        reasons = []
        if len(where[u.utterance_id]) > 1:
            reasons.append(f"utterance ID appears {len(where[u.utterance_id])} times")
        if u.emotion not in names:
            reasons.append(f"unknown emotion label {u.emotion!r} (expected one of {', '.join(emotion_names)})")
        if u.split not in splits:
            reasons.append(f"unknown split {u.split!r} (expected one of {', '.join(splits)})")
        if not str(u.speaker).strip():
            reasons.append("empty speaker ID")
        if check_files and not Path(u.path).is_file():
            reasons.append("file not found")
        values = dict(u.labels) if labels is None else {k: u.labels.get(k, UNKNOWN) for k in labels}
        for k, v in values.items():
            if labels is not None and v not in labels[k]:
                reasons.append(f"unknown {k} label {v!r} (expected one of {', '.join(labels[k])})")
        extra = [] if labels is None else sorted(set(u.labels) - set(labels))
        if extra:
            reasons.append(f"label(s) {', '.join(extra)} are not features of this dataset")
        if reasons:
            bad.append(BadItem(u.utterance_id, u.path, "; ".join(reasons)))
        else:
            good.append(u if dict(u.labels) == values else replace(u, labels=values))
    return good, bad


def summarize(bad: Iterable[BadItem]) -> dict:
    """Counts of bad items by reason (first clause of the reason)."""
    return dict(Counter(b.reason.split(" (")[0].split(":")[0] for b in bad))


def write_report(bad: Sequence[BadItem], path: Path) -> Path:
    """Write every bad item and its reason as JSON."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"count": len(bad), "by_reason": summarize(bad),
                                "items": [asdict(b) for b in bad]}, indent=2))
    return path


def settle_bad_items(bad: Sequence[BadItem], skip: bool, report_path: Path, name: str) -> dict:
    """Stop with :class:`BadItemsError`, or (``skip``) write the report and return its summary."""
    if not bad:
        return {"count": 0, "by_reason": {}}
    report = write_report(bad, report_path)
    if not skip:
        raise BadItemsError(bad, report)
    summary = {"count": len(bad), "by_reason": summarize(bad), "report": report.name}
    print(f"[{name}] skipped {len(bad)} bad item(s): "
          + ", ".join(f"{k}: {v}" for k, v in summary["by_reason"].items()) + f"; list in {report}")
    return summary


def class_counts(utts: Iterable[Utterance]) -> dict[str, dict[str, int]]:
    out: dict[str, Counter] = defaultdict(Counter)
    for u in utts:
        out[u.split][u.emotion] += 1
    return {s: dict(sorted(c.items())) for s, c in sorted(out.items())}


def label_counts(utts: Iterable[Utterance], name: str, classes: Sequence[str],
                 splits: Sequence[str] = ("train", "validation", "test")) -> dict[str, dict[str, int]]:
    """``{split: {class: n}}`` of the label ``name``, every class listed (0 when absent)."""
    out = {s: Counter() for s in splits}
    for u in utts:
        out.setdefault(u.split, Counter())[u.labels.get(name, UNKNOWN)] += 1
    return {s: {c: int(n[c]) for c in classes} for s, n in out.items()}


def assert_speaker_disjoint(utts: Iterable[Utterance], name: str) -> None:
    """Raise if any speaker appears in more than one split."""
    splits = defaultdict(set)
    for u in utts:
        splits[u.speaker].add(u.split)
    shared = {s: sorted(v) for s, v in splits.items() if len(v) > 1}
    if shared:
        ex = ", ".join(f"{s} in {v}" for s, v in list(shared.items())[:10])
        raise ValueError(f"{name}: {len(shared)} speaker(s) appear in more than one split: {ex}")
