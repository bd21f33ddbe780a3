"""Keep-rate vectors for layered dropout and strength ramps for gradient reversal.

Latent nodes are ordered top (node 0, the *emotion* end) to bottom (node N-1, the
*identity* end). Paper section 2.3.2: the emotion branch gets decreasing preserving
rates p_i (it keeps the top most), the speaker branch increasing ones (it keeps the
bottom most).
"""

from __future__ import annotations

import math

import keras
import numpy as np
from keras import ops

SIDES = ("emotion", "identity")


def keep_rates(n: int, schedule: str = "linear", side: str = "emotion",
               p_min: float = 0.0, p_max: float = 1.0, steepness: float = 6.0) -> np.ndarray:
    """Monotone keep rates ``p`` of length ``n`` for layered dropout (paper eq. 2).

    ``side="emotion"`` gives p_0 = p_max decreasing to p_{n-1} = p_min; ``side="identity"``
    gives the mirror image. Families (t = i / (n - 1)):

    - ``linear``: straight line between p_max and p_min;
    - ``exponential``: convex decay ``exp(-k t)`` rescaled to hit both end points;
    - ``sigmoid``: logistic step centred on the middle node, slope ``k``;
    - ``cosine``: half cosine, flat at both ends.
    """
    if n < 1:
        raise ValueError(f"keep_rates needs n >= 1 nodes, got {n}")
    if side not in SIDES:
        raise ValueError(f"side={side!r} is unknown; choose one of {SIDES}")
    if not 0.0 <= p_min <= p_max <= 1.0:
        raise ValueError(f"need 0 <= p_min ({p_min}) <= p_max ({p_max}) <= 1")
    t = np.linspace(0.0, 1.0, n) if n > 1 else np.zeros(1)
    k = float(steepness)
    if schedule == "linear":
        d = 1.0 - t
    elif schedule == "exponential":
        d = (np.exp(-k * t) - math.exp(-k)) / (1.0 - math.exp(-k))
    elif schedule == "sigmoid":
        s = 1.0 / (1.0 + np.exp(k * (t - 0.5)))
        lo, hi = 1.0 / (1.0 + math.exp(k * 0.5)), 1.0 / (1.0 + math.exp(-k * 0.5))
        d = (s - lo) / (hi - lo)
    elif schedule == "cosine":
        d = 0.5 * (1.0 + np.cos(np.pi * t))
    else:
        raise ValueError(f"keep-rate schedule {schedule!r} is unknown; choose linear, exponential, sigmoid or cosine")
    p = p_min + (p_max - p_min) * np.clip(d, 0.0, 1.0)
    if side == "identity":
        p = p[::-1]
    return p.astype(np.float32)


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
