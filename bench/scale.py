"""How tfvae's cost grows with the corpus: train and Table 1 on the MSP-Podcast-shaped stand-in.

    python bench/scale.py [--sizes 10000,50000,150000] [--data_dir DIR] [--work_dir DIR] [--seed 0]

For each size the synthetic stand-in corpus ``msp_standin/is10_<size/1000>k`` (IS10-shaped features
with speaker, emotion and gender structure; ``bench/standin_corpus.py``, ``datasets/msp_standin``) is
built if needed, then two commands run as child processes, exactly as a user runs them:

1. ``python -m tfvae.train --dataset msp_standin/is10_<n>k``
2. ``python -m tfvae.experiments table1 --dataset msp_standin/is10_<n>k --folds 0 --methods dnn,lrvae``

Printed per command and size: wall time, peak RSS of the process (``os.wait4``'s ``ru_maxrss``),
utterances per second of wall time, training examples per second (training rows x epochs x models /
seconds in the train stage), seconds per 1,000 utterances, and the share of the wall time in each
stage (load, train, encode, evaluate, export, report; the commands print them, :mod:`tfvae.stages`).
Then the goals: peak RSS <= 4 GiB at the largest size, time per utterance of the largest size within
1.5x of the smallest's, Table 1 at 150k within 60 minutes. ``--json`` writes every measurement.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tfvae.config import TrainConfig  # noqa: E402  (TensorFlow-free)
from tfvae.stages import parse  # noqa: E402  (TensorFlow-free)

STAGES = ("load", "train", "encode", "evaluate", "export", "report")
GIB = 2 ** 30


def config_name(size: int) -> str:
    return f"msp_standin/is10_{size // 1000}k"


def split_rows(data_dir: Path, name: str) -> dict[str, int]:
    """Rows per split from the built dataset's ``dataset_info.json`` (no TensorFlow needed)."""
    infos = sorted((data_dir / name).glob("*/dataset_info.json"))
    if not infos:
        raise SystemExit(f"{name} is not built in {data_dir}")
    doc = json.loads(infos[-1].read_text())
    return {s["name"]: sum(int(n) for n in s.get("shardLengths", [])) for s in doc["splits"]}


def build(name: str, data_dir: Path) -> float:
    """Build the stand-in config in a child process (so this process stays TensorFlow-free); seconds."""
    code = ("import tensorflow_datasets as tfds, tfvae_datasets\n"
            f"tfds.builder({name!r}, data_dir={str(data_dir)!r}).download_and_prepare()")
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-c", code], check=True, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    return time.perf_counter() - t0


def measure(cmd: list[str], log: Path) -> dict:
    """Run ``cmd``; its wall seconds, peak RSS (bytes), exit status and printed stage seconds."""
    t0 = time.perf_counter()
    with open(log, "w") as fh:
        p = subprocess.Popen(cmd, stdout=fh, stderr=subprocess.STDOUT, cwd=REPO,
                             env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
        _, status, usage = os.wait4(p.pid, 0)
    wall = time.perf_counter() - t0
    text = log.read_text(errors="replace")
    rc = os.waitstatus_to_exitcode(status)
    if rc != 0:
        print(f"command failed ({rc}): {' '.join(cmd)}\n{text[-3000:]}", file=sys.stderr)
    return {"wall_s": wall, "peak_rss_bytes": usage.ru_maxrss * 1024, "rc": rc, "stages": parse(text)}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sizes", default="10000,50000,150000", help="utterances (10000, 50000, 150000 are built-in configs)")
    p.add_argument("--data_dir", default=str(Path.home() / "tensorflow_datasets"))
    p.add_argument("--work_dir", default=None, help="run/report/SavedModel outputs (default: a temporary directory)")
    p.add_argument("--commands", default="train,table1", help="which commands to time")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--epochs", type=int, default=None, help="passed to both commands (default: tfvae's default)")
    p.add_argument("--json", default=None, help="write every measurement here")
    args = p.parse_args()

    sizes = [int(s) for s in args.sizes.split(",")]
    data_dir = Path(args.data_dir).expanduser()
    work = Path(args.work_dir or tempfile.mkdtemp(prefix="tfvae-scale-"))
    work.mkdir(parents=True, exist_ok=True)
    wanted = args.commands.split(",")
    common = ["--data_dir", str(data_dir), "--seed", str(args.seed), "--verbose", "0"]
    if args.epochs:
        common += ["--epochs", str(args.epochs)]
    rows = []
    print(f"{os.cpu_count()} CPU cores; outputs in {work}")
    for size in sizes:
        name = config_name(size)
        built = build(name, data_dir)
        counts = split_rows(data_dir, name)
        n = sum(counts.values())
        print(f"{name}: {n} utterances {counts} (ready in {built:.0f} s)", flush=True)
        cmds = {
            "train": (["-m", "tfvae.train", "--dataset", name, "--output_dir", str(work / "runs"),
                       "--export_dir", str(work / "saved_models"), "--run_name", f"scale-{size}"], 1),
            "table1": (["-m", "tfvae.experiments", "table1", "--dataset", name, "--folds", "0", "--methods", "dnn,lrvae",
                        "--output_dir", str(work / "runs"), "--reports_dir", str(work / f"reports-{size}")], 2),
        }
        for cmd_name in wanted:
            argv, models = cmds[cmd_name]
            r = measure([sys.executable, *argv, *common], work / f"{cmd_name}-{size}.log")
            epochs = args.epochs or TrainConfig().epochs
            train_s = r["stages"].get("train", float("nan"))
            r.update(command=cmd_name, size=n, train_rows=counts.get("train", 0),
                     examples_per_s=counts.get("train", 0) * epochs * models / train_s if train_s else float("nan"),
                     argv=" ".join(["python", *argv, *common]))
            rows.append(r)
            shares = ", ".join(f"{k} {100 * r['stages'].get(k, 0) / r['wall_s']:.0f}%" for k in STAGES
                               if k in r["stages"])
            print(f"  {cmd_name}: {r['wall_s']:.0f} s, peak RSS {r['peak_rss_bytes'] / GIB:.2f} GiB, "
                  f"{n / r['wall_s']:.0f} utterances/s, training {r['examples_per_s']:.0f} examples/s; {shares}"
                  + ("" if r["rc"] == 0 else f"  (FAILED, exit {r['rc']})"), flush=True)

    print("\n| command | utterances | wall (s) | s / 1k utterances | peak RSS (GiB) | training examples/s | "
          + " | ".join(STAGES) + " |")
    print("|---|---|---|---|---|---|" + "---|" * len(STAGES))
    for r in rows:
        st = " | ".join(f"{100 * r['stages'][k] / r['wall_s']:.0f} %" if k in r["stages"] else "" for k in STAGES)
        print(f"| {r['command']} | {r['size']:,} | {r['wall_s']:.0f} | {1000 * r['wall_s'] / r['size']:.2f} | "
              f"{r['peak_rss_bytes'] / GIB:.2f} | {r['examples_per_s']:,.0f} | {st} |")
    print()
    ok = True
    for cmd_name in wanted:
        mine = sorted((r for r in rows if r["command"] == cmd_name), key=lambda r: r["size"])
        if not mine:
            continue
        big = mine[-1]
        rss_ok = big["peak_rss_bytes"] <= 4 * GIB and big["rc"] == 0
        ok &= rss_ok
        print(f"goal {cmd_name}: peak RSS at {big['size']:,} utterances <= 4 GiB: {big['peak_rss_bytes'] / GIB:.2f} GiB "
              f"({'met' if rss_ok else 'NOT met'})")
        if len(mine) > 1:
            ratio = (big["wall_s"] / big["size"]) / (mine[0]["wall_s"] / mine[0]["size"])
            ok &= ratio <= 1.5
            print(f"goal {cmd_name}: time per utterance {big['size']:,} / {mine[0]['size']:,} <= 1.5: {ratio:.2f} "
                  f"({'met' if ratio <= 1.5 else 'NOT met'})")
        if cmd_name == "table1" and big["size"] >= 150_000:
            ok &= big["wall_s"] <= 3600
            print(f"goal table1 at {big['size']:,} utterances <= 60 min: {big['wall_s'] / 60:.1f} min "
                  f"({'met' if big['wall_s'] <= 3600 else 'NOT met'})")
    if args.json:
        Path(args.json).write_text(json.dumps({"seed": args.seed, "cpu_count": os.cpu_count(), "rows": rows}, indent=2))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
