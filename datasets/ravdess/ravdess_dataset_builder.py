"""RAVDESS emotional speech (manual download): openSMILE functionals or 16 kHz waveforms per utterance.

The speech part of the Ryerson Audio-Visual Database of Emotional Speech and Song: 24
professional actors (odd IDs male, even female), 8 emotions, 1440 utterances. Files are named
``03-01-EE-II-SS-RR-AA`` (modality, vocal channel, emotion, intensity, statement, repetition,
actor). Song files (vocal channel 02) are not part of this dataset; they are counted in
``info.metadata["ignored"]``.

Splits are speaker-disjoint and sex-balanced, by fixed actor lists:
train = actors 1-16, validation = 17-20, test = 21-24. The ``gender`` label is the actor's, by
RAVDESS's numbering (odd actor IDs male, even female): 8 female and 8 male actors in train, 2 and 2
in validation and in test (``info.metadata["gender_counts"]``).

Configs (see :mod:`tfvae_datasets.audio_features`): ``is10`` (default), ``is09``, ``emobase``,
``egemapsv02``, ``compare_2016`` (openSMILE functionals, ``{"features": float32[D], ...}``) and
``audio16k``: the 48 kHz recordings as mono 16 kHz int16 waveforms (``{"audio": ..., ...}``),
e.g. ``tfds.load("ravdess/audio16k", split="train", download_and_prepare_kwargs=...)``.
"""

from __future__ import annotations

import re
from pathlib import Path


from tfvae.labelled_audio import BadItem, Utterance
from tfvae_datasets.audio_features import AudioFeatureBuilder

EMOTIONS = ("neutral", "calm", "happy", "sad", "angry", "fearful", "disgust", "surprised")
TRAIN_ACTORS = tuple(range(1, 17))
VALIDATION_ACTORS = (17, 18, 19, 20)
TEST_ACTORS = (21, 22, 23, 24)
_NAME = re.compile(r"^(\d\d)-(\d\d)-(\d\d)-(\d\d)-(\d\d)-(\d\d)-(\d\d)$")
AUDIO_SUFFIXES = (".wav", ".flac")


def gender_of_actor(actor: int) -> str:
    """RAVDESS's actors: odd IDs are male, even IDs female."""
    return "male" if actor % 2 else "female"


def split_of_actor(actor: int) -> str | None:
    if actor in TRAIN_ACTORS:
        return "train"
    if actor in VALIDATION_ACTORS:
        return "validation"
    if actor in TEST_ACTORS:
        return "test"
    return None


class Builder(AudioFeatureBuilder):
    """RAVDESS speech, 24 actors, 8 emotions, openSMILE functionals or 16 kHz waveforms."""

    EMOTIONS = EMOTIONS
    MANUAL_DOWNLOAD_INSTRUCTIONS = """
    Download `Audio_Speech_Actors_01-24.zip` from https://zenodo.org/records/1188976 (CC BY-NC-SA
    4.0), unzip it, and pass the folder that holds `Actor_01/ ... Actor_24/` as the manual
    directory: `--manual_dir` of `python -m tfvae.train`, or
    `tfds build datasets/ravdess --manual_dir=...`. WAV (48 kHz) or FLAC at any rate works;
    audio is resampled to 16 kHz (for openSMILE, and for the audio16k waveforms).
    """

    def _description(self) -> str:
        return __doc__

    def _utterances(self, dl_manager):
        root = Path(dl_manager.manual_dir)
        actor_dirs = sorted(p for p in root.glob("Actor_*") if p.is_dir()) if root.is_dir() else []
        if not actor_dirs:
            raise FileNotFoundError(
                f"No RAVDESS audio found in manual_dir={root}: expected folders Actor_01 ... Actor_24."
                f"\n{self.MANUAL_DOWNLOAD_INSTRUCTIONS}")
        utts, bad, ignored = [], [], {"song_files": 0, "non_audio_files": 0}
        for d in actor_dirs:
            for f in sorted(d.iterdir()):
                if f.suffix.lower() not in AUDIO_SUFFIXES:
                    ignored["non_audio_files"] += 1
                    continue
                m = _NAME.match(f.stem)
                if not m:
                    bad.append(BadItem(f.stem, str(f), "file name does not follow 03-01-EE-II-SS-RR-AA"))
                    continue
                modality, channel, emo, _, _, _, actor = (int(g) for g in m.groups())
                if channel == 2:
                    ignored["song_files"] += 1
                    continue
                reasons = []
                if modality != 3 or channel != 1:
                    reasons.append(f"not an audio-only speech file (modality {modality:02d}, channel {channel:02d})")
                if d.name != f"Actor_{actor:02d}":
                    reasons.append(f"actor {actor:02d} in the file name but the file is in {d.name}")
                split = split_of_actor(actor)
                if split is None:
                    reasons.append(f"actor {actor:02d} is not one of RAVDESS's actors 01-24")
                if reasons:
                    bad.append(BadItem(f.stem, str(f), "; ".join(reasons)))
                    continue
                emotion = EMOTIONS[emo - 1] if 1 <= emo <= len(EMOTIONS) else f"code {emo:02d}"
                utts.append(Utterance(f.stem, str(f), f"Actor_{actor:02d}", emotion, split,
                                      {"gender": gender_of_actor(actor)}))
        return utts, bad, {"ignored": ignored, "split_actors": {
            "train": list(TRAIN_ACTORS), "validation": list(VALIDATION_ACTORS), "test": list(TEST_ACTORS)}}
