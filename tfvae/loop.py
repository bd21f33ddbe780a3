"""The one training loop of tfvae, for every ``tf.distribute`` strategy, with backup and resume.

Keras 3's ``model.fit`` does not run under ``MultiWorkerMirroredStrategy`` (keras-team/keras#20585),
so :class:`Trainer` drives the model's own ``train_step`` / ``test_step`` (and therefore the one
objective, ``LRVAE.compute_losses``, paper eq. 4) with ``strategy.run`` under every strategy:
default, mirrored and multi-worker.

- **Input.** ``strategy.distribute_datasets_from_function`` with one iterator for the whole run:
  each input pipeline (worker) takes its shard of every epoch's order (:mod:`tfvae.order`,
  the same on every worker), batches it with the per-replica batch size and pads the epoch with empty
  batches, so every replica takes :meth:`Trainer.steps` steps per epoch. A replica left short at the
  end of an epoch gets a smaller or empty batch; ``LRVAE.replica_share`` weights every replica by its
  share of the global batch, so the update equals the single-device one.
- **Metrics.** Loss terms are Keras metrics (sync-on-read variables); epoch values are read in
  cross-replica context, i.e. aggregated over every replica of every worker.
- **Checkpoint selection** sees both attributes: after each epoch the model's own heads are scored on
  the validation speakers (:func:`tfvae.evaluate.head_selection`: emotion UAR of the classifier, EER
  of the speaker-branch embedding on seeded validation trials) and the epoch with the lowest
  ``val_score = (1 - val_uar) + val_eer`` is kept. With weight averaging (the optimizer's ``use_ema``,
  ``--ema_epochs``) the averaged weights are validated, selected and kept (:meth:`Loop.averaged_weights`);
  training and its backups go on from the weights themselves.
- **Fault tolerance.** A ``tf.train.CheckpointManager`` backs up the full training state (weights,
  optimizer slots, random-generator states, partial epoch metrics, epoch and step, history, best
  epoch) every ``backup_every`` steps and at each epoch end. Running the same command again
  restores it and replays the interrupted epoch from the next step, so a run killed with SIGKILL
  ends with the same weights as an uninterrupted one. The backup is deleted when training ends.
- **Multi-worker.** Every worker runs the same code, including every save (sync-on-read variables
  are aggregated with collectives while saving); only the chief's paths are kept. Other workers
  write to a temporary directory (:func:`worker_dirs`), deleted at the end, as in TensorFlow's
  multi-worker guide. Resuming a multi-worker run reads the chief's backup, so ``--output_dir``
  must be on a file system all workers share.
- **XLA.** ``jit_compile=True`` compiles, with one replica (default strategy, one device), the whole
  train step -- forward and backward pass, optimizer update, metric updates -- as one XLA cluster.
  With several replicas it compiles the forward and backward pass (``compute_gradients``); the
  optimizer update with its cross-replica all-reduce stays outside the compiled cluster.
"""

from __future__ import annotations

import contextlib
import csv
import json
import math
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from tfvae.config import ConfigError
from tfvae.data import Corpus
from tfvae.distribute import Role
from tfvae.pipeline import SplitPipeline, split_pipeline
from tfvae.stream import chunks


#: Validation values of checkpoint selection added to every epoch's logs (``val_`` prefixed).
SELECTION = ("uar", "eer", "score")


class BackupMismatchError(ConfigError):
    """A backup exists but was written by a different configuration."""


@dataclass
class FitResult:
    history: dict[str, list[float]]
    best_epoch: int  # 1-based


def worker_dirs(role: Role, *paths: Path) -> tuple[list[Path], Path | None]:
    """``paths`` for the chief; for other workers the same names under a fresh temporary directory
    (returned second, to delete when done)."""
    if role.is_chief:
        return list(paths), None
    tmp = Path(tempfile.mkdtemp(prefix=f"tfvae-{role.task_type}{role.task_id}-"))
    return [tmp / f"{i}-{Path(p).name}" for i, p in enumerate(paths)], tmp


def weights_fingerprint(model) -> str:
    """SHA-256 of every trainable weight's float32 bytes: equal on all workers after a synchronous step."""
    import hashlib

    h = hashlib.sha256()
    for v in model.trainable_variables:
        h.update(np.ascontiguousarray(np.asarray(v.numpy(), np.float32)).tobytes())
    return h.hexdigest()[:16]


class Loop:
    """Train ``model`` (built and compiled under ``strategy.scope()``) on ``train_pipe``.

    The model provides ``train_step(batch, gradient_fn=None)``, ``test_step``, ``compute_gradients``,
    ``trackers`` (the names of its logs) and ``metric_results``; a pipeline provides ``size`` and
    ``dataset(...)`` with the signature of :meth:`tfvae.pipeline.SplitPipeline.dataset`. Subclasses say
    how checkpoints are scored (:meth:`selection_scores`, lower ``score`` is better).

    Args:
        batch_size: per-replica batch; the global batch is ``batch_size x num_replicas_in_sync``.
        seed: data order seed (:mod:`tfvae.order`).
        jit_compile: XLA-compile the train step (one replica: all of it; several: the forward and backward pass).
        role: this process's place in a multi-worker cluster.
        verbose: 0 silent, 1 progress bar, 2 one line per epoch.
        val_pipe: validation batches whose loss terms are logged (None: only the selection scores).
    """

    #: keys of :meth:`selection_scores`, logged with a ``val_`` prefix
    selection_keys: tuple[str, ...] = SELECTION

    def __init__(self, model, strategy, train_pipe, batch_size: int, seed: int = 0, jit_compile: bool = False,
                 role: Role | None = None, verbose: int = 1, val_pipe=None):
        self.model, self.strategy, self.role = model, strategy, role or Role()
        self.batch_size, self.seed, self.verbose = int(batch_size), int(seed), int(verbose)
        self.replicas = strategy.num_replicas_in_sync
        self.global_batch = self.batch_size * self.replicas
        self.train_pipe, self.val_pipe = train_pipe, val_pipe
        self.steps_per_epoch = self.steps(self.train_pipe.size)
        disc_opt = getattr(model, "disc_optimizer", None)
        with strategy.scope():  # slots exist before a restore
            if not model.optimizer.built:
                model.optimizer.build(model.trainable_variables)
            if disc_opt is not None and not disc_opt.built:
                disc_opt.build(model.discriminator_variables)
        # XLA on one replica: the whole step (forward, backward, optimizer update, metrics) is one XLA
        # cluster, as fast as a bare jit-compiled train step (bench/train_throughput.py); its logs leave
        # the cluster as one vector (each output of a cluster costs ~30 us a step on a CPU). With several
        # replicas the optimizer's gradient all-reduce (a merge_call) cannot be compiled: only the forward
        # and backward pass (compute_gradients) are.
        self.xla_whole_step = bool(jit_compile) and self.replicas == 1 and \
            not isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy)
        grad_fn = tf.function(model.compute_gradients, jit_compile=True, reduce_retracing=True) \
            if jit_compile and not self.xla_whole_step else None
        log_names = []

        def stacked_train_step(batch):
            logs = model.train_step(batch)
            log_names[:] = logs
            return tf.stack(list(logs.values()))

        xla_step = tf.function(stacked_train_step, jit_compile=True, reduce_retracing=True)

        def replica_train(batch):
            if self.xla_whole_step:
                return dict(zip(log_names, tf.unstack(xla_step(batch))))  # log_names: set while tracing
            return model.train_step(batch, gradient_fn=grad_fn)

        def train(iterator):  # the batch is taken inside the graph: no Python work per step
            logs = strategy.run(replica_train, args=(next(iterator),))
            return strategy.experimental_local_results(logs)[0]  # progress bar: first local replica

        def test(iterator):
            strategy.run(model.test_step, args=(next(iterator),))

        def per_iterator(function):
            """``function(iterator)`` through a concrete function that captures the iterator: a tf.function
            called with an iterator argument works out the iterator's type on every call (0.1-0.4 ms a step
            on a CPU). ``function`` itself is traced once per element spec, not once per iterator."""
            import weakref

            last = [lambda: None, None]  # (weak reference to the last iterator, its step function)

            def call(iterator):
                if last[0]() is not iterator:
                    step = tf.function(lambda: function(iterator), autograph=False)
                    last[:] = weakref.ref(iterator), step.get_concrete_function()
                return last[1]()

            call.function = function  # the tf.function itself
            return call

        self._replica_train = replica_train
        self._val_iterator = None
        self.train_function = per_iterator(tf.function(train, reduce_retracing=True))
        self.test_function = per_iterator(tf.function(test, reduce_retracing=True))
        self._progress = tf.Variable([0, 0], dtype=tf.int64, trainable=False, name="epoch_and_step")
        self._state = tf.Variable("", dtype=tf.string, trainable=False, name="loop_state")
        self._checkpoint = tf.train.Checkpoint(
            weights=list(model.variables), optimizer=list(model.optimizer.variables),
            **({"disc_optimizer": list(disc_opt.variables)} if disc_opt is not None else {}),
            metrics=[v for m in model.metrics for v in m.variables],
            progress=self._progress, state=self._state)

    def selection_scores(self) -> dict[str, float]:
        """Validation scores of the current weights; ``score`` (lower is better) selects the epoch."""
        raise NotImplementedError

    # ------------------------------------------------------------------ data
    def steps(self, rows: int) -> int:
        """Steps that cover ``rows`` examples: the largest shard's batches over its local replicas.

        Shorter shards (other workers) and short last batches are padded with empty batches
        (:meth:`tfvae.pipeline.SplitPipeline.dataset`), so every replica takes this many steps.
        """
        workers = max(1, self.role.num_workers)
        local = max(1, self.replicas // workers)
        return math.ceil(math.ceil(math.ceil(rows / workers) / self.batch_size) / local)

    def distributed(self, pipe: SplitPipeline, *, seed: int | None = None, epochs: range = range(1),
                    skip_steps: int = 0):
        """Per-replica batches of ``pipe`` for ``epochs`` under this strategy, ``self.steps(pipe.size)``
        steps per epoch on every replica, skipping the first ``skip_steps`` steps."""
        def fn(ctx: tf.distribute.InputContext):
            local = max(1, self.replicas // ctx.num_input_pipelines)  # replicas fed by this pipeline
            return pipe.dataset(ctx.get_per_replica_batch_size(self.global_batch), seed=seed, epochs=epochs,
                                num_shards=ctx.num_input_pipelines, shard_index=ctx.input_pipeline_id,
                                batches_per_epoch=self.steps(pipe.size) * local, skip_batches=skip_steps * local)

        return self.strategy.distribute_datasets_from_function(fn)

    def train_batches(self, epoch: int, skip_steps: int = 0):
        """The distributed training batches of ``epoch`` (0-based), as the train CLI iterates them."""
        return self.distributed(self.train_pipe, seed=self.seed, epochs=range(epoch, epoch + 1), skip_steps=skip_steps)

    # ------------------------------------------------------------------ metrics
    def _reset_metrics(self) -> None:
        for m in self.model.metrics:
            m.reset_state()

    def _results(self, training: bool) -> dict[str, float]:
        return {k: float(v) for k, v in self.model.metric_results(training).items()}

    def evaluate(self) -> dict[str, float]:
        """Every loss term on the validation split (aggregated over all replicas) and the selection scores."""
        logs = {}
        if self.val_pipe is not None:
            self._reset_metrics()
            if self._val_iterator is None:  # one iterator for every evaluation: one pass per call
                self._val_iterator = iter(self.distributed(self.val_pipe, epochs=range(1 << 40)))
            for _ in range(self.steps(self.val_pipe.size)):
                self.test_function(self._val_iterator)
            logs = self._results(training=False)
        logs.update(self.selection_scores())
        return logs

    @contextlib.contextmanager
    def averaged_weights(self):
        """Within the block, the model's trainable weights are the optimizer's moving average of them
        (when it keeps one, ``use_ema``); afterwards they are the weights themselves again."""
        opt = self.model.optimizer
        opt = getattr(opt, "inner_optimizer", opt)  # a LossScaleOptimizer keeps its wrapped one's average
        averages = getattr(opt, "_model_variables_moving_average", None) if getattr(opt, "use_ema", False) else None
        if not averages:
            yield
            return
        weights = self.model.trainable_variables
        if len(weights) != len(averages):
            raise ValueError(f"the optimizer averages {len(averages)} variables, the model has {len(weights)}")
        pairs = [(w, a) for w, a in zip(weights, averages) if a is not None]
        saved = [w.numpy() for w, _ in pairs]
        for w, a in pairs:
            w.assign(a)
        try:
            yield
        finally:
            for (w, _), value in zip(pairs, saved):
                w.assign(value)

    def cached_step_function(self, batch):
        """The train step on one fixed distributed ``batch`` (no input pipeline): for benchmarks."""
        return tf.function(lambda: self.strategy.run(self._replica_train, args=(batch,))).get_concrete_function()

    # ------------------------------------------------------------------ backup
    def _restore(self, backup_dir: Path, fingerprint: str) -> dict | None:
        latest = tf.train.latest_checkpoint(str(backup_dir))
        if not latest:
            return None
        # compare configurations before restoring: another configuration may have other variable shapes
        try:
            saved = json.loads(tf.train.load_variable(latest, "state/.ATTRIBUTES/VARIABLE_VALUE").decode())
        except (tf.errors.NotFoundError, ValueError, json.JSONDecodeError):
            saved = {}
        if saved.get("fingerprint") != fingerprint:
            raise BackupMismatchError(
                f"{backup_dir} holds the backup of a run with a different configuration; delete that directory "
                f"to start over, or choose another --run_name/--output_dir")
        self._checkpoint.restore(latest).assert_existing_objects_matched()
        return json.loads(self._state.numpy().decode())

    def fit(self, epochs: int, run_dir: Path, *, select_from_epoch: int = 1, backup_every: int = 0,
            fingerprint: str = "") -> FitResult:
        """Train for ``epochs`` epochs, writing into ``run_dir`` (a temporary one on non-chief workers).

        Keeps the weights with the lowest ``val_score`` among epochs >= ``select_from_epoch``
        (1-based) in ``best.weights.h5`` and loads them at the end; writes ``history.csv`` and
        TensorBoard logs under ``tb/``. Resumes from ``run_dir/backup`` when a backup exists.
        """
        model = self.model
        chief_dir = Path(run_dir)
        (run_dir,), tmp = worker_dirs(self.role, chief_dir)
        try:
            run_dir.mkdir(parents=True, exist_ok=True)
            backup_dir = run_dir / "backup"
            manager = tf.train.CheckpointManager(self._checkpoint, str(backup_dir), max_to_keep=1)
            state = self._restore(chief_dir / "backup", fingerprint)  # every worker resumes from the chief's
            history: dict[str, list[float]] = state["history"] if state else {}
            best = (state["best_value"], state["best_epoch"]) if state else (math.inf, 0)
            start_epoch, start_step = (int(x) for x in self._progress.numpy()) if state else (0, 0)
            if state and self.verbose:
                print(f"[tfvae] resuming from backup {tf.train.latest_checkpoint(str(chief_dir / 'backup'))}: "
                      f"epoch {start_epoch + 1}, step {start_step}")
            writers = {}
            if tmp is None:
                logdir = run_dir / "tb" / time.strftime("%Y%m%d-%H%M%S")
                writers = {k: tf.summary.create_file_writer(str(logdir / k)) for k in ("train", "validation")}
            best_path = run_dir / "best.weights.h5"

            def backup(epoch: int, step: int) -> None:
                self._progress.assign([epoch, step])
                self._state.assign(json.dumps({"fingerprint": fingerprint, "history": history,
                                               "best_value": best[0], "best_epoch": best[1]}))
                manager.save(checkpoint_number=epoch * self.steps_per_epoch + step)

            # one iterator for the whole run: every epoch in its own order, resumed runs skip what is done
            iterator = iter(self.distributed(self.train_pipe, seed=self.seed, epochs=range(start_epoch, epochs),
                                             skip_steps=start_step))
            for epoch in range(start_epoch, epochs):
                skip = start_step if epoch == start_epoch else 0
                if not skip:
                    self._reset_metrics()
                bar = keras.utils.Progbar(self.steps_per_epoch, verbose=self.verbose if self.role.is_chief else 0,
                                          stateful_metrics=list(model.trackers) + [f"val_{k}" for k in (*model.trackers, *self.selection_keys)])
                if self.verbose == 1 and self.role.is_chief:
                    print(f"Epoch {epoch + 1}/{epochs}")
                for step in range(skip + 1, self.steps_per_epoch + 1):
                    logs = self.train_function(iterator)
                    if self.verbose == 1 and self.role.is_chief:
                        bar.update(step, [(k, float(v)) for k, v in logs.items()])
                    if backup_every and step % backup_every == 0 and step < self.steps_per_epoch:
                        backup(epoch, step)
                train_logs = self._results(training=True)
                with self.averaged_weights():
                    val_logs = self.evaluate()
                    row = {**train_logs, **{f"val_{k}": v for k, v in val_logs.items()}}
                    for k, v in row.items():
                        history.setdefault(k, []).append(v)
                    if epoch + 1 >= select_from_epoch and row["val_score"] < best[0]:
                        best = (row["val_score"], epoch + 1)
                        model.save_weights(str(best_path))
                for split, logs in (("train", train_logs), ("validation", val_logs)):
                    if split in writers:
                        with writers[split].as_default():
                            for k, v in logs.items():
                                tf.summary.scalar(f"epoch_{k}", v, step=epoch)
                if tmp is None:
                    _write_history(run_dir / "history.csv", history)
                bar.update(self.steps_per_epoch, list(row.items()), finalize=True)
                backup(epoch + 1, 0)
            for w in writers.values():
                w.flush()
            if best[1] == 0:  # select_from_epoch beyond the last epoch: keep the last one
                best = (history["val_score"][-1], epochs)
                with self.averaged_weights():
                    model.save_weights(str(best_path))
            # a resumed non-chief worker may have saved no best weights of its own: read the chief's
            model.load_weights(str(best_path if best_path.exists() else chief_dir / best_path.name))
            if tmp is None:
                shutil.rmtree(backup_dir, ignore_errors=True)  # the run is complete
            return FitResult(history, best[1])
        finally:
            if tmp is not None:
                shutil.rmtree(tmp, ignore_errors=True)


class Trainer(Loop):
    """The LR-VAE family on a :class:`~tfvae.data.Corpus`, in memory or streamed (see :class:`Loop` for the
    arguments; ``shuffle_buffer``: rows of the shuffle buffer of a streamed training split;
    ``batch_order``: the order of an in-memory training split, :mod:`tfvae.order`; ``siblings``: training
    batches carry each row's sibling version, for the model's cross-reconstruction term).

    Checkpoints are selected by :func:`tfvae.evaluate.head_selection` on the validation speakers.
    """

    def __init__(self, model, strategy, corpus: Corpus, batch_size: int, seed: int = 0,
                 jit_compile: bool = False, role: Role | None = None, verbose: int = 1,
                 shuffle_buffer: int | None = None, labels: tuple[str, ...] = (), batch_order: str = "random",
                 siblings: bool = False):
        val = corpus.splits["validation"]
        self._val_features, self._val_emotion = val.features, val.emotion
        #: validation labels of the class heads other than emotion (``<attribute>_probabilities`` outputs)
        self._val_labels = {a.name: corpus.labels("validation", a.label) for a in model.attributes
                            if not a.is_identity and a.name != "emotion" and a.name in model.parts["heads"]}
        self._val_trials = None
        if model.parts["id"]:
            from tfvae.metrics import sample_trials

            self._val_trials = sample_trials(val.speaker, seed=seed)
        self._infer = tf.function(lambda x: model(x, training=False), reduce_retracing=True)
        train = split_pipeline(corpus, "train", shuffle_buffer, labels=labels, batch_order=batch_order,
                               siblings=siblings)
        super().__init__(model, strategy, train, batch_size,
                         seed=seed, jit_compile=jit_compile, role=role, verbose=verbose,
                         val_pipe=split_pipeline(corpus, "validation", labels=labels))

    def selection_scores(self) -> dict[str, float]:
        """``uar``, ``eer`` and ``score`` of the model's heads on the validation speakers (every worker
        computes the same values from the same weights)."""
        from tfvae.evaluate import head_selection

        parts = [self._infer(tf.constant(x)) for x in chunks(self._val_features, 1024)]
        out = {k: np.concatenate([np.asarray(p[k], np.float32) for p in parts]) for k in parts[0] if k != "latent"}
        return head_selection(out, self._val_emotion, self._val_trials, labels=self._val_labels)



def _write_history(path: Path, history: dict[str, list[float]]) -> None:
    """``history.csv``: one row per epoch, columns ``epoch`` and every term (Keras CSVLogger layout)."""
    keys = sorted(history)
    n = len(history[keys[0]]) if keys else 0
    tmp = path.with_suffix(".csv.tmp")
    with open(tmp, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["epoch", *keys])
        for i in range(n):
            w.writerow([i, *(history[k][i] for k in keys)])
    tmp.replace(path)
