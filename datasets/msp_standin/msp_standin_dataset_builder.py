"""msp_standin: a SYNTHETIC, MSP-Podcast-shaped stand-in corpus for scaling benchmarks (no audio, no download).

**Not speech.** The examples are seeded random vectors with the *shape* of MSP-Podcast built
with tfvae's IS10 configs (``msp_podcast/is10``): 1,582 float32 "IS10 functionals" per
utterance, MSP-Podcast's five emotion classes, speaker-disjoint splits in the proportions of a
recent release, about 10 utterances per speaker with a long tail. It exists so that training,
evaluation and serving can be benchmarked at MSP-Podcast scale through exactly the code a real
build goes through (TFDS files, ``tfvae.data.load_corpus``). Numbers measured on it say nothing
about emotion recognition or speaker verification on human speech.

Configs (total utterances): ``is10_2k`` (tests), ``is10_10k``, ``is10_50k``, ``is10_150k``
(about MSP-Podcast 1.11 without Test2). Examples::

    {"features": float32[1582], "emotion": ClassLabel(neutral, angry, sad, happy, disgust),
     "speaker": str, "utterance_id": str, "duration": float32 seconds,
     "gender": ClassLabel(female, male)}

Shape of the corpus (all seeded by the config's ``seed``; every example is a function of the
config and its speaker index alone, so a build is reproducible):

* **Splits**: proportions of the MSP-Podcast Release 1.11 partitions (rounded counts Train 84,000,
  Development 19,800, Test1 30,600, Test2 14,800) with the mapping of the ``msp_podcast``
  builder: Train -> ``train``, Development -> ``validation``, Test1 -> ``test``; Test2 is
  *dropped*, as ``msp_podcast``'s default configs drop it (its ``_test2`` configs keep it as an
  extra split ``test2``, which tfvae's loader does not read), so train : validation : test =
  62.5 : 14.7 : 22.8 %.
  Speakers are disjoint across splits (one speaker per ~10 utterances in every split).
* **Utterances per speaker**: 2 each, plus the rest of the split shared out in proportion to
  seeded lognormal weights (sigma 1.3): mean 10, minimum 2 (every speaker gives target
  verification trials), a long tail up to a few hundred in the large configs.
* **Gender**: half of each split's speakers female, half male (one more male when odd);
  the ``gender`` feature is the speaker's.
* **Emotion**: each speaker draws its own class distribution from a Dirichlet around the
  shares neutral 0.48, happy 0.28, angry 0.11, sad 0.09, disgust 0.04 (approximately
  MSP-Podcast's consensus labels restricted to these five classes), so the corpus follows
  these shares and speakers differ in how they speak, as in podcasts.
* **Durations**: 2 + 10 * Beta(2, 3.5) seconds (2-12 s, mean 5.6 s).
* **Features**: ``x = mean + scale * y`` per feature, with a seeded global mean and lognormal
  per-feature scales (IS10 features span orders of magnitude) and
  ``y = speaker (24-d subspace) + session (same subspace) + emotion (8-d subspace: class mean
  times a per-speaker strength, a per-speaker offset, per-utterance intensity noise)
  + nuisance (16-d subspace) + gender direction + isotropic noise``; the three subspaces are
  orthonormal to each other. The amplitudes are chosen so that a linear probe finds both
  attributes well above chance but not trivially (see the folder's README.md for measured
  numbers). ``info.metadata["generation"]`` records all of them.

``info.metadata`` also holds ``feature_set`` ("IS10"), ``feature_names`` (openSMILE's IS10
names), ``synthetic`` (True), ``class_counts``, ``speakers_per_split``,
``utterances_per_split``, ``gender_counts`` and ``max_utterances_per_speaker`` per split.
"""

from __future__ import annotations

import dataclasses
import functools

import numpy as np
import tensorflow_datasets as tfds

#: MSP-Podcast's five classes, named and ordered as the ``msp_podcast`` builder's default (5-class)
#: configs name them (kept here so that this module imports alone; a test checks they agree).
EMOTIONS = ("neutral", "angry", "sad", "happy", "disgust")
SPLITS = ("train", "validation", "test")
GENDERS = ("female", "male")
DIM = 1582
#: Rounded partition sizes of MSP-Podcast Release 1.11; Test2 is dropped, as in msp_podcast's default configs.
RELEASE = "MSP-Podcast 1.11"
PARTITION_COUNTS = {"Train": 84_000, "Development": 19_800, "Test1": 30_600, "Test2": 14_800}
PARTITIONS = {"train": "Train", "validation": "Development", "test": "Test1"}
SPLIT_SHARES = {s: PARTITION_COUNTS[p] / sum(PARTITION_COUNTS[q] for q in PARTITIONS.values())
                for s, p in PARTITIONS.items()}
EMOTION_SHARES = {"neutral": 0.48, "angry": 0.11, "sad": 0.09, "happy": 0.28, "disgust": 0.04}

#: Every generation parameter (recorded in ``info.metadata["generation"]``).
GENERATION = {
    "utterances_per_speaker_mean": 10,
    "min_utterances_per_speaker": 2,
    "count_lognormal_sigma": 1.3,
    "emotion_shares": EMOTION_SHARES,
    "emotion_dirichlet_concentration": 10.0,
    "duration": "2 + 10 * Beta(2, 3.5) s",
    "scale_lognormal_sigma": 1.5,
    "mean_over_scale_std": 3.0,
    "speaker_rank": 24,
    "emotion_rank": 8,
    "nuisance_rank": 16,
    # per-feature standard deviations (in units of the feature's scale) of the parts of y
    "speaker_std": 0.55,
    "session_std": 0.4,
    "emotion_std": 0.08,
    "emotion_strength_lognormal_sigma": 0.4,
    "emotion_speaker_offset_std": 0.5,
    "emotion_utterance_std": 1.0,
    "nuisance_std": 0.5,
    "gender_std": 0.3,
    "noise_std": 0.6,
}
# independent random streams of one seed
_PLAN, _GLOBAL, _SPEAKER = 0, 1, 2


@dataclasses.dataclass
class StandinConfig(tfds.core.BuilderConfig):
    """``size``: utterances in all three splits together; ``seed``: everything is drawn from it."""

    size: int = 2000
    seed: int = 0
    feature_set: str = "IS10"


SIZES = {"is10_2k": 2_000, "is10_10k": 10_000, "is10_50k": 50_000, "is10_150k": 150_000}


def _configs() -> list[StandinConfig]:
    return [StandinConfig(name=name, size=n, description=f"SYNTHETIC (not speech): {n:,} IS10-shaped utterances, "
                                                         f"MSP-Podcast split proportions, ~{n // 10:,} speakers")
            for name, n in SIZES.items()]


# ---------------------------------------------------------------------------------- plan
def split_sizes(size: int) -> dict[str, int]:
    """Utterances per split: the release's proportions, rounded; test takes the remainder."""
    train = int(round(size * SPLIT_SHARES["train"]))
    validation = int(round(size * SPLIT_SHARES["validation"]))
    return {"train": train, "validation": validation, "test": size - train - validation}


def _largest_remainder(total: int, weights: np.ndarray) -> np.ndarray:
    """Non-negative integers proportional to ``weights`` that sum to ``total`` exactly."""
    q = total * weights / weights.sum()
    c = np.floor(q).astype(np.int64)
    short = total - int(c.sum())
    if short:
        c[np.argsort(-(q - c), kind="stable")[:short]] += 1
    return c


@dataclasses.dataclass(frozen=True)
class SplitPlan:
    """One split: per speaker (global index, gender index, utterance count) and per utterance
    (speaker position in this split, emotion index, duration)."""

    speaker_index: np.ndarray
    gender: np.ndarray
    counts: np.ndarray
    utt_speaker: np.ndarray
    emotion: np.ndarray
    duration: np.ndarray

    @property
    def starts(self) -> np.ndarray:
        return np.concatenate([[0], np.cumsum(self.counts)[:-1]])


def speaker_name(index: int) -> str:
    return f"standin_{int(index):05d}"


@functools.lru_cache(maxsize=8)
def plan(size: int, seed: int = 0) -> dict[str, SplitPlan]:
    """Speakers, genders, utterance counts, emotions and durations of every split (vectorised)."""
    g = GENERATION
    shares = np.array([EMOTION_SHARES[e] for e in EMOTIONS])
    out, first = {}, 0
    for i, (split, n) in enumerate(split_sizes(size).items()):
        rng = np.random.default_rng([seed, _PLAN, i])
        k = max(1, int(round(n / g["utterances_per_speaker_mean"])))
        k = min(k, n // g["min_utterances_per_speaker"])
        w = rng.lognormal(0.0, g["count_lognormal_sigma"], size=k)
        counts = g["min_utterances_per_speaker"] + _largest_remainder(n - g["min_utterances_per_speaker"] * k, w)
        gender = np.zeros(k, np.int64)
        gender[rng.permutation(k)[k // 2:]] = 1  # floor(k/2) female, the rest male
        probs = rng.dirichlet(g["emotion_dirichlet_concentration"] * shares, size=k)
        utt_speaker = np.repeat(np.arange(k), counts)
        cdf = np.cumsum(probs, axis=1)[utt_speaker]
        emotion = np.minimum((rng.random(n)[:, None] > cdf).sum(axis=1), len(EMOTIONS) - 1)
        duration = (2.0 + 10.0 * rng.beta(2.0, 3.5, size=n)).astype(np.float32)
        out[split] = SplitPlan(np.arange(first, first + k), gender, counts, utt_speaker, emotion, duration)
        first += k
    return out


def plan_summary(p: dict[str, SplitPlan]) -> dict:
    """The per-split counts recorded in ``info.metadata``."""
    return {
        "utterances_per_split": {s: int(v.counts.sum()) for s, v in p.items()},
        "speakers_per_split": {s: int(v.counts.size) for s, v in p.items()},
        "max_utterances_per_speaker": {s: int(v.counts.max()) for s, v in p.items()},
        "class_counts": {s: {e: int(c) for e, c in zip(EMOTIONS, np.bincount(v.emotion, minlength=len(EMOTIONS)))}
                         for s, v in p.items()},
        "gender_counts": {s: {"speakers": {gn: int((v.gender == i).sum()) for i, gn in enumerate(GENDERS)},
                              "utterances": {gn: int(v.counts[v.gender == i].sum()) for i, gn in enumerate(GENDERS)}}
                          for s, v in p.items()},
    }


# ---------------------------------------------------------------------------------- features
@dataclasses.dataclass(frozen=True)
class FeatureSpace:
    """The global part of the generative model: per-feature mean and scale, the subspace basis
    (``basis``: rows 0-23 speaker, then 8 emotion, then 16 nuisance, orthonormal, times
    sqrt(D / rank) so that each part has per-feature variance 1), the gender direction and the
    emotion class means (in the emotion subspace)."""

    mean: np.ndarray
    scale: np.ndarray
    basis: np.ndarray
    gender: np.ndarray
    emotion_means: np.ndarray


@functools.lru_cache(maxsize=4)
def feature_space(seed: int = 0) -> FeatureSpace:
    g = GENERATION
    rng = np.random.default_rng([seed, _GLOBAL])
    scale = np.exp(rng.normal(0.0, g["scale_lognormal_sigma"], DIM))
    mean = scale * rng.normal(0.0, g["mean_over_scale_std"], DIM)
    ranks = (g["speaker_rank"], g["emotion_rank"], g["nuisance_rank"])
    q, _ = np.linalg.qr(rng.standard_normal((DIM, sum(ranks))))
    norms = np.concatenate([np.full(r, np.sqrt(DIM / r)) for r in ranks])
    basis = q.T * norms[:, None]
    gender = rng.standard_normal(DIM)
    emotion_means = rng.standard_normal((len(EMOTIONS), g["emotion_rank"]))
    emotion_means[0] *= 0.3  # neutral near the centre
    f32 = lambda a: a.astype(np.float32)  # noqa: E731
    return FeatureSpace(f32(mean), f32(scale), f32(basis), f32(gender), emotion_means)


def speaker_features(seed: int, speaker_index: int, gender: int, emotion: np.ndarray) -> np.ndarray:
    """float32 (n, 1582) features of one speaker's utterances with the given emotion indices;
    a function of ``(seed, speaker_index, gender, emotion)`` only."""
    g = GENERATION
    fs = feature_space(seed)
    rng = np.random.default_rng([seed, _SPEAKER, int(speaker_index)])
    n = len(emotion)
    rs, re, rn = g["speaker_rank"], g["emotion_rank"], g["nuisance_rank"]
    z = rng.standard_normal(rs)
    strength = np.exp(rng.normal(0.0, g["emotion_strength_lognormal_sigma"]))
    offset = rng.standard_normal(re)
    latent = np.empty((n, rs + re + rn))
    latent[:, :rs] = g["speaker_std"] * z + g["session_std"] * rng.standard_normal((n, rs))
    latent[:, rs:rs + re] = g["emotion_std"] * (strength * fs.emotion_means[np.asarray(emotion)]
                                                + g["emotion_speaker_offset_std"] * offset
                                                + g["emotion_utterance_std"] * rng.standard_normal((n, re)))
    latent[:, rs + re:] = g["nuisance_std"] * rng.standard_normal((n, rn))
    y = rng.standard_normal((n, DIM), dtype=np.float32)
    y *= np.float32(g["noise_std"])
    y += latent.astype(np.float32) @ fs.basis
    y += np.float32(g["gender_std"] * (1.0 if gender else -1.0)) * fs.gender
    y *= fs.scale
    y += fs.mean
    return y


@functools.lru_cache(maxsize=1)
def _is10_names() -> tuple[str, ...]:
    from tfvae.features import FeatureExtractor

    return tuple(FeatureExtractor("IS10").names)


# ---------------------------------------------------------------------------------- TFDS
class Builder(tfds.core.GeneratorBasedBuilder):
    """SYNTHETIC MSP-Podcast-shaped IS10 corpus (not speech), for scaling benchmarks."""

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "Initial release."}
    BUILDER_CONFIGS = _configs()
    DEFAULT_CONFIG_NAME = "is10_2k"

    def _info(self) -> tfds.core.DatasetInfo:
        cfg = self.builder_config
        meta = {"feature_set": cfg.feature_set, "feature_names": list(_is10_names()), "synthetic": True,
                "generation": {"seed": cfg.seed, "size": cfg.size, **GENERATION},
                "release": RELEASE, "partition_counts": PARTITION_COUNTS, "partitions": PARTITIONS,
                "dropped_partitions": ["Test2"], "split_shares": SPLIT_SHARES, "skipped": {},
                **plan_summary(plan(cfg.size, cfg.seed))}
        return self.dataset_info_from_configs(
            description=__doc__,
            features=tfds.features.FeaturesDict({
                "features": tfds.features.Tensor(shape=(DIM,), dtype=np.float32),
                "emotion": tfds.features.ClassLabel(names=list(EMOTIONS)),
                "speaker": tfds.features.Text(),
                "utterance_id": tfds.features.Text(),
                "duration": tfds.features.Scalar(dtype=np.float32),
                "gender": tfds.features.ClassLabel(names=list(GENDERS)),
            }),
            supervised_keys=("features", "emotion"),
            homepage="https://github.com/tfvae/tfvae",
            metadata=tfds.core.MetadataDict(meta),
        )

    def _split_generators(self, dl_manager):
        return {split: self._generate_examples(split) for split in SPLITS}

    def _generate_examples(self, split: str):
        from threadpoolctl import threadpool_limits

        cfg = self.builder_config
        p = plan(cfg.size, cfg.seed)[split]
        # small products: one BLAS thread (spinning OpenBLAS threads are much slower on busy cores)
        with threadpool_limits(limits=1, user_api="blas"):
            for spk, gender, start, n in zip(p.speaker_index, p.gender, p.starts, p.counts):
                emotion = p.emotion[start:start + n]
                x = speaker_features(cfg.seed, spk, gender, emotion)
                name = speaker_name(spk)
                for j in range(n):
                    uid = f"{name}_{j:04d}"
                    yield uid, {"features": x[j], "emotion": int(emotion[j]), "speaker": name, "utterance_id": uid,
                                "duration": float(p.duration[start + j]), "gender": int(gender)}
