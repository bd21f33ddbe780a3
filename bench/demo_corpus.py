"""Benchmark of the demo corpus: synthesis and openSMILE time per utterance, and the TFDS
build throughput over all cores (single-process loop vs the builder's worker processes).

    python bench/demo_corpus.py [--utterances 60] [--config is10_small]

Prints its measurements; seed 0 throughout.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--utterances", type=int, default=60, help="utterances timed in the single-process loop")
    p.add_argument("--config", default="is10_small", help="tfvae_demo config to build")
    args = p.parse_args()

    from tfvae import synth
    from tfvae.demo_corpus import plan
    from tfvae.features import FeatureExtractor, default_workers

    items = [u for split in plan(48, 6).values() for u in split][: args.utterances]
    voices = {spk: synth.make_voice(spk, 0) for _, spk, _, _ in items}
    t0 = time.perf_counter()
    audio = [synth.synthesize(voices[spk], emo, u, 0) for _, spk, emo, u in items]
    t_syn = (time.perf_counter() - t0) / len(items)
    ext = FeatureExtractor("IS10")
    ext(audio[0], synth.SAMPLE_RATE)
    t0 = time.perf_counter()
    for a in audio:
        ext(a, synth.SAMPLE_RATE)
    t_smile = (time.perf_counter() - t0) / len(items)
    seconds = sum(len(a) for a in audio) / synth.SAMPLE_RATE / len(items)
    print(f"single process, {len(items)} utterances (mean {seconds:.2f} s of audio):")
    print(f"  synthesis      {1000 * t_syn:7.2f} ms/utterance")
    print(f"  openSMILE IS10 {1000 * t_smile:7.2f} ms/utterance")
    print(f"  together       {1 / (t_syn + t_smile):7.1f} utterances/s")

    import tensorflow_datasets as tfds

    import tfvae_datasets  # noqa: F401

    data_dir = tempfile.mkdtemp()
    try:
        builder = tfds.builder(f"tfvae_demo/{args.config}", data_dir=data_dir)
        t0 = time.perf_counter()
        builder.download_and_prepare()
        wall = time.perf_counter() - t0
        n = sum(s.num_examples for s in builder.info.splits.values())
        print(f"TFDS build of tfvae_demo/{args.config}: {n} utterances in {wall:.1f} s = {n / wall:.1f} "
              f"utterances/s with {default_workers()} worker processes (includes pool start and TFRecord writing)")
    finally:
        shutil.rmtree(data_dir, ignore_errors=True)


if __name__ == "__main__":
    main()
