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


def speaker_folds(speakers, k: int, n_validation: int, seed: int = 0, order=None) -> list[Fold]:
    """``k`` folds over the distinct ``speakers``.

    Test groups are consecutive blocks of the speaker order: ``order`` if given (e.g. RAVDESS
    actors 1..24, so each fold of 4 holds 2 female and 2 male actors), else a seeded shuffle of
    the sorted speakers. Validation speakers are the ``n_validation`` speakers that follow the
    test block (cyclically), so every speaker is validation in some fold and the split is
    deterministic.
    """
    spk = list(dict.fromkeys(order)) if order is not None else sorted(set(speakers))
    if order is None:
        spk = [spk[i] for i in np.random.default_rng(seed).permutation(len(spk))]
    missing = set(speakers) - set(spk)
    if missing:
        raise ValueError(f"speakers missing from the given order: {sorted(missing)[:10]}")
    n = len(spk)
    if k < 2 or n % k:
        raise ValueError(f"{n} speakers cannot be split into k={k} equal folds")
    size = n // k
    if n_validation < 1 or n_validation > n - 2 * size:
        raise ValueError(f"n_validation={n_validation} must be in 1..{n - 2 * size} for {n} speakers and k={k}")
    folds = []
    for f in range(k):
        test = spk[f * size:(f + 1) * size]
        rest = spk[(f + 1) * size:] + spk[:f * size]
        folds.append(Fold(f, tuple(rest[n_validation:]), tuple(rest[:n_validation]), tuple(test)))
    return folds
