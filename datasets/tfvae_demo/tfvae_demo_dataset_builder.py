"""tfvae_demo: a synthetic emotional-speech corpus generated in code, no download.

Every utterance is real audio: a source-filter speech synthesizer (:mod:`tfvae.synth`) renders
it at 16 kHz and openSMILE computes its utterance-level functionals, exactly as for recorded
corpora. It is **synthetic** speech, meant for trying tfvae end to end and for tests, not for
reporting results about human speech.

Speakers differ in vocal-tract length (formants), base pitch and voice quality (breathiness,
jitter, shimmer, spectral tilt, speaking rate); the paper's five emotions (neutral, angry, sad,
happy, disgust) differ in pitch level and range, tempo, energy and spectral tilt, with
per-utterance variation so that classes overlap. Splits are speaker-disjoint and balanced by
sex: of every 6 female/male speaker pairs, 4 go to train, 1 to validation, 1 to test. Every
example has the ``gender`` label of its voice (ClassLabel ``female``, ``male``, ``unknown``, as in
tfvae's other corpora; even speaker index female, odd male: female voices have a base pitch of
160-260 Hz and shorter vocal tracts, male 85-155 Hz), counted per split in
``info.metadata["gender_counts"]``.

Configs:

* ``is10`` (default), ``egemapsv02``: 48 speakers x 5 emotions x 6 utterances, openSMILE
  functionals ``{"features": float32[D], "emotion", "gender", "speaker", "utterance_id", "duration"}``;
  ``is10_small``, ``egemapsv02_small``: 12 speakers x 5 emotions x 2 utterances.
* ``audio16k``, ``audio16k_small``: the same utterances as waveforms,
  ``{"audio": Audio(int16, 16 kHz, mono), "emotion", "gender", "speaker", "utterance_id", "duration"}``
  (``supervised_keys`` ``("audio", "emotion")``), 1.5-3.0 s each.
* ``speakers1k``: a **speaker-pretraining** corpus for speaker encoders (x-vector style):
  1,024 synthetic speakers (even index female, odd male) of another corpus seed
  (``tfvae.demo_corpus.SPEAKERS_SEED`` = 1), so none of them is an emotion-demo voice; 6
  utterances each, every utterance two phrases of one randomly drawn emotion joined by a
  0.1-0.3 s pause (3.1-6.3 s, for random 2-4 s training crops). Speaker-disjoint splits by
  index: train = speakers 0-999 (1,000, 6,000 utterances), validation = 1000-1011 (12, 72),
  test = 1012-1023 (12, 72), each half female. Same example keys as ``audio16k`` (``emotion``
  is the drawn emotion), ``supervised_keys`` ``("audio", "speaker")``. Speaker IDs are
  ``spk0000_s1`` ... Synthetic speakers: use them to pretrain and test the pipeline, not
  for claims about human speech. Measured build (``download_and_prepare`` into
  ``~/tensorflow_datasets``, 2 CPU cores): 56 s wall time (67 s user CPU; rendering in spawned
  workers while TFDS writes, peak RSS 1.7 GB), 898 MiB on disk (941 MB: 8 train shards + 1
  validation + 1 test), 8.2 h of audio (4.8 s mean, 3.3-6.2 s per utterance).
* ``speakers_small``: 40 speakers (32 / 4 / 4) x 4 utterances of the same corpus, for tests.

Everything is deterministic from the config's ``seed``.
"""

from __future__ import annotations

import dataclasses
from collections import Counter

import numpy as np
import tensorflow_datasets as tfds

from tfvae import synth
from tfvae.demo_corpus import (SPEAKERS_SEED, plan, render, render_audio, render_speaker_utterance, speaker_gender,
                               speaker_plan)
from tfvae.features import (AUDIO_SETS, FEATURE_SETS, SPEED_FACTORS, FeatureExtractor, feature_kind, parallel_imap,
                            parallel_map, summarize_failures)
from tfvae.labelled_audio import GENDERS
from tfvae_datasets.audio_features import audio_feature, audio_value, speed_config_name, speed_perturbed_feature

SPLITS = ("train", "validation", "test")


@dataclasses.dataclass
class DemoConfig(tfds.core.BuilderConfig):
    """``corpus``: ``"emotion"`` (the 48-speaker demo: ``n_speakers`` x 5 emotions x
    ``utterances_per_emotion``) or ``"speakers"`` (``split_speakers`` = (train, validation, test)
    speaker counts x ``utterances_per_speaker``); ``feature_set``: openSMILE set or ``audio16k``."""

    feature_set: str = "IS10"
    n_speakers: int = 48
    utterances_per_emotion: int = 6
    seed: int = 0
    corpus: str = "emotion"
    split_speakers: tuple = ()
    utterances_per_speaker: int = 0
    speed_factors: tuple = ()


def _configs():
    sizes = {"": (48, 6), "_small": (12, 2)}
    names = {"IS10": "is10", "eGeMAPSv02": "egemapsv02", "audio16k": "audio16k"}
    emotion = [DemoConfig(name=f"{short}{suffix}", feature_set=fs, n_speakers=n, utterances_per_emotion=u,
                          description=(f"{fs} functionals" if fs in FEATURE_SETS else "16 kHz waveforms")
                          + f", {n} speakers x 5 emotions x {u} utterances")
               for fs, short in names.items() for suffix, (n, u) in sizes.items()]
    emotion += [dataclasses.replace(c, name=speed_config_name(c.name), speed_factors=SPEED_FACTORS,
                                    description=c.description + ", with the features of the audio at speeds "
                                    + ", ".join(f"{f:g}" for f in SPEED_FACTORS))
                for c in emotion if c.feature_set in FEATURE_SETS]
    speakers = [DemoConfig(name=name, feature_set="audio16k", corpus="speakers", seed=SPEAKERS_SEED,
                           n_speakers=sum(split), split_speakers=split, utterances_per_speaker=u,
                           description=f"speaker pretraining: {sum(split)} synthetic speakers ({split[0]} train, "
                                       f"{split[1]} validation, {split[2]} test) x {u} utterances of 3-6 s, "
                                       "16 kHz waveforms")
                for name, split, u in (("speakers1k", (1000, 12, 12), 6), ("speakers_small", (32, 4, 4), 4))]
    return emotion + speakers


class Builder(tfds.core.GeneratorBasedBuilder):
    """Synthetic emotional speech (5 emotions, 48 speakers) and synthetic speakers for pretraining."""

    VERSION = tfds.core.Version("1.2.0")
    RELEASE_NOTES = {"1.0.0": "Initial release.",
                     "1.1.0": "audio16k / audio16k_small waveform configs; speakers1k / speakers_small "
                              "speaker-pretraining configs. Feature configs unchanged.",
                     "1.2.0": "Adds the gender label (ClassLabel female, male, unknown: the voice's sex, even "
                              "speaker index female) to every config and gender_counts per split to the "
                              "metadata; other features unchanged."}
    BUILDER_CONFIGS = _configs()
    DEFAULT_CONFIG_NAME = "is10"

    def _plan(self) -> dict[str, list[tuple]]:
        """``split -> [(utterance_id, speaker_index, emotion, utterance)]`` of the config."""
        cfg = self.builder_config
        if cfg.corpus == "speakers":
            return {s: [(uid, spk, emo, u) for uid, spk, u, emo in items]
                    for s, items in speaker_plan(*cfg.split_speakers, cfg.utterances_per_speaker, cfg.seed).items()}
        return plan(cfg.n_speakers, cfg.utterances_per_emotion)

    def _info(self) -> tfds.core.DatasetInfo:
        cfg = self.builder_config
        p = self._plan()
        counts = {s: dict(Counter(e for _, _, e, _ in items)) for s, items in p.items()}
        genders = {s: Counter(speaker_gender(spk) for _, spk, _, _ in items) for s, items in p.items()}
        meta = dict(feature_set=cfg.feature_set, synthetic=True, seed=cfg.seed, class_counts=counts, skipped={},
                    speakers_per_split={s: len({spk for _, spk, _, _ in items}) for s, items in p.items()},
                    gender_counts={s: {g: int(c[g]) for g in GENDERS} for s, c in genders.items()})
        if feature_kind(cfg.feature_set) == "audio":
            key, feature = "audio", audio_feature(AUDIO_SETS[cfg.feature_set])
            meta["sample_rate"] = AUDIO_SETS[cfg.feature_set]
        else:
            key = "features"
            feature = tfds.features.Tensor(shape=(FEATURE_SETS[cfg.feature_set][1],), dtype=np.float32)
            meta["feature_names"] = FeatureExtractor(cfg.feature_set).names
            if cfg.speed_factors:
                meta["speed_factors"] = list(cfg.speed_factors)
        if cfg.corpus == "speakers":
            meta["corpus"] = "speakers"
            meta["split_speaker_indices"] = {s: [min(spk for _, spk, _, _ in items), max(spk for _, spk, _, _ in items)]
                                             for s, items in p.items()}
        return self.dataset_info_from_configs(
            description=__doc__,
            features=tfds.features.FeaturesDict({
                key: feature,
                **speed_perturbed_feature(cfg.speed_factors, feature.shape[-1] if feature.shape else 0),
                "emotion": tfds.features.ClassLabel(names=list(synth.EMOTIONS)),
                "gender": tfds.features.ClassLabel(names=list(GENDERS)),
                "speaker": tfds.features.Text(),
                "utterance_id": tfds.features.Text(),
                "duration": tfds.features.Scalar(dtype=np.float32),
            }),
            supervised_keys=(key, "speaker" if cfg.corpus == "speakers" else "emotion"),
            homepage="https://github.com/tfvae/tfvae",
            metadata=tfds.core.MetadataDict(meta),
        )

    def _split_generators(self, dl_manager: tfds.download.DownloadManager):
        cfg = self.builder_config
        splits = self._plan()
        if feature_kind(cfg.feature_set) == "audio":
            # waveforms are large: rendered in workers while TFDS writes them (bounded memory)
            return {split: self._stream_audio(split, items) for split, items in splits.items()}
        factors = tuple(cfg.speed_factors)
        tasks = [(uid, (cfg.feature_set, cfg.seed, spk, emo, u, factors)) for items in splits.values()
                 for uid, spk, emo, u in items]
        outcomes = {o.key: o for o in parallel_map(render, tasks, desc=f"tfvae_demo/{cfg.name}")}
        if not all(o.ok for o in outcomes.values()):
            raise RuntimeError("tfvae_demo generation failed (a bug, please report):\n"
                               + summarize_failures(outcomes.values()))
        return {split: self._generate_examples([outcomes[uid] for uid, *_ in items])
                for split, items in splits.items()}

    def _generate_examples(self, outcomes):
        for o in outcomes:
            yield o.key, {**o.value, "utterance_id": o.key}

    def _stream_audio(self, split: str, items: list[tuple]):
        cfg = self.builder_config
        if cfg.corpus == "speakers":
            fn, tasks = render_speaker_utterance, [(uid, (cfg.seed, spk, u)) for uid, spk, _, u in items]
        else:
            fn, tasks = render_audio, [(uid, (cfg.seed, spk, emo, u)) for uid, spk, emo, u in items]
        for o in parallel_imap(fn, tasks, desc=f"tfvae_demo/{cfg.name} {split}"):
            if not o.ok:
                raise RuntimeError(f"tfvae_demo generation failed (a bug, please report): {o.key}: {o.error}")
            yield o.key, {**o.value, "audio": audio_value(o.value["audio"]), "utterance_id": o.key}
