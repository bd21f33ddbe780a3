"""tf.distribute strategies and the roles of multi-worker processes.

- ``default``: one device; ``mirrored``: ``MirroredStrategy`` over all local GPUs (or, on a
  CPU host split into logical devices, all logical CPUs); ``auto``: mirrored when the host has
  GPUs, else default; ``multiworker``: ``MultiWorkerMirroredStrategy`` configured from the
  ``TF_CONFIG`` environment variable (one process per worker).
- The global batch is ``batch_size x num_replicas_in_sync``. The learning rate follows
  ``--lr_scaling``: ``none`` (as given), ``linear`` (x replicas; Goyal et al. 2017) or ``sqrt``.
- Only the *chief* (task ``chief``, or ``worker`` 0 when the cluster has no chief) keeps its
  outputs: other workers write checkpoints, TensorBoard logs and SavedModels to a temporary
  directory that is deleted at the end, as TensorFlow's multi-worker guide prescribes.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass


@dataclass(frozen=True)
class Role:
    """Where this process stands in the cluster."""

    task_type: str | None = None
    task_id: int = 0
    num_workers: int = 1

    @property
    def is_chief(self) -> bool:
        return self.task_type in (None, "chief") or (self.task_type == "worker" and self.task_id == 0)

    @property
    def name(self) -> str:
        return "single process" if self.task_type is None else f"{self.task_type} {self.task_id}"


def make_strategy(name: str):
    """The ``tf.distribute`` strategy called ``name`` (see the module docstring)."""
    import tensorflow as tf

    if name == "multiworker":
        if not os.environ.get("TF_CONFIG"):
            raise ValueError("--strategy multiworker needs the TF_CONFIG environment variable "
                             '({"cluster": {"worker": ["host:port", ...]}, "task": {"type": "worker", "index": i}})')
        try:
            json.loads(os.environ["TF_CONFIG"])
        except json.JSONDecodeError as e:
            raise ValueError(f"TF_CONFIG is not valid JSON: {e}") from e
        return tf.distribute.MultiWorkerMirroredStrategy()
    gpus = tf.config.list_logical_devices("GPU")
    if name == "default" or (name == "auto" and not gpus):
        return tf.distribute.get_strategy()
    if name == "mirrored" and not gpus:
        cpus = tf.config.list_logical_devices("CPU")
        return tf.distribute.MirroredStrategy([d.name for d in cpus])
    return tf.distribute.MirroredStrategy()


def role(strategy) -> Role:
    """This process's task in a multi-worker cluster (a single process otherwise)."""
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not resolver.task_type:
        return Role()
    spec = resolver.cluster_spec().as_dict()
    workers = sum(len(v) for k, v in spec.items() if k in ("chief", "worker"))
    return Role(resolver.task_type, int(resolver.task_id or 0), workers)


def scaled_learning_rate(lr: float, replicas: int, rule: str) -> float:
    """``lr`` for ``replicas`` replicas under ``rule`` (none, linear or sqrt)."""
    if rule == "none":
        return lr
    if rule == "linear":
        return lr * replicas
    if rule == "sqrt":
        return lr * math.sqrt(replicas)
    raise ValueError(f"lr_scaling={rule!r} is unknown; choose none, linear or sqrt")
