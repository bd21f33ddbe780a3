"""Speaker-disjoint k-fold cross-validation for small corpora (issue: evaluation protocol).

Each fold tests on one group of speakers; the remaining speakers are split again into
training and *validation* speakers, and everything that is chosen (checkpoint, mask cut) is
chosen on those validation speakers, never on the fold's test speakers.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Fold:
    index: int
    train: tuple[str, ...]
    validation: tuple[str, ...]
    test: tuple[str, ...]


def natural_key(s: str):
    """Sort key that orders embedded numbers by value (``Actor_2`` before ``Actor_10``): the speaker order of folds."""
    import re

    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", s)]


#: Fewest speakers each part of a fold (test, validation, training) must hold: verification
#: trials need two speakers, and so do the speaker classifier and the speaker attackers.
MIN_SPEAKERS = 2


def speaker_folds(speakers, k: int, n_validation: int | None = None, seed: int = 0, order=None) -> list[Fold]:
    """``k`` folds over the distinct ``speakers``.

    Test groups are consecutive blocks of the speaker order (sizes differ by at most one):
    ``order`` if given (e.g. RAVDESS actors 1..24, so each fold of 4 holds 2 female and 2 male
    actors), else a seeded shuffle of the sorted speakers. Validation speakers are the
    ``n_validation`` speakers (default: one fold's worth, ``n // k``) that follow the test block
    (cyclically), so every speaker is validation in some fold and the split is deterministic.
    Every part of every fold gets at least :data:`MIN_SPEAKERS` speakers, or ``ValueError`` says
    how many speakers there are and how many the request needs.
    """
    spk = list(dict.fromkeys(order)) if order is not None else sorted(set(speakers))
    if order is None:
        spk = [spk[i] for i in np.random.default_rng(seed).permutation(len(spk))]
    missing = set(speakers) - set(spk)
    if missing:
        raise ValueError(f"speakers missing from the given order: {sorted(missing)[:10]}")
    n = len(spk)
    if k < 2:
        raise ValueError(f"k={k} folds: cross-validation needs at least 2 folds (or use the dataset's own splits)")
    n_validation = n // k if n_validation is None else n_validation
    largest = -(-n // k)
    needed = max(k * MIN_SPEAKERS, largest + max(n_validation, MIN_SPEAKERS) + MIN_SPEAKERS)
    if n // k < MIN_SPEAKERS or n_validation < MIN_SPEAKERS or n - largest - n_validation < MIN_SPEAKERS:
        raise ValueError(
            f"{n} speakers cannot be split into k={k} folds with {n_validation} validation speakers: every fold "
            f"needs >= {MIN_SPEAKERS} test, >= {MIN_SPEAKERS} validation and >= {MIN_SPEAKERS} training speakers, "
            f"i.e. at least {needed} speakers; use fewer folds or fewer validation speakers")
    bounds = np.linspace(0, n, k + 1).round().astype(int)
    folds = []
    for f in range(k):
        a, b = int(bounds[f]), int(bounds[f + 1])
        test = spk[a:b]
        rest = spk[b:] + spk[:a]
        folds.append(Fold(f, tuple(rest[n_validation:]), tuple(rest[:n_validation]), tuple(test)))
    return folds
