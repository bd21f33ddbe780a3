"""LiteRT (TFLite) export of a run's privacy views, checked with the LiteRT interpreter.

``python -m tfvae.export --run_dir runs/<run> --format litert`` writes
``<export_dir>/<run name>-litert/``:

- ``<view>.tflite`` for each masked view of the run's ``mask.json`` (``identity_free`` and
  ``emotion_free`` for the paper's attributes, ``keep_<attributes>`` otherwise) and each
  ``<view>_leace`` view when the run has LEACE erasers: raw features (``features`` float32
  [batch, D]) -> ``latent`` float32 [batch, N], the masked nodes exactly +0.0, as the SavedModel
  signature of the same name (:func:`tfvae.export.export_encoder`);
- ``<view>-privacy_safe.tflite`` for each masked view: the privacy-safe encoder
  (:class:`tfvae.export.KeptNodesEncoder`): ``latent`` float32 [batch, kept], only the kept
  nodes' weights are in the file;
- ``litert_manifest.json``: per file its view, signature, inputs/outputs, kept nodes, size,
  batch-1 latency and the largest difference from the TensorFlow reference, and the command.

Each file holds one signature named after its view, with a dynamic batch dimension, float32
weights (no quantisation) and TFLite builtin ops only (no Flex/SELECT_TF_OPS delegate), so the
stock LiteRT runtime runs it on a device. Standardisation with the training statistics is inside
the graph, as in the SavedModel. The SavedModel's in-graph finiteness check
(``tf.debugging.check_numerics``) has no builtin TFLite op: instead a NaN or infinite feature
makes every kept node of its row NaN (masked nodes stay +0.0), so check ``isfinite`` on the
output, or on the input before calling.

Every file is checked with the ``ai-edge-litert`` interpreter against the TensorFlow function
that the SavedModel serves for the view (with the model's own ``encode``), on features drawn
from the run's normalisation statistics (``normalization.npz``): the export fails when the
largest absolute difference exceeds ``atol`` (1e-4).
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import tempfile
import time
import uuid
from pathlib import Path

import numpy as np
import tensorflow as tf

from tfvae.erasure import SUFFIX
from tfvae.export import _erased_encoder, _masked_encoder, protected_encoder, view_signatures

MANIFEST_FILE = "litert_manifest.json"
#: Suffix of the privacy-safe file of a view (``identity_free-privacy_safe.tflite``).
PRIVACY_SAFE = "-privacy_safe"
#: Largest absolute difference from the TensorFlow reference an export may have.
ATOL = 1e-4


def _interpreter(**kwargs):
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError as e:  # pragma: no cover - a dependency of the project
        raise ImportError("LiteRT export needs the LiteRT interpreter: pip install ai-edge-litert") from e
    return Interpreter(**kwargs)


class LiteRTEncoder(tf.Module):
    """The encoder of one view as plain builtin-op math (:meth:`tfvae.export.KeptNodesEncoder.latent`).

    Built from a :class:`tfvae.export.KeptNodesEncoder` (its variables are frozen into the file).
    With ``keep`` (all N columns) the nodes where ``keep`` is 0 are set to +0.0; with ``eraser``
    the fixed LEACE projection follows (masked nodes stay +0.0). No ``check_numerics``: a
    non-finite feature turns its row's output NaN through an explicit ``sum(features * 0)`` term.
    """

    def __init__(self, base, view: str, keep=None, eraser=None):
        super().__init__(name=f"{view}_litert")
        self.base = base
        self.keep = None if keep is None else tf.constant(np.asarray(keep).reshape(1, -1) > 0)
        self.eraser_mean = None if eraser is None else tf.Variable(
            np.asarray(eraser.mean, np.float32)[None, :], trainable=False, name="eraser_mean")
        self.eraser_proj_t = None if eraser is None else tf.Variable(
            np.ascontiguousarray(np.asarray(eraser.projection, np.float32).T), trainable=False, name="eraser_proj_t")
        spec = tf.TensorSpec([None, int(base.feature_mean.shape[-1])], tf.float32, name="features")
        self.encode = tf.function(self._encode, input_signature=[spec])

    def _masked(self, z):
        return z if self.keep is None else tf.where(self.keep, z, tf.zeros_like(z))

    def _encode(self, features):
        z = self.base.latent(features)
        # NaN for a row with a NaN/Inf feature (0 otherwise): stands in for check_numerics
        z = self._masked(z + tf.reduce_sum(features * 0.0, axis=-1, keepdims=True))
        if self.eraser_mean is not None:
            z = self._masked(z - tf.matmul(z - self.eraser_mean, self.eraser_proj_t))
        return {"latent": z}


def convert(module: LiteRTEncoder, signature: str) -> bytes:
    """The float32 LiteRT flatbuffer of ``module.encode`` with one signature ``signature``, builtin ops only."""
    with tempfile.TemporaryDirectory(prefix="tfvae-litert-") as tmp:
        # through a SavedModel so that the file's signature is named after the view
        tf.saved_model.save(module, tmp, signatures={signature: module.encode.get_concrete_function()})
        converter = tf.lite.TFLiteConverter.from_saved_model(tmp, signature_keys=[signature])
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
        converter.optimizations = []  # float32 weights, no quantisation
        return converter.convert()


def check_inputs(normalization: str | Path | dict, n: int = 64, seed: int = 0) -> np.ndarray:
    """``n`` feature rows drawn from N(mean, variance) of a run's ``normalization.npz`` (float32 [n, D])."""
    norm = np.load(normalization) if not isinstance(normalization, dict) else normalization
    mean = np.asarray(norm["mean"], np.float64).reshape(-1)
    std = np.sqrt(np.maximum(np.asarray(norm["variance"], np.float64).reshape(-1), 0.0))
    rng = np.random.default_rng(seed)
    return (mean + std * rng.standard_normal((n, mean.size))).astype(np.float32)


def run_litert(path_or_bytes, features: np.ndarray, signature: str | None = None) -> dict[str, np.ndarray]:
    """Run a LiteRT file's signature on ``features`` (any batch) with the ``ai-edge-litert`` interpreter."""
    kw = {"model_content": path_or_bytes} if isinstance(path_or_bytes, bytes) else {"model_path": str(path_or_bytes)}
    runner = _interpreter(**kw).get_signature_runner(signature)
    return runner(features=np.ascontiguousarray(features, np.float32))


def latency_ms(path_or_bytes, features: np.ndarray, runs: int = 200, warmup: int = 20, threads: int = 1) -> float:
    """Median wall time in ms of ``runs`` batch-1 ``invoke()`` calls after ``warmup`` calls."""
    kw = {"model_content": path_or_bytes} if isinstance(path_or_bytes, bytes) else {"model_path": str(path_or_bytes)}
    interp = _interpreter(num_threads=threads, **kw)
    inp = interp.get_input_details()[0]
    interp.resize_tensor_input(inp["index"], [1, features.shape[-1]])
    interp.allocate_tensors()
    interp.set_tensor(inp["index"], np.ascontiguousarray(features[:1], np.float32))
    for _ in range(warmup):
        interp.invoke()
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        interp.invoke()
        times.append(time.perf_counter() - t0)
    return 1e3 * statistics.median(times)


def file_details(path_or_bytes) -> dict:
    """Signature, inputs/outputs (name, shape with -1 for a dynamic dimension, dtype) and op names of a LiteRT file."""
    kw = {"model_content": path_or_bytes} if isinstance(path_or_bytes, bytes) else {"model_path": str(path_or_bytes)}
    interp = _interpreter(**kw)
    sigs = interp.get_signature_list()
    (key, io), = sigs.items()
    runner = interp.get_signature_runner(key)

    def describe(details):
        return {name: {"shape": [int(s) for s in d["shape_signature"]], "dtype": np.dtype(d["dtype"]).name}
                for name, d in details.items()}

    ops = sorted({op["op_name"] for op in interp._get_ops_details()})  # noqa: SLF001 - the only op listing it has
    return {"signature": key, "inputs": describe(runner.get_input_details()),
            "outputs": describe(runner.get_output_details()), "ops": ops}


def _views(masks: dict, erasers: dict, only: str | None) -> list[str]:
    views = [v for v in masks if only is None or v == only]
    views += [e for e in erasers if e.removesuffix(SUFFIX) in views]
    return views


def export_litert(model, masks: dict[str, np.ndarray], out_dir: str | Path, normalization: str | Path | dict,
                  erasers: dict | None = None, view: str | None = None, atol: float = ATOL,
                  runs: int = 200, threads: int = 1, metadata: dict | None = None,
                  command: str | None = None) -> tuple[Path, list[dict]]:
    """Write the LiteRT files of ``model``'s privacy views under ``out_dir`` and return ``(out_dir, records)``.

    ``masks`` maps a view (``identity_free``, ``keep_emotion_gender``...) to its 0/1 keep vector;
    ``erasers`` maps ``<view>_leace`` to its :class:`tfvae.erasure.LinearEraser`; ``view`` exports
    only that view (with its LEACE variant and its privacy-safe file). Each file is checked with
    the LiteRT interpreter against the TensorFlow function of the SavedModel's signature on 64
    rows from ``normalization`` (:func:`check_inputs`); a difference above ``atol`` raises
    ``ValueError`` and nothing is written. ``out_dir`` is replaced as a whole (only if it is an
    earlier LiteRT export: it holds ``litert_manifest.json``).
    """
    erasers = dict(erasers or {})
    meta = dict(metadata or {})
    if not model.parts["vae"]:
        raise ValueError(f"method {model.method!r} has no latent to mask: LiteRT export writes the privacy views "
                         "of a run with a VAE latent and masks (lrvae)")
    if not masks:
        raise ValueError(f"the run has no masked views (its mask.json has no masks; method {model.method!r} "
                         "latents are not ordered): LiteRT export writes the privacy views of an lrvae run")
    if view is not None and view not in masks:
        raise ValueError(f"the run has no {view} mask (mask.json has {sorted(masks)})")
    n = model.latent_dim
    for k, m in masks.items():
        if np.asarray(m).reshape(-1).shape[0] != n:
            raise ValueError(f"mask {k!r} has {np.asarray(m).size} entries, the latent has {n}")
    out_dir = Path(out_dir)
    if out_dir.exists() and not (out_dir / MANIFEST_FILE).exists():
        raise FileExistsError(f"{out_dir} exists and is no LiteRT export of tfvae ({MANIFEST_FILE} missing); "
                              "choose another --export_dir or --name")
    x = check_inputs(normalization)
    xt = tf.constant(x)

    jobs = []  # (file stem, view, keep mask, privacy-safe, LiteRTEncoder, reference function)
    for v in _views(masks, erasers, view):
        base = v.removesuffix(SUFFIX)
        keep = np.asarray(masks[base], np.float32).reshape(-1)
        keep_b = tf.constant(keep.reshape(1, -1) > 0)
        full = protected_encoder(model, np.ones(n, np.float32), v)  # every column of the posterior mean
        if v in erasers:
            module = LiteRTEncoder(full, v, keep, erasers[v])
            ref = _erased_encoder(model, keep_b, erasers[v])
        else:
            module = LiteRTEncoder(full, v, keep)
            ref = _masked_encoder(model, keep_b)
        jobs.append((v, v, keep, False, module, ref))
        if v == base:
            safe = protected_encoder(model, keep, v)
            jobs.append((v + PRIVACY_SAFE, v, keep, True, LiteRTEncoder(safe, v), safe.encode))

    records, blobs = [], {}
    for stem, v, keep, private, module, ref in jobs:
        blob = convert(module, v)
        expected = ref(xt)["latent"].numpy()  # the SavedModel signature's function (check_numerics and all)
        got = run_litert(blob, x, v)["latent"]
        if got.shape != expected.shape:
            raise ValueError(f"{stem}.tflite gives shape {got.shape}, the reference {expected.shape}")
        diff = float(np.max(np.abs(got.astype(np.float64) - expected)))
        if not diff <= atol:
            raise ValueError(f"{stem}.tflite differs from the TensorFlow {v} function by {diff:.3g} > {atol:g}")
        kept = np.flatnonzero(keep > 0)
        if not private and np.any(got[:, keep == 0] != 0.0):
            raise ValueError(f"{stem}.tflite outputs non-zero masked nodes")
        details = file_details(blob)
        flex = [op for op in details["ops"] if op.startswith("Flex") or op in ("CUSTOM", "DELEGATE")]
        if flex:
            raise ValueError(f"{stem}.tflite needs non-builtin ops {flex}")
        blobs[stem] = blob
        records.append({
            "file": f"{stem}.tflite", "view": v, "signature": details["signature"],
            "aliases": view_signatures(model, v),
            "privacy_safe": private, "inputs": details["inputs"], "outputs": details["outputs"],
            "latent_dim": n, "kept_nodes": kept.tolist(),
            "output_columns": "latent node kept_nodes[j]" if private else "latent node j (masked nodes are +0.0)",
            "size_bytes": len(blob), "latency_ms": latency_ms(blob, x, runs=runs, threads=threads),
            "max_abs_diff": diff, "ops": details["ops"],
            "reference": ("KeptNodesEncoder.encode (the privacy-safe SavedModel's signature)" if private else
                          f"the full SavedModel's {v} signature function (model.encode)")})

    manifest = {
        "run_name": meta.get("run_name"), "method": meta.get("method"), "command": command,
        "latent_dim": n, "input_dim": int(x.shape[1]),
        "format": "LiteRT (TFLite flatbuffer), float32, no quantisation, TFLite builtin ops only",
        "batch": "dynamic (shape -1): resize the input tensor for batches > 1",
        "non_finite_features": "no in-graph check (check_numerics is no builtin op): a NaN/Inf feature "
                               "makes its row's kept nodes NaN",
        "converter": f"tf.lite.TFLiteConverter.from_saved_model, TensorFlow {tf.__version__}",
        "interpreter": f"ai-edge-litert {_litert_version()}",
        "check": {"inputs": f"{x.shape[0]} rows drawn from N(mean, variance) of normalization.npz, seed 0",
                  "atol": atol},
        "latency": {"batch": 1, "threads": threads, "warmup": 20, "runs": runs, "statistic": "median of invoke()"},
        "files": records}

    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_dir.parent / f".tmp-{out_dir.name}-{uuid.uuid4().hex[:8]}"
    try:
        tmp.mkdir()
        for stem, blob in blobs.items():
            (tmp / f"{stem}.tflite").write_bytes(blob)
        (tmp / MANIFEST_FILE).write_text(json.dumps(manifest, indent=2))
        old = None
        if out_dir.exists():
            old = out_dir.parent / f".old-{out_dir.name}-{uuid.uuid4().hex[:8]}"
            os.rename(out_dir, old)
        os.rename(tmp, out_dir)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return out_dir, records


def _litert_version() -> str:
    try:
        from importlib.metadata import version

        return version("ai-edge-litert")
    except Exception:  # pragma: no cover
        return "unknown"


def format_record(r: dict) -> str:
    """One CLI line for a written file."""
    return (f"{r['file']}: {r['size_bytes']} bytes, batch-1 latency {r['latency_ms']:.4f} ms (median), "
            f"max |diff| {r['max_abs_diff']:.3g} vs TensorFlow, outputs {r['outputs']['latent']['shape']}")
