from types import SimpleNamespace

import numpy as np
import pytest

from tfvae.fairness import Groups, class_by_group, group_gaps, speaker_by_group, split_groups
from tfvae.metrics import eer, sample_trials


def _groups(codes):
    return Groups("gender", ["female", "male"], np.asarray(codes, np.int64))


def test_class_wf1_of_each_group_by_hand():
    #          female rows: all right   | male rows: half right (WF1 0.5) | unknown group
    y = np.array([0, 1, 2, 0, 0, 1, 1, 2])
    p = np.array([0, 1, 2, 0, 1, 0, 1, 0])
    g = _groups([0, 0, 0, 1, 1, 1, 1, -1])
    r = class_by_group(g, y, p, 3)
    assert r == {"label": "gender", "values": {"female": 1.0, "male": 0.5}, "gap": 0.5,
                 "rows": {"female": 3, "male": 4}}
    # predictions covering a subset of the split's rows (e.g. those with a known task label)
    rows = np.array([True, True, False, True, True, True, True, False])
    r = class_by_group(g, y[rows], p[rows], 3, rows)
    assert r["rows"] == {"female": 2, "male": 4} and r["values"]["female"] == 1.0
    # a group without rows in the cell: no value, no gap
    r = class_by_group(g, y[3:7], p[3:7], 3, np.arange(3, 7))
    assert r["values"] == {"female": None, "male": 0.5} and r["gap"] is None and r["rows"]["female"] == 0


def test_speaker_eer_over_the_trials_within_each_group():
    # speakers a, b female; c male (one target trial, no non-target trial inside the group); row 6 unknown
    spk = ["a", "a", "b", "b", "c", "c", "d"]
    g = _groups([0, 0, 0, 0, 1, 1, -1])
    t = sample_trials(spk)
    same = np.array(spk)[t.i] == np.array(spk)[t.j]
    inside = (g.codes[t.i] == 0) & (g.codes[t.j] == 0)
    # within female trials targets outscore non-targets (EER 0); trials across groups or with the
    # unknown row are scored adversarially (non-targets 1.0, targets -1.0)
    scores = np.where(inside, np.where(same, 0.9, 0.1), np.where(same, -1.0, 1.0))
    r = speaker_by_group(g, scores, t)
    assert r["label"] == "gender" and r["trials"] == {"female": 6, "male": 1}
    assert r["values"] == {"female": 0.0, "male": None} and r["gap"] is None
    assert eer(scores, t.label) > 0.2  # the cross-group trials would have counted
    scores2 = scores.copy()
    scores2[inside & ~same] = 0.95  # every female non-target above every female target
    assert speaker_by_group(g, scores2, t)["values"]["female"] == pytest.approx(1.0)


def test_groups_of_a_corpus_and_gaps_of_a_result():
    split = SimpleNamespace(emotion=np.array([0, 1, 1]), labels={"gender": np.array([1, -1, 0]),
                                                                  "age": np.array([-1, -1, -1])})
    corpus = SimpleNamespace(emotion_names=["x", "y"], label_names={"gender": ["female", "male"]},
                             splits={"test": split})
    g = split_groups(corpus, "gender")
    assert g.names == ["female", "male"] and g.present == [0, 1]
    assert split_groups(corpus, "age") is None and split_groups(corpus, "accent") is None
    assert split_groups(corpus, None) is None and split_groups(corpus, "emotion").names == ["x", "y"]
    assert split_groups(SimpleNamespace(splits={"test": SimpleNamespace(emotion=[0])}), "gender") is None
    bg = {"label": "gender", "values": {"female": 0.9, "male": 0.7}, "gap": 0.2, "rows": {"female": 3, "male": 3}}
    result = {"nodes": 4, "emotion": {"attackers": {}, "utility": {"wf1": 0.9, "by_group": bg}, "worst": {"wf1": 0.9}},
              "gender": {"attackers": {}, "utility": {"wf1": 1.0}, "worst": {"wf1": 1.0}}}
    assert group_gaps(result) == {"emotion": {"utility": bg, "worst": None}}
