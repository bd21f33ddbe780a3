import numpy as np
import pytest

from tfvae.data import Corpus, Split
from tfvae.evaluate import (EvalSplits, chance_wf1, emotion_bootstrap, emotion_report, evaluate_view, head_selection,
                            interval, privacy_cell, public, speaker_weights, sv_bootstrap, wf1_uar)
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
