"""Per-file openSMILE throughput on this machine, projected to a full MSP-Podcast build.

    python datasets/msp_podcast/measure_extraction.py [--audio ../shared/data/ravdess] [--files 100]
        [--feature_set IS10] [--as_16k_wav] [--turns 151654] [--hours 237.9]

Times ``tfvae.features.extract_file`` (what the builder's workers run) over the first
``--files`` audio files found below ``--audio``:

1. a loop in this one process (after one warm-up file);
2. ``tfvae.features.parallel_map`` with the builder's worker count (``default_workers()``,
   one spawned process per core; the pool's start-up is included, as in a build).

``--as_16k_wav`` first converts the files to 16 kHz mono PCM_16 WAV (the release's format) in a
temporary folder. Prints files/s and audio seconds per wall second, and the projected extraction
time for ``--turns`` turns: per file (``turns / files_per_s``) and per audio second (``hours``
of audio / measured audio-seconds per second; MSP-Podcast 1.11: 151,654 turns, about 238 h).
The corpus itself is only read.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path


def _hms(seconds: float) -> str:
    h, rest = divmod(int(round(seconds)), 3600)
    return f"{h} h {rest // 60:02d} min"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--audio", default=str(Path(__file__).resolve().parents[3] / "shared/data/ravdess"))
    p.add_argument("--files", type=int, default=100)
    p.add_argument("--feature_set", default="IS10")
    p.add_argument("--as_16k_wav", action="store_true", help="convert to 16 kHz mono WAV first")
    p.add_argument("--turns", type=int, default=151_654, help="speaking turns of the release")
    p.add_argument("--hours", type=float, default=237.9, help="hours of audio of the release")
    args = p.parse_args()

    import soundfile as sf

    from tfvae.features import default_workers, extract_file, parallel_map

    files = sorted(f for f in Path(args.audio).rglob("*") if f.suffix.lower() in (".wav", ".flac"))[: args.files]
    if not files:
        raise SystemExit(f"no .wav/.flac files below {args.audio}")
    work = Path(tempfile.mkdtemp())
    try:
        if args.as_16k_wav:
            from scipy.signal import resample_poly

            converted = []
            for i, f in enumerate(files):
                x, rate = sf.read(str(f), dtype="float32", always_2d=True)
                y = resample_poly(x.mean(axis=1), 16000, rate) if rate != 16000 else x.mean(axis=1)
                converted.append(work / f"{i:05d}.wav")
                sf.write(converted[-1], y, 16000, subtype="PCM_16")
            files = converted
        audio_s = sum(sf.info(str(f)).duration for f in files)
        fmt = "16 kHz mono WAV" if args.as_16k_wav else f"as found ({files[0].suffix})"
        print(f"{len(files)} files, {audio_s:.1f} s of audio ({audio_s / len(files):.2f} s mean), {fmt}, "
              f"{args.feature_set}")
        tasks = [(str(f), (args.feature_set, str(f))) for f in files]
        extract_file(tasks[0][1])  # warm-up: builds the openSMILE extractor
        t0 = time.perf_counter()
        for _, task in tasks:
            extract_file(task)
        timings = {1: time.perf_counter() - t0}
        workers = default_workers()
        t0 = time.perf_counter()
        out = parallel_map(extract_file, tasks, workers=workers, progress=False)
        timings[workers] = time.perf_counter() - t0
        failed = [o for o in out if not o.ok]
        if failed:
            raise SystemExit(f"{len(failed)} file(s) failed, e.g. {failed[0].key}: {failed[0].error}")
        for n, wall in timings.items():
            fps, aps = len(files) / wall, audio_s / wall
            print(f"  {n} process(es): {wall:6.2f} s  {fps:6.1f} files/s  {aps:6.1f} audio-s/s  -> "
                  f"{args.turns:,} turns: {_hms(args.turns / fps)} per file, "
                  f"{_hms(args.hours * 3600 / aps)} per audio second")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
