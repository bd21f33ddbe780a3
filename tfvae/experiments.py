"""``python -m tfvae.experiments tune|table1|masking``: nested tuning, the paper's Table 1 and Figure 2.

Privacy protocol (paper section 3.1): the attacker holds the encoded *training* set and its
labels and attacks unseen test speakers (:mod:`tfvae.evaluate`). Table 1 has a ``Raw features``
column (the standardised input through the same downstream models, folds and trials); utility
cells use the downstream model chosen on validation speakers, privacy cells the worst case over
the attacker suite (:mod:`tfvae.attackers`), every cell a speaker-level bootstrap interval
(:mod:`tfvae.table1`).

Small corpora use speaker-disjoint k-fold cross-validation (:mod:`tfvae.folds`; RAVDESS: 6
folds of 4 actors, 4 validation actors inside each training part). Checkpoints, mask cuts,
downstream models and (with ``tune`` then ``table1 --tuned``) hyperparameters are chosen on each
fold's validation speakers only. Larger corpora use their own splits (``--folds 0``).
"""

from __future__ import annotations

# before any import that loads TensorFlow: its C++ start-up logs off when run as a CLI (TFVAE_TF_LOG=1 keeps them)
from tfvae.quiet import quiet_main

quiet_main(__name__)

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path

import numpy as np

from tfvae.config import ConfigError, TrainConfig
from tfvae.data import Corpus, DataError, Split, concat_splits
from tfvae.features import FeatureError, check_trainable, encoder_name, is_encoder
from tfvae.stages import CLOCK
from tfvae.stream import materialize
from tfvae.table1 import model_key

#: Models Table 1 trains (``raw`` needs no training).
MODELS = [("raw", None), ("dnn", None), ("vae", None), ("a-vae", "identity"), ("a-vae", "emotion"),
          ("lrvae-noadv", None), ("lrvae", None)]
PROTECT_NAMES = {"identity": "PP-SER", "emotion": "PP-SV"}
METHOD_NAMES = ("raw", "dnn", "vae", "a-vae", "lrvae-noadv", "lrvae")


# ----------------------------------------------------------------------------------- folds
def pooled(corpus: Corpus) -> Split:
    """All splits of ``corpus`` in one (streamed features stay streamed; extra labels kept)."""
    return concat_splits([corpus.splits[s] for s in ("train", "validation", "test")])


def fold_corpus(corpus: Corpus, pool: Split, fold) -> Corpus:
    """A corpus whose train/validation/test splits are the fold's speaker groups."""
    splits = {name: pool.select(np.isin(pool.speaker, np.asarray(speakers)))
              for name, speakers in (("train", fold.train), ("validation", fold.validation), ("test", fold.test))}
    return dataclasses.replace(corpus, name=f"{corpus.name}#fold{fold.index}", splits=splits)


def make_folds(corpus: Corpus, k: int, n_validation: int | None, seed: int):
    """Speaker-disjoint folds over all speakers of ``corpus``; :class:`DataError` (before any
    training) when the speakers cannot fill every part of every fold."""
    from tfvae.folds import natural_key, speaker_folds

    pool = pooled(corpus)
    speakers = sorted(set(pool.speaker.tolist()), key=natural_key)
    try:
        return pool, speaker_folds(speakers, k, n_validation, seed=seed, order=speakers)
    except ValueError as e:
        raise DataError(f"dataset {corpus.name}: {e}") from e


def loads_speed(cfg: TrainConfig, grid: dict | None = None) -> bool:
    """Whether the experiment opens the dataset's speed-perturbed config (:func:`tfvae.speed.loads_copies`) for
    ``--speed_perturb`` or any value of it a tuning grid tries (each setting then trains with or without the
    copies)."""
    from tfvae.speed import loads_copies

    modes = {cfg.speed_perturb, *(grid or {}).get("speed_perturb", ())}
    return any(loads_copies(m, cfg.dataset, cfg.feature_set) for m in modes)


def raw_corpus(corpus: Corpus, seed: int) -> Corpus:
    """The corpus the raw-feature anchor is evaluated on: ``corpus`` itself when its features are in
    memory; else its training split reduced to the attackers' stratified subsample
    (:func:`tfvae.attackers.stratified_rows`: at most :data:`~tfvae.attackers.MAX_FIT_ROWS` rows,
    every training speaker and emotion kept), the only training rows an attacker is fit on anyway."""
    from tfvae.attackers import MAX_FIT_ROWS, stratified_rows
    from tfvae.stream import is_streamed

    tr = corpus.splits["train"]
    if not is_streamed(tr.features):
        return corpus
    idx = stratified_rows(tr.emotion, MAX_FIT_ROWS, seed, groups=tr.speaker)
    return dataclasses.replace(corpus, splits={**corpus.splits, "train": tr.select(idx)})


# ----------------------------------------------------------------------------------- one model
def train_and_evaluate(cfg: TrainConfig, corpus: Corpus, strategy, method: str, protect: str | None,
                       run_dir: Path, tuning: bool = False, keep_outputs: bool = False,
                       evaluate: bool = True, tune_attackers: str = "fast") -> dict:
    """Train one model (checkpoint and cuts chosen on validation) and evaluate every view of it on
    the corpus' test split; ``raw`` evaluates the standardised input features instead. ``tuning``:
    no bootstrap and the attackers of ``tune_attackers`` (the inner objective of nested tuning)."""
    from tfvae.evaluate import BOOTSTRAP, EvalSplits, attacker_suite, evaluate_model, evaluate_view

    from tfvae.train import extra_labels

    CLOCK.lap("load")  # reading the corpus and making folds, before the first model
    fast = (tuning and tune_attackers == "fast") or cfg.eval_attackers == "fast"
    data = raw_corpus(corpus, cfg.seed) if method == "raw" else corpus
    # the same test split either way; the class tasks of the attributes (emotion and, e.g., gender)
    ev = EvalSplits(data, seed=cfg.seed, bootstrap=0 if tuning else BOOTSTRAP, tasks=extra_labels(cfg))
    res = {"chance": ev.chance, "chances": ev.chances, "best_epoch": None, "cuts": {}, "method": method,
           "protect": protect}
    if method == "raw":
        z = {k: materialize(data.splits[k].features) for k in ("train", "validation", "test")}
        res["views"] = {"origin": evaluate_view(z, ev, tasks=ev.tasks, seed=cfg.seed, **attacker_suite(fast))}
        CLOCK.lap("evaluate")
        return res
    import keras

    from tfvae.train import choose_erasers, choose_masks, encode_splits, encoded_keys, fit_model

    keras.backend.clear_session()  # one process trains dozens of models: drop the previous ones' graphs
    mcfg = dataclasses.replace(cfg, method=method, protect=protect or "both", verbose=0)
    model, _, best_epoch = fit_model(mcfg, corpus, strategy, protect, run_dir, announce=False)
    CLOCK.lap("train")
    outputs = encode_splits(model, corpus, keys=encoded_keys(model), spill_dir=run_dir / "encoded",
                            memory_mb=cfg.encoded_memory_mb)
    CLOCK.lap("encode")
    cuts, masks = choose_masks(mcfg, model, outputs, corpus, protect)
    erasers = choose_erasers(outputs, corpus, masks, seed=cfg.seed, attributes=model.attributes)
    views = evaluate_model(model, outputs, ev, masks, seed=cfg.seed, fast=fast, erasers=erasers, tasks=ev.tasks) \
        if evaluate else {}
    if method == "dnn" and views:  # the paper's DNN baseline reports its own classifiers
        views["origin"] = views["model_heads"]
    CLOCK.lap("evaluate")
    chosen = {k: v for k, v in cuts.items() if k.endswith("_cut")}
    if isinstance(cuts.get("views"), dict):  # views over any attributes (tfvae.masking.choose_views)
        chosen["views"] = {k: {f: v[f] for f in ("kept", "positions", "nodes") if f in v} for k, v in cuts["views"].items()}
    res.update(best_epoch=best_epoch, cuts=chosen, views=views, masks=masks)
    if keep_outputs:
        res["outputs"] = outputs
    return res


def run_fold(cfg: TrainConfig, corpus: Corpus, strategy, run_root: Path, models=MODELS,
             tuned: dict | None = None, keep_outputs: bool = False, evaluate: bool = True) -> dict:
    """Train every model of Table 1 on one fold (with the fold's tuned options) and evaluate it
    (``evaluate=False``: train and encode only, for Figure 2)."""
    out = {}
    for method, protect in models:
        key = model_key(method, protect)
        params = (tuned or {}).get(key, {})
        out[key] = {**train_and_evaluate(dataclasses.replace(cfg, **params), corpus, strategy, method, protect,
                                         run_root / key, keep_outputs=keep_outputs, evaluate=evaluate),
                    "params": params}
    return out


# ----------------------------------------------------------------------------------- CLI
def parser() -> argparse.ArgumentParser:
    from tfvae.tuning import DEFAULT_GRID

    base = TrainConfig.parser(prog="python -m tfvae.experiments", add_help=False)
    p = argparse.ArgumentParser(prog="python -m tfvae.experiments", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="experiment", required=True)
    for name, help_ in (("tune", "nested tuning: choose settings per fold on its validation speakers"),
                        ("table1", "paper Table 1: raw features and all five methods, origin / PP-SER / PP-SV"),
                        ("masking", "paper Figure 2: masking curves of LR-VAE vs A-VAE")):
        sp = sub.add_parser(name, help=help_, parents=[base], formatter_class=argparse.ArgumentDefaultsHelpFormatter)
        sp.add_argument("--folds", type=int, default=None,
                        help="speaker-disjoint folds (default: 6 for ravdess, else 0 = the dataset's own splits)")
        sp.add_argument("--validation_speakers", type=int, default=None,
                        help="validation speakers inside each fold's training part (default: one fold's worth)")
        sp.add_argument("--reports_dir", default="reports", help="reports go to <reports_dir>/<dataset>/")
        sp.add_argument("--report_tag", default=None,
                        help="suffix of the report files (table1-<tag>.json ...); default: none for IS10, else the "
                             "feature set's short name (egemapsv02, xvector, resnet_vlad, embeddings)")
        sp.add_argument("--methods", default=None,
                        help="comma-separated subset of raw,dnn,vae,a-vae,lrvae-noadv,lrvae (default all)")
        sp.add_argument("--tuned", default=None,
                        help="table1/masking: a tuning.json written by `tune` with the same dataset, folds and seed; "
                             "each fold then trains the settings chosen on its validation speakers")
        sp.add_argument("--curve_attackers", default="logreg,lda_cosine",
                        help="masking only: emotion attacker,speaker attacker refit at every masking step")
        sp.add_argument("--grid", default=DEFAULT_GRID,
                        help="tune only: option=v1,v2;option=v1,v2 (options of python -m tfvae.train)")
        sp.add_argument("--search", choices=("grid", "random"), default="grid",
                        help="tune only: the whole grid, or --trials settings drawn from it with --seed")
        sp.add_argument("--trials", type=int, default=8, help="tune only: settings drawn by --search random")
        sp.add_argument("--tune_attackers", choices=("fast", "full"), default="fast",
                        help="tune only: attackers of the inner objective on validation speakers: the fast ones "
                             "(logistic regression, PCA/LDA + cosine) or the whole suite (its worst case)")
    return p


EXTRA = ("experiment", "folds", "validation_speakers", "reports_dir", "methods", "tuned", "curve_attackers", "grid",
         "search", "trials", "report_tag", "tune_attackers")


def report_suffix(feature_set: str, tag: str | None = None) -> str:
    """File-name suffix of a run's reports: ``""`` for IS10 (the paper's first row), else the feature set's
    short name (the architecture of an ``<arch>@<encoder>`` set)."""
    if tag is not None:
        return tag
    if feature_set == "IS10":
        return ""
    return encoder_name(feature_set)[0].lower() if is_encoder(feature_set) else feature_set.lower()


def main(argv=None) -> int:
    ns = parser().parse_args(argv)
    extra = {k: getattr(ns, k) for k in EXTRA}
    t0 = time.time()
    try:
        cfg = TrainConfig.from_dict({k: v for k, v in vars(ns).items() if k not in extra})
        cfg.validate()
        check_trainable(cfg.feature_set)
        report = run(cfg, **extra, argv=argv if argv is not None else sys.argv[1:])
    except (ConfigError, DataError, FeatureError) as e:
        print(f"tfvae.experiments: error: {e}", file=sys.stderr)
        return 2
    CLOCK.lap("report")
    print(CLOCK.line())
    print(f"[tfvae] {extra['experiment']} done in {time.time() - t0:.0f} s; reports in {report}")
    return 0


def _models(experiment: str, methods: str | None):
    # Figure 2 refits its own downstream models on the raw features (tfvae.figure2)
    models = MODELS if experiment in ("table1", "tune") else [("lrvae", None), ("a-vae", "identity"),
                                                               ("a-vae", "emotion")]
    if methods:
        wanted = [m.strip() for m in methods.split(",") if m.strip()]
        unknown = set(wanted) - set(METHOD_NAMES)
        if unknown:
            raise ConfigError(f"--methods: unknown method(s) {sorted(unknown)}; choose from {', '.join(METHOD_NAMES)}")
        models = [(m, p) for m, p in models if m in wanted]
    return models


def run(cfg: TrainConfig, experiment: str, folds: int | None, validation_speakers: int | None, reports_dir: str,
        argv, methods: str | None = None, tuned: str | None = None, curve_attackers: str = "logreg,lda_cosine",
        grid: str | None = None, search: str = "grid", trials: int = 8, report_tag: str | None = None,
        tune_attackers: str = "fast") -> Path:
    import os

    from tqdm.auto import tqdm

    from tfvae.data import load_corpus, validate_corpus
    from tfvae.distribute import make_strategy
    from tfvae.evaluate import subsampling
    from tfvae.features import default_workers, expected_dim
    from tfvae.train import extra_labels
    from tfvae.tuning import load_tuned, parse_grid

    t0 = time.time()
    if cfg.strategy == "multiworker":
        raise ConfigError("--strategy multiworker: the experiments run on one machine; use default or mirrored")
    models = _models(experiment, methods)
    grid_d = parse_grid(grid) if experiment == "tune" else None
    per_fold = "{fold}" in cfg.feature_set  # e.g. a speaker encoder fine-tuned on each fold's training speakers

    def load(fold: int = 0):
        fs = cfg.feature_set.format(fold=fold) if per_fold else cfg.feature_set
        c = load_corpus(cfg.dataset, fs, data_dir=cfg.data_dir, manual_dir=cfg.manual_dir,
                        skip_bad_items=cfg.skip_bad_items, in_memory_mb=cfg.in_memory_mb,
                        label_columns=cfg.label_column_list(), speed_perturb=loads_speed(cfg, grid_d))
        validate_corpus(c, expected_dim=expected_dim(fs), attributes=extra_labels(cfg))
        return c

    corpus = load()
    ds_name = corpus.name.split("/")[0] if not cfg.dataset.endswith(".csv") else Path(cfg.dataset).stem
    if folds is None:
        folds = 6 if ds_name == "ravdess" else 0
    if per_fold and not folds:
        raise ConfigError(f"--feature_set {cfg.feature_set}: a feature set per fold needs --folds")
    fold_list = []
    if folds:
        pool, fold_list = make_folds(corpus, folds, validation_speakers, cfg.seed)
        corpora = [fold_corpus(corpus, pool, f) for f in fold_list[:1]]
        for f in fold_list[1:]:
            c = load(f.index) if per_fold else corpus
            c_pool, c_folds = make_folds(c, folds, validation_speakers, cfg.seed) if per_fold else (pool, fold_list)
            if c_folds[f.index] != f:
                raise DataError(f"{cfg.feature_set.format(fold=f.index)}: its speakers give other folds than fold 0's")
            corpora.append(fold_corpus(c, c_pool, f))
        protocol = f"{folds}-fold speaker-disjoint cross-validation, validation speakers inside each training part"
    else:
        corpora = [corpus]
        protocol = "the dataset's own speaker-disjoint train/validation/test splits"
    for c in corpora:
        validate_corpus(c, attributes=extra_labels(cfg))
    test_speakers = [sorted(set(c.splits["test"].speaker.tolist())) for c in corpora]
    tuned_per_fold = [{}] * len(corpora)
    if tuned:
        tuned_per_fold = load_tuned(tuned, [argparse.Namespace(test=t) for t in test_speakers], corpus.name, cfg.seed)
    strategy = make_strategy(cfg.strategy)
    out_dir = Path(reports_dir) / ds_name
    out_dir.mkdir(parents=True, exist_ok=True)
    tag = report_suffix(cfg.feature_set, report_tag)
    attrs = cfg.attribute_list()
    paper = [a.name for a in attrs] == ["emotion", "identity"]
    if not paper and experiment != "table1":
        raise ConfigError(f"{experiment} supports the paper's attributes (emotion,identity); table1 takes any")
    if not paper and report_tag is None:  # the paper's table keeps its file names
        tag = "_".join(a.name for a in attrs) + (f"-{tag}" if tag else "")
    out = _Reports(out_dir, tag)
    run_root = Path(cfg.output_dir) / "experiments" / ds_name
    meta = {"command": "python -m tfvae.experiments " + " ".join(argv), "seed": cfg.seed, "protocol": protocol,
            "cores": default_workers(), "dataset": corpus.name, "feature_set": cfg.feature_set,
            "config": dataclasses.asdict(cfg), "host_cpu_count": os.cpu_count(),
            "settings": f"nested tuning ({tuned})" if tuned else "the command's options (not tuned)",
            "tuned_file": tuned, "tuning": tuned_per_fold if tuned else None,
            "subsampling": subsampling(corpora[0])}
    if experiment == "tune":
        return _tune(cfg, corpora, test_speakers, strategy, run_root, models, grid_d, grid, search, trials, meta,
                     out, ds_name, t0, tune_attackers)
    results = [run_fold(cfg, c, strategy, run_root / f"fold{i}", models=models, tuned=tuned_per_fold[i],
                        keep_outputs=experiment == "masking", evaluate=experiment == "table1")
               for i, c in enumerate(tqdm(corpora, desc=f"{experiment} folds", unit="fold"))]
    chance = [r[next(iter(r))]["chance"] for r in results]
    if experiment == "table1" and not paper:
        return _write_attribute_table(results, meta, out, ds_name, t0, attrs)
    if experiment == "table1":
        return _write_table1(results, chance, meta, out, ds_name, t0)
    return _write_masking(results, corpora, cfg, curve_attackers, meta, protocol, out, ds_name, t0)


class _Reports:
    """``<reports_dir>/<dataset>/<stem>[-<tag>].<ext>``: one set of report files per feature set."""

    def __init__(self, out_dir: Path, tag: str):
        self.dir, self.tag = out_dir, tag

    def __truediv__(self, name: str) -> Path:
        stem, ext = name.rsplit(".", 1)
        return self.dir / (f"{stem}-{self.tag}.{ext}" if self.tag else name)


def _tune(cfg, corpora, test_speakers, strategy, run_root, models, grid_d, grid, search, trials, meta, out_dir,
          ds_name, t0, attackers: str = "fast") -> Path:  # out_dir: a _Reports
    from tqdm.auto import tqdm

    from tfvae.tuning import markdown, tune_fold

    folds = []
    for i, c in enumerate(tqdm(corpora, desc="tune folds", unit="fold")):
        chosen = tune_fold(cfg, c, strategy, run_root / f"tune-fold{i}", models, grid_d, search, trials,
                           attackers=attackers)
        folds.append({"fold": i, "test_speakers": test_speakers[i], "models": chosen})
    meta.update(grid=grid, search=search, trials=trials if search == "random" else None, tune_attackers=attackers,
                wall_seconds=time.time() - t0, settings="tuning run", tuning=None)
    doc = {"meta": meta, "folds": folds}
    (out_dir / "tuning.json").write_text(json.dumps(doc, indent=2, default=float))
    (out_dir / "tuning.md").write_text(markdown(ds_name, doc))
    print((out_dir / "tuning.md").read_text())
    return out_dir.dir


def _write_table1(results, chance, meta, out_dir, ds_name, t0) -> Path:
    from tfvae.evaluate import public
    from tfvae.table1 import goals, markdown, paired_tests, table1

    cols = table1(results, chance)
    tests = paired_tests(cols)
    goal_rows = goals(cols, chance)
    meta["wall_seconds"] = time.time() - t0
    detail = [{k: public({"params": v["params"], "best_epoch": v["best_epoch"], "cuts": v["cuts"],
                          "views": v["views"]}) for k, v in r.items()} for r in results]
    doc = {"meta": meta, "columns": public(cols), "paired_tests": tests, "goals": goal_rows, "chance": chance,
           "folds": detail}
    (out_dir / "table1.json").write_text(json.dumps(doc, indent=2, default=float))
    (out_dir / "table1.md").write_text(markdown(ds_name, cols, tests, goal_rows, meta, chance))
    print((out_dir / "table1.md").read_text())
    return out_dir.dir


def _write_attribute_table(results, meta, out_dir, ds_name, t0, attrs) -> Path:
    from tfvae.attribute_table import attribute_table, markdown
    from tfvae.evaluate import public

    chances = [r[next(iter(r))]["chances"] for r in results]
    cols = attribute_table(results, chances, attrs)
    meta["wall_seconds"] = time.time() - t0
    meta["attributes"] = [a.name for a in attrs]
    detail = [{k: public({"params": v["params"], "best_epoch": v["best_epoch"], "cuts": v["cuts"],
                          "views": v["views"]}) for k, v in r.items()} for r in results]
    doc = {"meta": meta, "columns": public(cols), "fairness": {k: c["fairness"] for k, c in cols.items()},
           "chance": chances, "folds": detail}
    (out_dir / "table1.json").write_text(json.dumps(doc, indent=2, default=float))
    (out_dir / "table1.md").write_text(markdown(ds_name, cols, attrs, meta, chances))
    print((out_dir / "table1.md").read_text())
    return out_dir.dir


def _write_masking(results, corpora, cfg, curve_attackers, meta, protocol, out_dir, ds_name, t0) -> Path:
    import csv

    from tfvae.figure2 import masking_curves, plot_masking, plot_tradeoff, table_tradeoff_points

    emo_att, spk_att = (a.strip() for a in curve_attackers.split(","))
    rows = masking_curves(results, corpora, cfg.mask_groups, cfg.seed, emo_att, spk_att)
    table_file = out_dir / "table1.json"  # Table 1's worst-case points join the trade-off plot when present
    table_doc = json.loads(table_file.read_text()) if table_file.exists() else {}
    chance = float(np.mean([r["chance_wf1"] for r in rows]))
    dom = plot_tradeoff(rows, out_dir / "tradeoff.png",
                        f"{ds_name}: privacy-utility trade-off (seed {cfg.seed}; curves: masking sweep, "
                        f"{emo_att} / {spk_att})", table_tradeoff_points(table_doc, chance))
    meta["lrvae_covers_avae"] = {PROTECT_NAMES[k]: v for k, v in dom.items()}
    meta["tradeoff_goal"] = {"goal": "LR-VAE's trade-off curve on or above A-VAE's for both views (every A-VAE "
                                     "point matched within 1 point)", "met": bool(all(v >= 1.0 for v in dom.values()))}
    meta["wall_seconds"] = time.time() - t0
    with open(out_dir / "masking.csv", "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    (out_dir / "masking.json").write_text(json.dumps({"meta": meta}, indent=2, default=float))
    plot_masking(rows, out_dir / "masking.png",
                 f"{ds_name}: masking {cfg.mask_groups} groups ({protocol.split(',')[0]}, seed {cfg.seed}; "
                 f"downstream {emo_att} / {spk_att})")
    return out_dir.dir


if __name__ == "__main__":
    sys.exit(main())
