"""Batch orders of an in-memory training split (tfvae.order, --batch_order)."""

import numpy as np
import pytest

from tfvae.data import Corpus, Split
from tfvae.pipeline import split_pipeline
from tfvae.order import epoch_order


def _counts(groups, order, batch):
    g = np.asarray(groups)[order]
    return np.stack([np.bincount(g[i:i + batch], minlength=g.max() + 1) for i in range(0, len(g) - batch + 1, batch)])


def test_speaker_order_spreads_every_voice_evenly_over_the_epoch():
    groups = np.repeat(np.arange(48), 60)  # RAVDESS with speed-perturbed copies: 48 voices x 60 utterances
    order = epoch_order(len(groups), seed=0, epoch=3, groups=groups)
    np.testing.assert_array_equal(np.sort(order), np.arange(len(groups)))  # every row once
    c = _counts(groups, order, 128)  # 128 x 60 / 2880 = 2.67 rows of each voice per batch
    assert c.min() == 2 and c.max() == 3
    r = _counts(groups, epoch_order(len(groups), seed=0, epoch=3), 128)
    assert r.min() == 0 and r.max() >= 6  # what a uniform shuffle gives: voices missing, others four-fold


def test_unequal_speakers_keep_their_share_in_every_batch():
    groups = np.concatenate([np.zeros(300, int), np.ones(100, int), np.full(50, 2), np.full(10, 3)])
    order = epoch_order(len(groups), seed=5, epoch=0, groups=groups)
    c = _counts(groups, order, 46)  # shares 30, 10, 5, 1 rows per batch of 46
    share = 46 * np.bincount(groups) / len(groups)
    assert np.all(np.abs(c - share) < 1.0 + 1e-9)


def test_orders_are_drawn_from_seed_and_epoch_alone():
    groups = np.repeat(np.arange(5), 7)
    a = epoch_order(35, seed=1, epoch=2, groups=groups)
    np.testing.assert_array_equal(a, epoch_order(35, seed=1, epoch=2, groups=groups))
    assert not np.array_equal(a, epoch_order(35, seed=1, epoch=3, groups=groups))
    assert not np.array_equal(a, epoch_order(35, seed=2, epoch=2, groups=groups))
    with pytest.raises(ValueError, match="groups holds 34 rows, expected 35"):
        epoch_order(35, seed=1, epoch=2, groups=groups[:34])


def _corpus():
    rng = np.random.default_rng(0)

    def split(speakers, per, offset):
        spk = np.repeat(speakers, per)
        return Split(rng.normal(size=(len(spk), 4)).astype(np.float32), np.arange(len(spk)) % 3, spk,
                     np.array([f"u{offset + i}" for i in range(len(spk))]))
    return Corpus(name="toy", feature_set="IS10", emotion_names=["a", "b", "c"], splits={
        "train": split([f"s{i}" for i in range(8)], 12, 0), "validation": split(["v"], 6, 500),
        "test": split(["t"], 6, 900)})


def test_pipeline_batches_speaker_stratified_and_shards_keep_every_row():
    c = _corpus()
    pipe = split_pipeline(c, "train", batch_order="speaker")
    batches = list(pipe.dataset(16, seed=0, epochs=range(2)).as_numpy_iterator())
    assert len(batches) == 12 and all(len(b["speaker"]) == 16 for b in batches)
    assert all(set(np.bincount(b["speaker"], minlength=8)) == {2} for b in batches)  # 16 rows, 8 voices
    shards = [np.concatenate([b["features"] for b in pipe.dataset(16, seed=0, num_shards=2, shard_index=k,
                                                                 batches_per_epoch=3).as_numpy_iterator()])
              for k in (0, 1)]
    both = np.concatenate(shards)
    assert len(both) == 96
    np.testing.assert_allclose(np.sort(both.sum(1)), np.sort(c.splits["train"].features.sum(1)), rtol=1e-6)
    rnd = list(split_pipeline(c, "train").dataset(16, seed=0).as_numpy_iterator())
    assert any(np.bincount(b["speaker"], minlength=8).max() > 2 for b in rnd)


def test_an_unknown_order_is_refused_with_the_choices():
    with pytest.raises(ValueError, match="batch_order='voices' is unknown; choose one of random, speaker"):
        split_pipeline(_corpus(), "train", batch_order="voices")


def test_a_streamed_split_says_it_is_batched_from_its_shuffle_buffer(demo_data_dir, capsys):
    from tfvae.data import load_corpus
    from tfvae.stream import StreamPipeline

    st = load_corpus("tfvae_demo/is10_small", "IS10", data_dir=demo_data_dir, in_memory_mb=0)
    pipe = split_pipeline(st, "train", shuffle_buffer=64, batch_order="speaker")
    assert isinstance(pipe, StreamPipeline)
    assert ("batch_order=speaker: the train split of tfvae_demo/is10_small is streamed, so its batches come from "
            "a shuffle buffer of 64 rows in random order") in capsys.readouterr().out
