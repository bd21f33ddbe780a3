"""The synthetic demo corpus: which utterances exist and how one is rendered to features.

TensorFlow-free, so feature extraction can run in light worker processes; the TFDS builder
``tfvae_datasets.tfvae_demo`` wires this into a dataset.
"""

from __future__ import annotations

import numpy as np

from tfvae import synth
from tfvae.features import extractor_for

#: Of every 6 consecutive female/male speaker pairs, 4 train, 1 validation, 1 test.
SPLIT_OF_PAIR = ("train", "train", "train", "train", "validation", "test")


def plan(n_speakers: int, utterances_per_emotion: int) -> dict[str, list[tuple]]:
    """Utterances per split: ``(utterance_id, speaker_index, emotion, utterance_number)``."""
    if n_speakers < 12 or n_speakers % 2:
        raise ValueError(f"the demo corpus needs an even number of at least 12 speakers, got {n_speakers}")
    if utterances_per_emotion < 1:
        raise ValueError(f"utterances_per_emotion must be >= 1, got {utterances_per_emotion}")
    out = {s: [] for s in ("train", "validation", "test")}
    for spk in range(n_speakers):
        split = SPLIT_OF_PAIR[(spk // 2) % len(SPLIT_OF_PAIR)]
        for emotion in synth.EMOTIONS:
            for u in range(utterances_per_emotion):
                out[split].append((f"spk{spk:02d}_{emotion}_{u:02d}", spk, emotion, u))
    return out


def render(task: tuple) -> dict:
    """``(feature_set, seed, speaker_index, emotion, utterance)`` -> one example's fields."""
    feature_set, seed, spk, emotion, u = task
    voice = synth.make_voice(spk, seed)
    audio = synth.synthesize(voice, emotion, u, seed)
    return {"features": extractor_for(feature_set)(audio, synth.SAMPLE_RATE), "emotion": emotion,
            "speaker": voice.speaker_id, "duration": np.float32(len(audio) / synth.SAMPLE_RATE)}
