"""Feature rows read from TFDS as ``tf.data`` streams: corpora too large to hold in memory.

:func:`tfvae.data.load_corpus` keeps the labels of every split in memory (a few bytes per
utterance) and, when a split's features exceed ``--in_memory_mb``, leaves them in the TFDS files
as :class:`StreamedFeatures`. Everything that reads features then goes through this module:

- training and validation batches (:class:`StreamPipeline`, the interface of
  :class:`tfvae.pipeline.SplitPipeline`): per epoch, a seeded shuffle of the TFDS files (interleaved
  reads), a seeded shuffle buffer, batching and prefetch; each ``tf.distribute`` input pipeline
  (worker) reads only its contiguous slice of every split (TFDS slicing reads only those files);
- chunked passes in file order (:meth:`StreamedFeatures.chunks`): normalisation statistics
  (:class:`RunningMoments`), encoding, NaN checks;
- row subsets (:meth:`StreamedFeatures.take`, :meth:`StreamedFeatures.__getitem__`): speaker-folds
  and the attackers' stratified subsamples, selected by utterance ID while streaming.

Nothing here holds a whole split in RAM or in a graph: the graph holds at most the kept utterance
IDs of a subset and the speaker -> label table.
"""

from __future__ import annotations

import dataclasses
import functools
from dataclasses import dataclass

import numpy as np

#: Default rows of the training shuffle buffer (about 50 MB of IS10 features).
SHUFFLE_BUFFER = 8192


@dataclass(frozen=True)
class Part:
    """Rows of one TFDS split: ``ids`` are the split's utterance IDs in file order, ``keep`` (None: all)
    the rows this part keeps. ``copy`` >= 0: the rows are the examples' speed-perturbed copy number
    ``copy`` (``speed_perturbed[copy]``, see :func:`tfvae.speed.with_speed_perturbed`), their speakers
    suffixed with ``suffix``."""

    split: str
    ids: np.ndarray
    keep: np.ndarray | None = None
    copy: int = -1
    suffix: str = ""

    @property
    def rows(self) -> int:
        return int(self.ids.size if self.keep is None else self.keep.sum())


class StreamedFeatures:
    """``[n, dim]`` float32 feature rows of a TFDS builder's split(s), never read whole.

    Rows are the concatenation of ``parts`` in file order. Indexing with a boolean mask gives a
    subset (another :class:`StreamedFeatures`); :func:`concatenate` joins several.
    """

    ndim = 2
    dtype = np.dtype(np.float32)

    def __init__(self, builder, parts: list[Part], dim: int):
        self.builder, self.parts, self.dim = builder, list(parts), int(dim)

    @property
    def shape(self) -> tuple[int, int]:
        return (sum(p.rows for p in self.parts), self.dim)

    def __len__(self) -> int:
        return self.shape[0]

    def __repr__(self) -> str:
        return f"StreamedFeatures({self.builder.info.full_name}, {[p.split for p in self.parts]}, shape={self.shape})"

    def __getitem__(self, mask):
        mask = np.asarray(mask)
        if mask.dtype != bool or mask.shape != (len(self),):
            raise TypeError(f"streamed features are indexed with a boolean mask of {len(self)} rows, "
                            f"got {mask.dtype} {mask.shape}")
        parts, start = [], 0
        for p in self.parts:
            sub = mask[start:start + p.rows]
            start += p.rows
            keep = np.zeros(p.ids.size, bool)
            keep[np.flatnonzero(np.ones(p.ids.size, bool) if p.keep is None else p.keep)[sub]] = True
            if keep.any():
                parts.append(dataclasses.replace(p, keep=keep))
        return StreamedFeatures(self.builder, parts, self.dim)

    # ------------------------------------------------------------------ streams
    def _part_dataset(self, part: Part, *, shard: tuple[int, int] = (0, 1), seed: int | None = None,
                      labels: tuple[str, ...] = (), siblings: bool = False):
        """Examples ``{"features", "emotion", "speaker", *labels}`` of one part (one worker's slice of it);
        ``labels``: extra ClassLabel features, as stored (ClassLabel indices); ``siblings``: also
        ``sibling``, the features of the next version of the same recording (:func:`tfvae.speed.next_version`)."""
        import tensorflow as tf
        import tensorflow_datasets as tfds

        index, count = shard
        lo, hi = _slice(part.ids.size, index, count)
        if hi <= lo:
            return None
        read = tfds.ReadConfig(shuffle_seed=seed, interleave_cycle_length=4, try_autocache=False,
                               num_parallel_calls_for_interleave_files=2)
        ds = self.builder.as_dataset(split=f"{part.split}[{lo}:{hi}]", shuffle_files=seed is not None,
                                     read_config=read)
        if part.keep is not None and not part.keep[lo:hi].all():
            ids = part.ids[lo:hi][part.keep[lo:hi]]
            table = tf.lookup.StaticHashTable(
                tf.lookup.KeyValueTensorInitializer(tf.constant(ids.astype(str)), tf.ones(ids.size, tf.int32)), 0)
            ds = ds.filter(lambda ex: table.lookup(ex["utterance_id"]) > 0)
        keys = ("features", "emotion", "speaker", *labels)
        sibling = self._sibling_version(part) if siblings else None

        def version(ex):  # a speed-perturbed copy has its own features and a speaker of its own
            out = {k: ex[k] for k in keys}
            if part.copy >= 0:
                out.update(features=ex["speed_perturbed"][part.copy], speaker=ex["speaker"] + part.suffix)
            if sibling is not None:
                out["sibling"] = ex["features"] if sibling < 0 else ex["speed_perturbed"][sibling]
            return out
        return ds.map(version, num_parallel_calls=tf.data.AUTOTUNE)

    def _sibling_version(self, part: Part) -> int:
        """The version of each recording that pairs with ``part``'s rows; DataError without copies."""
        from tfvae.data import DataError
        from tfvae.speed import next_version

        spec = self.builder.info.features
        if "speed_perturbed" not in spec:
            raise DataError(f"{self.builder.info.full_name} has no speed-perturbed copies to pair rows with "
                            "(--swap_weight needs a <set>_sp dataset)")
        return next_version(part.copy, int(spec["speed_perturbed"].shape[0]))

    def speed_copy(self, copy: int, suffix: str) -> "StreamedFeatures":
        """These rows' speed-perturbed copy number ``copy``, read as features with speakers suffixed ``suffix``."""
        return StreamedFeatures(self.builder, [dataclasses.replace(p, copy=int(copy), suffix=suffix)
                                               for p in self.parts], self.dim)

    def label_names(self, labels) -> dict[str, list[str]]:
        """``{label: ClassLabel names}`` of extra label features of the dataset; ValueError naming a missing one."""
        features = self.builder.info.features
        missing = [k for k in labels if k not in features or not hasattr(features[k], "names")]
        if missing:
            have = [k for k in features if hasattr(features[k], "names")]
            raise ValueError(f"{self.builder.info.full_name} has no label(s) {', '.join(missing)}; "
                             f"it has: {', '.join(have)}")
        return {k: list(features[k].names) for k in labels}

    def split_names(self) -> str:
        return "+".join(dict.fromkeys(p.split for p in self.parts))

    def shard_rows(self, index: int = 0, count: int = 1) -> int:
        """Rows in worker ``index`` of ``count``'s slice (its contiguous share of every part)."""
        total = 0
        for p in self.parts:
            lo, hi = _slice(p.ids.size, index, count)
            total += hi - lo if p.keep is None else int(p.keep[lo:hi].sum())
        return total

    def examples(self, *, shard: tuple[int, int] = (0, 1), seed: int | None = None, shuffle_buffer: int = 0,
                 labels: tuple[str, ...] = (), siblings: bool = False):
        """One pass over this worker's rows: in file order, or (``seed``) with the files and a buffer of
        ``shuffle_buffer`` rows shuffled by ``seed``. ``labels``: extra ClassLabel features to include
        (as stored: ClassLabel indices, see :meth:`label_names`); ``siblings``: each row's ``sibling``."""
        import tensorflow as tf

        labels = tuple(labels)
        self.label_names(labels)  # a clear error for a label the dataset lacks
        parts = [d for d in (self._part_dataset(p, shard=shard, seed=seed, labels=labels, siblings=siblings)
                             for p in self.parts) if d is not None]
        if not parts:  # this worker's slice is empty
            return tf.data.Dataset.from_tensors({"features": tf.zeros([self.dim]), "emotion": tf.zeros([], tf.int64),
                                                 "speaker": tf.constant(""),
                                                 **({"sibling": tf.zeros([self.dim])} if siblings else {}),
                                                 **{k: tf.zeros([], tf.int64) for k in labels}}).take(0)
        ds = functools.reduce(lambda a, b: a.concatenate(b), parts)
        if seed is not None and shuffle_buffer > 1:
            ds = ds.shuffle(shuffle_buffer, seed=seed, reshuffle_each_iteration=False)
        return ds

    def chunks(self, batch_size: int = 4096):
        """Feature rows in order, ``[<= batch_size, dim]`` float32 numpy chunks."""
        import tensorflow as tf

        ds = self.examples().map(lambda ex: ex["features"]).batch(batch_size).prefetch(tf.data.AUTOTUNE)
        for x in ds.as_numpy_iterator():
            yield x

    def take(self, rows) -> np.ndarray:
        """The feature rows at positions ``rows`` (any order, no repeats needed), read in one pass."""
        rows = np.asarray(rows, np.int64)
        order = np.argsort(rows, kind="stable")
        wanted = rows[order]
        out = np.empty((rows.size, self.dim), np.float32)
        start, k = 0, 0
        for x in self.chunks():
            end = start + len(x)
            j = np.searchsorted(wanted, end, side="left")
            out[order[k:j]] = x[wanted[k:j] - start]
            k, start = j, end
            if k == wanted.size:
                break
        if k != wanted.size:
            raise IndexError(f"rows {wanted[k:k + 5].tolist()} are outside the {len(self)} rows")
        return out

    def to_numpy(self) -> np.ndarray:
        """Every row in memory (small subsets and tests only)."""
        return np.concatenate(list(self.chunks())) if len(self) else np.zeros((0, self.dim), np.float32)


def concatenate(items: list) -> StreamedFeatures:
    """One :class:`StreamedFeatures` with the rows of ``items`` (same builder) in order."""
    if len({id(i.builder) for i in items}) != 1:
        raise ValueError("streamed features of different datasets cannot be joined")
    return StreamedFeatures(items[0].builder, [p for i in items for p in i.parts], items[0].dim)


def _slice(n: int, index: int, count: int) -> tuple[int, int]:
    """Worker ``index`` of ``count``'s contiguous slice of ``n`` rows."""
    bounds = np.linspace(0, n, count + 1).round().astype(int)
    return int(bounds[index]), int(bounds[index + 1])


# ---------------------------------------------------------------------------------- features API
def is_streamed(features) -> bool:
    return isinstance(features, StreamedFeatures)


def chunks(features, batch_size: int = 4096):
    """Row chunks of in-memory or streamed features."""
    if is_streamed(features):
        yield from features.chunks(batch_size)
    else:
        for i in range(0, len(features), batch_size):
            yield np.asarray(features[i:i + batch_size], np.float32)


def rows(features, index) -> np.ndarray:
    """``features[index]`` as an in-memory float32 array for in-memory or streamed features."""
    return features.take(index) if is_streamed(features) else np.asarray(features[np.asarray(index)], np.float32)


def materialize(features) -> np.ndarray:
    return features.to_numpy() if is_streamed(features) else np.asarray(features, np.float32)


class RunningMoments:
    """Per-feature count, mean and variance accumulated chunk by chunk in float64 (Chan et al.'s
    parallel form of Welford's update): one streaming pass, exact up to float64 rounding."""

    def __init__(self, dim: int):
        self.n, self.mean, self.m2 = 0, np.zeros(dim), np.zeros(dim)
        self.nonfinite = 0

    def update(self, x) -> None:
        x = np.asarray(x, np.float64)
        ok = np.all(np.isfinite(x), axis=1)
        self.nonfinite += int((~ok).sum())
        x = x[ok]
        if not len(x):
            return
        n_b, mean_b = len(x), x.mean(axis=0)
        m2_b = ((x - mean_b) ** 2).sum(axis=0)
        n = self.n + n_b
        delta = mean_b - self.mean
        self.mean = self.mean + delta * n_b / n
        self.m2 = self.m2 + m2_b + delta ** 2 * self.n * n_b / n
        self.n = n

    @property
    def variance(self) -> np.ndarray:
        """Population variance (as ``keras.layers.Normalization.adapt``)."""
        return self.m2 / max(self.n, 1)


def moments(features, batch_size: int = 4096) -> RunningMoments:
    """Mean and variance of in-memory or streamed features in one chunked pass."""
    acc = RunningMoments(features.shape[1])
    for x in chunks(features, batch_size):
        acc.update(x)
    return acc


# ---------------------------------------------------------------------------------- training input
class StreamPipeline:
    """Training/validation batches of one split of a corpus whose features are streamed from TFDS.

    The interface of :class:`tfvae.pipeline.SplitPipeline`: ``size`` and :meth:`dataset`. Per epoch ``e``
    the files are shuffled and a ``shuffle_buffer``-row buffer is drawn with the seed ``(seed, e)``
    (so a resumed run replays the epoch it was interrupted in), and each input pipeline reads only its
    slice of the split. ``labels``: extra ClassLabel features (``["gender"]``) the batches carry as
    int32 indices of the known classes, -1 for ``unknown`` (mapped in the graph). ``siblings``: the
    batches carry each row's ``sibling`` (:meth:`StreamedFeatures.examples`).
    """

    def __init__(self, features: StreamedFeatures, speaker_index: dict[str, int],
                 shuffle_buffer: int = SHUFFLE_BUFFER, labels=(), siblings: bool = False):
        from tfvae.data import label_remap
        from tfvae.pipeline import pipeline_labels

        self.features, self.size = features, len(features)
        self.speaker_index = dict(speaker_index)
        self.shuffle_buffer = int(shuffle_buffer)
        self.labels = pipeline_labels(labels)
        self.siblings = bool(siblings)
        self.remaps = {k: label_remap(names) for k, names in features.label_names(self.labels).items()}

    def dataset(self, batch_size: int, *, seed: int | None = None, epochs: range = range(1),
                num_shards: int = 1, shard_index: int = 0, batches_per_epoch: int | None = None,
                skip_batches: int = 0):
        import tensorflow as tf

        mine = self.features.shard_rows(shard_index, num_shards)
        own = -(-mine // batch_size)
        pad = (batches_per_epoch or own) - own
        if num_shards > 1:
            print(f"[tfvae] input pipeline {shard_index} of {num_shards} streams {mine} of the {self.size} rows "
                  f"({self.features.split_names()}, its slice of the TFDS files)", flush=True)
        if pad < 0:
            raise ValueError(f"shard {shard_index} has {own} batches, more than batches_per_epoch={batches_per_epoch}")
        keys = sorted(self.speaker_index)
        table = tf.lookup.StaticHashTable(tf.lookup.KeyValueTensorInitializer(
            tf.constant(keys or [""]), tf.constant([self.speaker_index[k] for k in keys] or [-1], tf.int32)), -1)
        dim = self.features.dim
        empty = tf.data.Dataset.from_tensors({"features": tf.zeros([0, dim]), "emotion": tf.zeros([0], tf.int32),
                                              "speaker": tf.zeros([0], tf.int32),
                                              **({"sibling": tf.zeros([0, dim])} if self.siblings else {}),
                                              **{k: tf.zeros([0], tf.int32) for k in self.labels}}).repeat(pad)
        remaps = {k: tf.constant(v.astype(np.int32)) for k, v in self.remaps.items()}

        def labels(b):
            return {"features": b["features"], "emotion": tf.cast(b["emotion"], tf.int32),
                    "speaker": table.lookup(b["speaker"]), **({"sibling": b["sibling"]} if self.siblings else {}),
                    **{k: tf.gather(m, b[k]) for k, m in remaps.items()}}

        def one_epoch(e: int):
            s = None if seed is None else int(np.random.SeedSequence([int(seed), int(e)]).generate_state(1)[0] >> 1)
            ds = self.features.examples(shard=(shard_index, num_shards), seed=s, shuffle_buffer=self.shuffle_buffer,
                                        labels=self.labels, siblings=self.siblings)
            return ds.batch(batch_size).map(labels, num_parallel_calls=tf.data.AUTOTUNE).concatenate(empty)

        if seed is None:  # the same order every epoch: one pass, repeated
            ds = one_epoch(0).repeat(len(epochs))
        elif not len(epochs):
            ds = one_epoch(0).take(0)
        else:
            ds = functools.reduce(lambda a, b: a.concatenate(b), [one_epoch(e) for e in epochs])
        if skip_batches:
            ds = ds.skip(skip_batches)
        ds = ds.apply(tf.data.experimental.assert_cardinality(max(0, len(epochs) * (own + pad) - skip_batches)))
        return ds.prefetch(tf.data.AUTOTUNE)


# ---------------------------------------------------------------------------------- encoded outputs
class RowWriter:
    """``[n, ...]`` float32 rows written chunk by chunk: into memory, or, when they take more than
    ``budget_mb``, into the ``.npy`` file ``path`` (plain writes), memory-mapped read-only when done."""

    def __init__(self, n: int, budget_mb: float, path=None):
        self.n, self.budget, self.path = int(n), float(budget_mb), path
        self.array = self.file = None
        self.filled = 0

    def write(self, chunk) -> None:
        chunk = np.ascontiguousarray(chunk, np.float32)
        if self.array is None and self.file is None:
            shape = (self.n, *chunk.shape[1:])
            if self.path is not None and int(np.prod(shape)) * 4 > self.budget * 2 ** 20:
                from pathlib import Path

                Path(self.path).parent.mkdir(parents=True, exist_ok=True)
                self.file = open(self.path, "wb")
                np.lib.format.write_array_header_1_0(self.file, {"descr": "<f4", "fortran_order": False,
                                                                 "shape": shape})
            else:
                self.array = np.empty(shape, np.float32)
        if self.file is not None:
            self.file.write(chunk.tobytes())
        else:
            self.array[self.filled:self.filled + len(chunk)] = chunk
        self.filled += len(chunk)

    def close(self) -> np.ndarray:
        if self.filled != self.n:
            raise ValueError(f"wrote {self.filled} rows, expected {self.n}")
        if self.file is not None:
            self.file.close()
            return np.load(self.path, mmap_mode="r")
        return self.array if self.array is not None else np.zeros((0, 0), np.float32)
