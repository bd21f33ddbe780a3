"""Nested hyperparameter tuning: ``python -m tfvae.experiments tune``.

For every outer fold and method, each candidate setting of a declared grid (or a seeded random
sample of it) is trained on the fold's training speakers, its checkpoint and mask cuts are chosen
on the fold's validation speakers, and it is scored on those same validation speakers with the
fast attackers (:data:`tfvae.attackers.FAST_ATTACKERS`). The fold's test speakers are never
passed in: the tuning corpus holds only the training and validation parts. ``table1 --tuned`` then
trains each fold's chosen setting and reports it on that fold's test speakers.

Objective (higher is better), summed over the Table 1 columns of the method, on validation:
utility cells add ``WF1 - chance`` (emotion) or ``0.5 - EER`` (identity); privacy cells subtract
the same quantities of the worst-case validation attacker, counted only above chance.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
from pathlib import Path

import numpy as np

from tfvae.config import ConfigError, TrainConfig
from tfvae.data import Corpus

#: The grid ``tune`` searches when ``--grid`` is not given.
DEFAULT_GRID = "latent_dim=32,64;adv_lambda=0.3,1.0"
_ADV = {"a-vae", "lrvae"}
_LAYERED = {"lrvae", "lrvae-noadv"}
_VAE = {"vae", "a-vae", "lrvae-noadv", "lrvae"}
#: Options that change only some methods (the others ignore them, so they are not searched there).
APPLIES = {"adv_lambda": _ADV, "lambda_schedule": _ADV, "emo_adv_weight": _ADV, "id_adv_weight": _ADV,
           "keep_schedule": _LAYERED, "keep_min": _LAYERED, "keep_max": _LAYERED, "mask_groups": _LAYERED,
           "cut_tolerance": _LAYERED, "latent_dim": _VAE, "kl_weight": _VAE, "vae_weight": _VAE}
#: Options that must not be tuned (they are not hyperparameters of the model).
NOT_TUNABLE = {"dataset", "data_dir", "manual_dir", "feature_set", "method", "protect", "seed", "strategy",
               "output_dir", "export_dir", "run_name", "verbose", "backup_every", "skip_bad_items"}


def parse_grid(text: str) -> dict[str, list]:
    """``"latent_dim=32,64;adv_lambda=0.3,1"`` -> ``{"latent_dim": [32, 64], "adv_lambda": [0.3, 1.0]}``,
    each value converted to the type of the :class:`TrainConfig` field."""
    fields = {f.name: f for f in dataclasses.fields(TrainConfig)}
    grid = {}
    for part in filter(None, (p.strip() for p in text.replace(" ", ";").split(";"))):
        key, sep, values = part.partition("=")
        if not sep or not values:
            raise ConfigError(f"--grid: {part!r} is not of the form option=value1,value2")
        if key not in fields or key in NOT_TUNABLE:
            raise ConfigError(f"--grid: {key!r} is not a tunable option of python -m tfvae.train")
        default = getattr(TrainConfig(), key)
        if isinstance(default, tuple):
            raise ConfigError(f"--grid: {key!r} takes a list of sizes and cannot be searched")
        cast = (lambda v: v.lower() in ("1", "true", "yes")) if isinstance(default, bool) else type(default)
        try:
            grid[key] = [cast(v) for v in values.split(",")]
        except ValueError as e:
            raise ConfigError(f"--grid: bad value for {key}: {e}") from e
    if not grid:
        raise ConfigError("--grid is empty")
    return grid


def candidates(grid: dict[str, list], method: str, search: str = "grid", trials: int = 0, seed: int = 0) -> list[dict]:
    """The settings searched for ``method``: the grid product over the options that apply to it
    (``search="random"``: ``trials`` of them, a seeded sample without replacement)."""
    keys = [k for k in grid if method in APPLIES.get(k, {method})]
    combos = [dict(zip(keys, vals)) for vals in itertools.product(*(grid[k] for k in keys))]
    if search == "random" and trials and trials < len(combos):
        pick = np.random.default_rng(seed).choice(len(combos), size=trials, replace=False)
        combos = [combos[i] for i in sorted(pick)]
    return combos


def validation_corpus(corpus: Corpus) -> Corpus:
    """The fold without its test speakers: ``test`` is the validation split again."""
    sp = corpus.splits
    return dataclasses.replace(corpus, splits={"train": sp["train"], "validation": sp["validation"],
                                               "test": sp["validation"]})


def objective(views: dict, columns: list[tuple[str, str]], chance: float) -> float:
    """Validation objective of one trained model (see the module docstring)."""
    from tfvae.table1 import fold_cells, is_privacy

    score = 0.0
    for view, _ in columns:
        cells = fold_cells(views[view], view, chance)
        for k in ("emo", "id"):
            gain = cells[k]["wf1"] - chance if k == "emo" else 0.5 - cells[k]["eer"]
            score += -gain if is_privacy(view, k) else gain
    return float(score)


def tune_fold(cfg: TrainConfig, corpus: Corpus, strategy, run_root: Path, models, grid: dict,
              search: str = "grid", trials: int = 0) -> dict:
    """Choose each model's setting on one fold's validation speakers; returns per model key the
    chosen options and every candidate's objective."""
    from tfvae.experiments import train_and_evaluate
    from tfvae.table1 import COLUMNS, model_key

    val = validation_corpus(corpus)
    out = {}
    for method, protect in models:
        key = model_key(method, protect)
        if method == "raw":
            continue
        cols = [(v, lab) for m, p, v, lab in COLUMNS if m == method and p == protect]
        cands = candidates(grid, method, search, trials, cfg.seed)
        if cands == [{}]:
            out[key] = {"chosen": {}, "candidates": [], "note": "no option of the grid applies to this method"}
            continue
        scored = []
        for i, params in enumerate(cands):
            mcfg = dataclasses.replace(cfg, **params)
            try:
                mcfg.validate()
            except ConfigError as e:
                raise ConfigError(f"grid setting {params} is invalid for {key}: {e}") from e
            res = train_and_evaluate(mcfg, val, strategy, method, protect, run_root / f"{key}-{i}", tuning=True)
            s = objective(res["views"], cols, res["chance"]["stratified"])
            scored.append({"params": params, "objective": s, "best_epoch": res["best_epoch"], "cuts": res["cuts"]})
        best = max(scored, key=lambda r: r["objective"])  # ties: the first in grid order
        out[key] = {"chosen": best["params"], "candidates": scored}
    return out


def load_tuned(path: str | Path, folds: list, dataset: str, seed: int) -> list[dict]:
    """Per fold, ``{model_key: options}`` from a ``tune`` report; refuses a report made on other
    folds, another dataset or another seed."""
    path = Path(path)
    if not path.exists():
        raise ConfigError(f"--tuned {path}: no such file (run `python -m tfvae.experiments tune` first)")
    doc = json.loads(path.read_text())
    meta = doc.get("meta", {})
    made = [f.get("test_speakers") for f in doc.get("folds", [])]
    want = [sorted(f.test) for f in folds]
    if meta.get("dataset") != dataset or meta.get("seed") != seed or made != want:
        raise ConfigError(f"--tuned {path} was made for dataset {meta.get('dataset')!r}, seed {meta.get('seed')} and "
                          f"{len(made)} fold(s); this run has dataset {dataset!r}, seed {seed} and {len(want)} fold(s) "
                          "with other test speakers: tune again with the same options")
    return [{k: v["chosen"] for k, v in f["models"].items()} for f in doc["folds"]]


def markdown(name: str, doc: dict) -> str:
    lines = [f"# Nested tuning on {name}", "", f"Command: `{doc['meta']['command']}` (seed {doc['meta']['seed']}); "
             f"grid `{doc['meta']['grid']}` ({doc['meta']['search']}); wall time {doc['meta']['wall_seconds']:.0f} s.",
             "", "Each setting was trained on the fold's training speakers and scored on its validation speakers "
             "only (test speakers never seen); objective: utility above chance minus worst-case leakage above "
             "chance, fast attackers (logistic regression, PCA/LDA cosine).", ""]
    for f in doc["folds"]:
        lines += [f"## Fold {f['fold']} (test speakers {', '.join(f['test_speakers'])})", "",
                  "| model | setting | validation objective | chosen |", "|---|---|---|---|"]
        for key, m in f["models"].items():
            for c in m["candidates"]:
                chosen = "yes" if c["params"] == m["chosen"] else ""
                setting = ", ".join(f"{k}={v}" for k, v in c["params"].items())
                lines.append(f"| {key} | {setting} | {c['objective']:.4f} | {chosen} |")
        lines.append("")
    return "\n".join(lines)
