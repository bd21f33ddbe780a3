"""Speaker-labelled audio from TFDS -> ``tf.data`` batches of random crops, and whole-utterance embedding.

Any TFDS dataset whose examples hold a waveform and a speaker label is a source: tfvae's
``<corpus>/audio16k`` configs (``audio`` + ``speaker`` text), the synthetic pretraining corpus
``tfvae_demo/speakers1k`` and TFDS's own ``voxceleb`` (``audio`` + ``label`` class label). Audio is
read as a stream, never held whole in memory.

Training batches (:class:`CropPipeline`) follow the interface of :class:`tfvae.pipeline.SplitPipeline`,
so :class:`tfvae.loop.Loop` drives them under every ``tf.distribute`` strategy:

- **crops**: each example is cut to a random length in ``[min_crop, max_crop]`` seconds at a random
  start (the whole utterance when it is shorter) and zero-padded to ``max_crop`` with its length;
- **speaker balance**: speakers with more utterances than the median speaker are subsampled to the
  median count in every epoch (rejection sampling with a known distribution), so frequent speakers
  do not dominate; ``balance=False`` keeps every utterance;
- **determinism**: epoch ``e``'s order, subsample and crops are drawn from ``(seed, e)`` alone, so a
  resumed run replays the epoch it was interrupted in. Order comes from a shuffle buffer over the
  split's file order (``shuffle_buffer`` examples).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import tensorflow as tf

SAMPLE_RATE = 16000
#: Label features tried in this order when ``speaker_key`` is not given.
SPEAKER_KEYS = ("speaker", "label", "speaker_id", "client_id")
AUDIO_KEYS = ("audio", "speech", "waveform")


class AudioSourceError(ValueError):
    """A dataset cannot serve as speaker-labelled audio; the message says why."""


@dataclass
class AudioSource:
    """One split of a TFDS dataset with waveforms and speaker labels (labels read once, audio streamed)."""

    builder: object
    split: str
    audio_key: str
    speaker_key: str
    speakers: np.ndarray  # speaker name of every example, in file order
    sample_rate: int

    @property
    def name(self) -> str:
        return f"{self.builder.info.full_name}[{self.split}]"

    def speaker_index(self) -> dict[str, int]:
        """Speakers of this split -> classifier index (sorted, reproducible)."""
        return {s: i for i, s in enumerate(sorted(set(self.speakers.tolist())))}

    def raw(self, keep: set[str] | None = None):
        """``(waveform float32 [T], speaker name, example index)`` in file order; ``keep``: only these speakers."""
        ds = self.builder.as_dataset(split=self.split, shuffle_files=False)
        audio_key, spk_key = self.audio_key, self.speaker_key
        feature = self.builder.info.features[spk_key]
        names = tf.constant(feature.names) if hasattr(feature, "names") else None
        integer = np.issubdtype(self.builder.info.features[audio_key].np_dtype, np.integer)

        def fields(i, ex):
            wav = tf.cast(ex[audio_key], tf.float32)
            if len(wav.shape) == 2:  # (samples, channels) -> mono
                wav = tf.reduce_mean(wav, axis=-1)
            if integer:  # PCM samples in the int16 range
                wav = wav / 32768.0
            spk = tf.gather(names, ex[spk_key]) if names is not None else ex[spk_key]
            return wav, spk, i

        ds = ds.enumerate().map(fields, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
        if keep is not None:
            table = _membership(sorted(keep))
            ds = ds.filter(lambda w, s, i: table.lookup(s) >= 0)
        return ds


def _membership(names):
    keys = tf.constant(list(names) or [""], tf.string)
    return tf.lookup.StaticHashTable(tf.lookup.KeyValueTensorInitializer(keys, tf.range(tf.size(keys), dtype=tf.int64)), -1)


def open_source(dataset: str, split: str, data_dir: str | None = None, audio_key: str | None = None,
                speaker_key: str | None = None, manual_dir: str | None = None, build: bool = True) -> AudioSource:
    """Open ``split`` of TFDS ``dataset`` (``name/config``), building it first when ``build``.

    ``split`` may join splits (``train+validation``) or be ``all``.
    """
    import tensorflow_datasets as tfds

    import tfvae_datasets  # noqa: F401  (registers tfvae's builders)

    try:
        builder = tfds.builder(dataset, data_dir=data_dir)
    except Exception as e:  # TFDS raises several types for unknown names
        raise AudioSourceError(f"cannot open dataset {dataset!r}: {e}") from e
    if build and not builder.is_prepared():
        builder.download_and_prepare(download_config=tfds.download.DownloadConfig(manual_dir=manual_dir))
    features = builder.info.features
    audio_key = audio_key or next((k for k in AUDIO_KEYS if k in features), None)
    speaker_key = speaker_key or next((k for k in SPEAKER_KEYS if k in features), None)
    if audio_key not in features or not isinstance(features[audio_key], tfds.features.Audio):
        raise AudioSourceError(f"{dataset} has no audio feature {audio_key!r} (features: {', '.join(features)}); "
                               "use an audio config such as ravdess/audio16k, or pass --audio_key")
    if speaker_key not in features:
        raise AudioSourceError(f"{dataset} has no speaker label {speaker_key!r} (features: {', '.join(features)}); "
                               "pass --speaker_key")
    rate = features[audio_key].sample_rate
    if rate not in (None, SAMPLE_RATE):
        raise AudioSourceError(f"{dataset}: audio is sampled at {rate} Hz; speaker encoders take {SAMPLE_RATE} Hz")
    if split == "all":
        split = "+".join(builder.info.splits)
    unknown = [s for s in split.split("+") if s not in builder.info.splits]
    if unknown and builder.info.splits:  # (no split information: not built here, e.g. TFDS's mock data)
        raise AudioSourceError(f"{dataset} has no split {unknown[0]!r}; it has {', '.join(builder.info.splits)}")
    labels = builder.as_dataset(split=split, shuffle_files=False, decoders={audio_key: tfds.decode.SkipDecoding()})
    spk = features[speaker_key]
    values = []
    for batch in tfds.as_numpy(labels.map(lambda ex: ex[speaker_key]).batch(4096)):
        values.extend(batch.tolist())
    names = np.asarray([spk.int2str(int(v)) if hasattr(spk, "names") else v.decode() for v in values], dtype=str)
    return AudioSource(builder, split, audio_key, speaker_key, names, int(rate or SAMPLE_RATE))


class CropPipeline:
    """Random-crop training batches ``{"waveform", "lengths", "speaker"}`` of an :class:`AudioSource`.

    ``speakers``: train only on these speakers (e.g. a fold's training speakers; default all);
    labels index the sorted speaker list (:attr:`speaker_index`).
    """

    def __init__(self, source: AudioSource, min_crop: float = 2.0, max_crop: float = 4.0, balance: bool = True,
                 speakers=None, shuffle_buffer: int = 4096):
        if not 0 < min_crop <= max_crop:
            raise ValueError(f"crop lengths must satisfy 0 < min_crop <= max_crop, got {min_crop}, {max_crop}")
        self.source = source
        names = source.speakers
        keep = set(names.tolist()) if speakers is None else set(speakers)
        missing = sorted(keep - set(names.tolist()))
        if missing:
            raise AudioSourceError(f"{source.name} has no utterances of speaker(s) {missing[:10]}")
        self.keep = keep
        self.speaker_index = {s: i for i, s in enumerate(sorted(keep))}
        counts = {s: int(c) for s, c in zip(*np.unique(names[np.isin(names, sorted(keep))], return_counts=True))}
        cap = float(np.median(list(counts.values()))) if balance else np.inf
        self.accept = {s: min(1.0, cap / c) for s, c in counts.items()}
        self.size = int(round(sum(c * self.accept[s] for s, c in counts.items())))
        self.counts = counts
        self.min_samples = int(round(min_crop * source.sample_rate))
        self.max_samples = int(round(max_crop * source.sample_rate))
        self.shuffle_buffer = int(shuffle_buffer)

    def dataset(self, batch_size: int, *, seed: int | None = None, epochs: range = range(1),
                num_shards: int = 1, shard_index: int = 0, batches_per_epoch: int | None = None,
                skip_batches: int = 0):
        """Batches of ``epochs``, ``batches_per_epoch`` each (default: the shard's share of :attr:`size`)."""
        seed = 0 if seed is None else int(seed)
        per_epoch = int(batches_per_epoch or max(1, -(-self.size // num_shards // batch_size)))
        keys = tf.constant(sorted(self.keep))
        label_of = tf.lookup.StaticHashTable(tf.lookup.KeyValueTensorInitializer(
            keys, tf.constant([self.speaker_index[s] for s in sorted(self.keep)], tf.int32)), -1)
        accept_of = tf.lookup.StaticHashTable(tf.lookup.KeyValueTensorInitializer(
            keys, tf.constant([self.accept[s] for s in sorted(self.keep)], tf.float32)), 0.0)
        base = self.source.raw(self.keep)
        if num_shards > 1:
            base = base.shard(num_shards, shard_index)
        lo, hi = self.min_samples, self.max_samples

        def crop(e, wav, spk, i):
            r = tf.random.stateless_uniform([2], seed=tf.stack([tf.constant(seed * 1000003 + e, tf.int64), i]))
            n = tf.shape(wav)[0]
            want = lo + tf.cast(r[0] * tf.cast(hi - lo + 1, tf.float32), tf.int32)
            length = tf.minimum(n, tf.minimum(want, hi))
            start = tf.cast(r[1] * tf.cast(n - length + 1, tf.float32), tf.int32)
            piece = wav[start:start + length]
            return {"waveform": tf.pad(piece, [[0, hi - length]]), "lengths": length, "speaker": label_of.lookup(spk)}

        def keep_draw(e, spk, i):
            u = tf.random.stateless_uniform([], seed=tf.stack([tf.constant(seed * 7919 + e, tf.int64), i + (1 << 40)]))
            return u < accept_of.lookup(spk)

        def one_epoch(e: int):  # a Python int: the shuffle seed must be static
            ds = base.repeat().filter(lambda w, s, i: keep_draw(e, s, i))
            ds = ds.shuffle(self.shuffle_buffer, seed=(seed * 104729 + e) % (1 << 62))
            ds = ds.map(lambda w, s, i: crop(e, w, s, i), num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
            return ds.batch(batch_size, drop_remainder=True).take(per_epoch)

        ds = None
        for e in epochs:
            ds = one_epoch(e) if ds is None else ds.concatenate(one_epoch(e))
        if ds is None:
            return tf.data.Dataset.from_tensors({"waveform": tf.zeros([0, hi]), "lengths": tf.zeros([0], tf.int32),
                                                 "speaker": tf.zeros([0], tf.int32)}).take(0)
        if skip_batches:
            ds = ds.skip(skip_batches)
        ds = ds.apply(tf.data.experimental.assert_cardinality(max(0, len(epochs) * per_epoch - skip_batches)))
        return ds.prefetch(tf.data.AUTOTUNE)


def utterance_batches(source: AudioSource, batch_size: int = 32, keep: set[str] | None = None,
                      max_seconds: float | None = None):
    """Whole utterances, zero-padded per batch: ``({"waveform", "lengths"}, speaker names)`` in file order.

    ``max_seconds`` caps every utterance (its first seconds) to bound memory on long recordings.
    """
    cap = None if max_seconds is None else int(round(max_seconds * source.sample_rate))

    def fields(wav, spk, i):
        if cap is not None:
            wav = wav[:cap]
        return {"waveform": wav, "lengths": tf.shape(wav)[0]}, spk

    ds = source.raw(keep).map(fields, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    return ds.padded_batch(batch_size).prefetch(tf.data.AUTOTUNE)


def embed(encoder_fn, batches) -> tuple[np.ndarray, np.ndarray]:
    """Run ``encoder_fn({"waveform", "lengths"}) -> [B, E]`` over :func:`utterance_batches`."""
    embs, names = [], []
    for inputs, spk in batches:
        embs.append(np.asarray(encoder_fn(inputs), np.float32))
        names.extend(v.decode() for v in spk.numpy())
    if not embs:
        return np.zeros((0, 0), np.float32), np.zeros(0, str)
    return np.concatenate(embs), np.asarray(names)
