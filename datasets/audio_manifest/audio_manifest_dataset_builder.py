"""audio_manifest: any labelled audio folder, described by a CSV manifest.

The manifest is a comma-separated UTF-8 file with a header row and the columns

- ``path``: the audio file (WAV, FLAC, ... anything libsndfile reads), relative to the
  manifest's folder, or absolute (not needed with ``feature_set="embeddings"``);
- ``speaker``: speaker ID (splits are speaker-disjoint);
- ``emotion``: emotion label; the classes are the sorted unique labels of the manifest;
- ``split`` (optional): ``train``, ``validation`` or ``test`` (case-insensitive);
- ``utterance_id`` (optional): default the ``path`` value without its suffix;
- ``gender`` (optional): ``female`` or ``male`` (case-insensitive; also ``f`` / ``m``), the
  example's ``gender`` label (ClassLabel ``female``, ``male``, ``unknown``); empty, ``unknown`` or
  no column: ``unknown``.

Further columns become class labels when the config's ``label_columns`` names them
(``manifest_config(..., label_columns=["age_group"])``): each is a ClassLabel feature of the
same name whose classes are the column's sorted unique values and ``unknown`` (for empty
values), usable as a class attribute (``tfvae.attributes``). Label column names must be Python
identifiers, not one of the columns above. ``info.metadata`` counts ``gender_counts`` and
``label_counts`` per split.

Column names are case-insensitive; other columns are ignored. Rows that cannot be used (an
empty path, speaker or emotion, an unknown split, a gender other than the values above, a
duplicate utterance ID, a missing or unreadable file, audio that yields no features) are bad
items: the build stops with one
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

**Feature sets.** ``feature_set`` is an openSMILE set (``IS10`` ...: ``{"features": float32[D],
...}``), ``audio16k`` (16 kHz mono int16 waveforms, ``{"audio": ..., ...}``, see
:mod:`tfvae_datasets.audio_features`), or ``embeddings``: bring your own vectors, one per
utterance, instead of audio:

- an ``embedding`` column holding a ``.npy`` file (a 1-D float vector), relative to the
  manifest's folder or absolute; the ``path`` column is then not needed; or
- a Kaldi table given as the config field ``embeddings="exp/xvectors/xvector.scp"`` (or a
  ``.ark``), read with ``kaldiio`` and keyed by ``utterance_id`` (neither ``path`` nor
  ``embedding`` is needed; ``utterance_id`` or ``path`` gives the key).

Examples are ``{"features": float32[D], "emotion", "speaker", "utterance_id", "duration"}``
with ``duration`` NaN (unknown), so the dataset is a normal tfvae feature dataset
(``tfvae.data.load_corpus("manifest.csv", "embeddings")`` loads an ``embedding``-column
manifest). D is ``embedding_dim`` if given, else the dimension of the first readable vector in
manifest order; ``info.metadata`` records ``embedding_dim``, ``embedding_dim_from`` and
``embedding_source`` (``{"type": "npy column", ...}`` or ``{"type": "kaldi scp", "path", "sha256",
"keys"}``), and for a Kaldi table ``embedding_keys_not_in_manifest`` (a count, not an error).
Bad vectors are bad items naming the manifest line: file not found, unreadable ``.npy``, not
1-D, wrong dimension (expected and got), NaN/inf values, an utterance ID missing from the table
(``missing key``). Vectors are read in the main process (they are small; no Beam).

Use from Python::

    from tfvae_datasets.audio_manifest.audio_manifest_dataset_builder import manifest_config
    b = tfds.builder("audio_manifest", config=manifest_config("corpus/manifest.csv", "eGeMAPSv02"))
    b = tfds.builder("audio_manifest", config=manifest_config("corpus/manifest.csv", "audio16k"))
    b = tfds.builder("audio_manifest", config=manifest_config("corpus/manifest.csv", "embeddings",
                                                              embeddings="exp/xvectors/xvector.scp"))

from the command line (``python -m tfvae.train --dataset corpus/manifest.csv``), or with
``tfds build datasets/audio_manifest --config '{"manifest": "corpus/manifest.csv",
"feature_set": "IS10"}'`` (``name`` may be given; without it the name is derived as below).
The config name is ``<manifest stem>-<8 hex digits>-<feature set>``, the digits hashing the
manifest's absolute path and content and the split settings (and, for ``embeddings``, the
Kaldi table's path and SHA-256 and ``embedding_dim`` when given, and ``label_columns`` when given), so
different (or edited)
manifests do not collide in one data directory.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import re
from collections import Counter, defaultdict

import numpy as np

import tensorflow_datasets as tfds

from tfvae.features import AUDIO_SETS, EMBEDDINGS, FEATURE_SETS, FeatureError, feature_kind
from tfvae.labelled_audio import GENDERS, BadItem, Utterance, check_utterances, parse_gender
from tfvae_datasets.audio_features import SPLITS, AudioFeatureBuilder, AudioFeatureConfig, speed_config_name
from tfvae_datasets.audio_manifest.embeddings import KaldiTable, ManifestError, check_vector, read_npy  # noqa: F401
from tfvae_datasets.audio_manifest.manifest import (  # noqa: F401  (re-exported: the builder module's public API)
    DEFAULT_FRACTIONS, EMBEDDING_COLUMN, OPTIONAL_COLUMNS, REQUIRED_COLUMNS, UNKNOWN, Manifest, ManifestRow,
    assign_speakers, check_label_columns, read_manifest)

#: Columns an embeddings manifest needs besides the vectors' source.
EMBEDDING_REQUIRED = ("speaker", "emotion")
#: feature_set kinds (tfvae.features.feature_kind) this builder makes; "encoder" is not one yet.
SUPPORTED_KINDS = ("opensmile", "audio", "embeddings", "encoder")
#: Kaldi table suffixes accepted as ``embeddings=`` (read with kaldiio).
KALDI_SUFFIXES = (".scp", ".ark")
#: The one registered config; it has no manifest and only tells how to pass one.
PLACEHOLDER = "needs_manifest"
_HOW = ("pass a manifest: tfds.builder('audio_manifest', config=manifest_config('manifest.csv', 'IS10')) "
        "with manifest_config from tfvae_datasets.audio_manifest.audio_manifest_dataset_builder, "
        "`python -m tfvae.train --dataset manifest.csv`, or "
        "`tfds build datasets/audio_manifest --config '{\"manifest\": \"manifest.csv\", \"feature_set\": \"IS10\"}'`")


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


def config_name(manifest: Manifest, feature_set: str, split_fractions, split_seed: int,
                extra: list | None = None) -> str:
    """``<stem>-<sha1(abs path, content, fractions, seed[, extra])[:8]>-<feature set>``.

    ``extra``: further settings that change the data (the embeddings file and its SHA-256,
    ``embedding_dim``); absent for audio-based configs, so their names are as before."""
    key = json.dumps([str(manifest.path), manifest.sha1, list(split_fractions), int(split_seed)] + list(extra or []))
    stem = re.sub(r"[^A-Za-z0-9_-]+", "_", manifest.path.stem).strip("_") or "manifest"
    if "@" in feature_set:  # an encoder: its weights' fingerprint, not its path, names the data
        from tfvae_datasets.audio_features import encoder_config

        tag = encoder_config(feature_set).name
    else:
        tag = feature_set.lower()
    return f"{stem}-{hashlib.sha1(key.encode()).hexdigest()[:8]}-{tag}"


def file_sha256(path: str | os.PathLike) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def required_columns(feature_set: str, embeddings: str = "") -> tuple[str, ...]:
    """The manifest columns a config needs: ``path, speaker, emotion`` for audio-based feature
    sets; for ``embeddings`` ``speaker, emotion`` and the ``embedding`` column unless a Kaldi
    ``embeddings`` file gives the vectors."""
    if feature_set != EMBEDDINGS:
        return REQUIRED_COLUMNS
    return EMBEDDING_REQUIRED if embeddings else (*EMBEDDING_REQUIRED, EMBEDDING_COLUMN)


@dataclasses.dataclass
class ManifestConfig(AudioFeatureConfig):
    """``manifest``: the CSV file (made absolute); ``split_fractions`` (train, validation, test) and
    ``split_seed``: the seeded speaker split, used only without a split column. An empty
    ``name`` is derived from the manifest (:func:`config_name`); ``tfds build --config '{json}'``
    creates this class from the JSON.

    With ``feature_set="embeddings"``: ``embeddings``, a Kaldi ``.scp`` (or ``.ark``) of one vector
    per utterance ID (made absolute; relative paths are from the working directory), instead of
    the manifest's ``embedding`` column; ``embedding_dim``: the expected dimension (default: that
    of the first readable vector).

    ``label_columns``: manifest columns read as extra class labels (see the module docstring); a
    list, or a comma-separated string."""

    name: str = ""
    manifest: str = ""
    split_fractions: tuple = DEFAULT_FRACTIONS
    split_seed: int = 0
    embeddings: str = ""
    embedding_dim: int | None = None
    label_columns: tuple = ()

    def __post_init__(self):
        try:
            kind = feature_kind(self.feature_set)
        except FeatureError:
            kind = None
        if kind not in SUPPORTED_KINDS:
            raise ManifestError(f"feature_set={self.feature_set!r} is unknown; choose one of "
                                f"{', '.join([*FEATURE_SETS, *AUDIO_SETS, EMBEDDINGS])} or <arch>@<speaker encoder dir>")
        self.split_fractions = _check_fractions(self.split_fractions)
        self.split_seed = int(self.split_seed)
        self.label_columns = check_label_columns(self.label_columns)
        extra_name = [{"label_columns": list(self.label_columns)}] if self.label_columns else []
        self.speed_factors = tuple(float(f) for f in self.speed_factors)
        if self.speed_factors:
            if kind != "opensmile":
                raise ManifestError(f"speed_factors={self.speed_factors} needs an openSMILE feature set, not "
                                    f"{self.feature_set!r}")
            extra_name.append({"speed_factors": list(self.speed_factors)})
        if self.manifest:
            self.manifest = os.path.abspath(os.path.expanduser(str(self.manifest)))
        extra = self._check_embeddings(kind)
        if kind == "encoder":  # the exported encoder's version directory (checked: it must be a speaker encoder)
            from tfvae_datasets.audio_features import encoder_config

            try:
                self.feature_set = encoder_config(self.feature_set).feature_set
            except (ValueError, OSError) as e:
                raise ManifestError(str(e)) from e
        if not self.name:
            if not self.manifest:
                raise ManifestError(f"an audio_manifest config needs a manifest; {_HOW}")
            self.name = config_name(read_manifest(self.manifest, required_columns(self.feature_set, self.embeddings),
                                                  self.label_columns),
                                    self.feature_set, self.split_fractions, self.split_seed, extra + extra_name)
            if self.speed_factors:
                self.name = speed_config_name(self.name)
        if self.description is None and self.manifest:
            what = {"opensmile": f"openSMILE {self.feature_set} functionals",
                    "audio": f"{self.feature_set} waveforms",
                    "embeddings": "precomputed embeddings" + (f" from {self.embeddings}" if self.embeddings else ""),
                    "encoder": f"speaker-encoder embeddings ({self.feature_set})"}
            self.description = f"{what[kind]} of the utterances listed in {self.manifest}"

    def _check_embeddings(self, kind: str) -> list:
        """Check the embedding settings; the settings that go into the config name."""
        if kind != "embeddings":
            if self.embeddings or self.embedding_dim is not None:
                raise ManifestError(f"embeddings / embedding_dim are settings of feature_set={EMBEDDINGS!r}, "
                                    f"not of {self.feature_set!r}")
            return []
        if self.embedding_dim is not None:
            try:
                dim = int(self.embedding_dim)
            except (TypeError, ValueError):
                dim = 0
            if dim < 1 or dim != self.embedding_dim:
                raise ManifestError(f"embedding_dim={self.embedding_dim!r} must be a positive integer")
            self.embedding_dim = dim
        if not self.embeddings:
            return [] if self.embedding_dim is None else [self.embedding_dim]
        self.embeddings = os.path.abspath(os.path.expanduser(str(self.embeddings)))
        if not self.embeddings.endswith(KALDI_SUFFIXES):
            raise ManifestError(f"embeddings={self.embeddings!r} must be a Kaldi table ({' or '.join(KALDI_SUFFIXES)}, "
                                "e.g. xvector.scp); give .npy files in the manifest's embedding column instead")
        if not os.path.isfile(self.embeddings):
            raise ManifestError(f"embeddings file {self.embeddings} does not exist")
        return [self.embeddings, file_sha256(self.embeddings), self.embedding_dim]


def manifest_config(manifest: str | os.PathLike, feature_set: str = "IS10", skip_bad_items: bool = False,
                    split_fractions=DEFAULT_FRACTIONS, split_seed: int = 0, workers: int | None = None,
                    embeddings: str | os.PathLike | None = None, embedding_dim: int | None = None,
                    label_columns=(), speed_factors=()) -> ManifestConfig:
    """The config of one manifest; pass it as ``tfds.builder("audio_manifest", config=...)``.

    ``feature_set``: an openSMILE set (``"IS10"`` ...), ``"audio16k"`` (waveforms) or
    ``"embeddings"`` (vectors from the manifest's ``embedding`` column of ``.npy`` files, or from
    the Kaldi ``embeddings`` scp/ark, e.g. ``"exp/xvectors/xvector.scp"``). ``label_columns``:
    manifest columns read as extra class labels (``gender`` is always read when present).
    ``speed_factors`` (openSMILE sets): store speed-perturbed copies too (:mod:`tfvae.speed`)."""
    return ManifestConfig(manifest=str(manifest), feature_set=feature_set, skip_bad_items=skip_bad_items,
                          split_fractions=split_fractions, split_seed=split_seed, workers=workers,
                          embeddings=str(embeddings) if embeddings else "", embedding_dim=embedding_dim,
                          label_columns=check_label_columns(label_columns), speed_factors=tuple(speed_factors))


# ---------------------------------------------------------------------------------- builder
class Builder(AudioFeatureBuilder):
    """Any labelled audio folder described by a CSV manifest: openSMILE functionals, 16 kHz
    waveforms, or precomputed embeddings."""

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
            m = self.__dict__["_manifest_cache"] = read_manifest(
                cfg.manifest, required_columns(cfg.feature_set, cfg.embeddings), cfg.label_columns)
        return m

    @staticmethod
    def _ids(m: Manifest) -> list[str]:
        """Utterance IDs: the ``utterance_id`` column, else ``path`` (or, without one, the
        ``embedding`` file) without its suffix, else ``line N``."""
        return [r.utterance_id or (os.path.splitext(r.path or r.embedding)[0] if (r.path or r.embedding)
                                   else f"line {r.line}") for r in m.rows]

    def _embedding_path(self, r: ManifestRow) -> str:
        """The absolute ``.npy`` path of a row's ``embedding`` value (relative to the manifest's folder)."""
        return os.path.normpath(str(self._manifest().path.parent / os.path.expanduser(r.embedding))) \
            if r.embedding else ""

    def _embeddings(self) -> dict:
        """The vectors' source, read once per builder: ``{"table": KaldiTable | None, "dim": D,
        "metadata": {...}}``; D is ``embedding_dim`` or that of the first readable 1-D vector in
        manifest order."""
        src = self.__dict__.get("_embeddings_cache")
        if src is not None:
            return src
        cfg, m = self.builder_config, self._manifest()
        table = KaldiTable(cfg.embeddings) if cfg.embeddings else None
        if table is not None:
            source = {"type": table.kind, "path": cfg.embeddings, "sha256": file_sha256(cfg.embeddings),
                      "keys": len(table.keys)}
        else:
            source = {"type": "npy column", "column": EMBEDDING_COLUMN}
        dim, dim_from = cfg.embedding_dim, "embedding_dim"
        if dim is None:
            for uid, r in zip(self._ids(m), m.rows):
                try:
                    v = table.get(uid) if table is not None else \
                        read_npy(self._embedding_path(r), mmap=True) if r.embedding else None
                except FeatureError:
                    continue
                if v is not None and v.ndim == 1 and v.dtype.kind in "fiu" and v.shape[0] > 0:
                    dim, dim_from = int(v.shape[0]), f"first readable vector ({uid})"
                    break
            else:
                where = cfg.embeddings or f"the {EMBEDDING_COLUMN!r} column of {m.path}"
                raise ManifestError(f"no readable 1-D embedding for the utterances of {m.path} in {where}; "
                                    "fix the files or set embedding_dim")
        src = self.__dict__["_embeddings_cache"] = {
            "table": table, "dim": dim,
            "metadata": {"feature_set": EMBEDDINGS, "embedding_dim": dim, "embedding_dim_from": dim_from,
                         "embedding_source": source}}
        return src

    def _input_feature(self):
        if feature_kind(self.builder_config.feature_set) == "embeddings":
            src = self._embeddings()
            return "features", tfds.features.Tensor(shape=(src["dim"],), dtype=np.float32), dict(src["metadata"])
        return super()._input_feature()

    def _label_names(self) -> dict[str, list[str]]:
        m = self._manifest()
        return {"gender": list(GENDERS), **{c: m.label_classes(c) for c in m.label_columns}}

    def _emotion_names(self) -> list[str]:
        names = self._manifest().emotions
        if not names:
            raise ManifestError(f"manifest {self._manifest().path} has no emotion labels")
        return names

    def _utterances(self, dl_manager):
        cfg = self.builder_config
        m = self._manifest()
        base = m.path.parent
        embeddings = feature_kind(cfg.feature_set) == "embeddings"
        ids = self._ids(m)
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
            needed = ("path", "speaker", "emotion")
            if embeddings:  # the example's path is the vector's source
                needed = ("speaker", "emotion") if cfg.embeddings else (EMBEDDING_COLUMN, "speaker", "emotion")
                path = cfg.embeddings or self._embedding_path(r)
                if cfg.embeddings and not (r.utterance_id or r.path):
                    reasons.append(f"empty utterance_id (the key into {os.path.basename(cfg.embeddings)})")
            for name in needed:
                if not getattr(r, name):
                    reasons.append(f"empty {name}")
            gender = parse_gender(r.gender)
            if gender is None:
                reasons.append(f"unknown gender {r.gender!r} (expected female, male, f or m in any case; empty "
                               "for unknown)")
            labels = {"gender": gender, **{c: (v if v and v.lower() != UNKNOWN else UNKNOWN)
                                           for c, v in r.labels.items()}}
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
                utts.append((r, Utterance(uid, path, r.speaker, r.emotion, split, labels)))
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

    def _split_generators(self, dl_manager):
        cfg = self.builder_config
        if feature_kind(cfg.feature_set) != "embeddings":
            return super()._split_generators(dl_manager)
        # precomputed vectors: small, read here in the main process (no workers, no Beam)
        from tfvae.labelled_audio import assert_speaker_disjoint

        utts, bad, extra = self._utterances(dl_manager)
        good, more_bad = check_utterances(utts, self._emotion_names(), SPLITS, check_files=False,
                                          labels=self._label_names())
        bad = list(bad) + more_bad
        assert_speaker_disjoint(good, self.name)
        src = self._embeddings()
        table, rows = src["table"], dict(zip(self._ids(self._manifest()), self._manifest().rows))
        examples, kept = {s: [] for s in SPLITS}, []
        for u in good:
            try:
                v = table.get(u.utterance_id) if table is not None else read_npy(u.path)
                v = check_vector(v, src["dim"])
            except FeatureError as e:
                bad.append(BadItem(u.utterance_id, u.path, f"manifest line {rows[u.utterance_id].line}: {e}"))
                continue
            examples[u.split].append((u.utterance_id, {
                "features": v, "duration": np.float32(np.nan), **u.labels, "emotion": u.emotion,
                "speaker": u.speaker, "utterance_id": u.utterance_id}))
            kept.append(u)
        if table is not None:
            extra["embedding_keys_not_in_manifest"] = len(table.keys - set(rows))
        self._record(kept, bad, extra)
        return {s: self._generate_examples(examples[s]) for s in SPLITS}

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
