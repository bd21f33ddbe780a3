"""Utterance-level openSMILE functionals (paper section 2.2) and a parallel map over audio.

This module imports neither TensorFlow nor tfvae's model code, so worker processes stay light.
"""

from __future__ import annotations

import ctypes
import glob
import importlib.util
import multiprocessing
import os
import sys
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from typing import Callable, Iterable, Iterator, Sequence

import numpy as np

#: Feature sets by the name used in tfvae configs -> (openSMILE FeatureSet member, dimension).
#: IS10 (``IS10_paraling_compat``) is the emobase2010 set the paper uses.
FEATURE_SETS: dict[str, tuple[str, int]] = {
    "IS10": ("IS10", 1582),
    "IS09": ("IS09", 384),
    "emobase": ("emobase", 988),
    "eGeMAPSv02": ("eGeMAPSv02", 88),
    "ComParE_2016": ("ComParE_2016", 6373),
}

TARGET_RATE = 16000
#: Peak amplitude under which a signal counts as silent.
SILENCE_PEAK = 1e-4

#: Waveform "feature sets": the config name -> sample rate of the mono int16 waveforms stored.
AUDIO_SETS: dict[str, int] = {"audio16k": 16000}
#: Precomputed vectors given with the data (``audio_manifest`` only: a ``.npy`` column or a Kaldi scp/ark).
EMBEDDINGS = "embeddings"
#: The kinds of :func:`feature_kind`.
FEATURE_KINDS = ("opensmile", "audio", "embeddings", "encoder")


class FeatureError(ValueError):
    """A file or signal yields no feature vector; the message says why."""


def import_opensmile():
    """Import ``opensmile`` so that it works in a process that already loaded TensorFlow.

    TensorFlow's ``libtensorflow_framework`` and openSMILE's ``libSMILEapi`` both export the
    Ooura FFT routines (``cdft``, ``bitrv2``, ...) with different signatures; when TensorFlow is
    loaded first, openSMILE binds to TensorFlow's copies and crashes. Pre-loading
    ``libSMILEapi`` with ``RTLD_DEEPBIND`` makes it use its own symbols.
    """
    if "opensmile" not in sys.modules and hasattr(os, "RTLD_DEEPBIND"):
        spec = importlib.util.find_spec("opensmile")
        if spec and spec.submodule_search_locations:
            for root in spec.submodule_search_locations:
                for lib in glob.glob(os.path.join(root, "core", "bin", "*", "libSMILEapi.so")):
                    ctypes.CDLL(lib, mode=os.RTLD_DEEPBIND | os.RTLD_LOCAL)
    import opensmile

    return opensmile


def feature_dim(feature_set: str) -> int:
    return _lookup(feature_set)[1]


def feature_kind(feature_set: str) -> str:
    """What a ``feature_set`` names, and so how a builder makes its examples:

    - ``"opensmile"``: an openSMILE functionals set of :data:`FEATURE_SETS` (``"IS10"`` ...);
    - ``"audio"``: waveforms at a fixed rate, :data:`AUDIO_SETS` (``"audio16k"``);
    - ``"embeddings"``: precomputed vectors given with the data (:data:`EMBEDDINGS`);
    - ``"encoder"``: a trained encoder applied to the audio, ``"<arch>@<path>"`` (for example
      ``"xvector@/models/xvector"``; see :func:`split_encoder`).

    Raises :class:`FeatureError` naming the accepted forms for anything else.
    """
    fs = str(feature_set)
    if fs in FEATURE_SETS:
        return "opensmile"
    if fs in AUDIO_SETS:
        return "audio"
    if fs == EMBEDDINGS:
        return "embeddings"
    if is_encoder(fs):
        return "encoder"
    raise FeatureError(
        f"feature set {feature_set!r} is unknown; choose an openSMILE set ({', '.join(FEATURE_SETS)}), "
        f"waveforms ({', '.join(AUDIO_SETS)}), {EMBEDDINGS!r}, or an encoder as '<arch>@<path>'")


def split_encoder(feature_set: str) -> tuple[str, str]:
    """``"<arch>@<path>"`` -> ``(arch, path)`` (split at the first ``@``); FeatureError otherwise."""
    if feature_kind(feature_set) != "encoder":
        raise FeatureError(f"feature set {feature_set!r} is not an encoder ('<arch>@<path>')")
    arch, _, path = str(feature_set).partition("@")
    return arch.strip(), path.strip()


def expected_dim(feature_set: str) -> int | None:
    """The input dimension a feature set fixes in advance (openSMILE sets), else None (read from the data)."""
    return FEATURE_SETS[feature_set][1] if feature_kind(feature_set) == "opensmile" else None


def check_trainable(feature_set: str) -> str:
    """``feature_set`` if an LR-VAE can train on it (vectors per utterance), else :class:`FeatureError`."""
    kind = feature_kind(feature_set)
    if kind == "audio":
        raise FeatureError(
            f"feature_set={feature_set!r} holds waveforms, not utterance vectors: train a speaker encoder on it "
            "(python -m tfvae.speaker_encoder train) and use --feature_set xvector@<encoder dir>, or an openSMILE set")
    return feature_set


def is_encoder(feature_set: str) -> bool:
    """Whether ``feature_set`` names an encoder (``"<arch>@<path>"``); never raises."""
    arch, sep, path = str(feature_set).partition("@")
    return bool(sep and arch.strip() and path.strip())


def encoder_name(feature_set: str) -> tuple[str, str]:
    """``"<arch>@<path>"`` -> (arch, the encoder's folder: the last part of ``path`` that is not a version
    number; ``""`` if none); the one place that names an encoder feature set (file tags, report suffixes
    and Table 1 labels derive from it). FeatureError if the set is not an encoder."""
    import re

    arch, path = split_encoder(feature_set)
    parts = [p for p in re.split(r"[\\/]+", path.rstrip("/\\")) if p and not p.isdigit()]
    return arch, parts[-1] if parts else ""


def feature_tag(feature_set: str) -> str:
    """A file-name-safe short name: the set in lower case, or ``<arch>-<encoder folder>`` for an encoder."""
    import re

    if feature_kind(feature_set) != "encoder":
        return feature_set.lower()
    arch, folder = encoder_name(feature_set)
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", f"{arch}-{folder or 'encoder'}")


def _lookup(feature_set: str) -> tuple[str, int]:
    try:
        return FEATURE_SETS[feature_set]
    except KeyError:
        raise FeatureError(
            f"feature set {feature_set!r} is unknown; choose one of {', '.join(FEATURE_SETS)}") from None


class FeatureExtractor:
    """openSMILE functionals of one feature set, one vector per utterance.

    Signals are mixed down to mono and resampled to 16 kHz by openSMILE when needed.
    ``extractor(signal, rate)`` returns a float32 vector or raises :class:`FeatureError`
    stating why (empty, non-finite samples, silent, too short for the set).
    """

    def __init__(self, feature_set: str = "IS10"):
        opensmile = import_opensmile()
        member, dim = _lookup(feature_set)
        self.feature_set = feature_set
        self.smile = opensmile.Smile(
            feature_set=getattr(opensmile.FeatureSet, member),
            feature_level=opensmile.FeatureLevel.Functionals,
            sampling_rate=TARGET_RATE, resample=True, channels=[0], mixdown=True)
        self.names: list[str] = list(self.smile.feature_names)
        if len(self.names) != dim:
            raise FeatureError(f"openSMILE's {feature_set} has {len(self.names)} features, expected {dim}")

    @property
    def dim(self) -> int:
        return len(self.names)

    def __call__(self, signal: np.ndarray, sampling_rate: int) -> np.ndarray:
        x = np.asarray(signal, dtype=np.float32)
        if x.ndim == 2:  # (samples, channels) as soundfile returns it -> (channels, samples)
            x = x.T
        if x.size == 0:
            raise FeatureError("empty signal (0 samples)")
        if not np.all(np.isfinite(x)):
            raise FeatureError("signal contains NaN or infinite samples")
        if float(np.max(np.abs(x))) < SILENCE_PEAK:
            raise FeatureError(f"silent signal (peak amplitude below {SILENCE_PEAK:g})")
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # openSMILE warns "Segment too short"; we report it below
            values = self.smile.process_signal(x, int(sampling_rate)).to_numpy(dtype=np.float32)
        if values.shape != (1, self.dim):
            raise FeatureError(f"openSMILE returned shape {values.shape}, expected (1, {self.dim})")
        bad = int(np.sum(~np.isfinite(values)))
        if bad:
            dur = x.shape[-1] / float(sampling_rate)
            raise FeatureError(
                f"openSMILE returned {bad} non-finite {self.feature_set} features; "
                f"the audio ({dur:.2f} s) is probably too short for this feature set")
        return values[0]


@dataclass
class Outcome:
    """Result of one item of :func:`parallel_map`: ``value`` or ``error`` (a reason)."""

    key: str
    value: object = None
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


def _guarded(fn: Callable, key: str, arg) -> Outcome:
    try:
        return Outcome(key, value=fn(arg))
    except (FeatureError, ValueError, OSError, RuntimeError) as e:  # report, never drop silently
        return Outcome(key, error=f"{type(e).__name__}: {e}")


def default_workers() -> int:
    return max(1, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1)


def parallel_map(fn: Callable, items: Sequence[tuple[str, object]], workers: int | None = None,
                 desc: str = "openSMILE", progress: bool = True, chunksize: int = 8) -> list[Outcome]:
    """Apply ``fn(arg)`` to ``(key, arg)`` items over all cores, in order, with a progress bar.

    ``fn`` must be a picklable top-level function of a module that does not import TensorFlow:
    workers are *spawned* (forking a process that runs TensorFlow can crash), and each imports
    only that module.
    Failures come back as :class:`Outcome` with ``error`` set; nothing is dropped.
    """
    from tqdm.auto import tqdm

    items = list(items)
    workers = default_workers() if workers is None else int(workers)
    bar = tqdm(total=len(items), desc=desc, unit="utt", disable=not progress)
    results: list[Outcome] = []
    try:
        if workers <= 1 or len(items) < 2 * workers:
            for key, arg in items:
                results.append(_guarded(fn, key, arg))
                bar.update()
            return results
        ctx = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(max_workers=workers, mp_context=ctx) as pool:
            keys = [k for k, _ in items]
            for out in pool.map(_guarded, [fn] * len(items), keys, [a for _, a in items],
                                chunksize=max(1, min(chunksize, len(items) // (4 * workers) or 1))):
                results.append(out)
                bar.update()
        return results
    finally:
        bar.close()


def _guarded_chunk(fn: Callable, keys: list, args: list) -> list[Outcome]:
    return [_guarded(fn, k, a) for k, a in zip(keys, args)]


def parallel_imap(fn: Callable, items: Iterable[tuple[str, object]], workers: int | None = None,
                  desc: str = "audio", progress: bool = True, chunksize: int = 16,
                  ahead: int = 4) -> Iterator[Outcome]:
    """Like :func:`parallel_map`, but a generator with bounded memory, for large values (waveforms).

    Items are sent to spawned workers in chunks of ``chunksize``; at most ``ahead`` chunks per
    worker are in flight, so a slow consumer (a TFRecord writer) holds back the workers instead
    of letting results pile up. Outcomes come in input order; failures are :class:`Outcome`
    with ``error`` set, as in :func:`parallel_map`. One worker (or few items) runs inline.
    """
    from collections import deque

    from tqdm.auto import tqdm

    items = list(items)
    workers = default_workers() if workers is None else int(workers)
    bar = tqdm(total=len(items), desc=desc, unit="utt", disable=not progress)
    try:
        if workers <= 1 or len(items) < 2 * workers:
            for key, arg in items:
                yield _guarded(fn, key, arg)
                bar.update()
            return
        chunks = [items[i:i + chunksize] for i in range(0, len(items), max(1, chunksize))]
        ctx = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(max_workers=workers, mp_context=ctx) as pool:
            pending: deque = deque()
            next_chunk = 0
            try:
                while next_chunk < len(chunks) or pending:
                    while next_chunk < len(chunks) and len(pending) < max(1, ahead) * workers:
                        c = chunks[next_chunk]
                        pending.append(pool.submit(_guarded_chunk, fn, [k for k, _ in c], [a for _, a in c]))
                        next_chunk += 1
                    for out in pending.popleft().result():
                        yield out
                        bar.update()
            finally:  # the consumer stopped early (or failed): drop what has not started
                for f in pending:
                    f.cancel()
    finally:
        bar.close()


def summarize_failures(outcomes: Iterable[Outcome], limit: int = 20) -> str:
    """A readable list of failed items and their reasons."""
    bad = [o for o in outcomes if not o.ok]
    lines = [f"{len(bad)} item(s) failed:"] + [f"  {o.key}: {o.error}" for o in bad[:limit]]
    if len(bad) > limit:
        lines.append(f"  ... and {len(bad) - limit} more")
    return "\n".join(lines)


_EXTRACTORS: dict[str, FeatureExtractor] = {}


def extractor_for(feature_set: str) -> FeatureExtractor:
    """A per-process cached :class:`FeatureExtractor` (for use inside worker processes)."""
    if feature_set not in _EXTRACTORS:
        _EXTRACTORS[feature_set] = FeatureExtractor(feature_set)
    return _EXTRACTORS[feature_set]


def read_audio(path: str) -> tuple[np.ndarray, int]:
    """Samples (float32, frames x channels or frames) and rate of an audio file, or FeatureError."""
    import soundfile as sf

    if not os.path.isfile(path):
        raise FeatureError(f"file not found: {path}")
    try:
        x, rate = sf.read(str(path), dtype="float32", always_2d=False)
    except Exception as e:  # libsndfile's errors for corrupt/unsupported files
        raise FeatureError(f"cannot read audio ({type(e).__name__}: {e})") from None
    return x, int(rate)


def extract_file(task: tuple) -> dict:
    """``(feature_set, path)`` -> ``{"features": float32[D], "duration": seconds}``;
    ``(feature_set, path, speed_factors)`` adds ``"speed_perturbed": float32[len(speed_factors), D]``
    (:func:`speed_perturbed`).

    A top-level, TensorFlow-free function for :func:`parallel_map` workers.
    """
    feature_set, path, *factors = task
    x, rate = read_audio(path)
    extractor = extractor_for(feature_set)
    return {"features": extractor(x, rate), "duration": np.float32(x.shape[0] / rate),
            **speed_fields(extractor, x, rate, *factors)}


#: Speed-perturbation factors of the ``<set>_sp`` dataset configs: Kaldi's recipe (Ko et al., 2015).
SPEED_FACTORS: tuple[float, ...] = (0.9, 1.1)


def speed_fields(extractor: FeatureExtractor, signal: np.ndarray, rate: int, factors=()) -> dict:
    """The extra example field of a ``<set>_sp`` config, ``{"speed_perturbed": float32[F, D]}``
    (:func:`speed_perturbed`); ``{}`` without factors."""
    return {"speed_perturbed": speed_perturbed(extractor, signal, rate, factors)} if factors else {}


def speed_perturbed(extractor: FeatureExtractor, signal: np.ndarray, rate: int, factors) -> np.ndarray:
    """The features of ``signal`` played ``f`` times as fast, for each ``f`` of ``factors``: float32[F, D].

    Speed perturbation as ``sox speed f`` does it (and Kaldi's x-vector recipes): the samples are
    resampled as if they had been recorded at ``f * rate``, so duration scales by 1/f and pitch and
    formants by f: another plausible voice saying the same thing with the same emotion.
    openSMILE does the resampling (its input is declared at ``f * rate``)."""
    rows = []
    for f in factors:
        if not 0.5 <= float(f) <= 2.0 or float(f) == 1.0:
            raise FeatureError(f"speed factor {f!r}: expected a factor in [0.5, 2] other than 1")
        rows.append(extractor(signal, int(round(rate * float(f)))))
    return np.stack(rows).astype(np.float32)
