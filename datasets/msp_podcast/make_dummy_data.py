"""Regenerate ``dummy_data/``: an MSP-Podcast-shaped release folder of *synthetic* speech.

    python datasets/msp_podcast/make_dummy_data.py

No MSP-Podcast audio or labels are copied (the corpus is licensed); tfvae's synthesizer
renders the turns and the label rows are made up. Layout, as in a 1.x release:

    dummy_data/Audios/MSP-PODCAST_XXXX_XXXX.wav   16 kHz mono PCM_16
    dummy_data/Labels/labels_consensus.csv        the release's header

14 rows: the 5 kept classes over Train (speakers 127, 1041), Development (30) and Test1
(39, 512): 5 / 2 / 3 kept turns; and one row of each kind dropped by design: surprise (U,
Train), no agreement (X, Development), ``Unknown`` speaker (N, Train), partition Test2.
Kept turns are 1.5 s long; the four dropped ones, never read, only 0.5 s (keeps the folder
small).
"""

import csv
from pathlib import Path

import soundfile as sf

from tfvae import synth

OUT = Path(__file__).resolve().parent / "dummy_data"
HEADER = ["FileName", "EmoClass", "EmoAct", "EmoVal", "EmoDom", "SpkrID", "Gender", "Split_Set"]
# (file name, EmoClass, SpkrID, Split_Set, synth voice index (even: female), synth emotion)
ROWS = [
    ("MSP-PODCAST_0001_0008.wav", "N", "127", "Train", 1, "neutral"),
    ("MSP-PODCAST_0001_0009.wav", "A", "127", "Train", 1, "angry"),
    ("MSP-PODCAST_0001_0011.wav", "S", "127", "Train", 1, "sad"),
    ("MSP-PODCAST_0002_0003.wav", "H", "1041", "Train", 2, "happy"),
    ("MSP-PODCAST_0002_0004.wav", "D", "1041", "Train", 2, "disgust"),
    ("MSP-PODCAST_0002_0005.wav", "U", "1041", "Train", 2, "happy"),  # dropped: surprise
    ("MSP-PODCAST_0003_0001.wav", "N", "Unknown", "Train", 3, "neutral"),  # dropped: unknown speaker
    ("MSP-PODCAST_0004_0012.wav", "N", "30", "Development", 4, "neutral"),
    ("MSP-PODCAST_0004_0013.wav", "H", "30", "Development", 4, "happy"),
    ("MSP-PODCAST_0004_0014.wav", "X", "30", "Development", 4, "sad"),  # dropped: no agreement
    ("MSP-PODCAST_0005_0020.wav", "A", "39", "Test1", 5, "angry"),
    ("MSP-PODCAST_0005_0021.wav", "S", "39", "Test1", 5, "sad"),
    ("MSP-PODCAST_0006_0002.wav", "D", "512", "Test1", 6, "disgust"),
    ("MSP-PODCAST_0007_0040.wav", "N", "88", "Test2", 7, "neutral"),  # dropped: partition Test2
]
DROPPED = {"MSP-PODCAST_0002_0005.wav", "MSP-PODCAST_0003_0001.wav", "MSP-PODCAST_0004_0014.wav",
           "MSP-PODCAST_0007_0040.wav"}
# arousal / valence / dominance (1-7 scale), only for a realistic file
AVD = {"N": (3.8, 4.2, 4.0), "A": (5.6, 2.4, 5.4), "S": (2.6, 2.8, 3.0), "H": (5.0, 5.8, 4.8),
       "D": (4.4, 2.6, 4.6), "U": (5.4, 4.6, 4.2), "X": (4.0, 3.8, 4.2)}


def main() -> None:
    (OUT / "Audios").mkdir(parents=True, exist_ok=True)
    (OUT / "Labels").mkdir(parents=True, exist_ok=True)
    with open(OUT / "Labels" / "labels_consensus.csv", "w", newline="") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(HEADER)
        for name, code, spk, part, voice, emotion in ROWS:
            gender = "Unknown" if spk == "Unknown" else ("Female" if voice % 2 == 0 else "Male")
            w.writerow([name, code, *AVD[code], spk, gender, part])
    for i, (name, _, _, _, voice, emotion) in enumerate(ROWS):
        seconds = 0.5 if name in DROPPED else 1.5
        x = synth.synthesize(synth.make_voice(voice), emotion, i)[: int(seconds * synth.SAMPLE_RATE)]
        sf.write(OUT / "Audios" / name, x, synth.SAMPLE_RATE, subtype="PCM_16")


if __name__ == "__main__":
    main()
