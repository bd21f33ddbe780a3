"""The one evaluation path of tfvae: utility and worst-case leakage of a representation, with
speaker-level uncertainty. ``python -m tfvae.train``'s test report, Table 1, nested tuning and the
export's privacy report all call :func:`evaluate_view`.

Protocol (paper section 3.1, made sceptic-proof):

- every attacker of :mod:`tfvae.attackers` is fit on the encoded *training* split and scored on
  the *validation* speakers and on the *test* speakers;
- **utility** of a task = the attacker with the best *validation* score (chosen without looking
  at test speakers); the paper's MLP is reported beside it;
- **leakage** of a task = the worst case over the suite on the *test* speakers (highest emotion
  WF1, lowest EER), counted only above chance: a privacy cell is ``max(WF1, chance)`` and
  ``min(EER, 0.5)``;
- SER: weighted F1, UAR, per-class recall, confusion matrix; SV: EER, minDCF (p_target 0.01) and
  miss rate at 1 % false alarms on the trials of :func:`tfvae.metrics.sample_trials` (bounded
  memory, the same trials for every representation of a split);
- every reported number gets a 95 % speaker-level bootstrap interval (test speakers resampled with
  replacement) and per-speaker values for paired tests.
"""

from __future__ import annotations

import numpy as np

from tfvae.attackers import (EMOTION_ATTACKERS, FAST_ATTACKERS, PAPER_ATTACKERS, SPEAKER_ATTACKERS,
                             fit_emotion_attacker, fit_speaker_attacker, single_threaded_blas)
from tfvae.erasure import SUFFIX
from tfvae.features import default_workers
from tfvae.metrics import Trials, eer, sample_trials, sv_metrics, weighted_eer

#: Probes of mask-cut selection (:func:`probe_scores`): (emotion attackers, speaker attackers).
CUT_ATTACKERS = {"fast": (tuple(FAST_ATTACKERS["emotion"]), tuple(FAST_ATTACKERS["speaker"])),
                 "strong": (("logreg", "knn_cosine"), ("lda_cosine", "logreg_posteriors", "cosine"))}

#: Worker processes of the attacker suite (:func:`run_attackers`): one per core.
EVAL_JOBS = default_workers()
#: Bootstrap replicates per cell and the largest trial list a bootstrap replicate scores.
BOOTSTRAP = 1000
BOOTSTRAP_TRIALS = 100_000
CHANCE_EER = 0.5


def subsampling(corpus=None) -> dict:
    """What evaluation subsamples, for reports: attacker fit rows, speaker classes, trials, bootstrap
    (and, for a corpus, how many training rows and speakers there are to subsample from)."""
    from tfvae.attackers import MAX_FIT_ROWS, MAX_SPEAKER_CLASSES, SVM_FIT_ROWS
    from tfvae.metrics import MAX_NONTARGET_TRIALS, MAX_TARGET_TRIALS

    out = {"attacker_fit_rows": f"at most {MAX_FIT_ROWS} training rows per attacker (svm_rbf {SVM_FIT_ROWS}), a "
                                "seeded sample stratified by speaker and label that keeps every training speaker",
           "speaker_classes": f"classifier-based speaker attackers (MLP embeddings, logistic-regression posteriors) "
                              f"learn at most {MAX_SPEAKER_CLASSES} training speakers, those with the most rows",
           "trials": f"every target pair up to {MAX_TARGET_TRIALS}, {MAX_NONTARGET_TRIALS} sampled non-target pairs",
           "bootstrap": f"{BOOTSTRAP} speaker-level replicates over at most {BOOTSTRAP_TRIALS} trials",
           "raw_anchor": "streamed corpora: the raw-feature column reads only the attackers' training subsample"}
    if corpus is not None:
        tr = corpus.splits["train"]
        out["training_rows"], out["training_speakers"] = len(tr), len(set(tr.speaker.tolist()))
    return out


def chance_wf1(y_eval) -> dict:
    """Weighted F1 of two trivial predictors on the evaluation labels: stratified random guessing
    (expected value, sum of squared class shares) and always predicting the majority class."""
    _, counts = np.unique(np.asarray(y_eval), return_counts=True)
    shares = counts / counts.sum()
    top = float(shares.max())
    return {"stratified": float(np.sum(shares ** 2)), "majority": top * 2 * top / (1 + top)}


# --------------------------------------------------------------------------------- emotion metrics
def confusion(y_true, y_pred, n_classes: int) -> np.ndarray:
    """Counts ``C[true, predicted]``."""
    c = np.zeros((n_classes, n_classes), np.int64)
    np.add.at(c, (np.asarray(y_true, int), np.asarray(y_pred, int)), 1)
    return c


def wf1_uar(c) -> tuple[np.ndarray, np.ndarray]:
    """Weighted F1 (scikit-learn's ``average="weighted"``, zero where undefined) and UAR of one
    confusion matrix or a stack of them (..., K, K)."""
    c = np.asarray(c, np.float64)
    tp = np.diagonal(c, axis1=-2, axis2=-1)
    support, predicted = c.sum(-1), c.sum(-2)
    prec = np.divide(tp, predicted, out=np.zeros_like(tp), where=predicted > 0)
    rec = np.divide(tp, support, out=np.zeros_like(tp), where=support > 0)
    f1 = np.divide(2 * prec * rec, prec + rec, out=np.zeros_like(tp), where=(prec + rec) > 0)
    total = support.sum(-1)
    wf1 = (f1 * support).sum(-1) / np.maximum(total, 1)
    present = support > 0
    uar = (rec * present).sum(-1) / np.maximum(present.sum(-1), 1)
    return wf1, uar


def emotion_report(y_true, y_pred, n_classes: int) -> dict:
    c = confusion(y_true, y_pred, n_classes)
    wf1, uar = wf1_uar(c)
    support = c.sum(1)
    recall = np.divide(np.diag(c), support, out=np.full(n_classes, np.nan), where=support > 0)
    return {"wf1": float(wf1), "uar": float(uar), "per_class_recall": [None if np.isnan(r) else float(r) for r in recall],
            "confusion": c.tolist()}


# --------------------------------------------------------------------------------- bootstrap
def speaker_weights(n_speakers: int, n: int = BOOTSTRAP, seed: int = 0) -> np.ndarray:
    """``n`` x ``n_speakers`` multiplicities of speakers drawn with replacement."""
    rng = np.random.default_rng(seed)
    return rng.multinomial(n_speakers, np.full(n_speakers, 1.0 / n_speakers), size=n).astype(np.float64)


def emotion_bootstrap(y_true, y_pred, spk_codes, n_classes: int, w) -> dict:
    """Bootstrap replicates of WF1/UAR and per-speaker WF1 (paired tests)."""
    s = int(spk_codes.max()) + 1
    per = np.zeros((s, n_classes, n_classes))
    np.add.at(per, (spk_codes, np.asarray(y_true, int), np.asarray(y_pred, int)), 1)
    wf1, uar = wf1_uar(np.einsum("bs,skl->bkl", w, per))
    return {"wf1": wf1, "uar": uar, "per_speaker_wf1": wf1_uar(per)[0]}


def sv_bootstrap(scores, trials: Trials, spk_codes, w, seed: int = 0) -> dict:
    """Bootstrap replicates of the EER (a trial between speakers a and b weighs w_a * w_b, a
    target trial of a weighs w_a) and per-speaker EER (trials involving the speaker)."""
    idx = np.arange(len(trials))
    if idx.size > BOOTSTRAP_TRIALS:
        idx = np.sort(np.random.default_rng(seed).choice(idx.size, BOOTSTRAP_TRIALS, replace=False))
    sc = np.asarray(scores, np.float64)[idx]
    lab = trials.label[idx].astype(bool)
    sa, sb = spk_codes[trials.i[idx]], spk_codes[trials.j[idx]]
    order = np.argsort(-sc, kind="stable")
    sc, lab, sa, sb = sc[order], lab[order], sa[order], sb[order]
    reps = [np.zeros(0)]
    for r in range(0, len(w), 50):
        ww = w[r:r + 50]
        tw = np.where(lab, ww[:, sa], ww[:, sa] * ww[:, sb])
        reps.append(weighted_eer(sc, lab, tw))
    per = []
    for s in range(int(spk_codes.max()) + 1):
        m = (sa == s) | (sb == s)
        ok = lab[m].any() and (~lab[m]).any()
        per.append(eer(sc[m], lab[m]) if ok else np.nan)
    return {"eer": np.concatenate(reps), "per_speaker_eer": np.asarray(per)}


def interval(replicates) -> list[float]:
    """95 % percentile interval of bootstrap replicates (NaN replicates ignored)."""
    r = np.asarray(replicates, np.float64)
    r = r[np.isfinite(r)]
    return [float(np.percentile(r, 2.5)), float(np.percentile(r, 97.5))] if r.size else [float("nan")] * 2


# --------------------------------------------------------------------------------- one view
def _standardize(z_tr, *others):
    from sklearn.preprocessing import StandardScaler

    sc = StandardScaler().fit(np.asarray(z_tr, np.float64))
    return [sc.transform(np.asarray(z_tr, np.float64))] + [sc.transform(np.asarray(o, np.float64)) for o in others]


class EvalSplits:
    """Labels of the train, validation and test parts of one fold, and their trial lists (sampled
    once per split, seeded, so every representation is scored on the same trials)."""

    def __init__(self, corpus, n_classes: int | None = None, seed: int = 0, bootstrap: int = BOOTSTRAP):
        sp = corpus.splits
        self.emotion = {k: np.asarray(sp[k].emotion) for k in ("train", "validation", "test")}
        self.speaker = {k: np.asarray(sp[k].speaker) for k in ("train", "validation", "test")}
        self.n_classes = n_classes or len(corpus.emotion_names)
        self.seed = seed
        self.trials = {k: sample_trials(self.speaker[k], seed=seed) for k in ("validation", "test")}
        self.codes = {k: np.unique(self.speaker[k], return_inverse=True)[1] for k in ("validation", "test")}
        self.weights = speaker_weights(int(self.codes["test"].max()) + 1, n=bootstrap, seed=seed)
        self.chance = chance_wf1(self.emotion["test"])


def _pick(results: dict, metric: str, on: str, best) -> str:
    vals = {k: r[on][metric] for k, r in results.items()}
    return best(vals, key=vals.get)


def _emotion_cell(name, pred, ev: EvalSplits) -> dict:
    y = ev.emotion["test"]
    rep = emotion_report(y, pred, ev.n_classes)
    b = emotion_bootstrap(y, pred, ev.codes["test"], ev.n_classes, ev.weights)
    return {"by": name, **rep, "ci_wf1": interval(b["wf1"]), "ci_uar": interval(b["uar"]),
            "_boot": b["wf1"], "_per_speaker": b["per_speaker_wf1"]}


def _speaker_cell(name, scores, ev: EvalSplits) -> dict:
    t = ev.trials["test"]
    m = sv_metrics(scores, t.label)
    b = sv_bootstrap(scores, t, ev.codes["test"], ev.weights, seed=ev.seed)
    return {"by": name, **m, "ci_eer": interval(b["eer"]), "_boot": b["eer"], "_per_speaker": b["per_speaker_eer"]}


def evaluate_view(z, ev: EvalSplits, tasks=("emotion", "speaker"), emotion_attackers=EMOTION_ATTACKERS,
                  speaker_attackers=SPEAKER_ATTACKERS, seed: int = 0) -> dict:
    """Every attacker on one representation ``z = {"train", "validation", "test"}`` (arrays).

    Returns, per task, ``attackers`` (each one's test and validation scores), ``utility`` (the
    attacker best on validation), ``paper`` (the paper's MLP, when in the suite) and ``worst``
    (the attacker best on test: the leakage). Cells carry 95 % bootstrap intervals; keys starting
    with ``_`` hold bootstrap replicates and per-speaker values (not for JSON).
    """
    from sklearn import config_context

    # working_memory: kNN with cosine distance falls back to chunked pairwise distances, 1 GiB
    # chunks by default (+2.4 GiB at 10k+ test rows); 64 MiB chunks give the same predictions
    with single_threaded_blas(), config_context(working_memory=64):
        return _evaluate_view(z, ev, tasks, emotion_attackers, speaker_attackers, seed)


def _evaluate_view(z, ev, tasks, emotion_attackers, speaker_attackers, seed) -> dict:
    xs_tr, xs_va, xs_te = _standardize(z["train"], z["validation"], z["test"])
    out = {"nodes": int(xs_tr.shape[1])}
    jobs = [("emotion", n) for n in (emotion_attackers if "emotion" in tasks else ())] + \
        [("speaker", n) for n in (speaker_attackers if "speaker" in tasks else ())]
    results = dict(zip(jobs, run_attackers(jobs, xs_tr, xs_va, xs_te, ev, seed)))
    if "emotion" in tasks:
        res, preds = {}, {}
        for name in emotion_attackers:
            pred_va, preds[name] = results[("emotion", name)]
            va = emotion_report(ev.emotion["validation"], pred_va, ev.n_classes)
            te = emotion_report(ev.emotion["test"], preds[name], ev.n_classes)
            res[name] = {"test": {"wf1": te["wf1"], "uar": te["uar"]}, "validation": {"wf1": va["wf1"], "uar": va["uar"]}}
        out["emotion"] = _cells(res, "wf1", max, lambda n: _emotion_cell(n, preds[n], ev), "emotion")
    if "speaker" in tasks:
        res, scores = {}, {}
        for name in speaker_attackers:
            va, scores[name] = results[("speaker", name)]
            res[name] = {"test": sv_metrics(scores[name], ev.trials["test"].label),
                         "validation": {"eer": eer(va, ev.trials["validation"].label)}}
        out["speaker"] = _cells(res, "eer", min, lambda n: _speaker_cell(n, scores[n], ev), "speaker")
    return out


#: Attackers in decreasing order of cost at scale: the parallel pool starts the slowest first.
_COST_ORDER = ("mlp_large_embedding", "mlp_large", "mlp_embedding", "knn_cosine", "svm_rbf", "mlp", "kernel_lda_cosine",
               "logreg_posteriors", "gboost")


def run_attackers(jobs: list[tuple[str, str]], xs_tr, xs_va, xs_te, ev: "EvalSplits", seed: int) -> list:
    """``[(validation, test) outputs]`` of each ``(task, attacker)`` job (:func:`attack`): run in
    :data:`EVAL_JOBS` worker processes (joblib/loky, one BLAS thread each) when there are several jobs
    and cores, else here. Every job's result is the same either way."""
    args = {"emotion": (ev.emotion["train"], ev.emotion["validation"]),
            "speaker": (ev.speaker["train"], ev.speaker["validation"])}
    trials = (ev.trials["validation"], ev.trials["test"])

    def call(task, name):
        return (task, name, xs_tr, args[task][0], ev.speaker["train"], xs_va, args[task][1], xs_te, trials, seed)

    n_jobs = min(EVAL_JOBS, len(jobs))
    if n_jobs <= 1:
        return [attack(*call(t, n)) for t, n in jobs]
    from joblib import Parallel, delayed

    rank = {n: i for i, n in enumerate(_COST_ORDER)}
    order = sorted(range(len(jobs)), key=lambda i: rank.get(jobs[i][1], len(rank)))
    done = Parallel(n_jobs=n_jobs, backend="loky")(delayed(attack)(*call(*jobs[i])) for i in order)
    out = [None] * len(jobs)
    for i, r in zip(order, done):
        out[i] = r
    return out


def attack(task: str, name: str, xs_tr, y_tr, speakers_tr, xs_va, y_va, xs_te, trials, seed: int):
    """Fit one attacker on the (standardised) training rows; ``(validation, test)`` predictions (emotion)
    or cosine trial scores of its embeddings (speaker). TensorFlow-free: it runs in worker processes."""
    from sklearn import config_context

    with single_threaded_blas(), config_context(working_memory=64):
        if task == "emotion":
            clf = fit_emotion_attacker(name, xs_tr, y_tr, xs_va, y_va, seed, groups=speakers_tr)
            return clf.predict(xs_va), clf.predict(xs_te)
        emb = fit_speaker_attacker(name, xs_tr, y_tr, xs_va, y_va, seed)
        return trials[0].score(emb.embed(xs_va)), trials[1].score(emb.embed(xs_te))


def _cells(res: dict, metric: str, best, make, task: str) -> dict:
    picks = {"utility": _pick(res, metric, "validation", best), "worst": _pick(res, metric, "test", best)}
    if PAPER_ATTACKERS[task] in res:
        picks["paper"] = PAPER_ATTACKERS[task]
    made = {n: make(n) for n in set(picks.values())}
    return {"attackers": res, **{k: made[n] for k, n in picks.items()}}


def evaluate_heads(outputs: dict, ev: EvalSplits) -> dict:
    """The model's own heads on test (the paper's DNN baseline): emotion classifier and
    speaker-branch embedding; the same cells as :func:`evaluate_view` (``by`` = ``model``)."""
    out = {"nodes": None}
    te = outputs["test"]
    if "emotion_probabilities" in te:
        c = _emotion_cell("model", np.argmax(te["emotion_probabilities"], axis=1), ev)
        out["emotion"] = {"attackers": {}, "utility": c, "worst": c, "paper": c}
    if "speaker_embedding" in te:
        c = _speaker_cell("model", ev.trials["test"].score(te["speaker_embedding"]), ev)
        out["speaker"] = {"attackers": {}, "utility": c, "worst": c, "paper": c}
    return out


def privacy_cell(cell: dict, task: str, chance: float) -> dict:
    """A worst-case cell with leakage counted only above chance: WF1 ``max(., chance)`` and
    EER ``min(., 0.5)``; ``raw`` keeps the attacker's own value."""
    key, clip = ("wf1", lambda v: np.maximum(v, chance)) if task == "emotion" else \
        ("eer", lambda v: np.minimum(v, CHANCE_EER))
    return {**cell, key: float(clip(cell[key])), "raw": cell[key], "at_chance": bool(clip(cell[key]) != cell[key]),
            "_boot": clip(cell["_boot"]), "ci_" + key: interval(clip(cell["_boot"]))}


def public(d):
    """``d`` without the keys starting with ``_`` (bootstrap replicates), for JSON."""
    if isinstance(d, dict):
        return {k: public(v) for k, v in d.items() if not str(k).startswith("_")}
    if isinstance(d, list):
        return [public(v) for v in d]
    return d


def attacker_suite(fast: bool) -> dict:
    """``evaluate_view`` keyword arguments of the full suite ({}) or of :data:`FAST_ATTACKERS`."""
    return {"emotion_attackers": FAST_ATTACKERS["emotion"], "speaker_attackers": FAST_ATTACKERS["speaker"]} \
        if fast else {}


def evaluate_model(model, outputs: dict, ev: EvalSplits, masks: dict, seed: int = 0, fast: bool = False,
                   erasers: dict | None = None) -> dict:
    """Every view of one trained model: ``origin`` (the full latent), each mask in ``masks``, each
    masked view followed by its eraser in ``erasers`` (``<view>_leace``, fit on the training split,
    :func:`tfvae.erasure.view_erasers`), and the model's own heads (``model_heads``).
    ``fast``: only :data:`FAST_ATTACKERS` (tuning, probes)."""
    kw = attacker_suite(fast)
    res = {}
    if model.parts["vae"]:
        lat = {k: outputs[k]["latent"] for k in ("train", "validation", "test")}
        views = {"origin": np.ones(lat["train"].shape[1], bool), **{k: np.asarray(m) > 0 for k, m in masks.items()}}
        for view, keep in views.items():
            res[view] = evaluate_view({k: v[:, keep] for k, v in lat.items()}, ev, seed=seed, **kw)
        for view, eraser in (erasers or {}).items():  # masked views + LEACE (tfvae.erasure)
            keep = views[view.removesuffix(SUFFIX)]
            res[view] = evaluate_view({k: eraser(v * keep)[:, keep] for k, v in lat.items()}, ev, seed=seed, **kw)
    res["model_heads"] = evaluate_heads(outputs, ev)
    return res


def probe_scores(z_train, emo_train, spk_train, z_val, emo_val, val_trials: Trials, seed: int = 0,
                 attackers: str = "fast") -> tuple[float, float]:
    """Validation emotion WF1 and EER of the mask-cut probes, fit on training rows and scored on
    validation speakers: ``fast`` = the linear attackers (:data:`FAST_ATTACKERS`); ``strong`` = the
    best of :data:`CUT_ATTACKERS` ``["strong"]`` per task (attacker in the loop: the leakage a cut
    is charged is that of the strongest of them)."""
    from sklearn.metrics import f1_score

    emo_names, spk_names = CUT_ATTACKERS[attackers]
    xs_tr, xs_va = _standardize(z_train, z_val)
    wf1, best_eer = 0.0, 1.0
    with single_threaded_blas():
        for name in emo_names:
            clf = fit_emotion_attacker(name, xs_tr, emo_train, seed=seed, groups=spk_train)
            wf1 = max(wf1, float(f1_score(emo_val, clf.predict(xs_va), average="weighted")))
        for name in spk_names:
            emb = fit_speaker_attacker(name, xs_tr, spk_train, seed=seed)
            best_eer = min(best_eer, eer(val_trials.score(emb.embed(xs_va)), val_trials.label))
    return wf1, best_eer


def head_selection(outputs: dict, emotion, trials: Trials) -> dict:
    """Checkpoint-selection scores of a model's own heads on validation speakers: ``uar`` of the
    emotion classifier, ``eer`` of the speaker-branch embedding (cosine trials), and
    ``score = (1 - uar) + eer`` over the heads the model has (lower is better): both attributes
    count, in the same unit (an error rate)."""
    res, score = {}, 0.0
    if "emotion_probabilities" in outputs:
        pred = np.argmax(outputs["emotion_probabilities"], axis=1)
        res["uar"] = float(wf1_uar(confusion(emotion, pred, outputs["emotion_probabilities"].shape[1]))[1])
        score += 1.0 - res["uar"]
    if "speaker_embedding" in outputs:
        res["eer"] = eer(trials.score(outputs["speaker_embedding"]), trials.label)
        score += res["eer"]
    res["score"] = score
    return res
