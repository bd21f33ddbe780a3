"""tfvae.loop: fault tolerance (SIGKILL mid-epoch, then resume), XLA and mixed precision."""

import csv
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import h5py
import keras
import numpy as np
import pytest

from tfvae.config import TrainConfig
from tfvae.loop import BackupMismatchError, Trainer

SMALL = ["--dataset", "tfvae_demo/is10_small", "--speed_perturb", "false", "--latent_dim", "32", "--mask_groups", "8",
         "--encoder_units", "64", "--decoder_units", "64", "--head_units", "32", "--verbose", "2", "--eval_attackers", "fast"]
RUN = "tfvae_demo-is10_small-IS10-lrvae"


def _train_cmd(data_dir, out):
    # 80 training utterances / batch 8 = 10 steps per epoch; a backup every 3 steps and at each epoch end
    return [sys.executable, "-m", "tfvae.train", *SMALL, "--data_dir", data_dir, "--epochs", "8", "--batch_size", "8",
            "--backup_every", "3", "--output_dir", str(out / "runs"), "--export_dir", str(out / "sm")]


def _weights(path):
    with h5py.File(path, "r") as f:
        out = {}
        f.visititems(lambda name, obj: out.__setitem__(name, np.asarray(obj)) if isinstance(obj, h5py.Dataset) else None)
    return out


def test_sigkill_mid_epoch_then_resume_matches_an_uninterrupted_run(demo_data_dir, tmp_path):
    ref = subprocess.run(_train_cmd(demo_data_dir, tmp_path / "ref"), capture_output=True, text=True, timeout=600)
    assert ref.returncode == 0, ref.stdout[-3000:] + ref.stderr[-3000:]

    out = tmp_path / "killed"
    backup = out / "runs" / RUN / "backup"
    proc = subprocess.Popen(_train_cmd(demo_data_dir, out), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.monotonic() + 300
    while proc.poll() is None and time.monotonic() < deadline:
        # ckpt-<global step>: kill once a backup from epoch 3 (steps 21-29) exists
        if any(21 <= int(p.name.split("-")[1].split(".")[0]) < 30 for p in backup.glob("ckpt-*.index")):
            os.kill(proc.pid, signal.SIGKILL)
            break
        time.sleep(0.005)
    log = proc.communicate(timeout=60)[0]
    assert proc.returncode == -signal.SIGKILL, f"the run ended before it could be killed:\n{log[-2000:]}"
    assert "[tfvae] done" not in log and not (out / "runs" / RUN / "summary.json").exists()

    resumed = subprocess.run(_train_cmd(demo_data_dir, out), capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-3000:]
    line = next(l for l in resumed.stdout.splitlines() if "resuming from backup" in l)
    epoch, step = int(line.split("epoch ")[1].split(",")[0]), int(line.split("step ")[1])
    assert epoch >= 3 and 0 <= step < 10
    assert not backup.exists(), "the backup is removed once the run is complete"

    # same seed: the resumed run ends exactly where the uninterrupted one does (tolerance 0)
    a = _weights(tmp_path / "ref" / "runs" / RUN / "best.weights.h5")
    b = _weights(out / "runs" / RUN / "best.weights.h5")
    assert a.keys() == b.keys() and len(a) > 20
    for k in a:
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)
    ha = list(csv.DictReader(open(tmp_path / "ref" / "runs" / RUN / "history.csv")))
    hb = list(csv.DictReader(open(out / "runs" / RUN / "history.csv")))
    assert len(ha) == len(hb) == 8
    for ra, rb in zip(ha, hb):
        for k in ("loss", "emo", "id", "vae", "val_selection"):
            assert float(ra[k]) == float(rb[k]), (k, ra["epoch"])


def test_a_backup_of_another_configuration_is_not_resumed(small_corpus, tmp_path):
    from tfvae.train import config_fingerprint, fit_model
    from tfvae.distribute import make_strategy

    cfg = TrainConfig.from_args([*SMALL, "--epochs", "2", "--batch_size", "16"])
    strategy = make_strategy("default")
    model, _, _ = fit_model(cfg, small_corpus, strategy, None, tmp_path, announce=False)
    # leave a backup behind as an interrupted run would, then resume with another learning rate
    trainer = Trainer(model, strategy, small_corpus, 16, verbose=0)
    trainer._progress.assign([1, 2])
    trainer._state.assign('{"fingerprint": "%s", "history": {}, "best_value": 1e9, "best_epoch": 0}'
                          % config_fingerprint(cfg, None))
    import tensorflow as tf

    tf.train.CheckpointManager(trainer._checkpoint, str(tmp_path / "backup"), 1).save()
    other = TrainConfig.from_args([*SMALL, "--epochs", "2", "--batch_size", "16", "--learning_rate", "0.01"])
    with pytest.raises(BackupMismatchError, match="backup of a run with a different configuration"):
        fit_model(other, small_corpus, strategy, None, tmp_path, announce=False)
    # other layer shapes: the configurations are compared before restoring (no shape-mismatch restore error)
    wider = TrainConfig.from_args([*SMALL, "--epochs", "2", "--batch_size", "16", "--latent_dim", "24"])
    with pytest.raises(BackupMismatchError, match="backup of a run with a different configuration"):
        fit_model(wider, small_corpus, strategy, None, tmp_path, announce=False)


@pytest.mark.parametrize("options", [["--jit_compile"], ["--precision", "mixed_bfloat16"],
                                     ["--precision", "mixed_float16"],
                                     ["--jit_compile", "--precision", "mixed_bfloat16"],
                                     ["--jit_compile", "--disc_steps", "2", "--ema_epochs", "1"],
                                     ["--precision", "mixed_float16", "--disc_steps", "2"]])
def test_xla_and_mixed_precision_train_with_finite_losses(small_corpus, tmp_path, options):
    from tfvae.distribute import make_strategy
    from tfvae.train import encode_splits, fit_model

    cfg = TrainConfig.from_args([*SMALL, "--epochs", "3", "--batch_size", "16", *options])
    try:
        model, hist, best = fit_model(cfg, small_corpus, make_strategy("default"), None, tmp_path, announce=False)
        for term in ("loss", "recon", "kl", "emo", "id", "emo_adv", "id_adv", "val_selection"):
            assert np.all(np.isfinite(hist[term])), (term, hist[term])
        assert hist["selection"][-1] < hist["selection"][0]  # the non-adversarial terms learn
        policy = cfg.precision
        if policy != "float32":
            assert model.dtype_policy.name == policy and model.encoder.layers[0].compute_dtype == policy[6:]
            assert model.normalizer.compute_dtype == "float32"
            out = model.forward(small_corpus.splits["train"].features[:8], training=True)
            # the numerically sensitive parts stay float32: posterior (KL), likelihood, logits for the CE
            assert out["q"].dtype == "float32" and out["x_loc"].dtype == "float32"
            _, terms = model.compute_losses({"features": small_corpus.splits["train"].features[:8],
                                             "emotion": small_corpus.splits["train"].emotion[:8],
                                             "speaker": np.zeros(8, np.int32)})
            assert all(terms[k].dtype == "float32" for k in ("recon", "kl", "emo", "id", "emo_adv", "id_adv"))
        if policy == "mixed_float16":
            assert isinstance(model.optimizer, keras.optimizers.LossScaleOptimizer)
        if "--disc_steps" in options:  # two discriminator updates a step: one extra, one joint
            # the chosen checkpoint holds both optimizers' state at its epoch: 5 steps an epoch
            assert int(model.disc_optimizer.iterations) == int(model.optimizer.iterations) == best * 5
            assert isinstance(model.disc_optimizer, keras.optimizers.LossScaleOptimizer) == (policy == "mixed_float16")
        z = encode_splits(model, small_corpus)["test"]["latent"]
        assert z.dtype == np.float32 and np.all(np.isfinite(z))
    finally:
        keras.mixed_precision.set_global_policy("float32")


def test_xla_compiles_the_whole_step_on_one_replica(small_corpus):
    """--jit_compile under the default strategy: one XLA cluster per step (optimizer update and metrics
    included), bit-identical from run to run and equal, up to float rounding, to the multi-replica
    form (only the forward and backward pass compiled, the optimizer update outside)."""
    import tensorflow as tf

    from tfvae.distribute import make_strategy
    from tfvae.train import build_trainer

    runs = {}
    for name in ("whole", "whole again", "gradients only"):
        cfg = TrainConfig.from_args([*SMALL, "--batch_size", "16", "--verbose", "0", "--jit_compile"])
        model, trainer = build_trainer(cfg, small_corpus, make_strategy("default"))
        assert trainer.xla_whole_step
        it = iter(trainer.train_batches(0))
        step = trainer.train_function
        if name == "gradients only":
            grad_fn = tf.function(model.compute_gradients, jit_compile=True)
            step = tf.function(lambda it: model.train_step(next(it), gradient_fn=grad_fn))
        logs = [step(it) for _ in range(trainer.steps_per_epoch)][-1]
        runs[name] = ([w.numpy() for w in model.trainable_weights], {k: float(v) for k, v in logs.items()},
                      int(model.optimizer.iterations.numpy()))
        if name == "whole":
            assert trainer.train_function.function.experimental_get_tracing_count() == 1
    for a, b in zip(runs["whole"][0], runs["whole again"][0]):
        np.testing.assert_array_equal(a, b)
    assert runs["whole"][1:] == runs["whole again"][1:]
    assert runs["whole"][2] == runs["gradients only"][2] == 5  # 80 training utterances / 16
    for a, b in zip(runs["whole"][0], runs["gradients only"][0]):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)
    for k, v in runs["gradients only"][1].items():
        assert abs(runs["whole"][1][k] - v) <= 1e-5 * max(1.0, abs(v)), k


def test_weight_averaging_validates_selects_and_keeps_the_averaged_weights(small_corpus, tmp_path):
    from tfvae.distribute import make_strategy
    from tfvae.optimizers import ema_momentum
    from tfvae.train import build_trainer

    assert ema_momentum(2, 10) == pytest.approx(0.95) and ema_momentum(0.05, 4) == 0.0
    # 80 training utterances / batch 16 = 5 steps per epoch: momentum 1 - 1 / (2 * 5)
    cfg = TrainConfig.from_args([*SMALL, "--epochs", "3", "--batch_size", "16", "--ema_epochs", "2",
                                 "--select_after", "1"])
    model, trainer = build_trainer(cfg, small_corpus, make_strategy("default"), None)
    assert model.optimizer.use_ema and model.optimizer.ema_momentum == pytest.approx(0.9)
    result = trainer.fit(3, tmp_path, select_from_epoch=3)  # what fit_model passes for select_after 1
    averages = model.optimizer._model_variables_moving_average
    assert result.best_epoch == 3  # select_after 1: the last epoch, whose average the optimizer still holds
    for w, a in zip(model.trainable_variables, averages):
        np.testing.assert_array_equal(w.numpy(), a.numpy(), err_msg=w.path)
    # within the block the weights are the averages, afterwards the weights themselves again
    for w in model.trainable_variables:
        w.assign(w.numpy() + 1.0)
    raw = [w.numpy().copy() for w in model.trainable_variables]
    with trainer.averaged_weights():
        assert all(np.array_equal(w.numpy(), a.numpy()) for w, a in zip(model.trainable_variables, averages))
        swapped = trainer.evaluate()["score"]
    assert all(np.array_equal(w.numpy(), r) for w, r in zip(model.trainable_variables, raw))
    assert swapped != trainer.evaluate()["score"]
