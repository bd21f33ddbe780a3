"""Regenerate ``dummy_data/``: an MSP-Podcast-shaped release folder of *synthetic* speech.

    python datasets/msp_podcast/make_dummy_data.py

No MSP-Podcast audio or labels are copied (the corpus is licensed); tfvae's synthesizer
renders the turns and the label rows are made up. Layout, as in a 1.x release:

    dummy_data/Audios/MSP-PODCAST_XXXX_XXXX.wav   16 kHz mono PCM_16
    dummy_data/Labels/labels_consensus.csv        the release's header

22 rows over every partition and every ``EmoClass`` code (all 8 emotions, O, X):

==========  ========================================  ==========  ==========  ============
partition   rows (code speaker)                        5 classes   8 classes   left out
==========  ========================================  ==========  ==========  ============
Train       N A S 127, H D U O 1041, N Unknown          5           6 (+U)      O, Unknown
Development N H X C 30                                  2           3 (+C)      X
Test1       A S 39, D F 512                             3           4 (+F)
Test2       N C 88, A 90, N Unknown                     2 (test2)   3 (+C)      Unknown
Test3       H 95, one row with its labels withheld      never built
==========  ========================================  ==========  ==========  ============

Turns read by some config are 1.0 s long; the six no config reads (O, X, Unknown speaker,
Test3) only 0.25 s (keeps the folder small). The synthesizer has five emotions: U, F, C, O
and X turns are rendered with a near one (their audio is never checked against the label).
"""

import csv
from pathlib import Path

import soundfile as sf

from tfvae import synth

OUT = Path(__file__).resolve().parent / "dummy_data"
HEADER = ["FileName", "EmoClass", "EmoAct", "EmoVal", "EmoDom", "SpkrID", "Gender", "Split_Set"]
# (file name, EmoClass, SpkrID, Split_Set, synth voice index (even: female))
ROWS = [
    ("MSP-PODCAST_0001_0008.wav", "N", "127", "Train", 1),
    ("MSP-PODCAST_0001_0009.wav", "A", "127", "Train", 1),
    ("MSP-PODCAST_0001_0011.wav", "S", "127", "Train", 1),
    ("MSP-PODCAST_0002_0003.wav", "H", "1041", "Train", 2),
    ("MSP-PODCAST_0002_0004.wav", "D", "1041", "Train", 2),
    ("MSP-PODCAST_0002_0005.wav", "U", "1041", "Train", 2),  # 8 classes only
    ("MSP-PODCAST_0002_0006.wav", "O", "1041", "Train", 2),  # never: other
    ("MSP-PODCAST_0003_0001.wav", "N", "Unknown", "Train", 3),  # never: unknown speaker
    ("MSP-PODCAST_0004_0012.wav", "N", "30", "Development", 4),
    ("MSP-PODCAST_0004_0013.wav", "H", "30", "Development", 4),
    ("MSP-PODCAST_0004_0014.wav", "X", "30", "Development", 4),  # never: no agreement
    ("MSP-PODCAST_0004_0015.wav", "C", "30", "Development", 4),  # 8 classes only
    ("MSP-PODCAST_0005_0020.wav", "A", "39", "Test1", 5),
    ("MSP-PODCAST_0005_0021.wav", "S", "39", "Test1", 5),
    ("MSP-PODCAST_0006_0002.wav", "D", "512", "Test1", 6),
    ("MSP-PODCAST_0006_0003.wav", "F", "512", "Test1", 6),  # 8 classes only
    ("MSP-PODCAST_0007_0040.wav", "N", "88", "Test2", 7),  # Test2: only in _test2 configs
    ("MSP-PODCAST_0007_0041.wav", "C", "88", "Test2", 7),  # ... with 8 classes
    ("MSP-PODCAST_0008_0001.wav", "A", "90", "Test2", 8),
    ("MSP-PODCAST_0008_0002.wav", "N", "Unknown", "Test2", 9),  # never: unknown speaker
    ("MSP-PODCAST_0009_0001.wav", "H", "95", "Test3", 10),  # never: Test3
    ("MSP-PODCAST_0009_0002.wav", "", "", "Test3", 11),  # never: Test3, labels withheld
]
NEVER_READ = {r[0] for r in ROWS if r[1] in "OX" or r[2] in ("Unknown", "") or r[3] == "Test3"}
# arousal / valence / dominance (1-7 scale), only for a realistic file
AVD = {"N": (3.8, 4.2, 4.0), "A": (5.6, 2.4, 5.4), "S": (2.6, 2.8, 3.0), "H": (5.0, 5.8, 4.8),
       "D": (4.4, 2.6, 4.6), "U": (5.4, 4.6, 4.2), "F": (5.2, 2.6, 3.2), "C": (4.2, 3.0, 5.0),
       "O": (4.0, 4.0, 4.0), "X": (4.0, 3.8, 4.2), "": ("", "", "")}
# the synthesizer's emotion for each code
SYNTH = {"N": "neutral", "A": "angry", "S": "sad", "H": "happy", "D": "disgust", "U": "happy", "F": "sad",
         "C": "disgust", "O": "neutral", "X": "sad", "": "neutral"}


def main() -> None:
    (OUT / "Audios").mkdir(parents=True, exist_ok=True)
    (OUT / "Labels").mkdir(parents=True, exist_ok=True)
    for old in (OUT / "Audios").glob("*.wav"):
        old.unlink()
    with open(OUT / "Labels" / "labels_consensus.csv", "w", newline="") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(HEADER)
        for name, code, spk, part, voice in ROWS:
            gender = spk and ("Unknown" if spk == "Unknown" else ("Female" if voice % 2 == 0 else "Male"))
            w.writerow([name, code, *AVD[code], spk, gender, part])
    for i, (name, code, _, _, voice) in enumerate(ROWS):
        seconds = 0.25 if name in NEVER_READ else 1.0
        x = synth.synthesize(synth.make_voice(voice), SYNTH[code], i)[: int(seconds * synth.SAMPLE_RATE)]
        sf.write(OUT / "Audios" / name, x, synth.SAMPLE_RATE, subtype="PCM_16")


if __name__ == "__main__":
    main()
