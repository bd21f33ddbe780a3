"""MSP-Podcast (manual download): openSMILE functionals (or 16 kHz waveforms, audio16k) per speaking turn, 5 emotions.

Natural emotional speech from podcasts (Lotfian & Busso, IEEE Trans. Affective Computing
2019), licensed by the MSP lab at UT Dallas. Following the paper this toolkit reproduces
(Release 1.4, five categorical emotions "as in [18]"), the dataset keeps the turns whose
consensus class is neutral, angry, sad, happy or disgust, over the release's own
speaker-disjoint partitions:

* ``Split_Set`` ``Train`` -> ``train``, ``Development`` -> ``validation``,
  ``Test1`` -> ``test`` (Test1 is the standard test set of every 1.x release).
* ``Test2`` and ``Test3`` (later, separately collected test sets) are not used; their rows
  are counted in ``info.metadata["dropped_partitions"]``.

Rows are dropped *by design* (never reported as bad items) and counted, each under the first
reason that applies, in this order:

1. ``dropped_partitions`` ``{"Test2": n, "Test3": n}``: rows of an unused partition;
2. ``dropped_classes`` ``{split: {class: n}}``: consensus class surprise (U), fear (F),
   contempt (C), other (O) or no agreement (X);
3. ``dropped_unknown_speaker`` ``{split: n}``: ``SpkrID`` is ``Unknown``; such turns cannot
   serve speaker verification, and a speaker-disjoint check cannot hold for them.

A row whose ``EmoClass`` code or ``Split_Set`` value is none of the known ones, whose
``SpkrID`` is empty, or whose wav file is missing, is a *bad item*: the build stops with one
report of all of them, or skips them with ``skip_bad_items=True`` (see
:class:`tfvae_datasets.audio_features.AudioFeatureBuilder`). The speaker feature is
``"msp_" + SpkrID`` (e.g. ``msp_127``); the base asserts that no speaker is in two splits.

Release layout relied on (releases 1.x, e.g. 1.4 through 1.12; checked against public code
that reads the corpus, see ``MANUAL_DOWNLOAD_INSTRUCTIONS``):

* ``Audios/MSP-PODCAST_XXXX_XXXX.wav``: 16 kHz mono turns;
* ``Labels/labels_consensus.csv`` (older releases spell it ``labels_concensus.csv``; both are
  accepted, the first preferred) with the header
  ``FileName,EmoClass,EmoAct,EmoVal,EmoDom,SpkrID,Gender,Split_Set``. ``FileName`` is the wav
  name with ``.wav``; ``EmoClass`` codes A angry, S sad, H happy, U surprise, F fear,
  D disgust, C contempt, N neutral, O other, X no agreement; ``SpkrID`` a number or
  ``Unknown``; ``Split_Set`` ``Train``, ``Development``, ``Test1``, ``Test2`` (``Test3`` in
  newer releases). Only ``FileName``, ``EmoClass``, ``SpkrID`` and ``Split_Set`` are read.
* Code written against early releases (1.6) by the corpus's lab selects the partitions
  ``Validation`` and ``Test``; these two values are accepted as spellings of
  ``Development`` and ``Test1``. The raw ``Split_Set`` counts are kept in
  ``info.metadata["split_set_counts"]``.
"""

from __future__ import annotations

import csv
from collections import Counter
from pathlib import Path

from tfvae.labelled_audio import BadItem, Utterance
from tfvae_datasets.audio_features import SPLITS, AudioFeatureBuilder

EMOTIONS = ("neutral", "angry", "sad", "happy", "disgust")
#: Consensus ``EmoClass`` codes of the release.
EMO_CODES = {"A": "angry", "S": "sad", "H": "happy", "U": "surprise", "F": "fear", "D": "disgust",
             "C": "contempt", "N": "neutral", "O": "other", "X": "no_agreement"}
#: Release partition -> split; ``None``: not used (counted in ``dropped_partitions``).
PARTITIONS = {"Train": "train", "Development": "validation", "Test1": "test", "Test2": None, "Test3": None}
#: Spellings of early releases (see the module docstring).
PARTITION_ALIASES = {"Validation": "Development", "Test": "Test1"}
UNUSED_PARTITIONS = tuple(p for p, s in PARTITIONS.items() if s is None)
LABEL_FILES = ("labels_consensus.csv", "labels_concensus.csv")
AUDIO_DIR = "Audios"
REQUIRED_COLUMNS = ("FileName", "EmoClass", "SpkrID", "Split_Set")
UNKNOWN_SPEAKER = "Unknown"
SPEAKER_PREFIX = "msp_"

MANUAL_DOWNLOAD_INSTRUCTIONS = """
MSP-Podcast is licensed: request it (academic licence agreement) from the MSP lab, UT Dallas,
https://ecs.utdallas.edu/research/researchlabs/msp-lab/MSP-Podcast.html . Any 1.x release
works (the paper used Release 1.4). Unpack it and pass the release folder itself as the
manual directory, so that it holds

    <manual_dir>/Audios/MSP-PODCAST_0001_0008.wav ...   (all turns, 16 kHz mono wav)
    <manual_dir>/Labels/labels_consensus.csv            (older releases: labels_concensus.csv)

Other folders of the release (Transcripts/, Features/, ...) may stay; they are not read.
Then build with `python -m tfvae.train --dataset msp_podcast/is10 --manual_dir <manual_dir> ...`
or `tfds build datasets/msp_podcast --manual_dir=<manual_dir>` (one config per openSMILE
feature set: is10 (default), is09, emobase, egemapsv02, compare_2016, e.g.
`--config egemapsv02`; and audio16k, the turns as 16 kHz int16 waveforms).
"""


def find_labels_file(root: Path) -> Path:
    """``root/Labels/labels_consensus.csv``, else the older ``labels_concensus.csv``."""
    labels = Path(root) / "Labels"
    for name in LABEL_FILES:
        if (labels / name).is_file():
            return labels / name
    raise FileNotFoundError(
        f"MSP-Podcast labels not found: {labels / LABEL_FILES[0]} does not exist (nor the older "
        f"spelling {labels / LABEL_FILES[1]}); manual_dir={root} must be the release folder."
        f"\n{MANUAL_DOWNLOAD_INSTRUCTIONS}")


def read_labels(path: Path) -> list[dict[str, str]]:
    """Rows of the consensus labels CSV (values stripped); raise if required columns are missing."""
    with open(path, newline="", encoding="utf-8-sig") as f:
        reader = csv.DictReader(f)
        header = [h.strip() for h in (reader.fieldnames or [])]
        missing = [c for c in REQUIRED_COLUMNS if c not in header]
        if missing:
            raise ValueError(f"{path}: malformed MSP-Podcast labels file, missing column(s) "
                             f"{', '.join(missing)} (header: {','.join(header) or '<empty>'}; expected "
                             f"FileName,EmoClass,EmoAct,EmoVal,EmoDom,SpkrID,Gender,Split_Set)")
        reader.fieldnames = header
        return [{k: (v or "").strip() for k, v in row.items() if k is not None} for row in reader]


def plan_utterances(rows: list[dict[str, str]], audio_dir: Path) -> tuple[list[Utterance], list[BadItem], dict]:
    """Label rows -> (utterances, bad items, metadata with the by-design drop counts)."""
    audio_dir = Path(audio_dir)
    utts, bad = [], []
    dropped_partitions = {p: 0 for p in UNUSED_PARTITIONS}
    dropped_classes = {s: Counter() for s in SPLITS}
    dropped_unknown = {s: 0 for s in SPLITS}
    raw_partitions = Counter()
    for row in rows:
        fname = row["FileName"]
        uid = fname[:-4] if fname.lower().endswith(".wav") else fname
        path = audio_dir / (fname if fname.lower().endswith(".wav") else fname + ".wav")
        code, spk, part = row["EmoClass"], row["SpkrID"], row["Split_Set"]
        raw_partitions[part] += 1
        part = PARTITION_ALIASES.get(part, part)
        reasons = []
        if code not in EMO_CODES:
            reasons.append(f"unknown EmoClass code {code!r} (expected one of {', '.join(EMO_CODES)})")
        if part not in PARTITIONS:
            reasons.append(f"unknown Split_Set {row['Split_Set']!r} (expected one of {', '.join(PARTITIONS)})")
        if not spk:
            reasons.append("empty SpkrID")
        if reasons:
            bad.append(BadItem(uid, str(path), "; ".join(reasons)))
            continue
        split = PARTITIONS[part]
        if split is None:
            dropped_partitions[part] += 1
            continue
        emotion = EMO_CODES[code]
        if emotion not in EMOTIONS:
            dropped_classes[split][emotion] += 1
            continue
        if spk == UNKNOWN_SPEAKER:
            dropped_unknown[split] += 1
            continue
        utts.append(Utterance(uid, str(path), SPEAKER_PREFIX + spk, emotion, split))
    extra = {
        "dropped_partitions": dropped_partitions,
        "dropped_classes": {s: dict(sorted(c.items())) for s, c in dropped_classes.items()},
        "dropped_unknown_speaker": dropped_unknown,
        "split_set_counts": dict(sorted(raw_partitions.items())),
        "partitions": {"train": "Train", "validation": "Development", "test": "Test1"},
    }
    return utts, bad, extra


class Builder(AudioFeatureBuilder):
    """MSP-Podcast, 5 emotions (neutral, angry, sad, happy, disgust), openSMILE functionals or 16 kHz waveforms."""

    EMOTIONS = EMOTIONS
    MANUAL_DOWNLOAD_INSTRUCTIONS = MANUAL_DOWNLOAD_INSTRUCTIONS

    def _description(self) -> str:
        return __doc__

    def _utterances(self, dl_manager):
        root = Path(dl_manager.manual_dir)
        labels = find_labels_file(root)
        audio_dir = root / AUDIO_DIR
        if not audio_dir.is_dir():
            raise FileNotFoundError(
                f"MSP-Podcast audio folder not found: {audio_dir} does not exist; manual_dir={root} "
                f"must be the release folder.\n{MANUAL_DOWNLOAD_INSTRUCTIONS}")
        utts, bad, extra = plan_utterances(read_labels(labels), audio_dir)
        extra["labels_file"] = f"Labels/{labels.name}"
        return utts, bad, extra
