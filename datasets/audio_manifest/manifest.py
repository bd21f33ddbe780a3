"""The CSV manifest of ``audio_manifest``: reading and checking it, and drawing speaker-disjoint splits."""

from __future__ import annotations

import csv
import dataclasses
import hashlib
import io
import os
from collections import Counter
from pathlib import Path

import numpy as np

from tfvae_datasets.audio_manifest.embeddings import ManifestError

SPLITS = ("train", "validation", "test")
REQUIRED_COLUMNS = ("path", "speaker", "emotion")
OPTIONAL_COLUMNS = ("split", "utterance_id", "gender")
DEFAULT_FRACTIONS = (0.7, 0.15, 0.15)
#: With ``feature_set="embeddings"``: the column of ``.npy`` vector files (then ``path`` is not needed).
EMBEDDING_COLUMN = "embedding"
#: Names a ``label_columns`` entry cannot have: the manifest's own columns and the example's other keys.
RESERVED_LABELS = (*REQUIRED_COLUMNS, *OPTIONAL_COLUMNS, EMBEDDING_COLUMN, "features", "audio", "duration")
#: The class of an empty (or ``unknown``) value of a label column.
UNKNOWN = "unknown"


def check_label_columns(columns) -> tuple[str, ...]:
    """``label_columns`` (a sequence or a comma-separated string) -> lower-case column names, checked:
    each a Python identifier (it names a label feature and an attribute), none reserved, none twice.
    ``gender`` is always read (as the gender label) and is dropped from the list."""
    if isinstance(columns, str):
        columns = columns.split(",")
    out, errs = [], []
    for c in columns or ():
        c = str(c).strip().lower()
        if not c or c == "gender":
            continue
        if not c.isidentifier():
            errs.append(f"{c!r} is not a Python identifier (letters, digits, _)")
        elif c in RESERVED_LABELS:
            errs.append(f"{c!r} is a column or example key of its own")
        elif c in out:
            errs.append(f"{c!r} is listed twice")
        else:
            out.append(c)
    if errs:
        raise ManifestError("label_columns: " + "; ".join(errs))
    return tuple(out)


# ---------------------------------------------------------------------------------- manifest
@dataclasses.dataclass(frozen=True)
class ManifestRow:
    line: int  # line of the manifest file (1 = header)
    path: str
    speaker: str
    emotion: str
    split: str | None  # None: no split column
    utterance_id: str  # "" when not given
    extra_fields: int = 0  # fields beyond the header
    embedding: str = ""  # the `embedding` column ("" when absent)
    gender: str = ""  # the `gender` column as written ("" when absent)
    labels: dict = dataclasses.field(default_factory=dict, hash=False)  # label_columns -> value as written


@dataclasses.dataclass(frozen=True)
class Manifest:
    path: Path
    sha1: str
    columns: tuple[str, ...]
    rows: tuple[ManifestRow, ...]
    label_columns: tuple[str, ...] = ()

    @property
    def has_split(self) -> bool:
        return "split" in self.columns

    @property
    def emotions(self) -> list[str]:
        """Sorted unique non-empty emotion labels (the ClassLabel names)."""
        return sorted({r.emotion for r in self.rows if r.emotion})

    def label_classes(self, column: str) -> list[str]:
        """Classes of a label column: its sorted unique values, then ``unknown`` (empty values and
        ``unknown`` in any case)."""
        values = {r.labels.get(column, "") for r in self.rows}
        return sorted(v for v in values if v and v.lower() != UNKNOWN) + [UNKNOWN]

    def speaker_counts(self) -> dict[str, int]:
        """Rows per speaker, over every row that has a speaker."""
        return dict(Counter(r.speaker for r in self.rows if r.speaker))


def _read_bytes(path: Path) -> bytes:
    if not path.exists():
        raise ManifestError(f"manifest {path} does not exist")
    if path.is_dir():
        raise ManifestError(f"manifest {path} is a directory, not a CSV file")
    try:
        return path.read_bytes()
    except OSError as e:
        raise ManifestError(f"cannot read manifest {path}: {e}") from None


def read_manifest(path: str | os.PathLike, required: tuple[str, ...] = REQUIRED_COLUMNS,
                  label_columns: tuple[str, ...] = ()) -> Manifest:
    """Parse a manifest; raise :class:`ManifestError` when it cannot be used at all.

    ``required``: the columns it must have (:func:`required_columns` of the config);
    ``label_columns``: further columns read as class labels (:func:`check_label_columns`), required too."""
    label_columns = check_label_columns(label_columns)
    path = Path(os.path.abspath(os.path.expanduser(str(path))))
    data = _read_bytes(path)
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise ManifestError(f"manifest {path} is not UTF-8 text ({e})") from None
    reader = csv.reader(io.StringIO(text, newline=""))
    header, rows = None, []
    try:
        for cells in reader:
            if not any(c.strip() for c in cells):
                continue  # blank line
            if header is None:
                header = [c.strip().lower() for c in cells]
                _check_header(header, path, required, label_columns)
                col = {name: header.index(name) for name in (*REQUIRED_COLUMNS, *OPTIONAL_COLUMNS, EMBEDDING_COLUMN,
                                                             *label_columns) if name in header}
                continue

            def get(name):
                i = col.get(name)
                return cells[i].strip() if i is not None and i < len(cells) else ""

            rows.append(ManifestRow(
                line=reader.line_num, path=get("path"), speaker=get("speaker"), emotion=get("emotion"),
                split=get("split") if "split" in col else None, utterance_id=get("utterance_id"),
                extra_fields=max(0, len(cells) - len(header)), embedding=get(EMBEDDING_COLUMN),
                gender=get("gender"), labels={c: get(c) for c in label_columns}))
    except csv.Error as e:
        raise ManifestError(f"manifest {path} is not valid CSV (line {reader.line_num}: {e})") from None
    if header is None:
        raise ManifestError(f"manifest {path} is empty; expected a header row with the columns "
                            f"{', '.join(required)} (optional: {', '.join(OPTIONAL_COLUMNS)})")
    if not rows:
        raise ManifestError(f"manifest {path} has a header but no rows")
    return Manifest(path, hashlib.sha1(data).hexdigest(), tuple(header), tuple(rows), label_columns)


def _check_header(header: list[str], path: Path, required: tuple[str, ...] = REQUIRED_COLUMNS,
                  label_columns: tuple[str, ...] = ()) -> None:
    missing = [c for c in required if c not in header]
    if missing:
        raise ManifestError(
            f"manifest {path} lacks the required column(s) {', '.join(missing)}; its header has "
            f"{', '.join(repr(h) for h in header)} (expected a comma-separated header with "
            f"{', '.join(required)} and optionally {', '.join(OPTIONAL_COLUMNS)})")
    missing = [c for c in label_columns if c not in header]
    if missing:
        raise ManifestError(
            f"manifest {path} lacks the label column(s) {', '.join(missing)} named in label_columns; its header has "
            f"{', '.join(repr(h) for h in header)}")
    twice = sorted(c for c, n in Counter(header).items()
                   if n > 1 and c in (*REQUIRED_COLUMNS, *OPTIONAL_COLUMNS, EMBEDDING_COLUMN, *label_columns))
    if twice:
        raise ManifestError(f"manifest {path} has the column(s) {', '.join(twice)} more than once")


# ---------------------------------------------------------------------------------- splits
def assign_speakers(counts: dict[str, int], fractions=DEFAULT_FRACTIONS, seed: int = 0) -> dict[str, str]:
    """Speaker -> split by cumulative utterance share over a seeded shuffle (see the module doc)."""
    speakers = sorted(counts)
    n = len(speakers)
    if n < len(SPLITS):
        raise ManifestError(
            f"speaker-disjoint train/validation/test splits need at least 3 speakers, the manifest has {n}"
            + (f" ({', '.join(speakers)})" if n else "") + "; add speakers or a split column")
    order = [speakers[i] for i in np.random.default_rng(seed).permutation(n)]
    cum = np.concatenate([[0], np.cumsum([counts[s] for s in order])]).astype(np.float64)
    total = cum[-1]
    t1, t2 = fractions[0] * total, (fractions[0] + fractions[1]) * total
    b1 = 1 + int(np.argmin(np.abs(cum[1:n - 1] - t1)))  # train = order[:b1], 1 <= b1 <= n-2
    b2 = b1 + 1 + int(np.argmin(np.abs(cum[b1 + 1:n] - t2)))  # validation = order[b1:b2], b2 <= n-1
    return {s: ("train" if i < b1 else "validation" if i < b2 else "test") for i, s in enumerate(order)}
