"""The one evaluation path of tfvae: utility and worst-case leakage of a representation, with
speaker-level uncertainty. ``python -m tfvae.train``'s test report, Table 1, nested tuning and the
export's privacy report all call :func:`evaluate_view`.

Protocol (paper section 3.1, made sceptic-proof):

- every attacker of :mod:`tfvae.attackers` is fit on the encoded *training* split and scored on
  the *validation* speakers and on the *test* speakers;
- **utility** of a task = the attacker with the best *validation* score (chosen without looking
  at test speakers); the paper's MLP is reported beside it;
- **leakage** of a task = the worst case over the suite on the *test* speakers (highest WF1,
  lowest EER), counted only above chance: a privacy cell is ``max(WF1, chance)`` and
  ``min(EER, 0.5)``;
- tasks: ``speaker`` (verification) and class tasks, ``emotion`` and any extra class label of the
  corpus (``gender``, ...; :mod:`tfvae.attributes`), attacked by the same classification suite on
  the rows whose label is known;
- class tasks: weighted F1, UAR, per-class recall, confusion matrix; SV: EER, minDCF (p_target 0.01) and
  miss rate at 1 % false alarms on the trials of :func:`tfvae.metrics.sample_trials` (bounded
  memory, the same trials for every representation of a split);
- every reported number gets a 95 % speaker-level bootstrap interval (test speakers resampled with
  replacement) and per-speaker values for paired tests;
- fairness: every cell is broken down by a group label (``gender``) when the corpus has one
  (``by_group``, :mod:`tfvae.fairness`).
"""

from __future__ import annotations

import numpy as np

from tfvae.attackers import (EMOTION_ATTACKERS, FAST_ATTACKERS, PAPER_ATTACKERS, SPEAKER_ATTACKERS,
                             fit_emotion_attacker, fit_speaker_attacker, single_threaded_blas)
from tfvae.erasure import SUFFIX
from tfvae.features import default_workers
from tfvae import fairness
from tfvae.fairness import class_by_group, speaker_by_group, split_groups
from tfvae.metrics import Trials, confusion, eer, sample_trials, sv_metrics, weighted_eer, wf1_uar

#: ``{task: {"utility": by_group, "worst": by_group}}`` of one :func:`evaluate_view` result (:mod:`tfvae.fairness`).
group_gaps = fairness.group_gaps
#: Probes of mask-cut selection (:func:`probe_scores_all`): (class-task attackers, speaker attackers).
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


def emotion_bootstrap(y_true, y_pred, spk_codes, n_classes: int, w, n_speakers: int | None = None) -> dict:
    """Bootstrap replicates of WF1/UAR and per-speaker WF1 (paired tests). ``n_speakers``: the
    speakers ``w`` resamples (default: those of ``spk_codes``); a speaker or a replicate without rows is NaN."""
    s = n_speakers or int(spk_codes.max()) + 1
    per = np.zeros((s, n_classes, n_classes))
    np.add.at(per, (spk_codes, np.asarray(y_true, int), np.asarray(y_pred, int)), 1)
    boot = np.einsum("bs,skl->bkl", w, per)
    wf1, uar = wf1_uar(boot)
    empty = boot.sum((-2, -1)) == 0
    per_wf1 = np.where(per.sum((-2, -1)) > 0, wf1_uar(per)[0], np.nan)
    return {"wf1": np.where(empty, np.nan, wf1), "uar": np.where(empty, np.nan, uar), "per_speaker_wf1": per_wf1}


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


def _known(y):
    """Mask of the rows with a known label (>= 0); None when every row has one (no copy needed)."""
    m = np.asarray(y) >= 0
    return None if m.all() else m


def _take(a, mask):
    return a if mask is None else np.asarray(a)[mask]


_PARTS = ("train", "validation", "test")


class EvalSplits:
    """Labels of the train, validation and test parts of one fold, and their trial lists (sampled
    once per split, seeded, so every representation is scored on the same trials).

    Class tasks: ``emotion`` and the extra labels of the corpus named in ``tasks`` (default: every
    extra label of ``Split.labels`` with two known training classes and known validation and test
    rows; -1 = unknown, left out of the task's fits and scores). ``labels[task][split]``,
    ``class_names[task]``, ``n_classes_of[task]``, ``chances[task]`` (:func:`chance_wf1` of the known
    test labels); ``emotion``, ``n_classes`` and ``chance`` are emotion's. ``groups``: the test rows'
    groups of the label ``group`` (:mod:`tfvae.fairness`), None when the corpus has no known value of it.
    """

    def __init__(self, corpus, n_classes: int | None = None, seed: int = 0, bootstrap: int = BOOTSTRAP,
                 tasks=None, group: str | None = "gender"):
        sp = corpus.splits
        self.emotion = {k: np.asarray(sp[k].emotion) for k in _PARTS}
        self.speaker = {k: np.asarray(sp[k].speaker) for k in _PARTS}
        self.n_classes = n_classes or len(corpus.emotion_names)
        self.seed = seed
        self.trials = {k: sample_trials(self.speaker[k], seed=seed) for k in ("validation", "test")}
        self.codes = {k: np.unique(self.speaker[k], return_inverse=True)[1] for k in ("validation", "test")}
        self.n_test_speakers = int(self.codes["test"].max()) + 1
        self.weights = speaker_weights(self.n_test_speakers, n=bootstrap, seed=seed)
        extra = {k: getattr(sp[k], "labels", None) or {} for k in _PARTS}
        label_names = getattr(corpus, "label_names", None) or {}
        self.labels = {"emotion": self.emotion}
        self.class_names = {"emotion": list(corpus.emotion_names)}
        self.n_classes_of = {"emotion": self.n_classes}
        for t in self._extra_tasks(extra, tasks):
            self.labels[t] = {k: np.asarray(extra[k][t], np.int64) for k in _PARTS}
            top = max(int(v.max(initial=-1)) for v in self.labels[t].values()) + 1
            names = [str(n) for n in label_names.get(t) or []]
            self.class_names[t] = names + [str(i) for i in range(len(names), top)]
            self.n_classes_of[t] = len(self.class_names[t])
        self.class_tasks = tuple(self.labels)
        self.known = {t: {k: _known(v[k]) for k in _PARTS} for t, v in self.labels.items()}
        self.chances = {t: chance_wf1(self.y(t, "test")) for t in self.class_tasks}
        self.chance = self.chances["emotion"]
        self.groups = split_groups(corpus, group)

    @staticmethod
    def _extra_tasks(extra: dict, tasks) -> list[str]:
        def problem(t):
            if any(t not in extra[k] for k in _PARTS):
                return "is not a label of every split"
            tr = np.asarray(extra["train"][t])
            if np.unique(tr[tr >= 0]).size < 2:
                return "has fewer than 2 known classes in the training split"
            if not all((np.asarray(extra[k][t]) >= 0).any() for k in ("validation", "test")):
                return "has no known value in the validation or test split"
            return None

        if tasks is None:
            return [t for t in extra["train"] if t not in ("emotion", "speaker") and problem(t) is None]
        out = [t for t in tasks if t not in ("emotion", "speaker")]
        bad = {t: problem(t) for t in out if problem(t)}
        if bad:
            raise ValueError("class task(s) cannot be evaluated: " + "; ".join(f"{t!r} {p}" for t, p in bad.items()))
        return out

    @property
    def tasks(self) -> tuple[str, ...]:
        """Every task: the class tasks and ``speaker``."""
        return (*self.class_tasks, "speaker")

    def y(self, task: str, split: str) -> np.ndarray:
        """The known labels of a class task on a split."""
        return _take(self.labels[task][split], self.known[task][split])


def _pick(results: dict, metric: str, on: str, best) -> str:
    vals = {k: r[on][metric] for k, r in results.items()}
    return best(vals, key=vals.get)


def _class_cell(name, pred, ev: EvalSplits, task: str = "emotion") -> dict:
    """The test cell of a class task from predictions on its known test rows."""
    y, k, rows = ev.y(task, "test"), ev.n_classes_of[task], ev.known[task]["test"]
    rep = emotion_report(y, pred, k)
    b = emotion_bootstrap(y, pred, _take(ev.codes["test"], rows), k, ev.weights, n_speakers=ev.n_test_speakers)
    cell = {"by": name, **rep, "ci_wf1": interval(b["wf1"]), "ci_uar": interval(b["uar"]),
            "_boot": b["wf1"], "_per_speaker": b["per_speaker_wf1"]}
    if ev.groups is not None and task != ev.groups.label:
        cell["by_group"] = class_by_group(ev.groups, y, pred, k, rows)
    return cell


_emotion_cell = _class_cell


def _speaker_cell(name, scores, ev: EvalSplits) -> dict:
    t = ev.trials["test"]
    m = sv_metrics(scores, t.label)
    b = sv_bootstrap(scores, t, ev.codes["test"], ev.weights, seed=ev.seed)
    cell = {"by": name, **m, "ci_eer": interval(b["eer"]), "_boot": b["eer"], "_per_speaker": b["per_speaker_eer"]}
    if ev.groups is not None and ev.groups.label != "speaker":
        cell["by_group"] = speaker_by_group(ev.groups, scores, t)
    return cell


def evaluate_view(z, ev: EvalSplits, tasks=("emotion", "speaker"), emotion_attackers=EMOTION_ATTACKERS,
                  speaker_attackers=SPEAKER_ATTACKERS, seed: int = 0, class_attackers: dict | None = None) -> dict:
    """Every attacker on one representation ``z = {"train", "validation", "test"}`` (arrays).

    ``tasks``: ``speaker`` and class tasks of ``ev`` (``emotion``, ``gender``, ...). A class task is
    attacked by ``class_attackers[task]``, by default ``emotion_attackers``, on its known rows.

    Returns, per task, ``attackers`` (each one's test and validation scores), ``utility`` (the
    attacker best on validation), ``paper`` (the paper's MLP, when in the suite) and ``worst``
    (the attacker best on test: the leakage). Cells carry 95 % bootstrap intervals and, when ``ev``
    has groups, ``by_group`` (:mod:`tfvae.fairness`); keys starting with ``_`` hold bootstrap
    replicates and per-speaker values (not for JSON).
    """
    from sklearn import config_context

    unknown = [t for t in tasks if t not in ev.tasks]
    if unknown:
        raise ValueError(f"unknown task(s) {unknown}; this evaluation has {', '.join(ev.tasks)}")
    suites = {t: tuple((class_attackers or {}).get(t, emotion_attackers)) for t in tasks if t != "speaker"}
    if "speaker" in tasks:
        suites["speaker"] = tuple(speaker_attackers)
    # working_memory: kNN with cosine distance falls back to chunked pairwise distances, 1 GiB
    # chunks by default (+2.4 GiB at 10k+ test rows); 64 MiB chunks give the same predictions
    with single_threaded_blas(), config_context(working_memory=64):
        return _evaluate_view(z, ev, suites, seed)


def _evaluate_view(z, ev, suites: dict, seed) -> dict:
    xs_tr, xs_va, xs_te = _standardize(z["train"], z["validation"], z["test"])
    out = {"nodes": int(xs_tr.shape[1])}
    jobs = [(t, n) for t, names in suites.items() for n in names]
    results = dict(zip(jobs, run_attackers(jobs, xs_tr, xs_va, xs_te, ev, seed)))
    for task, names in suites.items():
        res = {}
        if task == "speaker":
            scores = {}
            for name in names:
                va, scores[name] = results[(task, name)]
                res[name] = {"test": sv_metrics(scores[name], ev.trials["test"].label),
                             "validation": {"eer": eer(va, ev.trials["validation"].label)}}
            out[task] = _cells(res, "eer", min, lambda n: _speaker_cell(n, scores[n], ev), task)
            continue
        preds, k = {}, ev.n_classes_of[task]
        for name in names:
            pred_va, preds[name] = results[(task, name)]
            va = emotion_report(ev.y(task, "validation"), pred_va, k)
            te = emotion_report(ev.y(task, "test"), preds[name], k)
            res[name] = {"test": {"wf1": te["wf1"], "uar": te["uar"]}, "validation": {"wf1": va["wf1"], "uar": va["uar"]}}
        out[task] = _cells(res, "wf1", max, lambda n, t=task: _class_cell(n, preds[n], ev, t), task)
    return out


#: Attackers in decreasing order of cost at scale: the parallel pool starts the slowest first.
_COST_ORDER = ("mlp_large_embedding", "mlp_large", "mlp_embedding", "knn_cosine", "svm_rbf", "mlp", "kernel_lda_cosine",
               "logreg_posteriors", "gboost")


def run_attackers(jobs: list[tuple[str, str]], xs_tr, xs_va, xs_te, ev: "EvalSplits", seed: int) -> list:
    """``[(validation, test) outputs]`` of each ``(task, attacker)`` job (:func:`attack`; ``task``:
    ``speaker`` or a class task of ``ev``, whose rows of unknown label are left out): run in
    :data:`EVAL_JOBS` worker processes (joblib/loky, one BLAS thread each) when there are several jobs
    and cores, else here. Every job's result is the same either way."""
    trials = (ev.trials["validation"], ev.trials["test"])

    def call(task, name):
        if task == "speaker":
            return (task, name, xs_tr, ev.speaker["train"], ev.speaker["train"], xs_va, ev.speaker["validation"],
                    xs_te, trials, seed)
        kn = ev.known[task]
        return (task, name, _take(xs_tr, kn["train"]), ev.y(task, "train"), _take(ev.speaker["train"], kn["train"]),
                _take(xs_va, kn["validation"]), ev.y(task, "validation"), _take(xs_te, kn["test"]), trials, seed)

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
    """Fit one attacker on the (standardised) training rows; ``(validation, test)`` predictions (a class
    task: any task but ``speaker``) or cosine trial scores of its embeddings (``speaker``).
    TensorFlow-free: it runs in worker processes."""
    from sklearn import config_context

    with single_threaded_blas(), config_context(working_memory=64):
        if task != "speaker":
            clf = fit_emotion_attacker(name, xs_tr, y_tr, xs_va, y_va, seed, groups=speakers_tr)
            return clf.predict(xs_va), clf.predict(xs_te)
        emb = fit_speaker_attacker(name, xs_tr, y_tr, xs_va, y_va, seed)
        return trials[0].score(emb.embed(xs_va)), trials[1].score(emb.embed(xs_te))


def _cells(res: dict, metric: str, best, make, task: str) -> dict:
    picks = {"utility": _pick(res, metric, "validation", best), "worst": _pick(res, metric, "test", best)}
    paper = PAPER_ATTACKERS["speaker" if task == "speaker" else "emotion"]  # class tasks: the paper's MLP
    if paper in res:
        picks["paper"] = paper
    made = {n: make(n) for n in set(picks.values())}
    return {"attackers": res, **{k: made[n] for k, n in picks.items()}}


def evaluate_heads(outputs: dict, ev: EvalSplits, tasks=None) -> dict:
    """The model's own heads on test (the paper's DNN baseline): the classifier of each class task
    (output ``<task>_probabilities``) and the speaker-branch embedding (``speaker_embedding``); the
    same cells as :func:`evaluate_view` (``by`` = ``model``). ``tasks``: default every task of ``ev``."""
    out = {"nodes": None}
    te = outputs["test"]
    for task in (ev.tasks if tasks is None else tasks):
        if task == "speaker" and "speaker_embedding" in te:
            c = _speaker_cell("model", ev.trials["test"].score(te["speaker_embedding"]), ev)
        elif task in ev.class_tasks and f"{task}_probabilities" in te:
            pred = np.argmax(_take(te[f"{task}_probabilities"], ev.known[task]["test"]), axis=1)
            c = _class_cell("model", pred, ev, task)
        else:
            continue
        out[task] = {"attackers": {}, "utility": c, "worst": c, "paper": c}
    return out


def privacy_cell(cell: dict, task: str, chance: float) -> dict:
    """A worst-case cell with leakage counted only above chance: WF1 ``max(., chance)`` (any class
    task) and EER ``min(., 0.5)`` (``speaker``); ``raw`` keeps the attacker's own value."""
    key, clip = ("eer", lambda v: np.minimum(v, CHANCE_EER)) if task == "speaker" else \
        ("wf1", lambda v: np.maximum(v, chance))
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
                   erasers: dict | None = None, tasks=None) -> dict:
    """Every view of one trained model: ``origin`` (the full latent), each mask in ``masks``, each
    masked view followed by its eraser in ``erasers`` (``<view>_leace``, fit on the training split,
    :func:`tfvae.erasure.view_erasers`), and the model's own heads (``model_heads``).
    ``fast``: only :data:`FAST_ATTACKERS` (tuning, probes). ``tasks``: default every task of ``ev``
    (its class tasks and ``speaker``)."""
    kw = attacker_suite(fast)
    tasks = ev.tasks if tasks is None else tuple(tasks)
    res = {}
    if model.parts["vae"]:
        lat = {k: outputs[k]["latent"] for k in ("train", "validation", "test")}
        views = {"origin": np.ones(lat["train"].shape[1], bool), **{k: np.asarray(m) > 0 for k, m in masks.items()}}
        for view, keep in views.items():
            res[view] = evaluate_view({k: v[:, keep] for k, v in lat.items()}, ev, tasks, seed=seed, **kw)
        for view, eraser in (erasers or {}).items():  # masked views + LEACE (tfvae.erasure)
            keep = views[view.removesuffix(SUFFIX)]
            res[view] = evaluate_view({k: eraser(v * keep)[:, keep] for k, v in lat.items()}, ev, tasks, seed=seed,
                                      **kw)
    res["model_heads"] = evaluate_heads(outputs, ev, tasks)
    return res


def probe_scores_all(z_train, labels_train: dict, spk_train, z_val, labels_val: dict, val_trials: Trials | None,
                     seed: int = 0, attackers: str = "fast") -> dict:
    """Validation scores of the mask-cut probes, fit on training rows and scored on validation
    speakers: ``{task: WF1}`` for each class task of ``labels_train`` (rows labelled -1 left out) and
    ``{"speaker": EER}`` (unless ``val_trials`` is None). ``fast`` = the linear attackers
    (:data:`FAST_ATTACKERS`); ``strong`` = the best of :data:`CUT_ATTACKERS` ``["strong"]`` per task
    (attacker in the loop: the leakage a cut is charged is that of the strongest of them)."""
    from sklearn.metrics import f1_score

    cls_names, spk_names = CUT_ATTACKERS[attackers]
    xs_tr, xs_va = _standardize(z_train, z_val)
    spk_train = np.asarray(spk_train)
    out = {}
    with single_threaded_blas():
        for task, y_tr in labels_train.items():
            y_tr, y_va = np.asarray(y_tr), np.asarray(labels_val[task])
            k_tr, k_va = _known(y_tr), _known(y_va)
            x_tr, x_va, y_va = _take(xs_tr, k_tr), _take(xs_va, k_va), _take(y_va, k_va)
            out[task] = 0.0
            for name in cls_names:
                clf = fit_emotion_attacker(name, x_tr, _take(y_tr, k_tr), seed=seed, groups=_take(spk_train, k_tr))
                out[task] = max(out[task], float(f1_score(y_va, clf.predict(x_va), average="weighted")))
        if val_trials is not None:
            out["speaker"] = 1.0
            for name in spk_names:
                emb = fit_speaker_attacker(name, xs_tr, spk_train, seed=seed)
                out["speaker"] = min(out["speaker"], eer(val_trials.score(emb.embed(xs_va)), val_trials.label))
    return out


def probe_scores(z_train, emo_train, spk_train, z_val, emo_val, val_trials: Trials, seed: int = 0,
                 attackers: str = "fast") -> tuple[float, float]:
    """Validation emotion WF1 and EER of the mask-cut probes (:func:`probe_scores_all`)."""
    r = probe_scores_all(z_train, {"emotion": emo_train}, spk_train, z_val, {"emotion": emo_val}, val_trials, seed,
                         attackers)
    return r["emotion"], r["speaker"]


def head_selection(outputs: dict, emotion, trials: Trials, labels: dict | None = None) -> dict:
    """Checkpoint-selection scores of a model's own heads on validation speakers: ``uar`` of the
    emotion classifier, ``<task>_uar`` of the classifier of each other class task in ``labels``
    (``{task: validation labels}``, head ``<task>_probabilities``, rows labelled -1 left out), ``eer``
    of the speaker-branch embedding (cosine trials), and ``score`` = the sum of ``1 - UAR`` over the
    class heads plus ``eer``, over the heads the model has (lower is better): every attribute counts,
    in the same unit (an error rate)."""
    res, score = {}, 0.0
    for task, y in {"emotion": emotion, **(labels or {})}.items():
        probs = outputs.get(f"{task}_probabilities")
        if probs is None or y is None:
            continue
        y = np.asarray(y)
        known = y >= 0
        if not known.any():
            continue
        probs = np.asarray(probs)[known]
        pred = np.argmax(probs, axis=1)
        k = max(probs.shape[1], int(y[known].max()) + 1)
        uar = float(wf1_uar(confusion(y[known], pred, k))[1])
        res["uar" if task == "emotion" else f"{task}_uar"] = uar
        score += 1.0 - uar
    if "speaker_embedding" in outputs:
        res["eer"] = eer(trials.score(outputs["speaker_embedding"]), trials.label)
        score += res["eer"]
    res["score"] = score
    return res
