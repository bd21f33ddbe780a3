import numpy as np
import pytest

from tfvae.data import Corpus, Split
from tfvae.evaluate import (EvalSplits, attacker_suite, chance_wf1, emotion_bootstrap, emotion_report, evaluate_heads,
                            evaluate_view, group_gaps, head_selection, interval, privacy_cell, public, speaker_weights,
                            sv_bootstrap, wf1_uar)
from tfvae.metrics import eer, sample_trials


def _corpus(rng, informative=True):
    means = rng.normal(size=(4, 6)) * 2
    splits = {}
    for name, first, n_spk in (("train", 0, 12), ("validation", 50, 4), ("test", 100, 6)):
        spk = np.repeat(np.arange(first, first + n_spk), 16)
        emo = np.tile(np.arange(4), n_spk * 4)
        z = rng.normal(size=(len(spk), 12)) * 0.6
        if informative:
            z[:, :6] += means[emo]
            z[:, 6:] += rng.normal(size=(n_spk, 6))[spk - first] * 2
        splits[name] = Split(z.astype(np.float32), emo, np.array([f"s{s}" for s in spk]),
                             np.array([f"u{i}" for i in range(len(spk))]))
    return Corpus("toy", "toy", ["a", "b", "c", "d"], splits)


def test_confusion_metrics_match_scikit_learn():
    from sklearn.metrics import balanced_accuracy_score, f1_score

    rng = np.random.default_rng(0)
    y = rng.integers(0, 5, 300)
    p = np.where(rng.random(300) < 0.5, y, rng.integers(0, 6, 300))  # class 5 is predicted, never true
    r = emotion_report(y, p, 6)
    assert r["wf1"] == pytest.approx(f1_score(y, p, average="weighted"))
    assert r["uar"] == pytest.approx(balanced_accuracy_score(y, p))
    assert np.array(r["confusion"]).sum() == 300 and r["per_class_recall"][5] is None


def test_view_utility_is_chosen_on_validation_and_leakage_is_the_worst_on_test():
    corpus = _corpus(np.random.default_rng(0))
    ev = EvalSplits(corpus, seed=0, bootstrap=200)
    z = {k: corpus.splits[k].features for k in ("train", "validation", "test")}
    r = evaluate_view(z, ev, emotion_attackers=("logreg", "knn_cosine", "gboost"),
                      speaker_attackers=("lda_cosine", "cosine", "logreg_posteriors"))
    for task, metric, best in (("emotion", "wf1", max), ("speaker", "eer", min)):
        att = r[task]["attackers"]
        assert r[task]["utility"]["by"] == best(att, key=lambda k: att[k]["validation"][metric])
        assert r[task]["worst"][metric] == best(a["test"][metric] for a in att.values())
        lo, hi = r[task]["worst"]["ci_" + metric]
        assert lo <= r[task]["worst"][metric] <= hi
        assert r[task]["worst"]["_per_speaker"].shape == (6,)
    assert r["speaker"]["worst"]["target_trials"] == 6 * 16 * 15 // 2
    assert r["emotion"]["worst"]["wf1"] > 0.8 and r["speaker"]["worst"]["eer"] < 0.2
    assert "_boot" not in str(public(r))


def test_attackers_in_worker_processes_give_the_sequential_results(monkeypatch):
    import tfvae.evaluate as evaluate

    corpus = _corpus(np.random.default_rng(3))
    ev = EvalSplits(corpus, seed=0, bootstrap=50)
    z = {k: corpus.splits[k].features for k in ("train", "validation", "test")}
    kw = {"emotion_attackers": ("logreg", "mlp"), "speaker_attackers": ("lda_cosine", "mlp_embedding")}
    runs = {}
    for jobs in (1, 2):
        monkeypatch.setattr(evaluate, "EVAL_JOBS", jobs)
        runs[jobs] = public(evaluate_view(z, ev, **kw))
    assert runs[1] == runs[2]
    assert set(runs[2]["speaker"]["attackers"]) == {"lda_cosine", "mlp_embedding"}


def test_privacy_cells_never_report_below_chance():
    cell = {"by": "x", "wf1": 0.10, "_boot": np.array([0.05, 0.3]), "_per_speaker": np.zeros(2)}
    c = privacy_cell(cell, "emotion", chance=0.25)
    assert c["wf1"] == 0.25 and c["raw"] == 0.10 and c["at_chance"] and c["ci_wf1"][0] >= 0.25
    c = privacy_cell({"by": "y", "eer": 0.62, "_boot": np.array([0.4, 0.7]), "_per_speaker": np.zeros(2)},
                     "speaker", 0.5)
    assert c["eer"] == 0.5 and c["raw"] == 0.62 and c["ci_eer"][1] <= 0.5
    c = privacy_cell({"by": "z", "eer": 0.31, "_boot": np.array([0.3]), "_per_speaker": np.zeros(1)}, "speaker", 0.5)
    assert c["eer"] == 0.31 and not c["at_chance"]


def test_bootstrap_resamples_speakers():
    rng = np.random.default_rng(0)
    codes = np.repeat(np.arange(5), 20)
    y = rng.integers(0, 3, 100)
    p = y.copy()
    p[codes == 0] = (y[codes == 0] + 1) % 3  # speaker 0 always wrong, the others always right
    b = emotion_bootstrap(y, p, codes, 3, speaker_weights(5, 500))
    np.testing.assert_array_equal(b["per_speaker_wf1"], [0, 1, 1, 1, 1])
    assert b["wf1"].min() < 0.7 and b["wf1"].max() == 1.0  # replicates without speaker 0 are perfect
    assert interval(b["wf1"])[0] < emotion_report(y, p, 3)["wf1"] < interval(b["wf1"])[1] + 1e-9
    t = sample_trials(codes)
    scores = t.score(rng.normal(size=(100, 4)) + np.eye(5, 4)[codes] * 3)
    sb = sv_bootstrap(scores, t, codes, np.ones((1, 5)))
    assert sb["eer"][0] == pytest.approx(eer(scores, t.label))
    assert sb["per_speaker_eer"].shape == (5,)
    assert wf1_uar(np.eye(3) * 4)[0] == pytest.approx(1.0)


def test_head_selection_counts_both_attributes():
    emo = np.array([0, 1, 0, 1])
    t = sample_trials(["a", "a", "b", "b"])
    probs = np.eye(2)[[0, 1, 1, 1]]
    emb = np.array([[1, 0], [1, 0.1], [0, 1], [0.1, 1]])
    r = head_selection({"emotion_probabilities": probs, "speaker_embedding": emb}, emo, t)
    assert r["uar"] == pytest.approx(0.75) and r["eer"] == pytest.approx(0.0)
    assert r["score"] == pytest.approx(0.25)
    mixed = np.array([[1, 0], [0, 1], [1, 0], [0, 1]])  # each speaker's utterances point apart
    r = head_selection({"speaker_embedding": mixed}, emo, t)
    assert set(r) == {"eer", "score"} and r["score"] == r["eer"] > 0.5
    assert chance_wf1([0, 0, 0, 1])["stratified"] == pytest.approx(0.625)


# --------------------------------------------------------------------------------- class tasks, groups
def _multi_corpus(seed=0):
    """Dimension 0 encodes gender (even speakers female), dimension 1 emotion, 2-5 the speaker.
    Every 7th row has an unknown gender (-1); test speaker t105 has no known gender at all."""
    from types import SimpleNamespace

    rng = np.random.default_rng(seed)
    splits = {}
    for name, first, n_spk in (("train", 0, 12), ("validation", 50, 4), ("test", 100, 6)):
        spk = np.repeat(np.arange(first, first + n_spk), 12)
        emo = np.tile(np.arange(3), n_spk * 4)
        gender = (spk % 2).astype(np.int64)
        z = rng.normal(size=(len(spk), 6)) * 0.3
        z[:, 0] += gender * 4
        z[:, 1] += emo * 3
        z[:, 2:] += rng.normal(size=(n_spk, 4))[spk - first] * 2
        gender[::7] = -1
        gender[spk == 105] = -1
        splits[name] = SimpleNamespace(features=z.astype(np.float32), emotion=emo,
                                       speaker=np.array([f"t{s}" for s in spk]),
                                       utterance_id=np.array([f"{name}{i}" for i in range(len(spk))]),
                                       labels={"gender": gender})
    return SimpleNamespace(name="toy", emotion_names=["a", "b", "c"], label_names={"gender": ["female", "male"]},
                           splits=splits)


def _view(corpus, dims):
    return {k: corpus.splits[k].features[:, dims] for k in ("train", "validation", "test")}


@pytest.fixture
def one_job(monkeypatch):
    import tfvae.evaluate as evaluate

    monkeypatch.setattr(evaluate, "EVAL_JOBS", 1)


def test_eval_splits_know_the_extra_class_labels():
    corpus = _multi_corpus()
    ev = EvalSplits(corpus, seed=0, bootstrap=20)
    g_te = corpus.splits["test"].labels["gender"]
    assert ev.class_tasks == ("emotion", "gender") and ev.tasks == ("emotion", "gender", "speaker")
    assert ev.class_names["gender"] == ["female", "male"] and ev.n_classes_of == {"emotion": 3, "gender": 2}
    np.testing.assert_array_equal(ev.y("gender", "test"), g_te[g_te >= 0])
    assert ev.chances["gender"] == chance_wf1(g_te[g_te >= 0]) and ev.chance == ev.chances["emotion"]
    assert ev.groups.label == "gender" and ev.groups.names == ["female", "male"]
    assert EvalSplits(corpus, tasks=(), bootstrap=0).class_tasks == ("emotion",)
    with pytest.raises(ValueError, match="age"):
        EvalSplits(corpus, tasks=("age",), bootstrap=0)
    plain = EvalSplits(_corpus(np.random.default_rng(0)), bootstrap=0)  # a corpus without extra labels
    assert plain.class_tasks == ("emotion",) and plain.groups is None


def test_gender_is_read_from_its_dimension_only(one_job):
    corpus = _multi_corpus()
    ev = EvalSplits(corpus, seed=0, bootstrap=50)
    tasks = ("emotion", "gender", "speaker")
    on_gender = evaluate_view(_view(corpus, [0]), ev, tasks, **attacker_suite(True))
    on_emotion = evaluate_view(_view(corpus, [1]), ev, tasks, **attacker_suite(True))
    assert on_gender["gender"]["worst"]["wf1"] > 0.95 and on_gender["gender"]["utility"]["by"] == "logreg"
    assert on_emotion["gender"]["worst"]["wf1"] < ev.chances["gender"]["stratified"] + 0.2
    assert on_emotion["emotion"]["worst"]["wf1"] > 0.95 and on_gender["emotion"]["worst"]["wf1"] < 0.6
    # rows of unknown gender are neither fit nor scored
    known = int((corpus.splits["test"].labels["gender"] >= 0).sum())
    assert np.sum(on_gender["gender"]["worst"]["confusion"]) == known < len(corpus.splits["test"].speaker)
    per = on_gender["gender"]["worst"]["_per_speaker"]
    assert per.shape == (6,) and np.isnan(per[-1]) and np.all(per[:-1] > 0.9)  # t105: no known gender
    c = privacy_cell(on_emotion["gender"]["worst"], "gender", ev.chances["gender"]["stratified"])
    assert c["wf1"] >= ev.chances["gender"]["stratified"]
    with pytest.raises(ValueError, match="age"):
        evaluate_view(_view(corpus, [0]), ev, ("age",))


def test_cells_are_broken_down_by_gender(one_job):
    from sklearn.metrics import f1_score

    corpus = _multi_corpus()
    ev = EvalSplits(corpus, seed=0, bootstrap=20)
    r = evaluate_view(_view(corpus, [1, 2, 3, 4, 5]), ev, ev.tasks, **attacker_suite(True))
    g = corpus.splits["test"].labels["gender"]
    emo = r["emotion"]["utility"]["by_group"]
    assert emo["label"] == "gender" and emo["rows"] == {"female": int((g == 0).sum()), "male": int((g == 1).sum())}
    assert emo["gap"] == pytest.approx(max(emo["values"].values()) - min(emo["values"].values()))
    assert "by_group" not in r["gender"]["utility"] and "by_group" not in r["gender"]["worst"]
    spk = r["speaker"]["worst"]["by_group"]
    t = ev.trials["test"]
    both_female = (g[t.i] == 0) & (g[t.j] == 0)
    assert spk["trials"]["female"] == int(both_female.sum()) > 0
    gaps = group_gaps(r)
    assert set(gaps) == {"emotion", "speaker"} and gaps["speaker"]["worst"] == spk

    # the model's own heads: emotion right on female rows, half right on male rows
    te = corpus.splits["test"]
    y = te.emotion
    pred = np.where((g == 1) & (np.arange(len(y)) % 2 == 1), (y + 1) % 3, y)
    emb = np.eye(6)[np.unique(te.speaker, return_inverse=True)[1]] + 0.1
    outputs = {"test": {"emotion_probabilities": np.eye(3)[pred], "speaker_embedding": emb,
                        "gender_probabilities": np.eye(2)[np.maximum(g, 0)]}}
    h = evaluate_heads(outputs, ev)
    by = h["emotion"]["utility"]["by_group"]["values"]
    assert by["female"] == pytest.approx(1.0)
    assert by["male"] == pytest.approx(f1_score(y[g == 1], pred[g == 1], average="weighted")) and by["male"] < 0.8
    assert h["gender"]["utility"]["wf1"] == pytest.approx(1.0) and h["speaker"]["utility"]["eer"] == pytest.approx(0)
    assert h["speaker"]["utility"]["by_group"]["values"] == {"female": 0.0, "male": 0.0}


def test_probe_scores_of_every_class_task():
    from tfvae.evaluate import probe_scores, probe_scores_all

    corpus = _multi_corpus()
    tr, va = corpus.splits["train"], corpus.splits["validation"]
    trials = sample_trials(va.speaker)
    lab_tr = {"emotion": tr.emotion, "gender": tr.labels["gender"]}
    lab_va = {"emotion": va.emotion, "gender": va.labels["gender"]}
    r = probe_scores_all(tr.features[:, :1], lab_tr, tr.speaker, va.features[:, :1], lab_va, trials)
    assert set(r) == {"emotion", "gender", "speaker"}
    assert r["gender"] == pytest.approx(1.0) and r["emotion"] < 0.6  # exact only when -1 rows are left out
    r = probe_scores_all(tr.features[:, 1:2], lab_tr, tr.speaker, va.features[:, 1:2], lab_va, trials)
    assert r["gender"] < 0.75 and r["emotion"] > 0.95
    assert probe_scores(tr.features, tr.emotion, tr.speaker, va.features, va.emotion, trials) == pytest.approx(
        tuple(probe_scores_all(tr.features, {"emotion": tr.emotion}, tr.speaker, va.features, {"emotion": va.emotion},
                               trials)[k] for k in ("emotion", "speaker")))


def test_head_selection_counts_a_gender_head():
    emo = np.array([0, 1, 0, 1])
    gender = np.array([0, 0, 1, -1])
    t = sample_trials(["a", "a", "b", "b"])
    emb = np.array([[1, 0], [1, 0.1], [0, 1], [0.1, 1]])
    out = {"emotion_probabilities": np.eye(2)[[0, 1, 0, 1]], "speaker_embedding": emb,
           "gender_probabilities": np.eye(2)[[0, 1, 1, 0]]}  # the last row's gender is unknown
    r = head_selection(out, emo, t, labels={"gender": gender})
    assert r["uar"] == 1.0 and r["gender_uar"] == pytest.approx(0.75) and r["eer"] == pytest.approx(0.0)
    assert r["score"] == pytest.approx(0.25)
    assert head_selection(out, emo, t) == {"uar": 1.0, "eer": r["eer"], "score": r["eer"]}


def test_class_tasks_report_the_paper_mlp():
    from tfvae.evaluate import _cells

    res = {n: {"test": {"wf1": w}, "validation": {"wf1": w}} for n, w in (("mlp", 0.4), ("logreg", 0.6))}
    r = _cells(res, "wf1", max, lambda n: {"by": n}, "gender")
    assert r["paper"]["by"] == "mlp" and r["utility"]["by"] == r["worst"]["by"] == "logreg"
