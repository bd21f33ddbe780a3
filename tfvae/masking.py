"""Masks over the ordered latent and the choice of the mask cut on validation data.

Node 0 is the emotion end, node N-1 the identity end (section 2.3.2). The identity-free
representation (for privacy-preserving SER) keeps the top ``cut`` nodes; the emotionless one
(for privacy-preserving SV) keeps the nodes from ``cut`` to the bottom.
"""

from __future__ import annotations

import numpy as np

from tfvae.evaluate import chance_wf1, probe_scores
from tfvae.metrics import sample_trials

VIEWS = ("identity_free", "emotion_free")


def keep_mask(n: int, view: str, cut: int) -> np.ndarray:
    """0/1 float32 vector of length ``n``: 1 for the nodes the view keeps."""
    if view not in VIEWS:
        raise ValueError(f"mask view {view!r} is unknown; choose one of {VIEWS}")
    if not 0 <= cut <= n:
        raise ValueError(f"cut {cut} outside 0..{n}")
    m = np.zeros(n, np.float32)
    if view == "identity_free":
        m[:cut] = 1.0
    else:
        m[cut:] = 1.0
    return m


def candidate_cuts(n: int, groups: int) -> list[int]:
    """Group boundaries 1..groups-1 (paper Fig. 2 masks one group of n/groups nodes per step)."""
    if groups < 2 or n % groups:
        raise ValueError(f"latent size {n} cannot be split into {groups} equal groups")
    size = n // groups
    return [k * size for k in range(1, groups)]


def choose_cuts(z_train, emo_train, spk_train, z_val, emo_val, spk_val, groups: int,
                tolerance: float = 0.02, seed: int = 0, attackers: str = "fast") -> dict:
    """Pick both cuts on validation data only.

    For every candidate cut, downstream probes (:func:`tfvae.evaluate.probe_scores`) are fit on the
    masked *training* latents and scored on the masked *validation* latents: emotion weighted F1
    (logistic regression) and speaker EER (PCA/LDA + cosine on validation trials; validation
    speakers are unseen in training).

    - identity-free: among cuts whose emotion WF1 is within ``tolerance`` of the full latent's,
      those whose speaker EER is closest to chance (0.5), within ``tolerance`` of the closest;
      of these the one with the best emotion WF1;
    - emotion-free: among cuts whose EER is within ``tolerance`` of the full latent's, those
      whose emotion WF1 is closest to chance (the stratified-random WF1 of the validation
      labels, sum of squared class shares), within ``tolerance``; of these the lowest EER.

    Distance to chance, not the raw value, measures privacy: a WF1 below chance still leaks.
    Remaining ties keep more nodes. ``attackers``: the probe set of :func:`tfvae.evaluate.probe_scores`
    (``strong`` puts the strongest of several validation attackers in the loop).
    """
    n = z_train.shape[1]
    trials = sample_trials(spk_val, seed=seed)
    full_f1, full_eer = probe_scores(z_train, emo_train, spk_train, z_val, emo_val, trials, seed, attackers)
    chance_f1 = chance_wf1(emo_val)["stratified"]
    table = []
    for cut in candidate_cuts(n, groups):
        row = {"cut": cut}
        for view in VIEWS:
            keep = keep_mask(n, view, cut).astype(bool)
            row[f"{view}_emotion_wf1"], row[f"{view}_speaker_eer"] = probe_scores(
                z_train[:, keep], emo_train, spk_train, z_val[:, keep], emo_val, trials, seed, attackers)
        table.append(row)

    def pick(view, useful, leak, utility):
        ok = [r for r in table if useful(r)] or table
        best = min(leak(r) for r in ok)
        close = [r for r in ok if leak(r) <= best + tolerance]
        return max(close, key=lambda r: (utility(r), r[f"{view}_nodes"]))

    for r in table:
        r["identity_free_nodes"], r["emotion_free_nodes"] = r["cut"], n - r["cut"]
    id_row = pick("identity_free",
                  lambda r: r["identity_free_emotion_wf1"] >= full_f1 - tolerance,
                  lambda r: abs(r["identity_free_speaker_eer"] - 0.5),
                  lambda r: r["identity_free_emotion_wf1"])
    emo_row = pick("emotion_free",
                   lambda r: r["emotion_free_speaker_eer"] <= full_eer + tolerance,
                   lambda r: abs(r["emotion_free_emotion_wf1"] - chance_f1),
                   lambda r: -r["emotion_free_speaker_eer"])
    return {
        "identity_free_cut": int(id_row["cut"]), "emotion_free_cut": int(emo_row["cut"]),
        "full_emotion_wf1": full_f1, "full_speaker_eer": full_eer, "chance_emotion_wf1": chance_f1,
        "tolerance": tolerance, "groups": groups, "table": table, "chosen_on": "validation",
        "probes": attackers,
    }
