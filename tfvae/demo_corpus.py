"""The synthetic demo corpus: which utterances exist and how one is rendered to features or audio.

Two corpora, both synthetic (:mod:`tfvae.synth`), not for claims about human speech:

* the emotion demo (:func:`plan`, :func:`render`, :func:`render_audio`): 48 speakers x 5
  emotions, corpus seed 0;
* the speaker-pretraining corpus (:func:`speaker_plan`, :func:`render_speaker_utterance`):
  many speakers (1,024 in ``tfvae_demo/speakers1k``) of another corpus seed
  (:data:`SPEAKERS_SEED`), so they are other voices than the emotion demo's; each utterance
  is two phrases of one randomly drawn emotion joined by a 0.1-0.3 s pause (3.1-6.3 s), long
  enough for the random 2-4 s crops speaker encoders train on.

Every synthetic voice has a sex (:attr:`tfvae.synth.Voice.sex`: even speaker index female, odd
male, with female base pitch 160-260 Hz and male 85-155 Hz and shorter/longer vocal tracts, so it
is audible); an example's ``gender`` is its voice's (:func:`speaker_gender`).

TensorFlow-free, so rendering and feature extraction can run in light worker processes; the
TFDS builder ``tfvae_datasets.tfvae_demo`` wires this into datasets.
"""

from __future__ import annotations

import numpy as np

from tfvae import synth
from tfvae.audio import to_int16
from tfvae.features import extractor_for, speed_fields

#: Of every 6 consecutive female/male speaker pairs, 4 train, 1 validation, 1 test.
SPLIT_OF_PAIR = ("train", "train", "train", "train", "validation", "test")


def speaker_gender(index: int) -> str:
    """The gender of synthetic speaker ``index`` in any corpus seed: that of :func:`tfvae.synth.make_voice`
    (even index female, odd male), known without rendering."""
    return "female" if int(index) % 2 == 0 else "male"


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
    """``(feature_set, seed, speaker_index, emotion, utterance[, speed_factors])`` -> one example's fields
    (with ``speed_perturbed`` features when ``speed_factors`` is given and not empty)."""
    feature_set, seed, spk, emotion, u, *factors = task
    voice = synth.make_voice(spk, seed)
    audio = synth.synthesize(voice, emotion, u, seed)
    extractor = extractor_for(feature_set)
    return {"features": extractor(audio, synth.SAMPLE_RATE), "emotion": emotion, "gender": voice.sex,
            "speaker": voice.speaker_id, "duration": np.float32(len(audio) / synth.SAMPLE_RATE),
            **speed_fields(extractor, audio, synth.SAMPLE_RATE, *factors)}


def render_audio(task: tuple) -> dict:
    """``(seed, speaker_index, emotion, utterance)`` -> the example's fields with the 16 kHz int16 ``audio``."""
    seed, spk, emotion, u = task
    voice = synth.make_voice(spk, seed)
    audio = synth.synthesize(voice, emotion, u, seed)
    return {"audio": to_int16(audio), "emotion": emotion, "gender": voice.sex, "speaker": voice.speaker_id,
            "duration": np.float32(len(audio) / synth.SAMPLE_RATE)}


# ---------------------------------------------------------------------------------- speakers corpus
#: Corpus seed of the speaker-pretraining configs (the emotion demo uses 0): other voices.
SPEAKERS_SEED = 1
#: Pause between the two phrases of a speaker-corpus utterance, seconds (uniform).
PAUSE_RANGE = (0.1, 0.3)
#: Level of the low noise that fills the pause (about the synthesizer's own noise floor).
PAUSE_NOISE_DB = -66.0


def speaker_name(index: int, seed: int = SPEAKERS_SEED) -> str:
    """Speaker ID of the speakers corpus: ``spk0005_s1`` (not the emotion demo's ``spk05``)."""
    return f"spk{int(index):04d}_s{int(seed)}"


def _speaker_utterance_rng(seed: int, spk: int, u: int) -> np.random.Generator:
    return np.random.default_rng([int(seed) & 0xFFFFFFFF, int(spk), int(u), 0x5BEA])


def speaker_utterance_emotion(seed: int, spk: int, u: int) -> str:
    """The emotion drawn for utterance ``u`` of speaker ``spk`` (both of its phrases speak it)."""
    return synth.EMOTIONS[int(_speaker_utterance_rng(seed, spk, u).integers(len(synth.EMOTIONS)))]


def speaker_plan(n_train: int, n_validation: int, n_test: int, utterances: int,
                 seed: int = SPEAKERS_SEED) -> dict[str, list[tuple]]:
    """Utterances per split: ``(utterance_id, speaker_index, utterance_number, emotion)``.

    Speakers ``0 .. n_train-1`` are train, the next ``n_validation`` validation, the last
    ``n_test`` test (speaker-disjoint); every count must be even, so that each split is half
    female (even index) and half male (odd index).
    """
    counts = {"train": n_train, "validation": n_validation, "test": n_test}
    for name, n in counts.items():
        if n < 2 or n % 2:
            raise ValueError(f"the speakers corpus needs an even number (>= 2) of {name} speakers, got {n}")
    if utterances < 1:
        raise ValueError(f"utterances per speaker must be >= 1, got {utterances}")
    out, first = {}, 0
    for split, n in counts.items():
        out[split] = [(f"{speaker_name(spk, seed)}_{u:02d}", spk, u, speaker_utterance_emotion(seed, spk, u))
                      for spk in range(first, first + n) for u in range(utterances)]
        first += n
    return out


def render_speaker_utterance(task: tuple) -> dict:
    """``(seed, speaker_index, utterance)`` -> the example's fields: two phrases of one emotion
    (synthesizer utterances ``2u`` and ``2u + 1``) joined by a noise-filled 0.1-0.3 s pause."""
    seed, spk, u = task
    voice = synth.make_voice(spk, seed)
    emotion = speaker_utterance_emotion(seed, spk, u)
    rng = _speaker_utterance_rng(seed, spk, u)
    rng.integers(len(synth.EMOTIONS))  # the emotion's draw
    pause = rng.standard_normal(int(round(rng.uniform(*PAUSE_RANGE) * synth.SAMPLE_RATE)))
    pause = (pause * 10.0 ** (PAUSE_NOISE_DB / 20.0)).astype(np.float32)
    audio = np.concatenate([synth.synthesize(voice, emotion, 2 * u, seed), pause,
                            synth.synthesize(voice, emotion, 2 * u + 1, seed)])
    return {"audio": to_int16(audio), "emotion": emotion, "gender": voice.sex, "speaker": speaker_name(spk, seed),
            "duration": np.float32(len(audio) / synth.SAMPLE_RATE)}
