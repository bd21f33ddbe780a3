"""tfvae_demo: a synthetic emotional-speech corpus generated in code, no download.

Every utterance is real audio: a source-filter speech synthesizer (:mod:`tfvae.synth`) renders
it at 16 kHz and openSMILE computes its utterance-level functionals, exactly as for recorded
corpora. It is **synthetic** speech, meant for trying tfvae end to end and for tests, not for
reporting results about human speech.

Speakers differ in vocal-tract length (formants), base pitch and voice quality (breathiness,
jitter, shimmer, spectral tilt, speaking rate); the paper's five emotions (neutral, angry, sad,
happy, disgust) differ in pitch level and range, tempo, energy and spectral tilt, with
per-utterance variation so that classes overlap. Splits are speaker-disjoint and balanced by
sex: of every 6 female/male speaker pairs, 4 go to train, 1 to validation, 1 to test.
"""

from __future__ import annotations

import dataclasses
from collections import Counter

import numpy as np
import tensorflow_datasets as tfds

from tfvae import synth
from tfvae.demo_corpus import plan, render
from tfvae.features import FEATURE_SETS, FeatureExtractor, parallel_map, summarize_failures


@dataclasses.dataclass
class DemoConfig(tfds.core.BuilderConfig):
    feature_set: str = "IS10"
    n_speakers: int = 48
    utterances_per_emotion: int = 6
    seed: int = 0


def _configs():
    sizes = {"": (48, 6), "_small": (12, 2)}
    names = {"IS10": "is10", "eGeMAPSv02": "egemapsv02"}
    return [DemoConfig(name=f"{short}{suffix}", feature_set=fs, n_speakers=n, utterances_per_emotion=u,
                       description=f"{fs} functionals, {n} speakers x 5 emotions x {u} utterances")
            for fs, short in names.items() for suffix, (n, u) in sizes.items()]


class Builder(tfds.core.GeneratorBasedBuilder):
    """Synthetic emotional speech (5 emotions, 48 speakers), openSMILE functionals."""

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "Initial release."}
    BUILDER_CONFIGS = _configs()
    DEFAULT_CONFIG_NAME = "is10"

    def _info(self) -> tfds.core.DatasetInfo:
        cfg = self.builder_config
        dim = FEATURE_SETS[cfg.feature_set][1]
        counts = {s: dict(Counter(e for _, _, e, _ in items))
                  for s, items in plan(cfg.n_speakers, cfg.utterances_per_emotion).items()}
        return self.dataset_info_from_configs(
            description=__doc__,
            features=tfds.features.FeaturesDict({
                "features": tfds.features.Tensor(shape=(dim,), dtype=np.float32),
                "emotion": tfds.features.ClassLabel(names=list(synth.EMOTIONS)),
                "speaker": tfds.features.Text(),
                "utterance_id": tfds.features.Text(),
                "duration": tfds.features.Scalar(dtype=np.float32),
            }),
            supervised_keys=("features", "emotion"),
            homepage="https://github.com/tfvae/tfvae",
            metadata=tfds.core.MetadataDict(
                feature_set=cfg.feature_set, feature_names=FeatureExtractor(cfg.feature_set).names,
                synthetic=True, seed=cfg.seed, class_counts=counts, skipped={}),
        )

    def _split_generators(self, dl_manager: tfds.download.DownloadManager):
        cfg = self.builder_config
        splits = plan(cfg.n_speakers, cfg.utterances_per_emotion)
        tasks = [(uid, (cfg.feature_set, cfg.seed, spk, emo, u)) for items in splits.values()
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
