"""Regenerate ``dummy_data/``: a few RAVDESS-named FLAC files of *synthetic* speech.

    python datasets/ravdess/make_dummy_data.py

No RAVDESS audio is copied (its licence is non-commercial); tfvae's synthesizer renders the
files. Layout: Actor_01, Actor_02 (train), Actor_17 (validation), Actor_21 (test), two speech
files each, plus one song file (vocal channel 02) that the builder ignores and counts.
"""

from pathlib import Path

import soundfile as sf

from tfvae import synth

OUT = Path(__file__).resolve().parent / "dummy_data"
# (actor, emotion code EE, statement SS); RAVDESS codes: 01 neutral ... 05 angry ... 08 surprised
FILES = [(1, 1, 1), (1, 5, 2), (2, 4, 1), (2, 3, 2), (17, 5, 1), (17, 8, 2), (21, 7, 1), (21, 2, 2)]
EMO_FOR_SYNTH = {1: "neutral", 2: "neutral", 3: "happy", 4: "sad", 5: "angry", 6: "sad", 7: "disgust", 8: "happy"}


def main() -> None:
    for actor, emo, statement in FILES + [(1, 3, 1)]:
        channel = 2 if (actor, emo, statement) == (1, 3, 1) else 1
        d = OUT / f"Actor_{actor:02d}"
        d.mkdir(parents=True, exist_ok=True)
        x = synth.synthesize(synth.make_voice(actor), EMO_FOR_SYNTH[emo], statement)[: int(1.6 * synth.SAMPLE_RATE)]
        name = f"03-{channel:02d}-{emo:02d}-01-{statement:02d}-01-{actor:02d}.flac"
        sf.write(d / name, x, synth.SAMPLE_RATE, subtype="PCM_16")


if __name__ == "__main__":
    main()
