"""TFDS dataset -> validated arrays -> ``tf.data`` pipelines.

Every tfvae dataset has the splits ``train``, ``validation``, ``test`` (speaker-disjoint) and
examples ``{"features": float32[D], "emotion": ClassLabel, "speaker": str,
"utterance_id": str, "duration": float32}``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

SPLITS = ("train", "validation", "test")
#: Default ``load_corpus(in_memory_mb=...)``: the features of larger corpora are streamed from the TFDS files.
IN_MEMORY_MB = 128.0


class DataError(ValueError):
    """The data cannot be used for training; the message lists every problem found."""


@dataclass
class Split:
    """One split: labels as arrays, ``features`` as a float32 array or, for large splits, a
    :class:`tfvae.stream.StreamedFeatures` read from the TFDS files on demand."""

    features: np.ndarray
    emotion: np.ndarray
    speaker: np.ndarray
    utterance_id: np.ndarray

    def __len__(self) -> int:
        return int(self.features.shape[0])


@dataclass
class Corpus:
    """All splits of one dataset/feature set: labels in memory, features in memory or streamed."""

    name: str
    feature_set: str
    emotion_names: list[str]
    splits: dict[str, Split]
    feature_names: list[str] | None = None
    info: dict = field(default_factory=dict)

    @property
    def dim(self) -> int:
        return int(self.splits["train"].features.shape[1])

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
                in_memory_mb: float = IN_MEMORY_MB) -> Corpus:
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
    """
    import time

    import tensorflow_datasets as tfds

    import tfvae_datasets  # noqa: F401  (registers tfvae's builders with TFDS)
    from tfvae.labelled_audio import BadItemsError
    from tfvae.features import FeatureError
    from tfvae_datasets.audio_features import AudioFeatureBuilder, encoder_config
    from tfvae_datasets.audio_manifest.audio_manifest_dataset_builder import ManifestError, manifest_config

    if dataset.lower().endswith(".csv"):
        try:
            cfg = manifest_config(dataset, feature_set, skip_bad_items=skip_bad_items)
            builder = tfds.builder("audio_manifest", config=cfg, data_dir=data_dir)
        except ManifestError as e:
            raise DataError(str(e)) from e
        full = f"audio_manifest/{cfg.name}"
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
            raise DataError(f"cannot open dataset {full!r}: {e}") from e
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
    streamed = sum(builder.info.splits[s].num_examples for s in SPLITS) * dim * 4 > in_memory_mb * 2 ** 20
    splits = {s: _read_split(builder, s, dim, streamed) for s in SPLITS}
    meta = dict(builder.info.metadata or {})
    return Corpus(name=full, feature_set=meta.get("feature_set", feature_set),
                  emotion_names=list(builder.info.features["emotion"].names), splits=splits,
                  feature_names=meta.get("feature_names"), info=meta)


def _read_split(builder, split: str, dim: int, streamed: bool) -> Split:
    """One split: labels in memory; features in memory, or (``streamed``) left in the TFDS files."""
    import tensorflow as tf
    import tensorflow_datasets as tfds

    from tfvae.stream import Part, StreamedFeatures

    n = builder.info.splits[split].num_examples
    if n == 0:
        return Split(np.zeros((0, 0), np.float32), np.zeros(0, np.int64), np.zeros(0, str), np.zeros(0, str))
    keys = ("emotion", "speaker", "utterance_id") if streamed else ("features", "emotion", "speaker", "utterance_id")
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
    return Split(features, emotion, speaker, uid)


def validate_corpus(corpus: Corpus, expected_dim: int | None = None, max_listed: int = 10) -> None:
    """Raise :class:`DataError` listing every problem that would spoil training."""
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
    if errs:
        raise DataError(f"dataset {corpus.name} cannot be used:\n  - " + "\n  - ".join(errs))


def _nonfinite_rows(features) -> np.ndarray:
    """Positions of rows with a NaN or infinite value (one chunked pass over streamed features)."""
    from tfvae.stream import chunks

    bad, start = [], 0
    for x in chunks(features):
        bad.append(start + np.flatnonzero(~np.all(np.isfinite(x), axis=1)))
        start += len(x)
    return np.concatenate(bad) if bad else np.zeros(0, np.int64)


def _order(n: int, seed, epoch):
    """Epoch ``epoch``'s training order: a permutation drawn from ``(seed, epoch)`` alone (stateless), so
    every worker sees the same order and a resumed run replays the epoch it was interrupted in."""
    import tensorflow as tf

    keys = tf.random.stateless_uniform([n], seed=tf.stack([tf.cast(seed, tf.int64), tf.cast(epoch, tf.int64)]))
    return tf.cast(tf.argsort(keys, stable=True), tf.int32)


def epoch_order(n: int, seed: int, epoch: int) -> np.ndarray:
    """The training order of ``epoch`` (see :func:`_order`) as numpy."""
    return _order(n, seed, epoch).numpy()


class SplitPipeline:
    """``tf.data`` pipelines over one split held in memory as tensors (created once).

    :meth:`dataset` streams ``{"features", "emotion", "speaker"}`` batches for a range of epochs
    through one iterator: each epoch in its own order (training) or in file order, restricted to one
    shard (``tf.distribute`` input pipeline), padded with empty batches to a fixed number per epoch
    so that every replica of every worker takes the same number of steps, and optionally skipping the
    batches a resumed run has already trained on. Rows are gathered per batch.
    """

    def __init__(self, corpus: Corpus, split: str):
        import tensorflow as tf

        sp = corpus.splits[split]
        self.size = len(sp)
        with tf.device("/cpu:0"):
            self.tensors = {"features": tf.constant(sp.features, tf.float32),
                            "emotion": tf.constant(sp.emotion.astype(np.int32)),
                            "speaker": tf.constant(corpus.speaker_labels(split))}

    def dataset(self, batch_size: int, *, seed: int | None = None, epochs: range = range(1),
                num_shards: int = 1, shard_index: int = 0, batches_per_epoch: int | None = None,
                skip_batches: int = 0):
        """Batches of ``epochs`` (shuffled per epoch when ``seed`` is given), ``batches_per_epoch``
        per epoch (the shard's own count if None; more are padded with empty batches)."""
        import tensorflow as tf

        n = self.size
        own = -(-len(range(shard_index, n, num_shards)) // batch_size)
        pad = (batches_per_epoch or own) - own
        if pad < 0:
            raise ValueError(f"shard {shard_index} has {own} batches, more than batches_per_epoch={batches_per_epoch}")
        empty = tf.data.Dataset.from_tensors(tf.zeros([0], tf.int32)).repeat(pad)

        def one_epoch(e):
            idx = _order(n, seed, e) if seed is not None else tf.range(n, dtype=tf.int32)
            ds = tf.data.Dataset.from_tensor_slices(idx)
            if num_shards > 1:
                ds = ds.shard(num_shards, shard_index)  # before batching: every worker gets distinct rows
            return ds.batch(batch_size).concatenate(empty)

        ds = tf.data.Dataset.range(epochs.start, epochs.stop).flat_map(one_epoch)
        if skip_batches:
            ds = ds.skip(skip_batches)
        # flat_map hides the length; state it (Keras' fit and progress bars use it)
        ds = ds.apply(tf.data.experimental.assert_cardinality(max(0, len(epochs) * (own + pad) - skip_batches)))
        tensors = self.tensors
        ds = ds.map(lambda i: {k: tf.gather(v, i) for k, v in tensors.items()},
                    num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
        return ds.prefetch(tf.data.AUTOTUNE)


def split_pipeline(corpus: Corpus, split: str, shuffle_buffer: int | None = None):
    """The training/validation input of ``split``: :class:`SplitPipeline` over in-memory features,
    :class:`tfvae.stream.StreamPipeline` over streamed ones."""
    from tfvae.stream import SHUFFLE_BUFFER, StreamPipeline, is_streamed

    features = corpus.splits[split].features
    if is_streamed(features):
        return StreamPipeline(features, corpus.speaker_index(), shuffle_buffer or SHUFFLE_BUFFER)
    return SplitPipeline(corpus, split)


def make_dataset(corpus: Corpus, split: str, batch_size: int, training: bool = False, seed: int = 0,
                 epoch: int = 0):
    """A ``tf.data`` pipeline of one epoch of ``{"features", "emotion", "speaker"}`` batches; ``training``
    shuffles in the order :func:`epoch_order` gives for ``(seed, epoch)``."""
    return SplitPipeline(corpus, split).dataset(batch_size, seed=seed if training else None,
                                                epochs=range(epoch, epoch + 1))
