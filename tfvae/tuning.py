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
from tfvae.erasure import SUFFIX

#: The grid ``tune`` searches when ``--grid`` is not given.
DEFAULT_GRID = "latent_dim=32,64;adv_lambda=0.3,1.0"
_ADV = {"a-vae", "lrvae"}
_LAYERED = {"lrvae", "lrvae-noadv"}
_VAE = {"vae", "a-vae", "lrvae-noadv", "lrvae"}
#: Options that change only some methods (the others ignore them, so they are not searched there).
APPLIES = {
    **dict.fromkeys(("adv_lambda", "disc_lr_scale", "disc_steps", "identity_adversary", "lambda_schedule",
                     "emo_adv_weight", "id_adv_weight", "guard_weight"), _ADV),
    **dict.fromkeys(("keep_schedule", "keep_min", "keep_max", "mask_groups", "cut_tolerance", "cut_attackers",
                     "kl_identity_weight", "linear_band", "hsic_weight", "hsic_kernel", "club_weight", "swap_weight"),
                    _LAYERED),
    **dict.fromkeys(("latent_dim", "kl_weight", "vae_weight", "decoder_variance", "kl_warmup", "free_bits",
                     "encoder_skip", "encoder_units", "decoder_units", "lda_target", "lda_attributes",
                     "lda_readout"), _VAE),
    "speaker_head": {"dnn", "vae", "a-vae", "lrvae-noadv", "lrvae"}}
#: Options that must not be tuned (they are not hyperparameters of the model).
NOT_TUNABLE = {"dataset", "data_dir", "manual_dir", "feature_set", "method", "protect", "seed", "strategy",
               "output_dir", "export_dir", "run_name", "verbose", "backup_every", "skip_bad_items"}


def parse_grid(text: str) -> dict[str, list]:
    """``"latent_dim=32,64;adv_lambda=0.3,1"`` -> ``{"latent_dim": [32, 64], "adv_lambda": [0.3, 1.0]}``,
    each value converted to the type of the :class:`TrainConfig` field; a list of sizes is written
    with ``x`` (``encoder_units=512x256,1024``)."""
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
            cast = _sizes
        elif isinstance(default, bool):
            cast = _flag
        else:
            cast = type(default)
        try:
            grid[key] = [cast(v) for v in values.split(",")]
        except ValueError as e:
            raise ConfigError(f"--grid: bad value for {key}: {e}") from e
    if not grid:
        raise ConfigError("--grid is empty")
    return grid


def _flag(text: str) -> bool:
    if text.lower() not in ("1", "true", "yes", "0", "false", "no"):
        raise ValueError(f"{text!r} is not true or false")
    return text.lower() in ("1", "true", "yes")


def _sizes(text: str) -> tuple[int, ...]:
    sizes = tuple(int(u) for u in text.split("x"))
    if any(u < 1 for u in sizes):
        raise ValueError(f"{text!r}: sizes must be positive")
    return sizes


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


def _cells(views: dict, columns: list[tuple[str, str]], chance: float) -> dict:
    """Validation WF1 / EER of each column (utility: chosen downstream model; privacy: worst case)."""
    from tfvae.table1 import fold_cells

    out = {}
    for view, _ in columns:
        cells = fold_cells(views[view], view, chance)
        out[view] = {"emo_wf1": cells["emo"]["wf1"], "id_eer": cells["id"]["eer"]}
    return out


def summary(doc: dict) -> list[dict]:
    """Per model and setting, over folds: mean validation objective, mean validation cells, and how
    many folds chose it (the rows of the tuning report's summary table)."""
    rows: dict = {}
    for f in doc["folds"]:
        for key, m in f["models"].items():
            for c in m["candidates"]:
                setting = ", ".join(f"{k}={v}" for k, v in c["params"].items()) or "defaults"
                r = rows.setdefault((key, setting), {"model": key, "setting": setting, "objective": [], "chosen": 0,
                                                     "cells": []})
                r["objective"].append(c["objective"])
                r["chosen"] += int(c["params"] == m["chosen"])
                r["cells"].append(c.get("validation_cells", {}))
    out = []
    for r in rows.values():
        views = sorted({v for c in r["cells"] for v in c})
        cells = {v: {k: float(np.mean([c[v][k] for c in r["cells"] if v in c])) for k in ("emo_wf1", "id_eer")}
                 for v in views}
        out.append({"model": r["model"], "setting": r["setting"], "folds": len(r["objective"]),
                    "objective_mean": float(np.mean(r["objective"])), "objective_std": float(np.std(r["objective"])),
                    "chosen": r["chosen"], "cells": cells})
    return out


def tune_fold(cfg: TrainConfig, corpus: Corpus, strategy, run_root: Path, models, grid: dict,
              search: str = "grid", trials: int = 0, attackers: str = "fast") -> dict:
    """Choose each model's setting on one fold's validation speakers (scored with the ``fast`` attackers
    or the ``full`` suite's worst case); returns per model key the chosen options and every candidate's
    objective."""
    from tfvae.experiments import train_and_evaluate
    from tfvae.table1 import COLUMNS, model_key

    val = validation_corpus(corpus)
    out = {}
    for method, protect in models:
        key = model_key(method, protect)
        # the objective scores the model's own views; post-hoc erasure rows (tfvae.erasure) are reports only
        cols = [(v, lab) for m, p, v, lab in COLUMNS if m == method and p == protect and not v.endswith(SUFFIX)]
        cands = candidates(grid, method, search, trials, cfg.seed)
        if method == "raw":  # nothing to choose: the anchor's validation cells, for reference
            res = train_and_evaluate(cfg, val, strategy, method, protect, run_root / key, tuning=True,
                                     tune_attackers=attackers)
            ref = {"params": {}, "objective": objective(res["views"], cols, res["chance"]["stratified"]),
                   "best_epoch": None, "cuts": {},
                   "validation_cells": _cells(res["views"], cols, res["chance"]["stratified"])}
            out[key] = {"chosen": {}, "candidates": [ref], "note": "reference: raw features, nothing tuned"}
            continue
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
            res = train_and_evaluate(mcfg, val, strategy, method, protect, run_root / f"{key}-{i}", tuning=True,
                                     tune_attackers=attackers)
            s = objective(res["views"], cols, res["chance"]["stratified"])
            scored.append({"params": params, "objective": s, "best_epoch": res["best_epoch"], "cuts": res["cuts"],
                           "validation_cells": _cells(res["views"], cols, res["chance"]["stratified"])})
        best = max(scored, key=lambda r: r["objective"])  # ties: the first in grid order
        out[key] = {"chosen": best["params"], "candidates": scored}
    return out


def load_tuned(path: str | Path, folds: list, dataset: str, seed: int) -> list[dict]:
    """Per fold, ``{model_key: options}`` from a ``tune`` report; refuses a report made on other
    folds, another corpus or another seed. Settings tuned on another feature set of the same corpus and folds
    are accepted (they were still chosen on each fold's validation speakers)."""
    path = Path(path)
    if not path.exists():
        raise ConfigError(f"--tuned {path}: no such file (run `python -m tfvae.experiments tune` first)")
    doc = json.loads(path.read_text())
    meta = doc.get("meta", {})
    made = [f.get("test_speakers") for f in doc.get("folds", [])]
    want = [sorted(f.test) for f in folds]
    corpus = str(meta.get("dataset")).split("/")[0]
    if corpus != dataset.split("/")[0] or meta.get("seed") != seed or made != want:
        raise ConfigError(f"--tuned {path} was made for dataset {meta.get('dataset')!r}, seed {meta.get('seed')} and "
                          f"{len(made)} fold(s); this run has dataset {dataset!r}, seed {seed} and {len(want)} fold(s) "
                          "with other test speakers: tune again with the same options")
    return [{k: {o: tuple(x) if isinstance(x, list) else x for o, x in v["chosen"].items()}  # sizes: JSON lists
             for k, v in f["models"].items()} for f in doc["folds"]]


def markdown(name: str, doc: dict) -> str:
    lines = [f"# Nested tuning on {name}", "", f"Command: `{doc['meta']['command']}` (seed {doc['meta']['seed']}); "
             f"grid `{doc['meta']['grid']}` ({doc['meta']['search']}); wall time {doc['meta']['wall_seconds']:.0f} s.",
             "", "Each setting was trained on the fold's training speakers and scored on its validation speakers "
             "only (test speakers never seen); objective: utility above chance minus worst-case leakage above "
             "chance, " + ("the whole attacker suite (its worst case)" if doc["meta"].get("tune_attackers") == "full"
                           else "fast attackers (logistic regression, PCA/LDA cosine)") + ".", "",
             "## Summary over folds (validation speakers only)", "",
             "| model | setting | objective mean ± std | chosen in folds | validation cells (emo WF1 / id EER, %) |",
             "|---|---|---|---|---|"]
    for r in summary(doc):
        cells = "; ".join(f"{v} {100 * c['emo_wf1']:.1f} / {100 * c['id_eer']:.1f}" for v, c in r["cells"].items())
        lines.append(f"| {r['model']} | {r['setting']} | {r['objective_mean']:.4f} ± {r['objective_std']:.4f} | "
                     f"{r['chosen']}/{r['folds']} | {cells} |")
    lines.append("")
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
