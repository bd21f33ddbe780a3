"""Speaker-encoder configurations as data: one :class:`EncoderConfig` per preset.

``xvector`` follows Snyder et al. 2018 (five TDNN layers of 512/512/512/512/1500 units with
contexts [t-2, t+2], {t-2, t, t+2}, {t-3, t, t+3}, {t}, {t}, statistics pooling, a 512-unit
embedding layer); ``resnet_vlad`` follows Xie et al. 2019 (thin ResNet-34: a 7x7 stem and
bottleneck stages of 2/3/3/3 blocks with 48-96/96-128/128-256/256-512 channels, a 512-unit
bottleneck, GhostVLAD with 8 clusters and 2 ghost clusters, a 512-unit embedding). The
``*_small`` presets keep the architecture at a quarter of the width, for training on CPUs and
for the synthetic-speaker pretraining that runs on a fresh machine.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

ARCHS = ("xvector", "resnet_vlad")


@dataclass(frozen=True)
class EncoderConfig:
    """Everything that defines a speaker encoder's graph (serialised with the model)."""

    arch: str = "xvector"
    n_mels: int = 30
    embedding_dim: int = 512
    # x-vector TDNN: per layer (units, kernel size, dilation)
    tdnn: tuple = ((512, 5, 1), (512, 3, 2), (512, 3, 3), (512, 1, 1), (1500, 1, 1))
    # thin ResNet: stem channels, per stage (reduce, middle, output channels) and block counts
    stem_channels: int = 64
    stages: tuple = ((48, 48, 96), (96, 96, 128), (128, 128, 256), (256, 256, 512))
    blocks: tuple = (2, 3, 3, 3)
    bottleneck_dim: int = 512
    clusters: int = 8
    ghost_clusters: int = 2
    #: shortest input accepted at inference (seconds)
    min_seconds: float = 0.5
    extra: dict = field(default_factory=dict)

    def __post_init__(self):
        if self.arch not in ARCHS:
            raise ValueError(f"speaker encoder arch {self.arch!r} is unknown; choose one of {', '.join(ARCHS)}")
        if self.n_mels < 8 or self.embedding_dim < 2 or self.min_seconds <= 0:
            raise ValueError(f"invalid encoder config: n_mels={self.n_mels}, embedding_dim={self.embedding_dim}, "
                             f"min_seconds={self.min_seconds}")
        if len(self.stages) != len(self.blocks):
            raise ValueError(f"{len(self.stages)} ResNet stages but {len(self.blocks)} block counts")

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["tdnn"] = [list(t) for t in self.tdnn]
        d["stages"] = [list(s) for s in self.stages]
        d["blocks"] = list(self.blocks)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "EncoderConfig":
        d = dict(d)
        for k in ("tdnn", "stages"):
            if k in d:
                d[k] = tuple(tuple(int(v) for v in t) for t in d[k])
        if "blocks" in d:
            d["blocks"] = tuple(int(v) for v in d["blocks"])
        unknown = set(d) - {f.name for f in dataclasses.fields(cls)}
        if unknown:
            raise ValueError(f"unknown speaker-encoder config field(s): {', '.join(sorted(unknown))}")
        return cls(**d)


PRESETS: dict[str, EncoderConfig] = {
    "xvector": EncoderConfig(arch="xvector"),
    "xvector_small": EncoderConfig(arch="xvector", n_mels=30, embedding_dim=128,
                                   tdnn=((128, 5, 1), (128, 3, 2), (128, 3, 3), (128, 1, 1), (384, 1, 1))),
    "resnet_vlad": EncoderConfig(arch="resnet_vlad", n_mels=64),
    "resnet_vlad_small": EncoderConfig(arch="resnet_vlad", n_mels=40, embedding_dim=128, stem_channels=16,
                                       stages=((12, 12, 24), (24, 24, 32), (32, 32, 64), (64, 64, 128)),
                                       bottleneck_dim=128),
}


def preset(name: str, **overrides) -> EncoderConfig:
    """The preset ``name`` with fields replaced by ``overrides`` (``None`` values are ignored)."""
    try:
        base = PRESETS[name]
    except KeyError:
        raise ValueError(f"speaker-encoder preset {name!r} is unknown; choose one of {', '.join(PRESETS)}") from None
    return dataclasses.replace(base, **{k: v for k, v in overrides.items() if v is not None})
