"""MSP-Podcast (manual download): openSMILE functionals (or 16 kHz waveforms, audio16k) per speaking turn.

Natural emotional speech from podcasts (Lotfian & Busso, IEEE Trans. Affective Computing
2019), licensed by the MSP lab at UT Dallas. Configs are ``<feature set>[_8class][_test2]``
(``is10``, ``is10_8class``, ``is10_test2``, ``is10_8class_test2``, ... for every feature set):

* classes: by default the paper's five ("as in [18]", Release 1.4): neutral, angry, sad, happy,
  disgust; ``_8class``: the release's eight primary emotions: neutral, angry, sad, happy,
  surprise, fear, disgust, contempt;
* splits, from the release's speaker-disjoint ``Split_Set``: ``Train`` -> ``train``,
  ``Development`` -> ``validation``, ``Test1`` -> ``test`` (every config); ``_test2`` adds
  ``Test2`` (117 podcasts in no other partition) as the split ``test2``. ``Test3`` (1.11 and
  later: a held-out set whose labels may be withheld) is never built; its rows are counted
  and their labels not read.

Rows are left out *by design* (never reported as bad items) and counted, under the first
reason that applies, in this order:

1. ``dropped_partitions`` ``{partition: n}``: ``Test3``, and ``Test2`` unless ``_test2``;
2. ``dropped_classes`` ``{split: {class: n}}``: a consensus class outside the config's set:
   other (O), no agreement (X) always; surprise (U), fear (F), contempt (C) in 5-class configs;
3. ``dropped_unknown_speaker`` ``{split: n}``: ``SpkrID`` is ``Unknown`` (such turns cannot
   serve speaker verification, nor a speaker-disjoint check).

``dropped_total`` is their sum, ``label_rows`` the rows read, and the build prints one line
with all the counts. A row with an empty ``FileName`` or ``SpkrID``, an ``EmoClass`` code,
``Gender`` or ``Split_Set`` value that is none of the known ones, or a missing wav file is a *bad item*: the
build stops with one report of all of them (label problems name ``<labels file>:<line>``), or
skips them with ``skip_bad_items=True`` (see
:class:`tfvae_datasets.audio_features.AudioFeatureBuilder`). The speaker feature is
``"msp_" + SpkrID`` (e.g. ``msp_127``); no speaker may be in two splits. The ``gender`` label is
the row's ``Gender`` (``female``, ``male``; ``unknown`` when ``Unknown`` or empty), counted per split in
``info.metadata["gender_counts"]``.

Release layout relied on (releases 1.x, e.g. 1.4 through 1.12):

* ``Audios/MSP-PODCAST_XXXX_XXXX.wav``: 16 kHz mono turns;
* ``Labels/labels_consensus.csv`` (older releases: ``labels_concensus.csv``; the first is
  preferred) with the header ``FileName,EmoClass,EmoAct,EmoVal,EmoDom,SpkrID,Gender,Split_Set``.
  ``FileName`` is the wav name; ``EmoClass`` A angry, S sad, H happy, U surprise, F fear,
  D disgust, C contempt, N neutral, O other, X no agreement; ``SpkrID`` a number or
  ``Unknown``; ``Gender`` ``Female``, ``Male`` or ``Unknown``; ``Split_Set`` ``Train``,
  ``Development``, ``Test1``, ``Test2``, ``Test3``. Only ``FileName``, ``EmoClass``, ``SpkrID``,
  ``Gender`` (optional: without the column every turn's gender is ``unknown``) and ``Split_Set``
  are read. Early releases' (1.6)
  ``Validation`` and ``Test`` are read as ``Development`` and ``Test1``; the raw counts are in
  ``info.metadata["split_set_counts"]``.

Building a full release (time, Apache Beam across machines): see ``BUILDING.md`` beside this file.
"""

from __future__ import annotations

import csv
import dataclasses
from collections import Counter
from pathlib import Path

import tensorflow_datasets as tfds

from tfvae.labelled_audio import BadItem, Utterance, parse_gender
from tfvae_datasets.audio_features import (SPLITS, AudioFeatureBuilder, AudioFeatureConfig, feature_set_configs,
                                           speed_config_name)

EMOTIONS = ("neutral", "angry", "sad", "happy", "disgust")
EMOTIONS_8 = ("neutral", "angry", "sad", "happy", "surprise", "fear", "disgust", "contempt")
#: ``classes`` of a config -> its emotions (ClassLabel order).
CLASS_SETTINGS = {5: EMOTIONS, 8: EMOTIONS_8}
#: Consensus ``EmoClass`` codes of the release.
EMO_CODES = {"A": "angry", "S": "sad", "H": "happy", "U": "surprise", "F": "fear", "D": "disgust",
             "C": "contempt", "N": "neutral", "O": "other", "X": "no_agreement"}
#: Release partition -> split (``Test2``: only with ``test2``; ``Test3``: never).
PARTITIONS = {"Train": "train", "Development": "validation", "Test1": "test", "Test2": "test2", "Test3": None}
HELD_OUT = "Test3"
#: Spellings of early releases (see the module docstring).
PARTITION_ALIASES = {"Validation": "Development", "Test": "Test1"}
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
or `tfds build datasets/msp_podcast --config is10 --manual_dir=<manual_dir>` (without
--config, tfds builds every config). Configs: <feature set>[_8class][_test2], feature sets
is10 (default), is09, emobase, egemapsv02, compare_2016 (openSMILE) and audio16k (16 kHz
int16 waveforms); _8class: eight emotions instead of five; _test2: adds the split test2.
"""


@dataclasses.dataclass
class MspPodcastConfig(AudioFeatureConfig):
    """``classes``: 5 (the paper's) or 8 emotions; ``test2``: add the release's Test2 as split ``test2``."""

    classes: int = 5
    test2: bool = False


def _variant(c, suffix: str) -> str:
    """``is10`` + ``_8class`` -> ``is10_8class``; the speed-perturbed ``is10_sp`` -> ``is10_8class_sp``."""
    if not c.speed_factors:
        return c.name + suffix
    return speed_config_name(c.name[: -len(speed_config_name(""))] + suffix)


def msp_configs() -> list[MspPodcastConfig]:
    """Every feature-set config (as registered before 1.2.0, same order), then ``_8class``,
    ``_test2`` and ``_8class_test2`` variants of each."""
    out = []
    for classes, test2 in ((5, False), (8, False), (5, True), (8, True)):
        suffix = ("_8class" if classes == 8 else "") + ("_test2" if test2 else "")
        more = (", 8 emotions" if classes == 8 else "") + (", split test2" if test2 else "")
        out += [dataclasses.replace(c, name=_variant(c, suffix), description=c.description + more, classes=classes,
                                    test2=test2) for c in feature_set_configs(MspPodcastConfig)]
    return out


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
    """Rows of the consensus labels CSV (values stripped, ``_line``: the row's line in the file);
    raise naming the file if required columns are missing."""
    with open(path, newline="", encoding="utf-8-sig") as f:
        reader = csv.DictReader(f)
        header = [h.strip() for h in (reader.fieldnames or [])]
        missing = [c for c in REQUIRED_COLUMNS if c not in header]
        if missing:
            raise ValueError(f"{path}: malformed MSP-Podcast labels file, missing column(s) "
                             f"{', '.join(missing)} (header: {','.join(header) or '<empty>'}; expected "
                             f"FileName,EmoClass,EmoAct,EmoVal,EmoDom,SpkrID,Gender,Split_Set)")
        reader.fieldnames = header
        return [{**{k: (v or "").strip() for k, v in row.items() if k is not None}, "_line": reader.line_num}
                for row in reader]


def plan_utterances(rows: list[dict], audio_dir: Path, emotions: tuple[str, ...] = EMOTIONS,
                    test2: bool = False, labels_file: str | Path = LABEL_FILES[0]
                    ) -> tuple[list[Utterance], list[BadItem], dict]:
    """Label rows -> (utterances, bad items, metadata with the by-design drop counts).

    A bad row's item names ``<labels_file>:<line>`` as its path (``_line`` of the row, else its
    position after the header)."""
    audio_dir = Path(audio_dir)
    partitions = {p: (s if p != "Test2" or test2 else None) for p, s in PARTITIONS.items()}
    splits = SPLITS + (("test2",) if test2 else ())
    utts, bad = [], []
    dropped_partitions = {p: 0 for p, s in partitions.items() if s is None}
    dropped_classes = {s: Counter() for s in splits}
    dropped_unknown = {s: 0 for s in splits}
    raw_partitions = Counter()
    for i, row in enumerate(rows):
        fname, code, spk, raw = row["FileName"], row["EmoClass"], row["SpkrID"], row["Split_Set"]
        gender = parse_gender(row.get("Gender"))
        uid = fname[:-4] if fname.lower().endswith(".wav") else fname
        raw_partitions[raw] += 1
        part = PARTITION_ALIASES.get(raw, raw)
        if part == HELD_OUT:  # before any label check: its labels may be withheld
            dropped_partitions[part] += 1
            continue
        reasons = []
        if not fname:
            reasons.append("empty FileName")
        if code not in EMO_CODES:
            reasons.append(f"unknown EmoClass code {code!r} (expected one of {', '.join(EMO_CODES)})")
        if part not in partitions:
            reasons.append(f"unknown Split_Set {raw!r} (expected one of {', '.join(PARTITIONS)})")
        if not spk:
            reasons.append("empty SpkrID")
        if gender is None:
            reasons.append(f"unknown Gender {row.get('Gender')!r} (expected Female, Male or Unknown)")
        if reasons:
            bad.append(BadItem(uid or f"<line {row.get('_line', i + 2)}>", f"{labels_file}:{row.get('_line', i + 2)}",
                               "; ".join(reasons)))
            continue
        split = partitions[part]
        if split is None:
            dropped_partitions[part] += 1
            continue
        emotion = EMO_CODES[code]
        if emotion not in emotions:
            dropped_classes[split][emotion] += 1
            continue
        if spk == UNKNOWN_SPEAKER:
            dropped_unknown[split] += 1
            continue
        path = audio_dir / (fname if fname.lower().endswith(".wav") else fname + ".wav")
        utts.append(Utterance(uid, str(path), SPEAKER_PREFIX + spk, emotion, split, {"gender": gender}))
    extra = {
        "label_rows": len(rows),
        "dropped_partitions": dropped_partitions,
        "dropped_classes": {s: dict(sorted(c.items())) for s, c in dropped_classes.items()},
        "dropped_unknown_speaker": dropped_unknown,
        "dropped_total": (sum(dropped_partitions.values()) + sum(sum(c.values()) for c in dropped_classes.values())
                          + sum(dropped_unknown.values())),
        "split_set_counts": dict(sorted(raw_partitions.items())),
        "partitions": {s: p for p, s in partitions.items() if s is not None},
    }
    return utts, bad, extra


def describe_plan(name: str, utts: list[Utterance], bad: list[BadItem], extra: dict) -> str:
    """One line: rows read, turns selected per split, by-design drops by reason, bad rows."""
    per_split = Counter(u.split for u in utts)
    classes = Counter()
    for c in extra["dropped_classes"].values():
        classes.update(c)
    parts = [f"{k} {v}" for k, v in extra["dropped_partitions"].items()]
    unknown = sum(extra["dropped_unknown_speaker"].values())
    return (f"[{name}] {extra['label_rows']} label rows: {len(utts)} turns selected ("
            + ", ".join(f"{s} {per_split[s]}" for s in extra["partitions"]) + f"); {extra['dropped_total']} left out "
            f"by design (partitions: {', '.join(parts)}; classes: "
            + (", ".join(f"{k} {v}" for k, v in sorted(classes.items())) or "none")
            + f"; Unknown speaker: {unknown}); {len(bad)} bad row(s)")


class Builder(AudioFeatureBuilder):
    """MSP-Podcast, 5 emotions (neutral, angry, sad, happy, disgust) or 8, openSMILE functionals or 16 kHz waveforms."""

    VERSION = tfds.core.Version("1.3.0")
    RELEASE_NOTES = {**AudioFeatureBuilder.RELEASE_NOTES,
                     "1.2.0": "Configs <feature set>_8class (8 emotions) and _test2 (split test2 = Test2); Test3 "
                              "labels are not read; metadata label_rows, dropped_total. The 5-class configs' "
                              "examples and splits are those of 1.1.0.",
                     "1.3.0": "Adds the gender label (ClassLabel female, male, unknown) from the Gender column and "
                              "gender_counts per split to the metadata; a Gender value other than Female, Male, "
                              "Unknown or empty is a bad item. Examples and splits otherwise those of 1.2.0."}
    BUILDER_CONFIGS = msp_configs()
    EMOTIONS = EMOTIONS
    MANUAL_DOWNLOAD_INSTRUCTIONS = MANUAL_DOWNLOAD_INSTRUCTIONS

    def _description(self) -> str:
        return __doc__

    def _emotion_names(self) -> list[str]:
        # configs made elsewhere (tfvae_datasets.audio_features.encoder_config) have no classes/test2
        cfg = self.builder_config
        classes = getattr(cfg, "classes", 5)
        if classes not in CLASS_SETTINGS:
            raise ValueError(f"msp_podcast/{cfg.name}: classes={classes!r}; expected one of "
                             f"{', '.join(map(str, CLASS_SETTINGS))}")
        return list(CLASS_SETTINGS[classes])

    def _splits(self) -> tuple[str, ...]:
        return SPLITS + (("test2",) if getattr(self.builder_config, "test2", False) else ())

    def _utterances(self, dl_manager):
        root = Path(dl_manager.manual_dir)
        labels = find_labels_file(root)
        audio_dir = root / AUDIO_DIR
        if not audio_dir.is_dir():
            raise FileNotFoundError(
                f"MSP-Podcast audio folder not found: {audio_dir} does not exist; manual_dir={root} "
                f"must be the release folder.\n{MANUAL_DOWNLOAD_INSTRUCTIONS}")
        utts, bad, extra = plan_utterances(read_labels(labels), audio_dir, tuple(self._emotion_names()),
                                           "test2" in self._splits(), labels)
        extra["labels_file"] = f"Labels/{labels.name}"
        print(describe_plan(f"{self.name}/{self.builder_config.name}", utts, bad, extra))
        return utts, bad, extra
