"""Speaker-embedding extraction throughput (issue 11): audio seconds embedded per wall-clock second.

    python bench/embedding_extraction.py [--presets xvector_small,xvector,resnet_vlad_small,resnet_vlad]
                                         [--encoder saved_models/<exported encoder>] [--utterances 256]

For every preset an encoder is built and exported as a SavedModel (throughput does not depend on
the weights' values), loaded back with ``tf.saved_model.load`` and run through its
``serving_default`` signature exactly as dataset extraction does (``tfvae.speaker.extract``):
utterances sorted by length, zero-padded batches of ``--batch_size``. The audio is synthetic speech
(``tfvae.synth``, 1.5-3 s, as many utterances as ``--utterances``); ``--ravdess DIR`` uses the
RAVDESS recordings in DIR instead. Prints one line per encoder: utterances, audio hours, wall
seconds (median of ``--repeats`` passes after one warm-up pass) and the real-time factor; the
goal of issue 11 is >= 100x real time for the x-vector on 2 CPU cores.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time

import numpy as np


def synthetic_audio(n: int) -> list[np.ndarray]:
    from tfvae import synth

    return [synth.synthesize(synth.make_voice(i % 40, 11), synth.EMOTIONS[i % 5], i, 11) for i in range(n)]


def ravdess_audio(root: str, n: int) -> list[np.ndarray]:
    from pathlib import Path

    from tfvae.audio import load_audio

    files = sorted(Path(root).glob("Actor_*/*"))[:n]
    return [load_audio(str(f)) for f in files]


def run(fn, audio, batch_size: int) -> float:
    import tensorflow as tf

    from tfvae.speaker.extract import padded_batches

    t = time.perf_counter()
    for wave, lengths, _ in padded_batches(audio, batch_size):
        fn(waveform=tf.constant(wave), lengths=tf.constant(lengths))["embedding"].numpy()
    return time.perf_counter() - t


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--presets", default="xvector_small,xvector,resnet_vlad_small,resnet_vlad")
    p.add_argument("--encoder", action="append", default=[], help="an exported encoder to time as well")
    p.add_argument("--utterances", type=int, default=256)
    p.add_argument("--batch_size", type=int, default=32)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--ravdess", help="RAVDESS folder (Actor_01 ...) to read real recordings from")
    args = p.parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import tensorflow as tf

    from tfvae.speaker.encoders import build_encoder
    from tfvae.speaker.export import export_speaker_encoder, load_speaker_encoder
    from tfvae.speaker.presets import preset

    audio = ravdess_audio(args.ravdess, args.utterances) if args.ravdess else synthetic_audio(args.utterances)
    seconds = sum(len(a) for a in audio) / 16000.0
    print(f"cores {len(os.sched_getaffinity(0))}, TF {tf.__version__}; {len(audio)} utterances, "
          f"{seconds / 3600:.3f} h of {'RAVDESS' if args.ravdess else 'synthetic'} audio, batch {args.batch_size}")
    targets = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in [s for s in args.presets.split(",") if s]:
            path = export_speaker_encoder(build_encoder(preset(name)), tmp, name, {"note": "benchmark, untrained"})
            targets.append((name, path))
        targets += [(e, e) for e in args.encoder]
        for name, path in targets:
            loaded, meta = load_speaker_encoder(path)
            fn = loaded.signatures["serving_default"]
            run(fn, audio[:args.batch_size * 2], args.batch_size)  # warm-up: trace the padded shapes
            times = [run(fn, audio, args.batch_size) for _ in range(args.repeats)]
            wall = statistics.median(times)
            print(f"{name:24s} {meta['arch']:12s} emb {meta['embedding_dim']:4d}  wall {wall:7.2f} s  "
                  f"{len(audio) / wall:8.1f} utt/s  {seconds / wall:8.1f}x real time")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
