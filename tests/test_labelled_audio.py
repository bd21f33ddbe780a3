import json

import pytest

from tfvae.labelled_audio import (GENDERS, BadItem, BadItemsError, Utterance, assert_speaker_disjoint,
                                  check_utterances, class_counts, label_counts, parse_gender, settle_bad_items)


def _u(uid, path, speaker="s1", emotion="angry", split="train"):
    return Utterance(uid, str(path), speaker, emotion, split)


def test_check_utterances_reports_every_problem(tmp_path):
    f = tmp_path / "a.wav"
    f.write_bytes(b"x")
    utts = [_u("a", f), _u("b", tmp_path / "missing.wav"), _u("c", f, emotion="bored"),
            _u("d", f), _u("d", f, speaker="s2"), _u("e", f, split="dev"), _u("g", f, speaker=" ")]
    good, bad = check_utterances(utts, ["angry", "sad"])
    assert [u.utterance_id for u in good] == ["a"]
    reasons = {(b.utterance_id, b.reason) for b in bad}
    assert ("b", "file not found") in reasons
    assert ("c", "unknown emotion label 'bored' (expected one of angry, sad)") in reasons
    assert sum(1 for b in bad if b.utterance_id == "d" and b.reason == "utterance ID appears 2 times") == 2
    assert ("e", "unknown split 'dev' (expected one of train, validation, test)") in reasons
    assert ("g", "empty speaker ID") in reasons


def test_settle_stops_or_skips_with_a_report(tmp_path, capsys):
    bad = [BadItem(f"u{i}", f"/x/u{i}.wav", "file not found") for i in range(60)] + \
          [BadItem("v", "/x/v.wav", "silent signal (peak amplitude below 0.0001)")]
    with pytest.raises(BadItemsError) as e:
        settle_bad_items(bad, skip=False, report_path=tmp_path / "r.json", name="toy")
    msg = str(e.value)
    assert msg.startswith("61 bad item(s); none were skipped") and "u0 (/x/u0.wav): file not found" in msg
    assert "... and 11 more" in msg and f"full report: {tmp_path / 'r.json'}" in msg
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["count"] == 61 and report["by_reason"] == {"file not found": 60, "silent signal": 1}
    summary = settle_bad_items(bad, skip=True, report_path=tmp_path / "s.json", name="toy")
    assert summary == {"count": 61, "by_reason": {"file not found": 60, "silent signal": 1}, "report": "s.json"}
    assert "[toy] skipped 61 bad item(s): file not found: 60, silent signal: 1" in capsys.readouterr().out
    assert settle_bad_items([], skip=False, report_path=tmp_path / "t.json", name="toy")["count"] == 0
    assert not (tmp_path / "t.json").exists()


def test_speaker_disjointness_and_counts():
    utts = [_u("a", "p", "s1"), _u("b", "p", "s2", "sad", "test"), _u("c", "p", "s1", "sad")]
    assert_speaker_disjoint(utts, "toy")
    assert class_counts(utts) == {"test": {"sad": 1}, "train": {"angry": 1, "sad": 1}}
    with pytest.raises(ValueError, match=r"toy: 1 speaker\(s\) appear in more than one split: s1 in"):
        assert_speaker_disjoint(utts + [_u("d", "p", "s1", split="validation")], "toy")


def test_extra_labels_are_checked_filled_and_counted(tmp_path):
    f = tmp_path / "a.wav"
    f.write_bytes(b"x")
    utts = [Utterance("a", str(f), "s1", "angry", "train", {"gender": "male"}),
            Utterance("b", str(f), "s2", "angry", "train"),  # no gender: unknown
            Utterance("c", str(f), "s3", "sad", "test", {"gender": "female"}),
            Utterance("d", str(f), "s4", "sad", "test", {"gender": "other"}),
            Utterance("e", str(f), "s5", "sad", "test", {"gender": "male", "age": "old"})]
    good, bad = check_utterances(utts, ["angry", "sad"], labels={"gender": GENDERS})
    assert [(u.utterance_id, dict(u.labels)) for u in good] == [
        ("a", {"gender": "male"}), ("b", {"gender": "unknown"}), ("c", {"gender": "female"})]
    assert [(b.utterance_id, b.reason) for b in bad] == [
        ("d", "unknown gender label 'other' (expected one of female, male, unknown)"),
        ("e", "label(s) age are not features of this dataset")]
    assert label_counts(good, "gender", GENDERS) == {
        "train": {"female": 0, "male": 1, "unknown": 1}, "validation": {"female": 0, "male": 0, "unknown": 0},
        "test": {"female": 1, "male": 0, "unknown": 0}}
    # without label names, labels are neither checked nor filled
    good, bad = check_utterances(utts, ["angry", "sad"])
    assert len(good) == 5 and not bad and dict(good[1].labels) == {}
    assert len({utts[0], utts[2]}) == 2  # still hashable


def test_parse_gender():
    assert [parse_gender(v) for v in ["Female", "f", " MALE ", "m", "Unknown", "", None, "x", "fem"]] == \
        ["female", "female", "male", "male", "unknown", "unknown", "unknown", None, None]
