"""Speaker encoders for tfvae's speaker-embedding inputs (the paper's x-vector and NetVLAD rows).

Data flows one way: 16 kHz waveform -> :mod:`~tfvae.speaker.frontend` (log-mel in the graph) ->
trunk (:mod:`~tfvae.speaker.encoders`: x-vector TDNN or thin ResNet-34) -> utterance pooling
(:mod:`~tfvae.speaker.pooling`: statistics, NetVLAD, GhostVLAD) -> embedding. Presets are data
(:mod:`~tfvae.speaker.presets`); training, evaluation and export live in
:mod:`~tfvae.speaker.training`, :mod:`~tfvae.speaker.pipeline` and :mod:`~tfvae.speaker.export`,
driven by ``python -m tfvae.speaker_encoder``.
"""
