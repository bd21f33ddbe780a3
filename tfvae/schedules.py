"""Keep-rate vectors for layered dropout and strength ramps for gradient reversal.

Latent nodes are ordered top (node 0, the *emotion* end) to bottom (node N-1, the
*identity* end). Paper section 2.3.2, eq. 2 (``m_i ~ Bernoulli(p_i)``): the emotion branch
gets decreasing preserving rates p_i (it keeps the top most), the speaker branch increasing
ones (it keeps the bottom most).

Profile families (``PROFILE_FAMILIES``)
---------------------------------------
With K attributes in latent order, attribute ``position`` k of ``count`` K owns the k-th band:
its keep-rate profile (:func:`band_keep_rates`) peaks at the band centre ``c_k`` and decays
with the distance ``d_i = |t_i - c_k| / (width * spacing)`` of node i (``t_i = i / (N - 1)``)::

    p_i = p_min + (p_max - p_min) * f(clip(d_i, 0, 1))

``spacing`` is the gap to the neighbouring centre on the node's side (an end attribute uses
its one neighbour's gap beyond its own centre). ``f`` falls from 1 at d = 0 to 0 at d = 1:

- ``linear``: ``1 - d``;
- ``exponential``: convex ``(exp(-k d) - exp(-k)) / (1 - exp(-k))``, k = ``steepness``;
- ``sigmoid``: logistic step centred at d = 0.5 with slope k, rescaled to hit 1 and 0;
- ``cosine``: ``0.5 (1 + cos(pi d))``, flat at both ends.

Parameters: ``centres`` (default ``c_k = k / (K - 1)``; otherwise a strictly increasing
sequence of K fractions in [0, 1]) places the bands; ``width`` scales the decay length
(``width=1``: a band reaches p_min exactly at the neighbouring centres, ``width=2`` spreads
it twice as far); ``p_min``/``p_max`` are the floor and the peak; ``steepness`` shapes the
exponential and sigmoid families. K = 2 is the paper's model: position 0 is
``keep_rates(side="emotion")``, position 1 is ``side="identity"``.

Example, K = 3 (emotion, gender, identity), ``width=1``: emotion starts at p_max on node 0
and falls to p_min at the middle node, staying there below it; gender peaks at p_max on
the middle node and falls to p_min at both ends; identity mirrors emotion. For ``linear``
(and, by the symmetry ``f(d) + f(1 - d) = 1``, also ``sigmoid`` and ``cosine``) with
``width=1``, p_min = 0 and p_max = 1 the K profiles sum to 1 at every node.
"""

from __future__ import annotations

import math
import operator
from typing import Sequence

import keras
import numpy as np
from keras import ops

SIDES = ("emotion", "identity")
#: Keep-rate profile families (see the module docstring).
PROFILE_FAMILIES = ("linear", "exponential", "sigmoid", "cosine")


def _check_family(schedule: str, steepness: float) -> None:
    if schedule not in PROFILE_FAMILIES:
        raise ValueError(f"keep-rate schedule {schedule!r} is unknown; choose linear, exponential, sigmoid or cosine")
    k = float(steepness)
    if schedule in ("exponential", "sigmoid") and (k == 0.0 or not math.isfinite(k)):
        raise ValueError(f"keep-rate schedule {schedule!r} needs a finite non-zero steepness, got {steepness}")


def _decay(d: np.ndarray, schedule: str, steepness: float) -> np.ndarray:
    """The family's decay ``f(d)``: 1 at d = 0, 0 at d = 1 (``d`` already in [0, 1])."""
    _check_family(schedule, steepness)
    k = float(steepness)
    if schedule == "linear":
        return 1.0 - d
    if schedule == "exponential":
        return (np.exp(-k * d) - math.exp(-k)) / (1.0 - math.exp(-k))
    if schedule == "sigmoid":
        s = 1.0 / (1.0 + np.exp(k * (d - 0.5)))
        lo, hi = 1.0 / (1.0 + math.exp(k * 0.5)), 1.0 / (1.0 + math.exp(-k * 0.5))
        return (s - lo) / (hi - lo)
    return 0.5 * (1.0 + np.cos(np.pi * d))  # cosine


def _band_centres(count: int, centres: Sequence[float] | None) -> np.ndarray:
    if centres is None:
        return np.linspace(0.0, 1.0, count) if count > 1 else np.zeros(1)
    c = np.asarray(centres, dtype=np.float64).reshape(-1)
    if (c.shape[0] != count or not np.all(np.isfinite(c)) or np.any(c < 0.0) or np.any(c > 1.0)
            or np.any(np.diff(c) <= 0.0)):
        raise ValueError(
            f"centres={centres!r} would give overlapping bands: need {count} strictly increasing "
            "fractions in [0, 1], one per attribute")
    return c


def band_keep_rates(n: int, schedule: str = "linear", position: int = 0, count: int = 2,
                    p_min: float = 0.0, p_max: float = 1.0, steepness: float = 6.0,
                    width: float = 1.0, centres: Sequence[float] | None = None) -> np.ndarray:
    """Keep rates ``p`` (float32, length ``n``) of attribute ``position`` of ``count`` (paper eq. 2).

    The profile peaks (p_max) at the band centre ``c_position`` and decays with the family
    ``schedule`` to p_min at ``width`` times the gap to the neighbouring centre; see the module
    docstring (*Profile families*). ``count=2`` reproduces :func:`keep_rates`; ``count=1``
    or ``n=1`` gives p_max everywhere.
    """
    if n < 1:
        raise ValueError(f"band_keep_rates needs n >= 1 nodes, got {n}")
    count, position = operator.index(count), operator.index(position)
    if count < 1:
        raise ValueError(f"band_keep_rates needs count >= 1 attributes, got {count}")
    if not 0 <= position < count:
        raise ValueError(f"position={position} is out of range for count={count} attributes")
    if not 0.0 <= p_min <= p_max <= 1.0:
        raise ValueError(f"need 0 <= p_min ({p_min}) <= p_max ({p_max}) <= 1")
    if not (math.isfinite(width) and width > 0.0):
        raise ValueError(f"width must be > 0, got {width}")
    _check_family(schedule, steepness)
    c = _band_centres(count, centres)
    if count == 1 or n == 1:  # one band, or one node shared by every band (as keep_rates had it)
        return np.full(n, p_max, dtype=np.float32)
    if centres is None and 2 * position > count - 1:
        # equally spaced bands are symmetric: the lower half mirrors the upper one exactly (bit for bit, so
        # the identity profile of two attributes is the emotion profile reversed, as the paper's model had it)
        return band_keep_rates(n, schedule, count - 1 - position, count, p_min, p_max, steepness, width)[::-1].copy()
    t = np.linspace(0.0, 1.0, n)
    ck = c[position]
    gap_before = ck - c[position - 1] if position > 0 else c[1] - c[0]
    gap_after = c[position + 1] - ck if position < count - 1 else ck - c[position - 1]
    spacing = np.where(t < ck, gap_before, gap_after)
    d = np.clip(np.abs(t - ck) / (float(width) * spacing), 0.0, 1.0)
    p = p_min + (p_max - p_min) * np.clip(_decay(d, schedule, steepness), 0.0, 1.0)
    return p.astype(np.float32)


def attribute_keep_rates(n: int, count: int, schedule: str = "linear", p_min: float = 0.0,
                         p_max: float = 1.0, steepness: float = 6.0, width: float = 1.0,
                         centres: Sequence[float] | None = None) -> np.ndarray:
    """All ``count`` band profiles stacked: float32 array ``[count, n]``, row k = attribute k."""
    count = operator.index(count)
    if count < 1:
        raise ValueError(f"attribute_keep_rates needs count >= 1 attributes, got {count}")
    return np.stack([band_keep_rates(n, schedule, k, count, p_min, p_max, steepness, width, centres)
                     for k in range(count)])


def keep_rates(n: int, schedule: str = "linear", side: str = "emotion",
               p_min: float = 0.0, p_max: float = 1.0, steepness: float = 6.0) -> np.ndarray:
    """Monotone keep rates ``p`` of length ``n`` for layered dropout (paper eq. 2).

    ``side="emotion"`` gives p_0 = p_max decreasing to p_{n-1} = p_min; ``side="identity"``
    gives the mirror image. The two-attribute case of :func:`band_keep_rates` (emotion is
    position 0, identity position 1 of 2); families as in the module docstring.
    """
    if n < 1:
        raise ValueError(f"keep_rates needs n >= 1 nodes, got {n}")
    if side not in SIDES:
        raise ValueError(f"side={side!r} is unknown; choose one of {SIDES}")
    return band_keep_rates(n, schedule, SIDES.index(side), 2, p_min, p_max, steepness)


@keras.saving.register_keras_serializable(package="tfvae")
class LambdaSchedule:
    """Gradient-reversal strength as a function of the training step.

    - ``constant``: lambda = max_lambda;
    - ``linear``: lambda = max_lambda * progress;
    - ``dann``: lambda = max_lambda * (2 / (1 + exp(-gamma * progress)) - 1), the ramp of
      Ganin & Lempitsky (paper ref. [22]), progress = step / total_steps clipped to [0, 1].
    """

    KINDS = ("constant", "dann", "linear")

    def __init__(self, kind: str = "dann", max_lambda: float = 1.0, total_steps: int = 1, gamma: float = 10.0):
        if kind not in self.KINDS:
            raise ValueError(f"lambda schedule {kind!r} is unknown; choose one of {self.KINDS}")
        if total_steps < 1:
            raise ValueError(f"total_steps must be >= 1, got {total_steps}")
        self.kind, self.max_lambda, self.total_steps, self.gamma = kind, float(max_lambda), int(total_steps), float(gamma)

    def __call__(self, step):
        step = ops.cast(step, "float32")
        progress = ops.clip(step / float(self.total_steps), 0.0, 1.0)
        if self.kind == "constant":
            return ops.ones_like(progress) * self.max_lambda
        if self.kind == "linear":
            return progress * self.max_lambda
        return self.max_lambda * (2.0 / (1.0 + ops.exp(-self.gamma * progress)) - 1.0)

    def get_config(self) -> dict:
        return {"kind": self.kind, "max_lambda": self.max_lambda, "total_steps": self.total_steps, "gamma": self.gamma}

    @classmethod
    def from_config(cls, config: dict) -> "LambdaSchedule":
        return cls(**config)
