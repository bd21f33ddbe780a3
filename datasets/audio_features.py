"""Shared base of tfvae's TFDS builders over labelled audio: openSMILE features per utterance.

A subclass lists its corpus's utterances (:meth:`AudioFeatureBuilder._utterances`); the base
checks them, extracts features over all cores (or with Apache Beam), settles bad items
(stop with one report, or skip and record), and writes examples

    {"features": float32[D], "emotion": ClassLabel, "speaker": str, "utterance_id": str,
     "duration": float32 seconds}

with the openSMILE feature names, class counts per split and skipped items in
``info.metadata``.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import tensorflow_datasets as tfds

from tfvae.features import FEATURE_SETS, FeatureExtractor, extract_file, parallel_map
from tfvae.labelled_audio import (BadItem, Utterance, check_utterances, class_counts, settle_bad_items)

SPLITS = ("train", "validation", "test")


@dataclasses.dataclass
class AudioFeatureConfig(tfds.core.BuilderConfig):
    """``feature_set``: openSMILE functionals set; ``skip_bad_items``: skip (and report) items
    that cannot be used instead of stopping; ``beam``: extract with Apache Beam (also switched
    on by ``tfds build ... --beam_pipeline_options=...``); ``workers``: local processes (default
    all cores). ``skip_bad_items`` and ``workers`` can also be given to the builder itself."""

    feature_set: str = "IS10"
    skip_bad_items: bool = False
    beam: bool = False
    workers: int | None = None


def feature_set_configs(cls=AudioFeatureConfig, **fields) -> list:
    """One config per openSMILE feature set, named by the set in lower case (``is10`` ...)."""
    return [cls(name=fs.lower(), feature_set=fs, description=f"openSMILE {fs} functionals ({dim} features)",
                **fields) for fs, (_, dim) in FEATURE_SETS.items()]


def _extract_beam(item: tuple) -> list:
    """Beam step: one utterance -> ``[(key, example)]``; a failure raises naming the item."""
    feature_set, u = item
    try:
        out = extract_file((feature_set, u.path))
    except Exception as e:  # noqa: BLE001 - name the item, keep the reason
        raise RuntimeError(f"{u.utterance_id} ({u.path}): {e}") from e
    return [(u.utterance_id, {**out, "emotion": u.emotion, "speaker": u.speaker, "utterance_id": u.utterance_id})]


class AudioFeatureBuilder(tfds.core.GeneratorBasedBuilder, skip_registration=True):
    """Base class; subclasses set ``EMOTIONS`` and implement :meth:`_utterances`."""

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "Initial release."}
    BUILDER_CONFIGS = feature_set_configs()
    DEFAULT_CONFIG_NAME = "is10"
    EMOTIONS: tuple[str, ...] = ()
    #: Splits must not share speakers (asserted before extraction).
    SPEAKER_DISJOINT = True

    def __init__(self, *, skip_bad_items: bool | None = None, workers: int | None = None, **kwargs):
        """``skip_bad_items`` / ``workers`` override the config's fields, so a registered config
        (``tfds.builder("ravdess/is10", skip_bad_items=True)``) can skip bad items without a new
        config name."""
        super().__init__(**kwargs)
        cfg = self.builder_config
        self.skip_bad_items = cfg.skip_bad_items if skip_bad_items is None else bool(skip_bad_items)
        self.workers = cfg.workers if workers is None else workers
        self._use_beam = cfg.beam

    def _download_and_prepare(self, dl_manager, download_config=None):
        # `tfds build --beam_pipeline_options=...` (or a DownloadConfig with a Beam runner or
        # options) switches feature extraction to Apache Beam.
        if download_config is not None and (download_config.beam_options is not None
                                            or download_config.beam_runner is not None):
            self._use_beam = True
        return super()._download_and_prepare(dl_manager, download_config)

    # ------------------------------------------------------------------ subclass API
    def _utterances(self, dl_manager) -> tuple[list[Utterance], list[BadItem], dict]:
        """All utterances, the items already known bad, and extra metadata (e.g. dropped classes)."""
        raise NotImplementedError

    def _emotion_names(self) -> list[str]:
        return list(self.EMOTIONS)

    def _description(self) -> str:
        return self.__doc__ or ""

    # ------------------------------------------------------------------ TFDS
    def _info(self) -> tfds.core.DatasetInfo:
        fs = self.builder_config.feature_set
        dim = FEATURE_SETS[fs][1]
        return self.dataset_info_from_configs(
            description=self._description(),
            features=tfds.features.FeaturesDict({
                "features": tfds.features.Tensor(shape=(dim,), dtype=np.float32),
                "emotion": tfds.features.ClassLabel(names=self._emotion_names()),
                "speaker": tfds.features.Text(),
                "utterance_id": tfds.features.Text(),
                "duration": tfds.features.Scalar(dtype=np.float32),
            }),
            supervised_keys=("features", "emotion"),
            metadata=tfds.core.MetadataDict(feature_set=fs, feature_names=FeatureExtractor(fs).names),
        )

    def _split_generators(self, dl_manager):
        cfg = self.builder_config
        utts, bad, extra = self._utterances(dl_manager)
        good, more_bad = check_utterances(utts, self._emotion_names(), SPLITS)
        bad = list(bad) + more_bad
        if self.SPEAKER_DISJOINT:
            from tfvae.labelled_audio import assert_speaker_disjoint

            assert_speaker_disjoint(good, self.name)
        if self._use_beam:
            self._record(good, bad, extra)
            return {s: self._beam_examples([u for u in good if u.split == s]) for s in SPLITS}
        outcomes = parallel_map(extract_file, [(u.utterance_id, (cfg.feature_set, u.path)) for u in good],
                                workers=self.workers, desc=f"{self.name}/{cfg.name} openSMILE")
        examples = {s: [] for s in SPLITS}
        kept = []
        for u, o in zip(good, outcomes):
            if o.ok:
                examples[u.split].append((u.utterance_id, {**o.value, "emotion": u.emotion,
                                                           "speaker": u.speaker, "utterance_id": u.utterance_id}))
                kept.append(u)
            else:
                bad.append(BadItem(u.utterance_id, u.path, o.error.split(": ", 1)[-1]))
        self._record(kept, bad, extra)
        return {s: self._generate_examples(examples[s]) for s in SPLITS}

    def _record(self, kept: list[Utterance], bad: list[BadItem], extra: dict) -> None:
        """Settle bad items (raise or report) and put counts into ``info.metadata``."""
        cfg = self.builder_config
        data_dir = Path(self.data_dir)  # the in-progress directory while generating
        report = data_dir / "bad_items.json" if self.skip_bad_items else \
            data_dir.parent / f"bad_items-{self.version}.json"
        skipped = settle_bad_items(bad, self.skip_bad_items, report, f"{self.name}/{cfg.name}")
        counts = class_counts(kept)
        self.info.metadata.update({
            "class_counts": {s: counts.get(s, {}) for s in SPLITS},
            "speakers_per_split": {s: len({u.speaker for u in kept if u.split == s}) for s in SPLITS},
            "skipped": skipped, **extra})

    def _generate_examples(self, examples):
        yield from examples

    def _beam_examples(self, utts: list[Utterance]):
        beam = tfds.core.lazy_imports.apache_beam
        fs = self.builder_config.feature_set
        return beam.Create([(fs, u) for u in utts]) | beam.FlatMap(_extract_beam)
