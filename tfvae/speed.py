"""Speed perturbation: more training voices from the same recordings (``--speed_perturb``).

A ``<set>_sp`` dataset (e.g. ``ravdess/is10_sp``) stores with every utterance the features of its
audio played at the speeds :data:`tfvae.features.SPEED_FACTORS` (0.9 and 1.1: duration x 1/f, pitch
and formants x f, as ``sox speed``; :func:`tfvae.features.speed_perturbed`). Training adds each
training utterance's copies as utterances of a *new* speaker, ``<speaker>@sp<f>`` (the recipe of Ko
et al., 2015, that Kaldi's x-vector systems train with): three times the training voices, each with
the emotions of its source. Only the model's training split grows: validation and test speakers,
checkpoint and cut selection, downstream models and attackers see the recorded utterances only, so a
copy can never cross into another part of a fold.

With ``--swap_weight`` every training row is also paired with another version of the same recording
(:func:`sibling_rows`): the cross-reconstruction term of :mod:`tfvae.objective` decodes the row's
latent with the identity end of its sibling's and asks for the sibling back.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from tfvae.data import Corpus, DataError, Split, concat_splits


def can_perturb(dataset: str, feature_set: str) -> bool:
    """Whether ``dataset`` has a config with speed-perturbed copies of ``feature_set``: openSMILE sets of
    a CSV manifest or of a registered builder that defines ``<config>_sp`` (``--speed_perturb auto``)."""
    import tensorflow_datasets as tfds

    import tfvae_datasets  # noqa: F401  (registers tfvae's builders with TFDS)
    from tfvae.data import builder_name
    from tfvae.features import FeatureError, feature_kind
    from tfvae_datasets.audio_features import speed_config_name

    try:
        if feature_kind(feature_set) != "opensmile":
            return False
    except FeatureError:
        return False
    if dataset.lower().endswith(".csv"):
        return True
    name, _, config = builder_name(dataset, feature_set).partition("/")
    try:
        configs = tfds.builder_cls(name).builder_configs
    except Exception:  # noqa: BLE001 - an unknown name: load_corpus says so
        return False
    return config.endswith(speed_config_name("")) or speed_config_name(config) in configs


def loads_copies(mode: str, dataset: str, feature_set: str) -> bool:
    """Whether ``--speed_perturb mode`` opens the dataset's config with copies (``true``: always, so a
    dataset without them is an error; ``auto``: :func:`can_perturb`)."""
    return mode == "true" or (mode == "auto" and can_perturb(dataset, feature_set))


def trains_on_copies(mode: str, corpus: Corpus) -> bool:
    """Whether a model trains on ``corpus``'s copies: ``true`` (DataError without them), ``auto`` when it has them."""
    return mode == "true" or (mode == "auto" and bool(corpus.speed_factors))


#: What a copy's speaker and utterance IDs carry after the source's, before the speed (:func:`speaker_suffix`).
COPY_TAG = "@sp"


def speaker_suffix(factor: float) -> str:
    """The suffix of a copy's speaker and utterance IDs: ``@sp0.9``."""
    return f"{COPY_TAG}{float(factor):g}"


def speed_copies(split: Split, factors) -> list[Split]:
    """One split per speed factor: ``split``'s rows with their perturbed features and new speakers."""
    from tfvae.stream import is_streamed

    out = []
    for k, f in enumerate(factors):
        suffix = speaker_suffix(f)
        if is_streamed(split.features):
            features = split.features.speed_copy(k, suffix)
        elif split.perturbed is not None:
            features = np.ascontiguousarray(split.perturbed[:, k])
        else:
            raise DataError("the split holds no speed-perturbed copies; load a <set>_sp dataset (--speed_perturb)")
        out.append(Split(features, split.emotion, np.char.add(split.speaker.astype(str), suffix),
                         np.char.add(split.utterance_id.astype(str), suffix), dict(split.labels)))
    return out


def with_speed_perturbed(corpus: Corpus) -> Corpus:
    """``corpus`` whose training split also holds the speed-perturbed copies of its utterances, each
    factor's as new speakers (validation and test unchanged); DataError when it has none."""
    if not corpus.speed_factors:
        raise DataError(f"dataset {corpus.name} has no speed-perturbed copies: --speed_perturb needs an openSMILE "
                        "feature set of a corpus tfvae builds from audio (the <set>_sp configs); pass "
                        "--speed_perturb false otherwise")
    train = corpus.splits["train"]
    bare = dataclasses.replace(train, perturbed=None)
    grown = concat_splits([bare, *speed_copies(train, corpus.speed_factors)])
    return dataclasses.replace(corpus, splits={**corpus.splits, "train": grown})


def next_version(version: int, copies: int) -> int:
    """The sibling of a recording's version ``version`` (-1: the recording, k >= 0: its copy number k) among
    ``copies`` speed-perturbed copies: the cycle recording -> copy 0 -> ... -> copy F-1 -> recording."""
    return -1 if version == copies - 1 else version + 1


def sibling_rows(utterance_id) -> np.ndarray:
    """For each row, the row of the next version of the same recording (:func:`next_version`; copies are
    ``<utterance ID>@sp<f>`` rows, :func:`speaker_suffix`); a row whose recording has no other version in
    the split is its own sibling. DataError when no row has one (e.g. a split without copies)."""
    ids = np.asarray(utterance_id).astype(str)
    base = np.char.partition(ids, COPY_TAG)[:, 0]
    order = np.lexsort((ids, base))  # each recording's versions together: the recording, then its copies by speed
    sorted_base = base[order]
    start = np.r_[True, sorted_base[1:] != sorted_base[:-1]]
    group = np.cumsum(start) - 1
    first = np.flatnonzero(start)
    size = np.diff(np.r_[first, len(ids)])
    k = np.arange(len(ids)) - first[group]
    out = np.empty(len(ids), np.int64)
    out[order] = order[first[group] + (k + 1) % size[group]]
    if len(ids) and (out == np.arange(len(ids))).all():
        raise DataError("no utterance of the split has a speed-perturbed copy to pair with (--swap_weight needs "
                        "the copies: --speed_perturb true or auto on a <set>_sp dataset)")
    return out
