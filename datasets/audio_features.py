"""Shared base of tfvae's TFDS builders over labelled audio: features or waveforms per utterance.

A subclass lists its corpus's utterances (:meth:`AudioFeatureBuilder._utterances`); the base
checks them, extracts what the config's ``feature_set`` names over all cores (or with Apache
Beam), settles bad items (stop with one report, or skip and record), and writes examples.
What is extracted depends on :func:`tfvae.features.feature_kind` of the ``feature_set``:

* ``"opensmile"`` (configs ``is10`` (default), ``is09``, ``emobase``, ``egemapsv02``,
  ``compare_2016``)::

    {"features": float32[D], "emotion": ClassLabel, "gender": ClassLabel(female, male, unknown),
     "speaker": str, "utterance_id": str, "duration": float32 seconds}

  with the openSMILE ``feature_names`` in ``info.metadata``;
* ``"audio"`` (config ``audio16k``)::

    {"audio": tfds.features.Audio(shape=(None,), dtype=int16, sample_rate=16000),
     "emotion": ClassLabel, "gender": ClassLabel, "speaker": str, "utterance_id": str, "duration": float32 seconds}

  the mono waveform (channels averaged), resampled to 16 kHz with ``scipy.signal.resample_poly``,
  as int16 (``tfvae.audio.from_int16`` gives float32 in [-1, 1)); stored as raw bytes (2 bytes a
  sample). ``info.metadata["sample_rate"]`` is 16000; ``supervised_keys`` stay
  ``(input, "emotion")`` as for the feature configs. Files are read twice: a parallel first
  pass finds the bad ones before anything is written, a streamed second pass writes the
  waveforms, so memory does not grow with the corpus.

Every example has the extra class labels of :meth:`AudioFeatureBuilder._label_names`: ``gender``
(``female``, ``male``, ``unknown`` where the corpus does not say) in every builder, and whatever
a subclass adds (a CSV manifest's ``label_columns``). ``info.metadata`` also records
``feature_set``, class counts, speakers and ``gender_counts`` (``{split: {female: n, male: n,
unknown: n}}``) per split (``label_counts`` ``{label: {split: {class: n}}}`` for labels other
than gender), and the skipped items, in every config.
"""

from __future__ import annotations

import dataclasses
import functools
from pathlib import Path
from typing import Callable

import numpy as np
import tensorflow_datasets as tfds

from tfvae.audio import check_audio_file, load_audio_file
from tfvae.features import (AUDIO_SETS, FEATURE_SETS, SPEED_FACTORS, FeatureExtractor, extract_file, feature_kind,
                            parallel_imap, parallel_map)
from tfvae.labelled_audio import (GENDERS, BadItem, Utterance, check_utterances, class_counts, label_counts,
                                  settle_bad_items)

SPLITS = ("train", "validation", "test")


@dataclasses.dataclass
class AudioFeatureConfig(tfds.core.BuilderConfig):
    """``feature_set``: openSMILE functionals set or ``audio16k`` (see
    :func:`tfvae.features.feature_kind`); ``skip_bad_items``: skip (and report) items that
    cannot be used instead of stopping; ``beam``: extract with Apache Beam (also switched on by
    ``tfds build ... --beam_pipeline_options=...``); ``workers``: local processes (default all
    cores). ``skip_bad_items`` and ``workers`` can also be given to the builder itself.
    ``speed_factors`` (openSMILE sets only): every example also holds the features of its audio
    played at each of these speeds, ``"speed_perturbed": float32[F, D]``
    (:func:`tfvae.features.speed_perturbed`); the ``<set>_sp`` configs use
    :data:`tfvae.features.SPEED_FACTORS`."""

    feature_set: str = "IS10"
    skip_bad_items: bool = False
    beam: bool = False
    workers: int | None = None
    speed_factors: tuple = ()


def feature_set_configs(cls=AudioFeatureConfig, **fields) -> list:
    """One config per openSMILE feature set, named by the set in lower case (``is10`` ...), then
    one per waveform set (``audio16k``), then one with speed-perturbed copies per openSMILE set
    (``is10_sp`` ...)."""
    return ([cls(name=fs.lower(), feature_set=fs, description=f"openSMILE {fs} functionals ({dim} features)",
                 **fields) for fs, (_, dim) in FEATURE_SETS.items()]
            + [cls(name=fs, feature_set=fs, description=f"mono waveforms at {rate} Hz (int16)", **fields)
               for fs, rate in AUDIO_SETS.items()]
            + [cls(name=speed_config_name(fs.lower()), feature_set=fs, speed_factors=SPEED_FACTORS,
                   description=f"openSMILE {fs} functionals ({dim} features), with those of the audio at speeds "
                               f"{', '.join(f'{f:g}' for f in SPEED_FACTORS)}", **fields)
               for fs, (_, dim) in FEATURE_SETS.items()])


#: Suffix of the configs with speed-perturbed copies (``is10`` -> ``is10_sp``).
SPEED_SUFFIX = "_sp"


def speed_config_name(name: str) -> str:
    """The name of the config with speed-perturbed copies of config ``name``."""
    return name + SPEED_SUFFIX


def speed_perturbed_feature(factors, dim: int) -> dict:
    """The extra example feature of a config with ``speed_factors`` (none without)."""
    if not factors:
        return {}
    return {"speed_perturbed": tfds.features.Tensor(shape=(len(factors), dim), dtype=np.float32)}


# ---------------------------------------------------------------------------------- waveforms
def audio_feature(sample_rate: int) -> tfds.features.Audio:
    """The ``audio`` feature of the waveform configs: mono int16 at ``sample_rate``, stored as raw bytes."""
    return tfds.features.Audio(shape=(None,), dtype=np.int16, sample_rate=int(sample_rate), encoding="bytes",
                               doc=f"mono waveform, {sample_rate} Hz, int16 (divide by 32768 for [-1, 1))")


_ARRAYS_PASS_THROUGH: list[bool] = []


def audio_value(x: np.ndarray):
    """What ``_generate_examples`` yields for an :func:`audio_feature` from an int16 waveform.

    ``tfds.features.Audio.encode_example`` (TFDS 4.9) returns numpy arrays as they are, skipping
    its ``encoding``, so a ``"bytes"`` Audio feature would fail to serialize an array; this
    hands it the raw little-endian bytes it stores instead. Checked once against the installed
    TFDS: where arrays are encoded properly, the array itself is returned.
    """
    x = np.asarray(x)
    if x.dtype != np.int16 or x.ndim != 1:
        raise ValueError(f"waveforms are stored as int16 (frames,), got {x.dtype} {x.shape}")
    if not _ARRAYS_PASS_THROUGH:
        probe = tfds.features.Audio(shape=(None,), dtype=np.int16, encoding="bytes").encode_example(
            np.zeros(2, np.int16))
        _ARRAYS_PASS_THROUGH.append(isinstance(probe, np.ndarray) and probe.dtype == np.int16)
    if _ARRAYS_PASS_THROUGH[0]:
        return np.asarray(x.astype("<i2", copy=False).tobytes(), dtype=object)
    return x


# ---------------------------------------------------------------------------------- extraction
@dataclasses.dataclass(frozen=True)
class Extraction:
    """How one ``feature_set`` kind turns an utterance's file into example fields.

    ``fn(arg(path))`` runs in :func:`tfvae.features.parallel_map` workers (a picklable,
    module-level, TensorFlow-free function) and returns the example's fields (``duration`` and
    the input: ``features`` or ``audio``), or raises :class:`tfvae.features.FeatureError` (a bad
    item). With ``stream`` set, ``fn`` only checks the file (and returns small values); the
    fields are made by ``stream(arg(path))`` over :func:`tfvae.features.parallel_imap` while
    writing, for values too big to hold for a whole corpus (waveforms). Beam runs ``stream or
    fn`` once per utterance.
    """

    fn: Callable
    arg: Callable[[str], object]
    desc: str
    stream: Callable | None = None
    #: in-process transform of a chunk of streamed ``[(utterance, fields)]`` (e.g. a TensorFlow encoder)
    post: Callable | None = None
    #: first pass: files with fewer samples (``fn`` returns ``samples``) are bad items, with this reason
    min_samples: int = 0
    short_reason: str = ""
    #: Beam cannot run ``post`` (it needs the encoder in-process): build such kinds locally
    beam: bool = True


def _beam_step(item: tuple) -> list:
    """Beam step: one utterance -> ``[(key, example)]``; a failure raises naming the item."""
    fn, arg, u = item
    try:
        out = fn(arg)
    except Exception as e:  # noqa: BLE001 - name the item, keep the reason
        raise RuntimeError(f"{u.utterance_id} ({u.path}): {e}") from e
    return [(u.utterance_id, _example(out, u))]


def _example(out: dict, u: Utterance) -> dict:
    out = dict(out)
    out.pop("samples", None)
    if "audio" in out:
        out["audio"] = audio_value(out["audio"])
    return {**out, **u.labels, "emotion": u.emotion, "speaker": u.speaker, "utterance_id": u.utterance_id}


# ---------------------------------------------------------------------------------- encoders
@functools.lru_cache(maxsize=16)
def _encoder_meta(feature_set: str) -> dict:
    """The metadata of the exported speaker encoder a ``<arch>@<path>`` feature set names (checked; read once per
    feature set, which names a resolved version directory: versions are immutable). Callers must not mutate it."""
    from tfvae.features import FeatureError, split_encoder
    from tfvae.speaker.export import read_metadata

    arch, path = split_encoder(feature_set)
    _, meta = read_metadata(path)
    if meta.get("arch") != arch:
        raise FeatureError(f"feature_set={feature_set!r}: the encoder at {path} is a {meta.get('arch')}, not {arch}")
    return meta


def _encoder_description(feature_set: str, meta: dict) -> dict:
    from tfvae.features import split_encoder

    return {"path": split_encoder(feature_set)[1], "arch": meta.get("arch"), "embedding_dim": meta.get("embedding_dim"),
            "weights_sha256": meta.get("weights_sha256"), "min_samples": meta.get("min_samples"),
            "trained_on": (meta.get("training") or {}).get("dataset"), "preset": (meta.get("training") or {}).get("preset")}


def encoder_config(feature_set: str, cls=None, **fields):
    """The builder config of a ``<arch>@<encoder dir>`` feature set, named ``<arch>-<weights fingerprint>``.

    The path is resolved to the encoder's SavedModel version directory, so the same encoder gives the same
    dataset and an encoder re-trained in place (new weights) a new one.
    """
    from tfvae.features import split_encoder
    from tfvae.speaker.export import read_metadata

    arch, path = split_encoder(feature_set)
    d, _ = read_metadata(path)
    fs = f"{arch}@{d.resolve()}"
    meta = _encoder_meta(fs)  # checks the architecture too
    fp = str(meta.get("weights_sha256", ""))[:12]
    return (cls or AudioFeatureConfig)(name=f"{arch}-{fp}", feature_set=fs, **fields,
                                       description=f"{arch} speaker-encoder embeddings ({meta['embedding_dim']}-d, "
                                                   f"weights {fp}) of {d}")


class _EncoderChunks:
    """Embeds chunks of streamed waveforms with the feature set's encoder (loaded once, in this process)."""

    SIZE = 256

    def __init__(self, feature_set: str):
        self.feature_set = feature_set
        self._extractor = None

    def __call__(self, chunk: list) -> list:
        from tfvae.audio import from_int16
        from tfvae.features import split_encoder
        from tfvae.speaker.extract import Extractor

        if self._extractor is None:
            self._extractor = Extractor(split_encoder(self.feature_set)[1])
        emb, errors = self._extractor([from_int16(v["audio"]) for _, v in chunk])
        if errors:
            i, reason = next(iter(errors.items()))
            u = chunk[i][0]
            raise RuntimeError(f"{u.utterance_id} ({u.path}) passed the check but the encoder refused it: {reason}")
        return [(u.utterance_id, {"features": emb[i], "duration": v["duration"], **u.labels, "emotion": u.emotion,
                                  "speaker": u.speaker, "utterance_id": u.utterance_id})
                for i, (u, v) in enumerate(chunk)]


class AudioFeatureBuilder(tfds.core.GeneratorBasedBuilder, skip_registration=True):
    """Base class; subclasses set ``EMOTIONS`` and implement :meth:`_utterances`.

    Extending to another ``feature_set`` kind (e.g. ``"encoder"``, ``"<arch>@<path>"``): add a
    branch to :meth:`_input_feature` (the example's input feature and its metadata) and to
    :meth:`_extraction` (the worker function); the rest (checks, bad items, Beam) is shared.
    """

    VERSION = tfds.core.Version("1.2.0")
    RELEASE_NOTES = {"1.0.0": "Initial release.",
                     "1.1.0": "audio16k config: 16 kHz mono int16 waveforms; feature configs unchanged.",
                     "1.2.0": "Adds the gender label (ClassLabel female, male, unknown) to every example and "
                              "gender_counts per split to the metadata; other features unchanged."}
    BUILDER_CONFIGS = feature_set_configs()
    DEFAULT_CONFIG_NAME = "is10"
    EMOTIONS: tuple[str, ...] = ()
    #: Splits must not share speakers (asserted before extraction).
    SPEAKER_DISJOINT = True

    def __init__(self, *, skip_bad_items: bool | None = None, workers: int | None = None, **kwargs):
        """``skip_bad_items`` / ``workers`` override the config's fields, so a registered config
        (``tfds.builder("ravdess/is10", skip_bad_items=True)``) can skip bad items without a new
        config name."""
        super().__init__(**kwargs)
        cfg = self.builder_config
        self.skip_bad_items = cfg.skip_bad_items if skip_bad_items is None else bool(skip_bad_items)
        self.workers = cfg.workers if workers is None else workers
        self._use_beam = cfg.beam

    def _download_and_prepare(self, dl_manager, download_config=None):
        # `tfds build --beam_pipeline_options=...` (or a DownloadConfig with a Beam runner or
        # options) switches feature extraction to Apache Beam.
        if download_config is not None and (download_config.beam_options is not None
                                            or download_config.beam_runner is not None):
            self._use_beam = True
        return super()._download_and_prepare(dl_manager, download_config)

    # ------------------------------------------------------------------ subclass API
    def _utterances(self, dl_manager) -> tuple[list[Utterance], list[BadItem], dict]:
        """All utterances, the items already known bad, and extra metadata (e.g. dropped classes)."""
        raise NotImplementedError

    def _emotion_names(self) -> list[str]:
        return list(self.EMOTIONS)

    def _label_names(self) -> dict[str, list[str]]:
        """The extra ClassLabel features of the examples and their classes (``unknown`` last):
        ``gender`` here; a subclass may add some. An utterance without a value gets ``unknown``."""
        return {"gender": list(GENDERS)}

    def _description(self) -> str:
        return self.__doc__ or ""

    # ------------------------------------------------------------------ feature-set kinds
    def _input_feature(self) -> tuple[str, tfds.features.FeatureConnector, dict]:
        """``(key, feature, metadata)`` of the example's input for the config's ``feature_set``."""
        fs = self.builder_config.feature_set
        kind = feature_kind(fs)
        if kind == "opensmile":
            dim = FEATURE_SETS[fs][1]
            factors = self._speed_factors()
            speed = {"speed_factors": list(factors)} if factors else {}
            return ("features", tfds.features.Tensor(shape=(dim,), dtype=np.float32),
                    {"feature_set": fs, "feature_names": FeatureExtractor(fs).names, **speed})
        if kind == "audio":
            rate = AUDIO_SETS[fs]
            return "audio", audio_feature(rate), {"feature_set": fs, "sample_rate": rate}
        if kind == "encoder":
            meta = _encoder_meta(fs)
            return ("features", tfds.features.Tensor(shape=(int(meta["embedding_dim"]),), dtype=np.float32),
                    {"feature_set": fs, "encoder": _encoder_description(fs, meta),
                     "encoder_fingerprint": str(meta.get("weights_sha256", ""))[:12]})
        raise NotImplementedError(f"{self.name}: feature_set={fs!r} (kind {kind!r}) is not supported by this builder")

    def _speed_factors(self) -> tuple[float, ...]:
        """The config's speed factors (checked: only openSMILE sets have speed-perturbed copies)."""
        cfg = self.builder_config
        factors = tuple(float(f) for f in cfg.speed_factors)
        if factors and feature_kind(cfg.feature_set) != "opensmile":
            raise NotImplementedError(f"{self.name}/{cfg.name}: speed_factors={factors} needs an openSMILE feature "
                                      f"set, not {cfg.feature_set!r}")
        return factors

    def _extraction(self) -> Extraction:
        """The worker function(s) of the config's ``feature_set`` (see :class:`Extraction`)."""
        fs = self.builder_config.feature_set
        kind = feature_kind(fs)
        factors = self._speed_factors()
        if kind == "opensmile":
            return Extraction(extract_file, lambda path: (fs, path, factors) if factors else (fs, path), "openSMILE")
        if kind == "audio":
            rate = AUDIO_SETS[fs]
            return Extraction(check_audio_file, lambda path: (path, rate), "audio check", stream=load_audio_file)
        if kind == "encoder":
            meta = _encoder_meta(fs)
            rate = int(meta.get("sample_rate", 16000))
            minimum = int(meta["min_samples"])
            return Extraction(check_audio_file, lambda path: (path, rate), "audio check", stream=load_audio_file,
                              post=_EncoderChunks(fs), min_samples=minimum, beam=False,
                              short_reason=f"audio shorter than the encoder minimum ({minimum / rate:.2f} s)")
        raise NotImplementedError(f"{self.name}: feature_set={fs!r} (kind {kind!r}) is not supported by this builder")

    # ------------------------------------------------------------------ TFDS
    def _info(self) -> tfds.core.DatasetInfo:
        key, feature, meta = self._input_feature()
        return self.dataset_info_from_configs(
            description=self._description(),
            features=tfds.features.FeaturesDict({
                key: feature,
                **speed_perturbed_feature(self._speed_factors(), feature.shape[-1] if feature.shape else 0),
                "emotion": tfds.features.ClassLabel(names=self._emotion_names()),
                **{k: tfds.features.ClassLabel(names=v) for k, v in self._label_names().items()},
                "speaker": tfds.features.Text(),
                "utterance_id": tfds.features.Text(),
                "duration": tfds.features.Scalar(dtype=np.float32),
            }),
            supervised_keys=(key, "emotion"),
            metadata=tfds.core.MetadataDict(**meta),
        )

    def _splits(self) -> tuple[str, ...]:
        """The splits this config builds (``train``, ``validation``, ``test``; subclasses may add some)."""
        return SPLITS

    def _split_generators(self, dl_manager):
        cfg = self.builder_config
        splits = self._splits()
        utts, bad, extra = self._utterances(dl_manager)
        good, more_bad = check_utterances(utts, self._emotion_names(), splits, labels=self._label_names())
        bad = list(bad) + more_bad
        if self.SPEAKER_DISJOINT:
            from tfvae.labelled_audio import assert_speaker_disjoint

            assert_speaker_disjoint(good, self.name)
        ex = self._extraction()
        if self._use_beam and not ex.beam:
            raise RuntimeError(f"{self.name}/{cfg.name}: feature_set={cfg.feature_set!r} runs a TensorFlow encoder "
                               "in-process and is built locally; build it without Beam")
        if self._use_beam:
            self._record(good, bad, extra)
            return {s: self._beam_examples([u for u in good if u.split == s], ex) for s in splits}
        outcomes = parallel_map(ex.fn, [(u.utterance_id, ex.arg(u.path)) for u in good],
                                workers=self.workers, desc=f"{self.name}/{cfg.name} {ex.desc}")
        examples = {s: [] for s in splits}
        kept = []
        for u, o in zip(good, outcomes):
            if o.ok and ex.min_samples and int(o.value.get("samples", ex.min_samples)) < ex.min_samples:
                bad.append(BadItem(u.utterance_id, u.path, f"{ex.short_reason}: {o.value['samples']} samples"))
            elif o.ok:
                examples[u.split].append(u if ex.stream else (u.utterance_id, _example(o.value, u)))
                kept.append(u)
            else:
                bad.append(BadItem(u.utterance_id, u.path, o.error.split(": ", 1)[-1]))
        self._record(kept, bad, extra)
        if ex.stream:
            return {s: self._stream_examples(examples[s], ex, s) for s in splits}
        return {s: self._generate_examples(examples[s]) for s in splits}

    def _record(self, kept: list[Utterance], bad: list[BadItem], extra: dict) -> None:
        """Settle bad items (raise or report) and put counts into ``info.metadata``."""
        cfg = self.builder_config
        data_dir = Path(self.data_dir)  # the in-progress directory while generating
        report = data_dir / "bad_items.json" if self.skip_bad_items else \
            data_dir.parent / f"bad_items-{self.version}.json"
        skipped = settle_bad_items(bad, self.skip_bad_items, report, f"{self.name}/{cfg.name}")
        counts = class_counts(kept)
        labels = {k: label_counts(kept, k, v, self._splits()) for k, v in self._label_names().items()}
        gender = labels.pop("gender", None)
        self.info.metadata.update({
            "class_counts": {s: counts.get(s, {}) for s in self._splits()},
            "speakers_per_split": {s: len({u.speaker for u in kept if u.split == s}) for s in self._splits()},
            **({"gender_counts": gender} if gender is not None else {}),
            **({"label_counts": labels} if labels else {}),
            "skipped": skipped, **extra})

    def _generate_examples(self, examples):
        yield from examples

    def _stream_examples(self, utts: list[Utterance], ex: Extraction, split: str):
        """Second pass of a streamed kind: make the fields in workers while TFDS writes them."""
        by_id = {u.utterance_id: u for u in utts}
        chunk = []
        for o in parallel_imap(ex.stream, [(u.utterance_id, ex.arg(u.path)) for u in utts], workers=self.workers,
                               desc=f"{self.name}/{self.builder_config.name} {split}"):
            u = by_id[o.key]
            if not o.ok:  # passed the first pass: the file changed while building
                raise RuntimeError(f"{u.utterance_id} ({u.path}) failed while writing, after passing the check: "
                                   f"{o.error}")
            if ex.post is None:
                yield u.utterance_id, _example(o.value, u)
                continue
            chunk.append((u, o.value))
            if len(chunk) >= _EncoderChunks.SIZE:
                yield from ex.post(chunk)
                chunk = []
        if chunk:
            yield from ex.post(chunk)

    def _beam_examples(self, utts: list[Utterance], ex: Extraction | None = None):
        beam = tfds.core.lazy_imports.apache_beam
        ex = ex or self._extraction()
        fn = ex.stream or ex.fn
        return beam.Create([(fn, ex.arg(u.path), u) for u in utts]) | beam.FlatMap(_beam_step)
