"""TFDS dataset -> validated arrays (in memory or streamed); their ``tf.data`` pipelines: :mod:`tfvae.pipeline`.

Every tfvae dataset has the splits ``train``, ``validation``, ``test`` (speaker-disjoint) and
examples ``{"features": float32[D], "emotion": ClassLabel, "speaker": str,
"utterance_id": str, "duration": float32}``, and any number of extra ClassLabel features
(``gender``, a manifest's ``label_columns``): read as int arrays of their known classes, the class
``unknown`` as -1 (:attr:`Split.labels`, :attr:`Corpus.label_names`, :meth:`Corpus.labels`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

SPLITS = ("train", "validation", "test")
#: Default ``load_corpus(in_memory_mb=...)``: the features of larger corpora are streamed from the TFDS files.
IN_MEMORY_MB = 128.0


class DataError(ValueError):
    """The data cannot be used for training; the message lists every problem found."""


#: The class of an extra label that stands for "not known"; read as -1.
UNKNOWN = "unknown"


def known_classes(names) -> list[str]:
    """A ClassLabel's classes without :data:`UNKNOWN` (the classes a label attribute predicts)."""
    return [n for n in names if n != UNKNOWN]


def label_remap(names) -> np.ndarray:
    """ClassLabel index -> index among :func:`known_classes` (int64), -1 for :data:`UNKNOWN`."""
    known = known_classes(names)
    return np.array([known.index(n) if n != UNKNOWN else -1 for n in names], np.int64)


@dataclass
class Split:
    """One split: labels as arrays, ``features`` as a float32 array or, for large splits, a
    :class:`tfvae.stream.StreamedFeatures` read from the TFDS files on demand. ``labels``: the
    dataset's extra class labels other than emotion (``{"gender": int64[n]}``), -1 where unknown."""

    features: np.ndarray
    emotion: np.ndarray
    speaker: np.ndarray
    utterance_id: np.ndarray
    labels: dict[str, np.ndarray] = field(default_factory=dict)
    #: in-memory speed-perturbed copies of the features, float32[n, F, D] (``<set>_sp`` datasets; None
    #: otherwise, and for streamed features, whose copies stay in the TFDS files)
    perturbed: np.ndarray | None = None

    def __len__(self) -> int:
        return int(self.features.shape[0])

    def select(self, index) -> "Split":
        """The rows ``index`` selects (a boolean mask, or positions): labels and features alike.
        Streamed features stay streamed under a mask; positions read them into memory."""
        from tfvae.stream import is_streamed, rows

        index = np.asarray(index)
        if index.dtype == bool:
            features = self.features[index]
        else:
            index = index.astype(np.int64)
            features = rows(self.features, index) if is_streamed(self.features) else self.features[index]
        return Split(features, self.emotion[index], self.speaker[index], self.utterance_id[index],
                     {k: v[index] for k, v in self.labels.items()},
                     None if self.perturbed is None else self.perturbed[index])


def concat_splits(splits: list[Split]) -> Split:
    """The rows of ``splits`` in order (streamed features stay streamed; all or none must be);
    the labels every split has are kept."""
    from tfvae.stream import concatenate, is_streamed

    feats = [s.features for s in splits]
    joined = concatenate(feats) if is_streamed(feats[0]) else np.concatenate(feats)
    names = [k for k in splits[0].labels if all(k in s.labels for s in splits)]
    copies = [s.perturbed for s in splits if len(s)]  # an empty split may lack them
    perturbed = None if not copies or any(c is None for c in copies) else np.concatenate(copies)
    return Split(joined, np.concatenate([s.emotion for s in splits]), np.concatenate([s.speaker for s in splits]),
                 np.concatenate([s.utterance_id for s in splits]),
                 {k: np.concatenate([s.labels[k] for s in splits]) for k in names}, perturbed)


@dataclass
class Corpus:
    """All splits of one dataset/feature set: labels in memory, features in memory or streamed."""

    name: str
    feature_set: str
    emotion_names: list[str]
    splits: dict[str, Split]
    feature_names: list[str] | None = None
    info: dict = field(default_factory=dict)
    #: classes of each extra label (:attr:`Split.labels`), without ``unknown``
    label_names: dict[str, list[str]] = field(default_factory=dict)
    #: speeds of the examples' speed-perturbed copies (``<set>_sp`` datasets), () without
    speed_factors: tuple[float, ...] = ()

    @property
    def dim(self) -> int:
        return int(self.splits["train"].features.shape[1])

    def available_labels(self) -> list[str]:
        """``emotion`` and the extra labels."""
        return ["emotion", *self.label_names]

    def class_names(self, name: str) -> list[str]:
        """The known classes of the label ``name`` (``emotion`` or an extra label)."""
        if name == "emotion":
            return list(self.emotion_names)
        self._check_label(name)
        return list(self.label_names[name])

    def labels(self, split: str, name: str) -> np.ndarray:
        """int64 labels ``name`` (``emotion`` or an extra label) of ``split``; -1 where unknown."""
        if name == "emotion":
            return np.asarray(self.splits[split].emotion, np.int64)
        self._check_label(name)
        sp = self.splits[split]
        if name not in sp.labels:
            raise DataError(f"split {split!r} of dataset {self.name} has no {name!r} labels")
        return np.asarray(sp.labels[name], np.int64)

    def _check_label(self, name: str) -> None:
        if name not in self.label_names:
            raise DataError(f"dataset {self.name} has no label {name!r}; it has: {', '.join(self.available_labels())}")

    def speaker_index(self) -> dict[str, int]:
        """Training speakers -> classifier index (sorted, so it is reproducible)."""
        return {s: i for i, s in enumerate(sorted(set(self.splits["train"].speaker.tolist())))}

    def speaker_labels(self, split: str) -> np.ndarray:
        """Speaker-classifier labels; -1 for speakers not in the training split."""
        index = self.speaker_index()
        return np.array([index.get(s, -1) for s in self.splits[split].speaker.tolist()], dtype=np.int32)


def builder_name(dataset: str, feature_set: str) -> str:
    """``name`` -> ``name/<feature set config>``; ``name/config`` is kept as given."""
    return dataset if "/" in dataset else f"{dataset}/{feature_set.lower()}"


def load_corpus(dataset: str, feature_set: str = "IS10", data_dir: str | None = None,
                manual_dir: str | None = None, skip_bad_items: bool = False, wait_for_build: float = 0,
                in_memory_mb: float = IN_MEMORY_MB, label_columns=(), speed_perturb: bool = False) -> Corpus:
    """Build the TFDS dataset if needed and read its three splits into numpy arrays.

    ``dataset`` is a registered name (``name`` or ``name/config``) or the path of a CSV manifest
    (``*.csv``, see ``tfvae_datasets.audio_manifest``), built as an ``audio_manifest`` dataset.
    ``feature_set`` is an openSMILE set, ``embeddings`` (a manifest's own vectors) or
    ``<arch>@<exported speaker encoder>`` (embeddings extracted with it, e.g. ``xvector@saved_models/x``).
    ``skip_bad_items``: skip unusable items (listed in ``bad_items.json`` beside the dataset)
    instead of stopping; it matters only when the dataset is built here. Problems with the
    data (bad items, a bad manifest, a missing manual download) raise :class:`DataError`.
    ``wait_for_build`` > 0: do not build; wait up to that many seconds for another process (the chief
    of a multi-worker run) to finish building it.
    ``in_memory_mb``: when the float32 features of all splits take more, they are not read into memory but
    stay in the TFDS files as :class:`tfvae.stream.StreamedFeatures` (labels are always in memory).
    ``label_columns``: a CSV manifest's columns to read as extra class labels (its ``gender`` column is
    always read). Every ClassLabel feature besides ``emotion`` (e.g. ``gender``) is read into
    :attr:`Split.labels` and :attr:`Corpus.label_names`.
    ``speed_perturb``: open the dataset's config with speed-perturbed copies (``is10`` -> ``is10_sp``,
    see :mod:`tfvae.speed`); their speeds are :attr:`Corpus.speed_factors`.
    """
    import time

    import tensorflow_datasets as tfds

    import tfvae_datasets  # noqa: F401  (registers tfvae's builders with TFDS)
    from tfvae.labelled_audio import BadItemsError
    from tfvae.features import SPEED_FACTORS, FeatureError
    from tfvae_datasets.audio_features import AudioFeatureBuilder, encoder_config, speed_config_name
    from tfvae_datasets.audio_manifest.audio_manifest_dataset_builder import ManifestError, manifest_config

    if dataset.lower().endswith(".csv"):
        try:
            cfg = manifest_config(dataset, feature_set, skip_bad_items=skip_bad_items, label_columns=label_columns,
                                  speed_factors=SPEED_FACTORS if speed_perturb else ())
            builder = tfds.builder("audio_manifest", config=cfg, data_dir=data_dir)
        except ManifestError as e:
            raise DataError(str(e)) from e
        full = f"audio_manifest/{cfg.name}"
    elif label_columns:
        raise DataError(f"label_columns={list(label_columns)} are columns of a CSV manifest; {dataset!r} is not one")
    elif speed_perturb and "@" in feature_set:
        raise DataError(f"feature_set={feature_set!r}: speed-perturbed copies exist for openSMILE feature sets only; "
                        "pass --speed_perturb false")
    elif "/" not in dataset and "@" in feature_set:
        # a registered corpus with a speaker encoder's embeddings: the config is named by the encoder's weights
        try:
            if not issubclass(tfds.builder_cls(dataset), AudioFeatureBuilder):
                raise FeatureError(f"{dataset} does not extract speaker-encoder embeddings (ravdess, msp_podcast and "
                                   "CSV manifests do)")
            cfg = encoder_config(feature_set)
            builder = tfds.builder(dataset, config=cfg, data_dir=data_dir,
                                   **({"skip_bad_items": True} if skip_bad_items else {}))
        except (FeatureError, ValueError, OSError) as e:
            raise DataError(f"cannot open dataset {dataset!r} with feature_set={feature_set!r}: {e}") from e
        full = f"{dataset}/{cfg.name}"
    else:
        full = builder_name(dataset, feature_set)
        if speed_perturb and not full.endswith(speed_config_name("")):
            full = speed_config_name(full)
        kwargs = {}
        try:
            if skip_bad_items:
                # A registered config cannot be replaced by an edited copy of the same name (TFDS
                # refuses it); tfvae's audio builders take ``skip_bad_items`` themselves.
                if issubclass(tfds.builder_cls(full.split("/")[0]), AudioFeatureBuilder):
                    kwargs["skip_bad_items"] = True
                else:
                    print(f"[tfvae] note: {full} has no unusable items to skip; skip_bad_items is ignored")
            builder = tfds.builder(full, data_dir=data_dir, **kwargs)
        except Exception as e:  # TFDS raises several types for unknown names/configs
            hint = ("; speed-perturbed copies are built from audio by tfvae's audio builders (ravdess, msp_podcast, "
                    "tfvae_demo, CSV manifests): pass --speed_perturb false") if speed_perturb else ""
            raise DataError(f"cannot open dataset {full!r}: {e}{hint}") from e
    deadline = time.monotonic() + wait_for_build
    while wait_for_build and not builder.is_prepared():
        if time.monotonic() > deadline:
            raise DataError(f"dataset {full!r} was not built in {builder.data_dir} within {wait_for_build:.0f} s; "
                            "the chief builds it, or build it first with one process")
        time.sleep(2.0)
    try:
        builder.download_and_prepare(download_config=tfds.download.DownloadConfig(manual_dir=manual_dir))
    except BadItemsError as e:
        raise DataError(f"{e}\n(python -m tfvae.train: pass --skip_bad_items true to skip them)") from e
    except (ManifestError, FileNotFoundError, NotADirectoryError) as e:
        raise DataError(str(e)) from e
    except AssertionError as e:  # TFDS's check of the manual directory, with the download instructions
        if "Manual directory" not in str(e):
            raise
        raise DataError(str(e)) from e
    if "features" not in builder.info.features:
        raise DataError(f"dataset {full!r} holds {', '.join(builder.info.features)}, not utterance feature vectors; "
                        "waveform configs (audio16k) train speaker encoders (python -m tfvae.speaker_encoder)")
    missing = [s for s in SPLITS if s not in builder.info.splits]
    if missing:
        raise DataError(f"dataset {full!r} lacks split(s) {missing}; it has {list(builder.info.splits)}")
    dim = int(builder.info.features["features"].shape[-1])
    meta = dict(builder.info.metadata or {})
    has_copies = "speed_perturbed" in builder.info.features
    speeds = tuple(float(f) for f in meta.get("speed_factors", ())) if has_copies else ()
    if speed_perturb and not speeds:
        raise DataError(f"dataset {full!r} has no speed-perturbed copies; pass --speed_perturb false")
    rows = sum(builder.info.splits[s].num_examples for s in SPLITS) * (1 + len(speeds))
    streamed = rows * dim * 4 > in_memory_mb * 2 ** 20
    extra = extra_labels(builder.info.features)
    splits = {s: _read_split(builder, s, dim, streamed, extra, perturbed=bool(speeds)) for s in SPLITS}
    return Corpus(name=full, feature_set=meta.get("feature_set", feature_set),
                  emotion_names=list(builder.info.features["emotion"].names), splits=splits,
                  feature_names=meta.get("feature_names"), info=meta,
                  label_names={k: known_classes(v) for k, v in extra.items()}, speed_factors=speeds)


def extra_labels(features) -> dict[str, list[str]]:
    """``{name: class names}`` of a TFDS FeaturesDict's ClassLabel features other than ``emotion``."""
    import tensorflow_datasets as tfds

    return {k: list(f.names) for k, f in features.items()
            if isinstance(f, tfds.features.ClassLabel) and k != "emotion"}


def _read_split(builder, split: str, dim: int, streamed: bool, extra: dict[str, list[str]] | None = None,
                perturbed: bool = False) -> Split:
    """One split: labels in memory; features in memory, or (``streamed``) left in the TFDS files.
    ``extra``: the extra ClassLabel features to read (:func:`extra_labels`); ``perturbed``: read the
    speed-perturbed copies too (into :attr:`Split.perturbed`; streamed ones stay in the files)."""
    import tensorflow as tf
    import tensorflow_datasets as tfds

    from tfvae.stream import Part, StreamedFeatures

    extra = dict(extra or {})
    n = builder.info.splits[split].num_examples
    if n == 0:
        return Split(np.zeros((0, 0), np.float32), np.zeros(0, np.int64), np.zeros(0, str), np.zeros(0, str),
                     {k: np.zeros(0, np.int64) for k in extra})
    keys = ("emotion", "speaker", "utterance_id", *extra)
    if not streamed:
        keys = ("features", *keys) + (("speed_perturbed",) if perturbed else ())
    decoders = {"features": tfds.decode.SkipDecoding()} if streamed else None
    ds = builder.as_dataset(split=split, decoders=decoders, read_config=tfds.ReadConfig(try_autocache=False))
    ds = ds.map(lambda ex: {k: ex[k] for k in keys}).batch(8192).prefetch(tf.data.AUTOTUNE)
    cols: dict[str, list] = {k: [] for k in keys}
    for b in tfds.as_numpy(ds):
        for k in keys:
            cols[k].append(b[k])
    emotion = np.concatenate(cols["emotion"]).astype(np.int64)
    speaker = np.asarray([v.decode() for v in np.concatenate(cols["speaker"])])
    uid = np.asarray([v.decode() for v in np.concatenate(cols["utterance_id"])])
    features = StreamedFeatures(builder, [Part(split, uid)], dim) if streamed else \
        np.concatenate(cols["features"]).astype(np.float32, copy=False)
    labels = {k: label_remap(names)[np.concatenate(cols[k]).astype(np.int64)] for k, names in extra.items()}
    copies = np.concatenate(cols["speed_perturbed"]).astype(np.float32, copy=False) if perturbed and not streamed \
        else None
    return Split(features, emotion, speaker, uid, labels, copies)


def validate_corpus(corpus: Corpus, expected_dim: int | None = None, max_listed: int = 10,
                    attributes=()) -> None:
    """Raise :class:`DataError` listing every problem that would spoil training.

    ``attributes``: the attributes the model will be trained on, as names (``["gender"]``, resolved by
    :func:`tfvae.attributes.attribute`) or :class:`tfvae.attributes.Attribute` objects (identity
    attributes are skipped: the speaker label is checked anyway); each class attribute needs its label
    in the dataset, with values in range in every split and at least 2 known classes in the training split."""
    errs = []
    for name in SPLITS:
        sp = corpus.splits.get(name)
        if sp is None or len(sp) == 0:
            errs.append(f"split {name!r} of {corpus.name} is empty")
            continue
        if sp.features.ndim != 2:
            errs.append(f"split {name!r}: features have shape {sp.features.shape}, expected (n, D)")
            continue
        if expected_dim is not None and sp.features.shape[1] != expected_dim:
            errs.append(f"split {name!r}: features have dimension {sp.features.shape[1]} but feature set "
                        f"{corpus.feature_set} expects {expected_dim}")
        bad_rows = _nonfinite_rows(sp.features)
        if bad_rows.size:
            ids = ", ".join(sp.utterance_id[bad_rows[:max_listed]].tolist())
            more = f" and {bad_rows.size - max_listed} more" if bad_rows.size > max_listed else ""
            errs.append(f"split {name!r}: {bad_rows.size} utterance(s) have NaN or infinite features: {ids}{more}")
        out = (sp.emotion < 0) | (sp.emotion >= len(corpus.emotion_names))
        if out.any():
            errs.append(f"split {name!r}: {int(out.sum())} emotion label(s) outside 0..{len(corpus.emotion_names) - 1}")
    train = corpus.splits.get("train")
    if train is not None and len(train):
        if len(set(train.speaker.tolist())) < 2:
            errs.append("split 'train' has fewer than 2 speakers; the speaker classifier needs at least 2")
        if len(set(train.emotion.tolist())) < 2:
            errs.append("split 'train' has fewer than 2 emotion classes")
    errs += _attribute_errors(corpus, attributes)
    if errs:
        raise DataError(f"dataset {corpus.name} cannot be used:\n  - " + "\n  - ".join(errs))


def _attribute_errors(corpus: Corpus, attributes) -> list[str]:
    from tfvae.attributes import attribute

    errs = []
    for a in attributes:
        a = attribute(a) if isinstance(a, str) else a  # "gender" -> the gender attribute, "identity" -> identity
        if a.is_identity:
            continue
        name, label = a.name, a.label
        if label == "emotion":
            continue  # checked for every corpus
        if label not in corpus.label_names:
            errs.append(f"attribute {name!r} needs label {label!r}, which dataset {corpus.name} does not have; "
                        f"it has: {', '.join(corpus.available_labels())}")
            continue
        classes = corpus.label_names[label]
        for split, sp in corpus.splits.items():
            if not len(sp):
                continue
            if label not in sp.labels:
                errs.append(f"split {split!r} has no {label!r} labels")
                continue
            out = (sp.labels[label] < -1) | (sp.labels[label] >= len(classes))
            if out.any():
                errs.append(f"split {split!r}: {int(out.sum())} {label} label(s) outside -1..{len(classes) - 1}")
        train = corpus.splits.get("train")
        if train is not None and len(train) and label in train.labels:
            seen = sorted({int(v) for v in train.labels[label].tolist() if 0 <= v < len(classes)})
            if len(seen) < 2:
                which = f"a single {label} class ({classes[seen[0]]})" if seen else f"no known {label} labels"
                errs.append(f"split 'train' has {which}; attribute {name!r} needs at least 2 "
                            f"(the classes of {label!r}: {', '.join(classes)})")
    return errs


def _nonfinite_rows(features) -> np.ndarray:
    """Positions of rows with a NaN or infinite value (one chunked pass over streamed features)."""
    from tfvae.stream import chunks

    bad, start = [], 0
    for x in chunks(features):
        bad.append(start + np.flatnonzero(~np.all(np.isfinite(x), axis=1)))
        start += len(x)
    return np.concatenate(bad) if bad else np.zeros(0, np.int64)
