"""Streamed corpora (tfvae.stream): a split loaded with ``in_memory_mb=0`` is read from the TFDS files
and gives exactly the rows, statistics, batches and encodings of the in-memory load."""

import numpy as np
import pytest

from tfvae.stream import RowWriter, StreamedFeatures, StreamPipeline, concatenate, moments


@pytest.fixture(scope="module")
def both(demo_data_dir):
    from tfvae.data import load_corpus

    mem = load_corpus("tfvae_demo/is10_small", "IS10", data_dir=demo_data_dir)
    st = load_corpus("tfvae_demo/is10_small", "IS10", data_dir=demo_data_dir, in_memory_mb=0)
    return mem, st


def test_streamed_split_has_the_rows_and_labels_of_the_in_memory_one(both):
    mem, st = both
    for s in ("train", "validation", "test"):
        a, b = mem.splits[s], st.splits[s]
        assert isinstance(b.features, StreamedFeatures) and not isinstance(a.features, StreamedFeatures)
        assert b.features.shape == a.features.shape and len(b) == len(a)
        np.testing.assert_array_equal(b.utterance_id, a.utterance_id)
        np.testing.assert_array_equal(b.emotion, a.emotion)
        np.testing.assert_array_equal(b.features.to_numpy(), a.features)
        assert set(b.labels) == set(a.labels) == {"gender"}
        np.testing.assert_array_equal(b.labels["gender"], a.labels["gender"])
        np.testing.assert_array_equal(b.labels["gender"], [int(x[3:]) % 2 for x in b.speaker.tolist()])
    assert st.dim == mem.dim == 1582
    assert st.label_names == mem.label_names == {"gender": ["female", "male"]}


def test_take_subsets_and_concatenation_select_by_utterance(both):
    mem, st = both
    x, f = mem.splits["train"].features, st.splits["train"].features
    rows = np.array([77, 3, 40, 0])
    np.testing.assert_array_equal(f.take(rows), x[rows])
    mask = np.zeros(len(f), bool)
    mask[[1, 5, 6, 70]] = True
    sub = f[mask]
    assert len(sub) == 4 and sub.shape == (4, 1582)
    np.testing.assert_array_equal(sub.to_numpy(), x[mask])
    inner = np.array([False, True, False, True])  # a subset of a subset
    np.testing.assert_array_equal(sub[inner].to_numpy(), x[mask][inner])
    joined = concatenate([sub, st.splits["test"].features])
    np.testing.assert_array_equal(joined.to_numpy(), np.concatenate([x[mask], mem.splits["test"].features]))
    with pytest.raises(TypeError, match="boolean mask of 80 rows"):
        f[np.arange(3)]
    with pytest.raises(IndexError, match="outside the 80 rows"):
        f.take([1, 500])


def test_streaming_moments_equal_numpy(both):
    mem, st = both
    x = mem.splits["train"].features.astype(np.float64)
    m = moments(st.splits["train"].features, batch_size=7)  # many uneven chunks
    assert m.n == len(x) and m.nonfinite == 0
    np.testing.assert_allclose(m.mean, x.mean(0), rtol=1e-10, atol=1e-9)
    np.testing.assert_allclose(m.variance, x.var(0), rtol=1e-9, atol=1e-9)


def test_stream_pipeline_epochs_shards_padding_and_resume(both):
    mem, st = both
    pipe = StreamPipeline(st.splits["train"].features, st.speaker_index(), shuffle_buffer=16)
    x = mem.splits["train"].features
    key = lambda a: np.round(a[:, :3].astype(np.float64), 4).tolist()  # noqa: E731  rows by their first values

    def rows(ds):
        return [b for b in ds.as_numpy_iterator()]

    e0 = rows(pipe.dataset(12, seed=3, epochs=range(0, 1)))
    assert len(e0) == 7 and [len(b["features"]) for b in e0][-1] == 8
    got = np.concatenate([b["features"] for b in e0])
    assert sorted(key(got)) == sorted(key(x)), "one epoch = every training row once"
    assert key(got) != key(x), "shuffled"
    speakers = np.concatenate([b["speaker"] for b in e0])
    assert speakers.min() == 0 and speakers.max() == len(st.speaker_index()) - 1
    again = np.concatenate([b["features"] for b in rows(pipe.dataset(12, seed=3, epochs=range(0, 1)))])
    np.testing.assert_array_equal(got, again)  # seeded: a resumed run replays the epoch
    e1 = np.concatenate([b["features"] for b in rows(pipe.dataset(12, seed=3, epochs=range(1, 2)))])
    assert key(e1) != key(got), "each epoch in its own order"
    two = rows(pipe.dataset(12, seed=3, epochs=range(0, 2), skip_batches=4))
    assert len(two) == 10
    np.testing.assert_array_equal(np.concatenate([b["features"] for b in two[:3]]),
                                  np.concatenate([b["features"] for b in e0[4:]]))
    # two input pipelines: disjoint halves of the rows, both padded to the same number of batches
    shards = [rows(pipe.dataset(12, seed=3, num_shards=2, shard_index=i, batches_per_epoch=5)) for i in range(2)]
    assert [len(s) for s in shards] == [5, 5] and [len(b["features"]) for b in shards[0]] == [12, 12, 12, 4, 0]
    parts = [np.concatenate([b["features"] for b in s]) for s in shards]
    assert [len(p) for p in parts] == [40, 40]
    assert sorted(key(np.concatenate(parts))) == sorted(key(x))
    assert pipe.features.shard_rows(0, 2) == 40
    # validation order: file order, every epoch the same
    val = rows(pipe.dataset(50, epochs=range(2)))
    assert len(val) == 4
    np.testing.assert_array_equal(np.concatenate([b["features"] for b in val[:2]]), x)
    np.testing.assert_array_equal(np.concatenate([b["features"] for b in val[2:]]), x)


def test_stream_pipeline_carries_extra_labels_mapped_in_the_graph(both):
    from tfvae.pipeline import split_pipeline

    mem, st = both
    pipe = split_pipeline(st, "train", shuffle_buffer=16, labels=["gender"])
    assert type(pipe).__name__ == "StreamPipeline" and pipe.labels == ("gender",)
    x, g = mem.splits["train"].features, mem.labels("train", "gender")
    truth = {tuple(np.round(r[:3].astype(np.float64), 4)): int(k) for r, k in zip(x, g)}
    shards = [list(pipe.dataset(12, seed=3, num_shards=2, shard_index=i, batches_per_epoch=5).as_numpy_iterator())
              for i in range(2)]
    assert [len(b["gender"]) for b in shards[0]] == [12, 12, 12, 4, 0]  # the padding batch has it too
    got = {}
    for b in shards[0] + shards[1]:
        assert b["gender"].dtype == np.int32
        for r, k in zip(b["features"], b["gender"]):
            got[tuple(np.round(r[:3].astype(np.float64), 4))] = int(k)
    assert got == truth and sorted(set(got.values())) == [0, 1]
    # the `unknown` class index becomes -1 (the demo has none: map a class of it as if it were)
    pipe.remaps["gender"] = np.array([-1, 1, -1])
    first = next(pipe.dataset(80, epochs=range(1)).as_numpy_iterator())
    np.testing.assert_array_equal(first["gender"], np.where(g == 0, -1, 1))
    # a masked subset (a fold) stays streamed and keeps its labels
    from tfvae.data import concat_splits

    mask = np.zeros(80, bool)
    mask[[2, 9, 40, 41]] = True
    sub = st.splits["train"].select(mask)
    assert isinstance(sub.features, StreamedFeatures) and sub.labels["gender"].tolist() == g[mask].tolist()
    np.testing.assert_array_equal(sub.features.to_numpy(), x[mask])
    joined = concat_splits([sub, st.splits["test"]])
    assert isinstance(joined.features, StreamedFeatures) and len(joined) == 24
    np.testing.assert_array_equal(joined.labels["gender"], np.concatenate([g[mask], mem.labels("test", "gender")]))
    with pytest.raises(ValueError, match="has no label\\(s\\) age; it has: emotion, gender"):
        StreamPipeline(st.splits["train"].features, st.speaker_index(), labels=["age"])


def test_row_writer_spills_to_disk_past_its_budget(tmp_path):
    data = np.arange(60, dtype=np.float32).reshape(20, 3)
    w = RowWriter(20, budget_mb=0, path=tmp_path / "enc" / "train.latent.npy")
    for i in range(0, 20, 7):
        w.write(data[i:i + 7])
    out = w.close()
    assert isinstance(out, np.memmap) and (tmp_path / "enc" / "train.latent.npy").exists()
    np.testing.assert_array_equal(out, data)
    mem = RowWriter(20, budget_mb=1, path=tmp_path / "x.npy")
    mem.write(data)
    assert not isinstance(mem.close(), np.memmap) and not (tmp_path / "x.npy").exists()
    short = RowWriter(20, budget_mb=1)
    short.write(data[:5])
    with pytest.raises(ValueError, match="wrote 5 rows, expected 20"):
        short.close()


def test_training_on_a_streamed_corpus_matches_its_statistics_and_encodes_alike(both, tmp_path):
    """The normaliser of a streamed corpus equals the in-memory one; encodings of both loads are equal."""
    from tfvae.config import TrainConfig
    from tfvae.distribute import make_strategy
    from tfvae.train import build_trainer, encode_splits

    mem, st = both
    cfg = TrainConfig(dataset="tfvae_demo/is10_small", epochs=1, verbose=0, batch_size=32)
    model, trainer = build_trainer(cfg, st, make_strategy("default"))
    assert type(trainer.train_pipe).__name__ == "StreamPipeline"
    mean = model.normalizer.adapt_mean.numpy()
    np.testing.assert_allclose(mean, mem.splits["train"].features.astype(np.float64).mean(0), rtol=1e-5, atol=1e-4)
    a = encode_splits(model, mem, batch_size=25)
    b = encode_splits(model, st, batch_size=25, keys=("latent",), spill_dir=tmp_path, memory_mb=0)
    assert set(b["test"]) == {"latent"} and isinstance(b["test"]["latent"], np.memmap)
    np.testing.assert_allclose(b["test"]["latent"], a["test"]["latent"], atol=1e-6)


def test_stage_clock_laps_add_up_and_parse_back():
    import time

    from tfvae.stages import StageClock, parse

    clock = StageClock()
    time.sleep(0.02)
    clock.lap("load")
    clock.lap("train")
    time.sleep(0.01)
    clock.lap("load")
    assert clock.seconds["load"] >= 0.03 and clock.seconds["train"] < clock.seconds["load"]
    out = f"noise\n{clock.line()}\n[tfvae] done"
    assert parse(out) == {k: round(v, 2) for k, v in clock.seconds.items()}
    assert parse("no stages here") == {}


def test_speaker_folds_of_a_streamed_corpus_equal_the_in_memory_folds(both):
    from tfvae.experiments import fold_corpus, make_folds, raw_corpus

    mem, st = both
    (pm, fm), (ps, fs) = make_folds(mem, 3, None, 0), make_folds(st, 3, None, 0)
    assert fm == fs
    a, b = fold_corpus(mem, pm, fm[1]), fold_corpus(st, ps, fs[1])
    for s in ("train", "validation", "test"):
        assert isinstance(b.splits[s].features, StreamedFeatures)
        np.testing.assert_array_equal(b.splits[s].utterance_id, a.splits[s].utterance_id)
        np.testing.assert_array_equal(b.splits[s].features.to_numpy(), a.splits[s].features)
    assert raw_corpus(a, 0) is a
    assert len(raw_corpus(b, 0).splits["train"].features) == len(a.splits["train"])  # fewer rows than the cap
