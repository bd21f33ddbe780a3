"""SavedModel export of the encoder in TF Serving's layout, and ``python -m tfvae.export``.

``<export_dir>/<model-name>/<version>/`` holds a SavedModel that ``tensorflow_model_server``
(and :mod:`tfvae.serve`) loads as it is; ``<export_dir>/models.config`` lists every model
directory under ``export_dir`` in TF Serving's ``model_config_list`` text format. Every
signature takes raw feature vectors (``features``: float32 [batch, D]); standardisation with
the training statistics is inside the graph, and a feature that is NaN or infinite fails with
``InvalidArgument`` inside the graph, so TF Serving answers it with a 400 as well.

Signatures of a full export (models with a VAE latent):

- ``serving_default`` -> ``latent`` float32 [batch, N]: the posterior mean (full latent);
- ``identity_free`` -> ``latent`` [batch, N]: nodes from the identity-free cut on set to
  exactly +0.0 (the representation for privacy-preserving SER);
- ``emotion_free`` -> ``latent`` [batch, N]: nodes above the emotion-free cut set to exactly
  +0.0 (for privacy-preserving SV);
- ``identity_free_leace`` / ``emotion_free_leace`` (when the run has erasers) -> ``latent``
  [batch, N]: the masked view followed by the fixed LEACE projection that removes the protected
  attribute linearly (:mod:`tfvae.erasure`, fit on the training split); masked nodes stay +0.0;
- ``mask`` (``features``, ``keep`` float32 [1 or batch, N] of 0/1) -> ``latent`` [batch, N]:
  nodes whose ``keep`` is 0 set to +0.0; ``keep`` is checked in the graph;
- ``emotion`` -> ``probabilities`` float32 [batch, C], ``class_index`` int64 [batch],
  ``class_name`` string [batch]: the emotion classifier;
- ``speaker_embedding`` -> ``speaker_embedding`` float32 [batch, H]: the speaker branch.

``emotion`` and ``speaker_embedding`` read the *full* latent: they are not privacy-masked.
``dnn`` (no latent) exports ``serving_default`` with ``emotion_probabilities`` and
``speaker_embedding`` plus the two head signatures.

A **privacy-safe** export (:func:`export_protected`, ``--protect identity|emotion``) writes a
separate small ``tf.Module`` that holds only the standardisation, the hidden encoder layers and
the columns of the final encoder layer for the *kept* nodes: the protected nodes are never
computed and no variable holds their weights. Its only signatures are the matching view and
``serving_default`` (the same function), returning ``latent`` float32 [batch, kept].

Each version directory is written under a temporary name and renamed into place, so a server
polling the model directory never sees a half-written version.

``--format litert`` writes LiteRT (TFLite) files of a run's privacy views instead, checked with
the LiteRT interpreter (:mod:`tfvae.export_litert`).
"""

from __future__ import annotations

# before any import that loads TensorFlow: its C++ start-up logs off when run as a CLI (TFVAE_TF_LOG=1 keeps them)
from tfvae.quiet import quiet_main

quiet_main(__name__)

import argparse
import json
import os
import re
import shutil
import sys
import uuid
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from tfvae.erasure import SUFFIX
from tfvae.runs import load_run
from tfvae.models_config import CONFIG_FILE, read_models_config, write_models_config  # noqa: F401

METADATA_FILE = "assets.extra/tfvae.json"
PRIVACY_REPORT_FILE = "assets.extra/privacy_report.json"
#: The LEACE erasers of a training run (:func:`tfvae.erasure.save_erasers`).
#: Which view the privacy-safe export keeps for each protected attribute.
PROTECT_VIEWS = {"identity": "identity_free", "emotion": "emotion_free"}

_FINITE_MSG = "features must be finite (no NaN or Inf)"


def next_version(model_root: str | Path) -> int:
    """One more than the largest numeric version directory under ``model_root`` (1 if none)."""
    root = Path(model_root)
    versions = [int(p.name) for p in root.iterdir() if p.is_dir() and re.fullmatch(r"\d+", p.name)] \
        if root.exists() else []
    return max(versions, default=0) + 1


def _finite(features):
    # the returned tensor must be used, or the check is pruned from the graph
    return tf.debugging.check_numerics(features, _FINITE_MSG)


def _class_names(model, attribute: str, metadata: dict) -> list[str]:
    n = model.n_classes[attribute]
    names = list((metadata.get("emotion_names") if attribute == "emotion" else
                  (metadata.get("label_names") or {}).get(attribute)) or [])
    return names if len(names) == n else [str(i) for i in range(n)]


def view_signatures(model, sig: str) -> list[str]:
    """The signature names of a view: its run name and, for the paper's two views, the general
    ``keep_<attributes>`` name as well (``identity_free`` = ``keep_emotion``, ``emotion_free`` = ``keep_identity``)."""
    from tfvae.attributes import view_attributes, view_name

    base = sig.removesuffix(SUFFIX)
    try:
        general = view_name(view_attributes(base, model.attributes)) + sig[len(base):]
    except ValueError:
        return [sig]
    return [sig] if general == sig else [sig, general]


def _masked_encoder(model, keep):
    def masked(features):
        z = model.encode(_finite(features))
        return {"latent": tf.where(keep, z, tf.zeros_like(z))}  # masked nodes are exactly +0.0

    return masked


def _erased_encoder(model, keep, eraser):
    mean = tf.constant(eraser.mean[None, :], tf.float32)
    proj_t = tf.constant(eraser.projection.T, tf.float32)

    def erased(features):
        z = model.encode(_finite(features))
        z = tf.where(keep, z, tf.zeros_like(z))
        z = z - tf.matmul(z - mean, proj_t)
        return {"latent": tf.where(keep, z, tf.zeros_like(z))}

    return erased


def _mask_with_keep(model):
    n = model.latent_dim

    def mask(features, keep):
        z = model.encode(_finite(features))
        rows, batch = tf.shape(keep)[0], tf.shape(z)[0]
        checks = [
            tf.debugging.assert_equal(
                tf.reduce_all(tf.logical_or(tf.equal(keep, 0.0), tf.equal(keep, 1.0))), True,
                message="keep must hold only 0 and 1"),
            tf.debugging.assert_equal(
                tf.logical_or(tf.equal(rows, 1), tf.equal(rows, batch)), True,
                message=f"keep must have 1 row or one row per example, shape [1 or batch, {n}]"),
        ]
        with tf.control_dependencies([c for c in checks if c is not None]):  # checks run before the broadcast
            keep_b = tf.broadcast_to(keep, tf.shape(z)) > 0.5
        return {"latent": tf.where(keep_b, z, tf.zeros_like(z))}

    return mask


def _class_head(model, attribute: str, names: list[str]):
    """A class attribute's classifier on its branch (inference scaling x·p, as in ``model(x)``)."""
    table = tf.constant(names)

    def head(features):
        rep = model.branch(attribute, model.encode(_finite(features)))
        probs = tf.nn.softmax(tf.cast(model.head(attribute)(rep, training=False), tf.float32))
        idx = tf.argmax(probs, axis=-1, output_type=tf.int64)
        return {"probabilities": probs, "class_index": idx, "class_name": tf.gather(table, idx)}

    return head


def _speaker_head(model):
    identity = next(a.name for a in model.attributes if a.is_identity)

    def speaker(features):
        rep = model.branch(identity, model.encode(_finite(features)))
        return {"speaker_embedding": tf.cast(model.id_body(rep, training=False), tf.float32)}

    return speaker


def _write_version(root: Path, version: int | None, write) -> Path:
    """Write a version under a temporary name with ``write(tmp_path, version)``, then rename it into place."""
    version = next_version(root) if version is None else int(version)
    path = root / str(version)
    if path.exists():
        raise FileExistsError(f"{path} exists; TF Serving versions are immutable, choose another version")
    root.mkdir(parents=True, exist_ok=True)
    tmp = root / f".tmp-{version}-{uuid.uuid4().hex[:8]}"  # not numeric: servers ignore it
    try:
        write(tmp, version)
        try:
            os.rename(tmp, path)  # atomic on one file system; fails if path appeared meanwhile
        except OSError as e:
            raise FileExistsError(f"{path} was created while exporting; TF Serving versions are "
                                  "immutable, choose another version") from e
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return path


def export_encoder(model, export_dir: str | Path, name: str, masks: dict[str, np.ndarray],
                   metadata: dict, version: int | None = None, write_config: bool = True,
                   privacy_report: dict | None = None, erasers: dict | None = None) -> Path:
    """Write ``model`` as ``<export_dir>/<name>/<version>/`` and return that path.

    ``masks`` maps a signature name (``identity_free``, ``emotion_free``) to a 0/1 keep vector;
    ``erasers`` maps ``<mask name>_leace`` to a :class:`tfvae.erasure.LinearEraser` of that view.
    ``privacy_report`` (from :func:`tfvae.train.privacy_report`) is written to
    ``assets.extra/privacy_report.json``.
    With ``write_config`` (the default) ``<export_dir>/models.config`` is refreshed to cover
    every model directory under ``export_dir``.
    """
    spec = tf.TensorSpec([None, model.input_dim], tf.float32, name="features")
    endpoints: dict[str, tuple] = {}
    if model.parts["vae"]:
        endpoints["serving_default"] = (lambda features: {"latent": model.encode(_finite(features))}, [spec])
        for sig, mask in masks.items():
            keep = tf.constant(np.asarray(mask).reshape(1, -1) > 0)
            if keep.shape[1] != model.latent_dim:
                raise ValueError(f"mask {sig!r} has {keep.shape[1]} entries, the latent has {model.latent_dim}")
            fn = _masked_encoder(model, keep)
            endpoints.update({name: (fn, [spec]) for name in view_signatures(model, sig)})
        for sig, eraser in (erasers or {}).items():
            base = sig.removesuffix(SUFFIX)
            if base not in masks or eraser.mean.shape[0] != model.latent_dim:
                raise ValueError(f"eraser {sig!r} needs the mask {base!r} and {model.latent_dim} nodes")
            fn = _erased_encoder(model, tf.constant(np.asarray(masks[base]).reshape(1, -1) > 0), eraser)
            endpoints.update({name: (fn, [spec]) for name in view_signatures(model, sig)})
        keep_spec = tf.TensorSpec([None, model.latent_dim], tf.float32, name="keep")
        endpoints["mask"] = (_mask_with_keep(model), [spec, keep_spec])
    else:
        def heads(features):
            out = model(_finite(features), training=False)
            return {k: v for k, v in out.items() if k != "latent"}

        endpoints["serving_default"] = (heads, [spec])
    for a in model.attributes:  # each head, named after its attribute (``emotion``, ``gender``; ``speaker_embedding``)
        if a.name in model.parts["heads"]:
            endpoints[a.output if a.is_identity else a.name] = (
                _speaker_head(model) if a.is_identity else _class_head(model, a.name, _class_names(model, a.name, metadata)),
                [spec])

    def write(tmp: Path, version: int) -> None:
        archive = keras.export.ExportArchive()
        archive.track(model)
        for sig, (fn, sig_spec) in endpoints.items():
            archive.add_endpoint(sig, fn, sig_spec)
        archive.write_out(str(tmp), verbose=False)
        meta = {**metadata, "signatures": list(endpoints), "version": version,
                "masks": {k: np.asarray(v).astype(int).tolist() for k, v in masks.items()},
                "erasers": {k: {"method": "LEACE (Belrose et al. 2023), fit on the training split",
                                "removed_dimensions": e.rank} for k, e in (erasers or {}).items()},
                "privacy_note": "the head signatures (" + ", ".join(
                    a.output if a.is_identity else a.name for a in model.attributes if a.name in model.parts["heads"])
                    + ") read the full latent; they are not masked"}
        _write_metadata(tmp, meta)
        if privacy_report is not None:
            _write_metadata(tmp, privacy_report, PRIVACY_REPORT_FILE)

    path = _write_version(Path(export_dir) / name, version, write)
    if write_config:
        write_models_config(export_dir)
    return path


def _write_metadata(path: Path, meta: dict, name: str = METADATA_FILE) -> None:
    meta_path = path / name
    meta_path.parent.mkdir(parents=True, exist_ok=True)
    meta_path.write_text(json.dumps(meta, indent=2, default=float))


# ---------------------------------------------------------------------- privacy-safe export
class KeptNodesEncoder(tf.Module):
    """Raw features -> the kept latent nodes only (posterior mean), nothing else.

    Holds the standardisation statistics, the hidden encoder layers and the kept columns of the
    final encoder layer's mean half; with ``input_kernel``/``input_bias`` also the kept columns of the
    model's linear maps of the standardised input (``encoder_skip``, the ``linear_nodes`` band), added
    to the MLP's (a band node's MLP column is zero). The log-variance half and the protected columns
    are not copied, so no variable holds their weights and no function can compute them.
    """

    def __init__(self, mean, variance, epsilon: float, hidden: list[tuple], kernel, bias, view: str,
                 input_kernel=None, input_bias=None):
        super().__init__(name=f"{view}_encoder")
        self.view = view
        self.feature_mean = tf.Variable(mean, trainable=False, name="feature_mean")
        self.feature_variance = tf.Variable(variance, trainable=False, name="feature_variance")
        self.epsilon = float(epsilon)
        self.hidden_kernels = [tf.Variable(w, trainable=False, name=f"hidden{i}_kernel") for i, (w, _) in enumerate(hidden)]
        self.hidden_biases = [tf.Variable(b, trainable=False, name=f"hidden{i}_bias") for i, (_, b) in enumerate(hidden)]
        self.kept_kernel = tf.Variable(kernel, trainable=False, name="kept_kernel")
        self.kept_bias = tf.Variable(bias, trainable=False, name="kept_bias")
        self.input_kernel = None if input_kernel is None else \
            tf.Variable(input_kernel, trainable=False, name="kept_input_kernel")
        self.input_bias = None if input_bias is None else tf.Variable(input_bias, trainable=False, name="kept_input_bias")
        spec = tf.TensorSpec([None, int(np.shape(mean)[-1])], tf.float32, name="features")
        self.encode = tf.function(self._encode, input_signature=[spec])

    def _encode(self, features):
        return {"latent": self.latent(_finite(features))}

    def latent(self, features):
        """The kept nodes of raw ``features`` as plain builtin-op math (no finiteness check): standardise,
        ReLU layers, the final layer's kept columns plus the kept columns of the input's linear maps."""
        x = (features - self.feature_mean) / tf.maximum(tf.sqrt(self.feature_variance), self.epsilon)
        h = x
        for w, b in zip(self.hidden_kernels, self.hidden_biases):
            h = tf.nn.relu(tf.matmul(h, w) + b)
        latent = tf.matmul(h, self.kept_kernel) + self.kept_bias
        if self.input_kernel is not None:
            latent = latent + tf.matmul(x, self.input_kernel) + self.input_bias
        return latent


def protected_encoder(model, keep, view: str) -> KeptNodesEncoder:
    """The :class:`KeptNodesEncoder` of ``model`` for the nodes where ``keep`` is 1."""
    if not model.parts["vae"]:
        raise ValueError(f"method {model.method!r} has no latent to mask; privacy-safe export needs a VAE")
    keep = np.asarray(keep).reshape(-1)
    if keep.shape[0] != model.latent_dim:
        raise ValueError(f"mask has {keep.shape[0]} entries, the latent has {model.latent_dim}")
    kept = np.flatnonzero(keep > 0)
    if kept.size == 0:
        raise ValueError(f"the {view} mask keeps no node; nothing to export")
    layers = model.encoder.layers
    for layer in layers[:-1]:
        if layer.activation is not keras.activations.relu:
            raise ValueError(f"encoder layer {layer.name} is not a ReLU Dense layer")
    if layers[-1].activation is not keras.activations.linear:
        raise ValueError(f"encoder output layer {layers[-1].name} is not linear")
    hidden = [(np.asarray(l.kernel.numpy(), np.float32), np.asarray(l.bias.numpy(), np.float32)) for l in layers[:-1]]
    mlp_nodes = model.latent_dim - model.linear_nodes  # the MLP's outputs: [mean, log-variance] of these nodes
    kernel, bias = _mean_columns(layers[-1], mlp_nodes, kept, hidden[-1][0].shape[1] if hidden else model.input_dim)
    input_kernel = input_bias = None
    if model.encoder_skip or model.linear_nodes:
        input_kernel, input_bias = np.zeros((model.input_dim, kept.size), np.float32), np.zeros(kept.size, np.float32)
        if model.encoder_skip:
            k, b = _mean_columns(model.encoder_linear.layers[0], mlp_nodes, kept, model.input_dim)
            input_kernel, input_bias = input_kernel + k, input_bias + b
        if model.linear_nodes:
            k, b = _mean_columns(model.encoder_band.layers[0], model.linear_nodes, kept - mlp_nodes, model.input_dim)
            input_kernel, input_bias = input_kernel + k, input_bias + b
    norm = {w.name: np.asarray(w.numpy(), np.float32) for w in model.normalizer.weights}
    return KeptNodesEncoder(norm["mean"].reshape(1, -1), norm["variance"].reshape(1, -1), keras.backend.epsilon(),
                            hidden, kernel, bias, view, input_kernel, input_bias)


def _mean_columns(layer, nodes: int, kept, rows: int):
    """(kernel, bias) of the posterior-mean columns of a ``Dense`` encoder output over ``nodes`` nodes
    (its columns ``0..nodes-1``; the rest are log-variances) for the ``kept`` node indices; a kept index
    outside ``0..nodes-1`` (a node another layer outputs) gets a zero column."""
    kernel = np.zeros((rows, kept.size), np.float32)
    bias = np.zeros(kept.size, np.float32)
    own = (kept >= 0) & (kept < nodes)
    kernel[:, own] = np.asarray(layer.kernel.numpy(), np.float32)[:, kept[own]]
    bias[own] = np.asarray(layer.bias.numpy(), np.float32)[kept[own]]
    return kernel, bias


def export_protected(model, export_dir: str | Path, name: str, protect: str, keep, metadata: dict,
                     version: int | None = None, write_config: bool = True) -> Path:
    """Privacy-safe export for one protected attribute (``identity`` or ``emotion``) or one view of any
    attributes (``protect`` = its name, ``keep_<attributes>``).

    The SavedModel's signatures are ``serving_default`` and the view (``identity_free``,
    ``emotion_free`` or ``keep_<attributes>``), both the same function returning ``latent``:
    float32 [batch, kept].
    """
    if protect not in PROTECT_VIEWS and not protect.startswith("keep_"):
        raise ValueError(f"protect must be one of {sorted(PROTECT_VIEWS)} or a view keep_<attributes>, got {protect!r}")
    view = PROTECT_VIEWS.get(protect, protect)
    module = protected_encoder(model, keep, view)
    kept = np.flatnonzero(np.asarray(keep).reshape(-1) > 0)
    fn = module.encode.get_concrete_function()

    def write(tmp: Path, version: int) -> None:
        tf.saved_model.save(module, str(tmp), signatures={"serving_default": fn, view: fn})
        meta = {**metadata, "signatures": ["serving_default", view], "version": version,
                "protect": protect, "view": view, "kept_nodes": kept.tolist(), "latent_dim": model.latent_dim,
                "privacy_note": f"only the {kept.size} kept nodes of the {view} view are computable; "
                                "output column j is latent node kept_nodes[j]"}
        _write_metadata(tmp, meta)

    path = _write_version(Path(export_dir) / name, version, write)
    if write_config:
        write_models_config(export_dir)
    return path


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m tfvae.export",
        description="Re-export a training run as a SavedModel in TF Serving's layout and refresh "
                    "<export_dir>/models.config. Without --run_dir only models.config is rewritten. "
                    "--format litert writes LiteRT (TFLite) files of the run's privacy views instead.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--run_dir", help="training run directory (config.json, best.weights.h5, mask.json, "
                                     "normalization.npz), e.g. runs/tfvae_demo-IS10-lrvae")
    p.add_argument("--export_dir", default="saved_models",
                   help="SavedModel root (--format litert: the files go to <export_dir>/<name>-litert/)")
    p.add_argument("--format", choices=("savedmodel", "litert"), default="savedmodel",
                   help="savedmodel: TF Serving layout; litert: a float32 LiteRT (TFLite) file of each privacy view "
                        "of the run and of its privacy-safe export (only the kept nodes), each checked with the "
                        "LiteRT interpreter against TensorFlow (tfvae.export_litert); with --protect/--view only "
                        "that view")
    p.add_argument("--name", help="model name (default: the run name; with --protect, "
                                  "<run>-identity-free or <run>-emotion-free)")
    p.add_argument("--protect", choices=sorted(PROTECT_VIEWS),
                   help="privacy-safe export: only the nodes of the view that removes this attribute exist")
    p.add_argument("--view", help="privacy-safe export of any view of the run (e.g. keep_emotion of a run over "
                                  "emotion,gender,identity): only its nodes exist")
    p.add_argument("--version", type=int, help="version number (default: one more than the newest)")
    p.add_argument("--waveform_in", action="store_true",
                   help="runs on speaker-encoder embeddings: export encoder + LR-VAE as one model taking 16 kHz audio "
                        "(tfvae.export_waveform); --speaker_encoder overrides the encoder the run recorded")
    p.add_argument("--speaker_encoder", help="with --waveform_in: the exported speaker encoder to compose")
    p.add_argument("--base_path_prefix",
                   help="write base_path of new entries as <prefix>/<name> (e.g. /models inside a container) "
                        "instead of the absolute local path")
    return p


def main(argv=None) -> int:
    args = parser().parse_args(argv)
    if args.format == "litert":
        return _main_litert(args, argv)
    try:
        if args.run_dir and args.waveform_in:
            from tfvae.export_waveform import export_waveform_encoder

            path = export_waveform_encoder(args.run_dir, args.export_dir, args.name, encoder=args.speaker_encoder,
                                           version=args.version)
            print(f"[tfvae] SavedModel (waveform in): {path}")
        elif args.run_dir:
            model, masks, meta = load_run(args.run_dir)
            erasers = meta.pop("erasers")
            if args.protect or args.view:
                if args.protect and args.view:
                    raise ValueError("give --protect or --view, not both")
                view = PROTECT_VIEWS[args.protect] if args.protect else args.view
                if view not in masks:
                    raise ValueError(f"run {args.run_dir} has no {view} mask (mask.json has "
                                     f"{sorted(masks) or 'none'}); method {meta['method']} cannot be exported with "
                                     f"{'--protect ' + args.protect if args.protect else '--view ' + view}")
                name = args.name or f"{meta['run_name']}-{view.replace('_', '-')}"
                path = export_protected(model, args.export_dir, name, args.protect or view, masks[view], meta,
                                        version=args.version, write_config=False)
            else:
                path = export_encoder(model, args.export_dir, args.name or meta["run_name"], masks, meta,
                                      version=args.version, write_config=False, erasers=erasers)
            print(f"[tfvae] SavedModel: {path}")
        config = write_models_config(args.export_dir, base_path_prefix=args.base_path_prefix)
    except (FileNotFoundError, FileExistsError, ValueError) as e:
        print(f"tfvae.export: error: {e}", file=sys.stderr)
        return 2
    n = len(read_models_config(config).model_config_list.config)
    print(f"[tfvae] {config}: {n} model(s)")
    return 0


def _main_litert(args, argv) -> int:
    import shlex

    from tfvae.export_litert import MANIFEST_FILE, export_litert, format_record

    command = "python -m tfvae.export " + shlex.join(sys.argv[1:] if argv is None else list(argv))
    try:
        if not args.run_dir:
            raise ValueError("--format litert needs --run_dir")
        unsupported = [f for f, on in (("--waveform_in", args.waveform_in), ("--version", args.version is not None),
                                       ("--base_path_prefix", args.base_path_prefix)) if on]
        if unsupported:
            raise ValueError(f"{', '.join(unsupported)} only apply to --format savedmodel")
        if args.protect and args.view:
            raise ValueError("give --protect or --view, not both")
        model, masks, meta = load_run(args.run_dir)
        erasers = meta.pop("erasers")
        if not masks:
            raise ValueError(f"run {args.run_dir} has no masked views (mask.json has no masks; method "
                             f"{meta['method']}): --format litert exports the privacy views of an lrvae run")
        view = PROTECT_VIEWS[args.protect] if args.protect else args.view
        out_dir = Path(args.export_dir) / f"{args.name or meta['run_name']}-litert"
        out_dir, records = export_litert(model, masks, out_dir, Path(args.run_dir) / "normalization.npz",
                                         erasers=erasers, view=view, metadata=meta, command=command)
    except (FileNotFoundError, FileExistsError, ValueError) as e:
        print(f"tfvae.export: error: {e}", file=sys.stderr)
        return 2
    for r in records:
        print(f"[tfvae] LiteRT {out_dir / r['file']}: " + format_record(r).split(": ", 1)[1])
    print(f"[tfvae] {len(records)} LiteRT file(s), builtin ops only, float32, dynamic batch; manifest "
          f"{out_dir / MANIFEST_FILE}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
