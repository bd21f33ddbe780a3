"""Build the SYNTHETIC MSP-Podcast-shaped stand-in corpus (``msp_standin``) at several sizes (issue 12).

    python bench/standin_corpus.py [--sizes 10000,50000,150000] [--data_dir DIR] [--seed 0] [--force]

Each size is a registered config (``is10_2k``, ``is10_10k``, ``is10_50k``, ``is10_150k``), built with
``tfds.builder("msp_standin/<config>", data_dir=...).download_and_prepare()`` -- the same code path
as a real corpus. Prints per size: build seconds (0 when already built; ``--force`` rebuilds),
utterances / speakers per split, on-disk MiB. The corpus is random vectors, not speech: use it to
measure scaling (build, load, train, evaluate), never for results about emotions or speakers.
"""

from __future__ import annotations

import argparse
import shutil
import time
from pathlib import Path


def _mib(path: Path) -> float:
    return sum(f.stat().st_size for f in Path(path).rglob("*") if f.is_file()) / 2 ** 20


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sizes", default="10000,50000,150000",
                   help="comma-separated total utterances, each one of the configs' sizes (2000, 10000, 50000, 150000)")
    p.add_argument("--data_dir", default=None, help="TFDS data_dir (default: TFDS's, ~/tensorflow_datasets)")
    p.add_argument("--force", action="store_true", help="delete and rebuild a size that is already built")
    args = p.parse_args()

    import tensorflow_datasets as tfds

    import tfvae_datasets  # noqa: F401  (registers msp_standin)
    from tfvae_datasets.msp_standin.msp_standin_dataset_builder import SIZES

    by_size = {n: name for name, n in SIZES.items()}
    sizes = [int(s) for s in args.sizes.split(",") if s.strip()]
    unknown = [s for s in sizes if s not in by_size]
    if unknown:
        raise SystemExit(f"no msp_standin config of size {unknown}; sizes: {sorted(by_size)}")
    for n in sizes:
        name = f"msp_standin/{by_size[n]}"
        builder = tfds.builder(name, data_dir=args.data_dir)
        if args.force and builder.is_prepared():
            shutil.rmtree(builder.data_dir)
            builder = tfds.builder(name, data_dir=args.data_dir)
        t0 = time.perf_counter()
        built = not builder.is_prepared()
        builder.download_and_prepare()
        seconds = time.perf_counter() - t0 if built else 0.0
        info = builder.info
        meta = info.metadata
        per_split = ", ".join(f"{s} {info.splits[s].num_examples:,} utt / {meta['speakers_per_split'][s]:,} spk "
                              f"(max {meta['max_utterances_per_speaker'][s]})"
                              for s in ("train", "validation", "test"))
        total = sum(info.splits[s].num_examples for s in ("train", "validation", "test"))
        print(f"{name}: {total:,} utterances, {sum(meta['speakers_per_split'].values()):,} speakers; "
              f"build {seconds:.1f} s{'' if built else ' (already built)'}; {per_split}; "
              f"{_mib(Path(builder.data_dir)):.1f} MiB on disk at {builder.data_dir}", flush=True)


if __name__ == "__main__":
    main()
