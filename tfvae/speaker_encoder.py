"""``python -m tfvae.speaker_encoder``: train, evaluate and export speaker encoders (x-vector, thin ResNet + VLAD).

Examples::

    # pretrain on the synthetic speakers (built on first use, no download)
    python -m tfvae.speaker_encoder train --arch xvector --preset small --dataset tfvae_demo/speakers1k
    # fine-tune on the training actors of a RAVDESS fold, starting from that encoder
    python -m tfvae.speaker_encoder train --arch xvector --dataset ravdess/audio16k --manual_dir ../shared/data/ravdess \\
        --init_from saved_models/xvector_small-speakers1k --fold 0 --folds 6
    # verification EER of an exported encoder on held-out speakers
    python -m tfvae.speaker_encoder evaluate --encoder saved_models/xvector_small-speakers1k --dataset ravdess/audio16k

``train`` writes ``<output_dir>/<run_name>/`` (``history.csv``, TensorBoard logs under ``tb/``,
``best.weights.h5``, ``report.json``; a backup under ``backup/`` while running, resumed by the
same command) and exports the encoder to ``<export_dir>/<run_name>/<version>/``
(:mod:`tfvae.speaker.export`). The epoch with the lowest validation EER is kept; the test split's
speakers (or a fold's test speakers) are only used for the reported EER. VoxCeleb through TFDS:
``--dataset voxceleb --train_split train --val_split validation --test_split test`` (``audio`` and
the ``label`` class label are found automatically).
"""

from __future__ import annotations

# before any import that loads TensorFlow: its C++ start-up logs off when run as a CLI (TFVAE_TF_LOG=1 keeps them)
from tfvae.quiet import quiet_main

quiet_main(__name__)

import argparse
import hashlib
import json
import sys
import time
from pathlib import Path

ARCH_PRESETS = {("xvector", "paper"): "xvector", ("xvector", "small"): "xvector_small",
                ("resnet_vlad", "paper"): "resnet_vlad", ("resnet_vlad", "small"): "resnet_vlad_small"}


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--dataset", default="tfvae_demo/speakers1k",
                   help="TFDS dataset with waveforms and speaker labels (name/config), e.g. ravdess/audio16k, voxceleb")
    p.add_argument("--data_dir", help="TFDS data directory (default: TFDS's)")
    p.add_argument("--manual_dir", help="manual download directory (e.g. ../shared/data/ravdess for RAVDESS)")
    p.add_argument("--audio_key", help="audio feature (default: audio)")
    p.add_argument("--speaker_key", help="speaker label feature (default: speaker, or label as in voxceleb)")
    p.add_argument("--folds", type=int, default=0,
                   help="k > 1: speaker-disjoint k-fold over all splits' speakers (tfvae.folds); use with --fold")
    p.add_argument("--fold", type=int, default=0, help="which fold (its train/validation/test speakers)")
    p.add_argument("--batch_size", type=int, default=64)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--verbose", type=int, default=1, choices=(0, 1, 2))


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m tfvae.speaker_encoder", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__.split("\n\n", 1)[1])
    sub = p.add_subparsers(dest="command", required=True)
    fmt = argparse.ArgumentDefaultsHelpFormatter
    t = sub.add_parser("train", help="train (or fine-tune) a speaker encoder and export it", formatter_class=fmt)
    t.add_argument("--arch", choices=("xvector", "resnet_vlad"), default="xvector")
    t.add_argument("--preset", choices=("small", "paper"), default="small",
                   help="paper: the published sizes (512-d x-vector, thin ResNet-34); small: a quarter of the width")
    t.add_argument("--ghost_clusters", type=int, help="resnet_vlad: 0 = NetVLAD, 2 = GhostVLAD (preset default)")
    t.add_argument("--clusters", type=int, help="resnet_vlad: VLAD clusters (preset default 8)")
    t.add_argument("--embedding_dim", type=int, help="embedding size (preset default)")
    t.add_argument("--head", choices=("softmax", "aam"), default="aam",
                   help="speaker head: softmax, or additive angular margin (cosine classifier)")
    t.add_argument("--margin", type=float, default=0.2, help="AAM margin (radians)")
    t.add_argument("--scale", type=float, default=30.0, help="AAM scale")
    t.add_argument("--min_crop", type=float, default=2.0, help="shortest random training crop (s)")
    t.add_argument("--max_crop", type=float, default=4.0, help="longest random training crop (s)")
    t.add_argument("--balance", type=_bool, default=True, help="subsample speakers above the median count per epoch")
    t.add_argument("--epochs", type=int, default=10)
    t.add_argument("--steps_per_epoch", type=int, default=0, help="0: one pass over the (balanced) training utterances")
    t.add_argument("--learning_rate", type=float, default=1e-3)
    t.add_argument("--train_split", default="train")
    t.add_argument("--val_split", default="validation")
    t.add_argument("--test_split", default="test")
    t.add_argument("--init_from", help="exported encoder (or run dir) whose weights start training (fine-tuning)")
    t.add_argument("--strategy", default="auto", choices=("auto", "default", "mirrored", "multiworker"))
    t.add_argument("--jit_compile", type=_bool, default=False,
                   help="XLA-compile the train step (all of it on one replica, the forward and backward pass with several)")
    t.add_argument("--precision", default="float32", choices=("float32", "mixed_float16", "mixed_bfloat16"))
    t.add_argument("--backup_every", type=int, default=200, help="back up the training state every N steps (0: epochs only)")
    t.add_argument("--output_dir", default="runs")
    t.add_argument("--run_name", help="default: <arch preset>-<dataset>[-fold<k>]")
    t.add_argument("--export_dir", default="saved_models")
    _common(t)
    r = sub.add_parser("report", help="one Markdown table of training runs' report.json and evaluate outputs",
                       formatter_class=fmt)
    r.add_argument("runs", nargs="*", help="run directories of `train` (their report.json)")
    r.add_argument("--evaluations", nargs="*", default=[], help="JSON files written from `evaluate`'s output")
    r.add_argument("--out", help="write the Markdown here as well")
    e = sub.add_parser("evaluate", help="verification EER of an exported encoder on held-out speakers",
                       formatter_class=fmt)
    e.add_argument("--encoder", required=True, help="exported speaker encoder (SavedModel or TF Serving model dir)")
    e.add_argument("--split", default="test", help="split whose speakers are scored (with --folds: the fold's test)")
    _common(e)
    return p


def _bool(s: str) -> bool:
    if s.lower() in ("1", "true", "yes", "on"):
        return True
    if s.lower() in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected true/false, got {s!r}")


def fold_speakers(args, source) -> dict[str, set[str]] | None:
    """Speakers of each part of ``--fold`` of ``--folds`` (:func:`tfvae.folds.speaker_folds`)."""
    if args.folds <= 1:
        return None
    from tfvae.folds import natural_key, speaker_folds

    speakers = sorted(set(source.speakers.tolist()), key=natural_key)  # the order tfvae.experiments folds use
    folds = speaker_folds(speakers, args.folds, seed=args.seed, order=speakers)
    if not 0 <= args.fold < len(folds):
        raise ValueError(f"--fold {args.fold} is outside 0..{len(folds) - 1}")
    f = folds[args.fold]
    return {"train": set(f.train), "validation": set(f.validation), "test": set(f.test)}


def open_parts(args, splits: dict[str, str]) -> tuple[dict, bool]:
    """``{role: (AudioSource, speakers or None)}`` for the roles in ``splits`` ({role: split name}).

    With ``--folds`` every role reads all of the dataset's splits and keeps its fold's speakers.
    """
    from tfvae.speaker.pipeline import open_source

    kw = dict(data_dir=args.data_dir, audio_key=args.audio_key, speaker_key=args.speaker_key,
              manual_dir=args.manual_dir)
    if args.folds > 1:
        src = open_source(args.dataset, "all", **kw)
        parts = fold_speakers(args, src)
        return {role: (src, parts[role]) for role in splits}, True
    opened = {}
    for role, split in splits.items():
        if split not in opened:
            opened[split] = open_source(args.dataset, split, **kw)
    return {role: (opened[split], None) for role, split in splits.items()}, False


def train(args) -> dict:
    import keras
    import tensorflow as tf

    from tfvae.distribute import make_strategy, role as cluster_role
    from tfvae.speaker.export import export_speaker_encoder, load_speaker_encoder
    from tfvae.speaker.pipeline import CropPipeline, utterance_batches
    from tfvae.speaker.presets import preset
    from tfvae.speaker.training import SpeakerClassifier, SpeakerLoop, verification_eer

    name = ARCH_PRESETS[(args.arch, args.preset)]
    config = preset(name, ghost_clusters=args.ghost_clusters, clusters=args.clusters, embedding_dim=args.embedding_dim)
    roles, folded = open_parts(args, {"train": args.train_split, "validation": args.val_split,
                                      "test": args.test_split})
    (train_src, train_keep), (val_src, val_keep), (test_src, test_keep) = (
        roles["train"], roles["validation"], roles["test"])
    pipe = CropPipeline(train_src, args.min_crop, args.max_crop, balance=args.balance, speakers=train_keep)
    run_name = args.run_name or f"{name}-{args.dataset.replace('/', '-')}" + (f"-fold{args.fold}" if folded else "")
    run_dir = Path(args.output_dir) / run_name
    keras.mixed_precision.set_global_policy(args.precision)
    keras.utils.set_random_seed(args.seed)
    strategy = make_strategy(args.strategy)
    with strategy.scope():
        model = SpeakerClassifier(config, len(pipe.speaker_index), head=args.head, margin=args.margin,
                                  scale=args.scale).build_all()
        model.compile(optimizer=keras.optimizers.Adam(args.learning_rate))
    init = None
    if args.init_from:
        init = _initialise(model, args.init_from)
    loop = SpeakerLoop(model, strategy, pipe, utterance_batches(val_src, keep=val_keep), args.batch_size,
                       seed=args.seed, jit_compile=args.jit_compile, role=cluster_role(strategy), verbose=args.verbose)
    if args.steps_per_epoch:
        loop.steps_per_epoch = int(args.steps_per_epoch)
    fingerprint = json.dumps({"config": config.to_dict(), "args": {k: v for k, v in vars(args).items()
                                                                   if k not in ("verbose", "backup_every")}}, sort_keys=True)
    t0 = time.time()
    fit = loop.fit(args.epochs, run_dir, backup_every=args.backup_every,
                   fingerprint=hashlib.sha256(fingerprint.encode()).hexdigest()[:16])
    train_s = time.time() - t0
    infer = tf.function(lambda x: model.encoder(x, training=False), reduce_retracing=True)
    test = verification_eer(infer, utterance_batches(test_src, keep=test_keep), seed=args.seed)
    report = {"run_name": run_name, "preset": name, "arch": args.arch, "head": args.head, "dataset": args.dataset,
              "fold": args.fold if folded else None, "folds": args.folds if folded else None,
              "train_speakers": len(pipe.speaker_index), "train_utterances_per_epoch": pipe.size,
              "replicas": strategy.num_replicas_in_sync, "global_batch": loop.global_batch, "best_epoch": fit.best_epoch, "val_eer": fit.history["val_eer"][fit.best_epoch - 1],
              "test": test, "train_seconds": round(train_s, 1), "seed": args.seed, "init_from": init}
    model.encoder.save_weights(str(run_dir / "encoder.weights.h5"))
    path = export_speaker_encoder(model.encoder, args.export_dir, run_name, {"training": report},
                                  weights_file=run_dir / "encoder.weights.h5")
    load_speaker_encoder(path)  # the export loads back
    report["export"] = str(path)
    (run_dir / "report.json").write_text(json.dumps(report, indent=2))
    print(f"[tfvae] {run_name}: best epoch {fit.best_epoch}, validation EER {100 * report['val_eer']:.2f} %, "
          f"test EER {100 * test['eer']:.2f} % ({test['speakers']} held-out speakers, {test['utterances']} utterances); "
          f"trained {train_s:.0f} s; exported to {path}")
    return report


def _initialise(model, init_from: str) -> dict:
    """Copy encoder weights from an exported encoder's run (``encoder.weights.h5``) or a run directory."""
    from tfvae.speaker.export import SpeakerEncoderError, read_metadata

    p = Path(init_from)
    weights = p / "encoder.weights.h5" if p.is_dir() else p
    meta = None
    if not weights.is_file():
        d, meta = read_metadata(p)
        weights = d / "assets.extra" / "encoder.weights.h5"
    if not weights.is_file():
        raise SpeakerEncoderError(f"--init_from {init_from}: no encoder.weights.h5 found (a run directory of "
                                  "`tfvae.speaker_encoder train`, or an encoder it exported)")
    if meta is not None and meta.get("config") != model.encoder.config.to_dict():
        raise SpeakerEncoderError(f"--init_from {init_from}: that encoder has a different architecture "
                                  f"({meta.get('arch')}, embedding {meta.get('embedding_dim')}); pass the same --arch/--preset")
    model.encoder.load_weights(str(weights))
    return {"path": str(init_from), "weights": str(weights)}


def evaluate(args) -> dict:
    from tfvae.speaker.export import encoder_fingerprint, load_speaker_encoder
    from tfvae.speaker.pipeline import utterance_batches
    from tfvae.speaker.training import verification_eer

    loaded, meta = load_speaker_encoder(args.encoder)
    fn = loaded.signatures["serving_default"]
    roles, folded = open_parts(args, {"test": args.split})
    src, keep = roles["test"]
    out = verification_eer(lambda x: fn(waveform=x["waveform"], lengths=x["lengths"])["embedding"],
                           utterance_batches(src, keep=keep), seed=args.seed)
    out.update({"encoder": str(args.encoder), "fingerprint": encoder_fingerprint(meta), "dataset": args.dataset,
                "split": args.split, "fold": args.fold if folded else None})
    print(json.dumps(out, indent=2))
    return out


def report(args) -> str:
    """Markdown: every run's held-out verification EER and how it was trained; every evaluation."""
    lines = ["# Speaker encoders: verification EER on held-out speakers", "",
             "Cosine scoring of whole utterances; trials drawn with the run's seed (all target pairs, non-target pairs "
             "up to tfvae.metrics' cap). Validation EER selects the epoch; test speakers are never trained on.", "",
             "| run | arch | trained on | fold | train speakers | init | best epoch | val EER % | test EER % | "
             "test speakers / utterances | train s |", "|---|---|---|---|---|---|---|---|---|---|---|"]
    for run in args.runs:
        r = json.loads((Path(run) / "report.json").read_text())
        init = Path(r["init_from"]["path"]).name if r.get("init_from") else "scratch"
        lines.append(f"| {r['run_name']} | {r['arch']} ({r['preset']}, {r['head']}) | {r['dataset']} | "
                     f"{'' if r.get('fold') is None else r['fold']} | {r['train_speakers']} | {init} | {r['best_epoch']} | "
                     f"{100 * r['val_eer']:.2f} | {100 * r['test']['eer']:.2f} | {r['test']['speakers']} / "
                     f"{r['test']['utterances']} | {r['train_seconds']:.0f} |")
    if args.evaluations:
        lines += ["", "## Exported encoders on other corpora (`python -m tfvae.speaker_encoder evaluate`)", "",
                  "| encoder | dataset | split | fold | EER % | minDCF (0.01) | speakers / utterances |", "|---|---|---|---|---|---|---|"]
        for f in args.evaluations:
            e = json.loads(Path(f).read_text())
            lines.append(f"| {Path(e['encoder']).name} ({e['fingerprint']}) | {e['dataset']} | {e['split']} | "
                         f"{'' if e.get('fold') is None else e['fold']} | {100 * e['eer']:.2f} | {e['min_dcf']:.3f} | "
                         f"{e['speakers']} / {e['utterances']} |")
    text = "\n".join(lines) + "\n"
    if args.out:
        Path(args.out).write_text(text)
    print(text)
    return text


def main(argv=None) -> int:
    args = parser().parse_args(argv)
    if args.command == "report":
        report(args)
        return 0
    from tfvae.speaker.export import SpeakerEncoderError
    from tfvae.speaker.pipeline import AudioSourceError

    try:
        if args.command == "train":
            train(args)
        else:
            evaluate(args)
    except (AudioSourceError, SpeakerEncoderError, ValueError, FileNotFoundError) as e:
        print(f"tfvae.speaker_encoder: error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
