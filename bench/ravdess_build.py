"""Throughput of the RAVDESS builder vs a plain single-process openSMILE loop (issue: datasets).

    python bench/ravdess_build.py [--ravdess ../shared/data/ravdess] [--feature_set IS10] [--limit N]

1. single process: ``opensmile.Smile(IS10 functionals).process_file(path)`` over the files;
2. the TFDS builder ``ravdess/<feature set>`` building from the same folder into a temporary
   data_dir with its default worker processes (one per core), TFRecord writing included.

Prints both times, throughputs, and builder / (cores x single) -- the goal is >= 0.9.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--ravdess", default=str(Path(__file__).resolve().parents[2] / "shared/data/ravdess"))
    p.add_argument("--feature_set", default="IS10")
    p.add_argument("--limit", type=int, default=None, help="use only the first N actors (default all)")
    args = p.parse_args()

    from tfvae.features import FEATURE_SETS, default_workers, import_opensmile

    root = Path(args.ravdess)
    actors = sorted(d for d in root.glob("Actor_*") if d.is_dir())[: args.limit]
    if not actors:
        raise SystemExit(f"no Actor_* folders in {root}")
    work = Path(tempfile.mkdtemp())
    try:
        manual = work / "manual"
        manual.mkdir()
        for d in actors:  # link, never copy, the corpus
            (manual / d.name).symlink_to(d.resolve())
        files = sorted(f for d in actors for f in d.iterdir() if f.suffix in (".flac", ".wav"))

        opensmile = import_opensmile()
        smile = opensmile.Smile(feature_set=getattr(opensmile.FeatureSet, FEATURE_SETS[args.feature_set][0]),
                                feature_level=opensmile.FeatureLevel.Functionals)
        smile.process_file(str(files[0]))  # warm up
        t0 = time.perf_counter()
        for f in files:
            smile.process_file(str(f))
        single = time.perf_counter() - t0

        import tensorflow_datasets as tfds

        import tfvae_datasets  # noqa: F401

        builder = tfds.builder(f"ravdess/{args.feature_set.lower()}", data_dir=str(work / "tfds"))
        t0 = time.perf_counter()
        builder.download_and_prepare(download_config=tfds.download.DownloadConfig(manual_dir=str(manual)))
        build = time.perf_counter() - t0
        n = sum(s.num_examples for s in builder.info.splits.values())
        cores = default_workers()
        print(f"RAVDESS {args.feature_set}: {len(files)} files, {len(actors)} actors, {cores} cores")
        print(f"  single-process opensmile loop: {single:7.1f} s  {len(files) / single:6.1f} files/s")
        print(f"  TFDS builder ({cores} workers):   {build:7.1f} s  {n / build:6.1f} files/s  ({n} examples)")
        print(f"  builder / (cores x single) = {(n / build) / (cores * len(files) / single):.3f}  (goal >= 0.9)")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
