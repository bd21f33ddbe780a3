"""audio_manifest: any labelled audio folder, described by a CSV manifest.

The manifest is a comma-separated UTF-8 file with a header row and the columns

- ``path``: the audio file (WAV, FLAC, ... anything libsndfile reads), relative to the
  manifest's folder, or absolute;
- ``speaker``: speaker ID (splits are speaker-disjoint);
- ``emotion``: emotion label; the classes are the sorted unique labels of the manifest;
- ``split`` (optional): ``train``, ``validation`` or ``test`` (case-insensitive);
- ``utterance_id`` (optional): default the ``path`` value without its suffix.

Column names are case-insensitive; other columns are ignored. Rows that cannot be used (an
empty path, speaker or emotion, an unknown split, a duplicate utterance ID, a missing or
unreadable file, audio that yields no features) are bad items: the build stops with one
report of all of them, or skips them with ``skip_bad_items=True`` and writes
``bad_items.json`` beside the dataset. Reasons found in the manifest name its line.

Without a ``split`` column the splits are made from the speakers, deterministically from
``split_seed``: the sorted speaker list is shuffled with ``numpy.random.default_rng(seed)``;
train is the first speakers of that order whose utterances make up the share closest to
``split_fractions[0]`` of the manifest's utterances, validation the following speakers up to
the cumulative share closest to ``split_fractions[0] + split_fractions[1]``, test the rest
(**by cumulative utterance share**, every split at least one speaker). The shares count every
manifest row with a speaker, so fixing or skipping bad files does not move speakers between
splits.

Use from Python::

    from tfvae_datasets.audio_manifest.audio_manifest_dataset_builder import manifest_config
    b = tfds.builder("audio_manifest", config=manifest_config("corpus/manifest.csv", "eGeMAPSv02"))

from the command line (``python -m tfvae.train --dataset corpus/manifest.csv``), or with
``tfds build datasets/audio_manifest --config '{"manifest": "corpus/manifest.csv",
"feature_set": "IS10"}'`` (``name`` may be given; without it the name is derived as below).
The config name is ``<manifest stem>-<8 hex digits>-<feature set>``, the digits hashing the
manifest's absolute path and content and the split settings, so different (or edited)
manifests do not collide in one data directory.
"""

from __future__ import annotations

import csv
import dataclasses
import hashlib
import io
import json
import os
import re
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np

from tfvae.features import FEATURE_SETS
from tfvae.labelled_audio import BadItem, Utterance
from tfvae_datasets.audio_features import SPLITS, AudioFeatureBuilder, AudioFeatureConfig

REQUIRED_COLUMNS = ("path", "speaker", "emotion")
OPTIONAL_COLUMNS = ("split", "utterance_id")
DEFAULT_FRACTIONS = (0.7, 0.15, 0.15)
#: The one registered config; it has no manifest and only tells how to pass one.
PLACEHOLDER = "needs_manifest"
_HOW = ("pass a manifest: tfds.builder('audio_manifest', config=manifest_config('manifest.csv', 'IS10')) "
        "with manifest_config from tfvae_datasets.audio_manifest.audio_manifest_dataset_builder, "
        "`python -m tfvae.train --dataset manifest.csv`, or "
        "`tfds build datasets/audio_manifest --config '{\"manifest\": \"manifest.csv\", \"feature_set\": \"IS10\"}'`")


class ManifestError(ValueError):
    """The manifest (or the manifest config) cannot be used at all; the message says why."""


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


@dataclasses.dataclass(frozen=True)
class Manifest:
    path: Path
    sha1: str
    columns: tuple[str, ...]
    rows: tuple[ManifestRow, ...]

    @property
    def has_split(self) -> bool:
        return "split" in self.columns

    @property
    def emotions(self) -> list[str]:
        """Sorted unique non-empty emotion labels (the ClassLabel names)."""
        return sorted({r.emotion for r in self.rows if r.emotion})

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


def read_manifest(path: str | os.PathLike) -> Manifest:
    """Parse a manifest; raise :class:`ManifestError` when it cannot be used at all."""
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
                _check_header(header, path)
                col = {name: header.index(name) for name in (*REQUIRED_COLUMNS, *OPTIONAL_COLUMNS) if name in header}
                continue

            def get(name):
                i = col.get(name)
                return cells[i].strip() if i is not None and i < len(cells) else ""

            rows.append(ManifestRow(
                line=reader.line_num, path=get("path"), speaker=get("speaker"), emotion=get("emotion"),
                split=get("split") if "split" in col else None, utterance_id=get("utterance_id"),
                extra_fields=max(0, len(cells) - len(header))))
    except csv.Error as e:
        raise ManifestError(f"manifest {path} is not valid CSV (line {reader.line_num}: {e})") from None
    if header is None:
        raise ManifestError(f"manifest {path} is empty; expected a header row with the columns "
                            f"{', '.join(REQUIRED_COLUMNS)} (optional: {', '.join(OPTIONAL_COLUMNS)})")
    if not rows:
        raise ManifestError(f"manifest {path} has a header but no rows")
    return Manifest(path, hashlib.sha1(data).hexdigest(), tuple(header), tuple(rows))


def _check_header(header: list[str], path: Path) -> None:
    missing = [c for c in REQUIRED_COLUMNS if c not in header]
    if missing:
        raise ManifestError(
            f"manifest {path} lacks the required column(s) {', '.join(missing)}; its header has "
            f"{', '.join(repr(h) for h in header)} (expected a comma-separated header with "
            f"{', '.join(REQUIRED_COLUMNS)} and optionally {', '.join(OPTIONAL_COLUMNS)})")
    twice = sorted(c for c, n in Counter(header).items() if n > 1 and c in (*REQUIRED_COLUMNS, *OPTIONAL_COLUMNS))
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


# ---------------------------------------------------------------------------------- config
def _check_fractions(fractions) -> tuple[float, float, float]:
    try:
        f = tuple(float(x) for x in fractions)
    except (TypeError, ValueError):
        raise ManifestError(f"split_fractions={fractions!r} must be 3 numbers (train, validation, test)") from None
    if len(f) != 3 or any(not np.isfinite(x) or x <= 0 for x in f) or abs(sum(f) - 1.0) > 1e-6:
        raise ManifestError(f"split_fractions={fractions!r} must be 3 positive fractions (train, validation, "
                            "test) that sum to 1")
    return f


def config_name(manifest: Manifest, feature_set: str, split_fractions, split_seed: int) -> str:
    """``<stem>-<sha1(abs path, content, fractions, seed)[:8]>-<feature set>``."""
    key = json.dumps([str(manifest.path), manifest.sha1, list(split_fractions), int(split_seed)])
    stem = re.sub(r"[^A-Za-z0-9_-]+", "_", manifest.path.stem).strip("_") or "manifest"
    return f"{stem}-{hashlib.sha1(key.encode()).hexdigest()[:8]}-{feature_set.lower()}"


@dataclasses.dataclass
class ManifestConfig(AudioFeatureConfig):
    """``manifest``: the CSV file (made absolute); ``split_fractions`` (train, validation, test) and
    ``split_seed``: the seeded speaker split, used only without a split column. An empty
    ``name`` is derived from the manifest (:func:`config_name`); ``tfds build --config '{json}'``
    creates this class from the JSON."""

    name: str = ""
    manifest: str = ""
    split_fractions: tuple = DEFAULT_FRACTIONS
    split_seed: int = 0

    def __post_init__(self):
        if self.feature_set not in FEATURE_SETS:
            raise ManifestError(f"feature_set={self.feature_set!r} is unknown; choose one of {', '.join(FEATURE_SETS)}")
        self.split_fractions = _check_fractions(self.split_fractions)
        self.split_seed = int(self.split_seed)
        if self.manifest:
            self.manifest = os.path.abspath(os.path.expanduser(str(self.manifest)))
        if not self.name:
            if not self.manifest:
                raise ManifestError(f"an audio_manifest config needs a manifest; {_HOW}")
            self.name = config_name(read_manifest(self.manifest), self.feature_set, self.split_fractions,
                                    self.split_seed)
        if self.description is None and self.manifest:
            self.description = f"openSMILE {self.feature_set} functionals of the utterances listed in {self.manifest}"


def manifest_config(manifest: str | os.PathLike, feature_set: str = "IS10", skip_bad_items: bool = False,
                    split_fractions=DEFAULT_FRACTIONS, split_seed: int = 0,
                    workers: int | None = None) -> ManifestConfig:
    """The config of one manifest; pass it as ``tfds.builder("audio_manifest", config=...)``."""
    return ManifestConfig(manifest=str(manifest), feature_set=feature_set, skip_bad_items=skip_bad_items,
                          split_fractions=split_fractions, split_seed=split_seed, workers=workers)


# ---------------------------------------------------------------------------------- builder
class Builder(AudioFeatureBuilder):
    """Any labelled audio folder described by a CSV manifest, openSMILE functionals."""

    BUILDER_CONFIGS = [ManifestConfig(name=PLACEHOLDER, description=f"No manifest; {_HOW}.")]
    DEFAULT_CONFIG_NAME = PLACEHOLDER

    def _description(self) -> str:
        return __doc__

    def _manifest(self) -> Manifest:
        """The parsed manifest, read once per builder (``_info`` needs its emotion classes)."""
        m = self.__dict__.get("_manifest_cache")
        if m is None:
            cfg = self.builder_config
            if not cfg.manifest:
                raise ManifestError(f"audio_manifest config {cfg.name!r} has no manifest; {_HOW}")
            m = self.__dict__["_manifest_cache"] = read_manifest(cfg.manifest)
        return m

    def _emotion_names(self) -> list[str]:
        names = self._manifest().emotions
        if not names:
            raise ManifestError(f"manifest {self._manifest().path} has no emotion labels")
        return names

    def _utterances(self, dl_manager):
        cfg = self.builder_config
        m = self._manifest()
        base = m.path.parent
        ids = [r.utterance_id or (os.path.splitext(r.path)[0] if r.path else f"line {r.line}") for r in m.rows]
        lines_of = defaultdict(list)
        for uid, r in zip(ids, m.rows):
            lines_of[uid].append(r.line)
        if m.has_split:
            split_of = None
        else:
            split_of = assign_speakers(m.speaker_counts(), cfg.split_fractions, cfg.split_seed)
        utts, bad = [], []
        for uid, r in zip(ids, m.rows):
            path = str(base / os.path.expanduser(r.path)) if r.path else ""
            path = os.path.normpath(path) if path else ""
            reasons = []
            if r.extra_fields:
                reasons.append(f"{r.extra_fields} field(s) more than the header")
            for name in ("path", "speaker", "emotion"):
                if not getattr(r, name):
                    reasons.append(f"empty {name}")
            split = None
            if m.has_split:
                if not r.split:
                    reasons.append("empty split")
                elif r.split.lower() not in SPLITS:
                    reasons.append(f"unknown split {r.split!r} (expected one of {', '.join(SPLITS)})")
                else:
                    split = r.split.lower()
            elif r.speaker:
                split = split_of[r.speaker]
            if len(lines_of[uid]) > 1:
                reasons.append(f"utterance ID {uid!r} appears on {len(lines_of[uid])} manifest lines "
                               f"({', '.join(map(str, lines_of[uid]))})")
            if reasons:
                bad.append(BadItem(uid, path or r.path, f"manifest line {r.line}: " + "; ".join(reasons)))
            else:
                utts.append((r, Utterance(uid, path, r.speaker, r.emotion, split)))
        if m.has_split:
            self._check_disjoint(m, utts)
        counts = Counter(u.split for _, u in utts)
        extra = {"manifest": str(m.path), "manifest_sha1": m.sha1,
                 "splits_from": "split column" if m.has_split else "seeded speaker shuffle by utterance share"}
        if not m.has_split:
            extra.update(split_fractions=list(cfg.split_fractions), split_seed=cfg.split_seed,
                         split_speakers={s: sorted(k for k, v in split_of.items() if v == s) for s in SPLITS},
                         split_shares={s: round(counts[s] / max(1, sum(counts.values())), 4) for s in SPLITS})
        return [u for _, u in utts], bad, extra

    @staticmethod
    def _check_disjoint(m: Manifest, utts) -> None:
        where = defaultdict(lambda: defaultdict(list))
        for r, u in utts:
            where[u.speaker][u.split].append(r.line)
        shared = {s: v for s, v in where.items() if len(v) > 1}
        if shared:
            ex = "; ".join(f"{s!r} in " + ", ".join(f"{sp} (line {lines[0]})" for sp, lines in sorted(v.items()))
                           for s, v in sorted(shared.items())[:10])
            raise ManifestError(f"manifest {m.path}: splits must be speaker-disjoint, but {len(shared)} speaker(s) "
                                f"appear in more than one split: {ex}")
