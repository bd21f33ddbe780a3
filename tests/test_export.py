import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf
from tensorflow.core.protobuf import saved_model_pb2

from tfvae.export import (CONFIG_FILE, METADATA_FILE, export_encoder, export_protected, main, next_version,
                          read_models_config, write_models_config)
from tfvae.masking import keep_mask
from tfvae.model import LRVAE

N = 32


def _model_and_masks(c):
    m = LRVAE(c.dim, 5, len(c.speaker_index()), latent_dim=N, encoder_units=(48,), decoder_units=(64,),
              head_units=(32,), seed=0)
    m.build()
    m.adapt_normalizer(c.splits["train"].features)
    return m, {"identity_free": keep_mask(N, "identity_free", 12), "emotion_free": keep_mask(N, "emotion_free", 20)}


@pytest.fixture(scope="module")
def exported(small_corpus, tmp_path_factory):
    c = small_corpus
    m, masks = _model_and_masks(c)
    root = tmp_path_factory.mktemp("saved_models")
    path = export_encoder(m, root, "demo", masks, {"emotion_names": c.emotion_names})
    return m, path, masks, root


def _x(small_corpus, n=7):
    return tf.constant(small_corpus.splits["test"].features[:n])  # raw features: normalisation is in the graph


def test_versioned_layout_and_metadata(exported):
    _, path, masks, root = exported
    assert path == root / "demo" / "1" and (path / "saved_model.pb").exists()
    assert not [p for p in (root / "demo").iterdir() if p.name != "1"]  # no temporary directory left
    meta = json.loads((path / METADATA_FILE).read_text())
    assert meta["version"] == 1 and meta["masks"]["identity_free"] == masks["identity_free"].astype(int).tolist()
    assert meta["signatures"] == ["serving_default", "identity_free", "keep_emotion", "emotion_free", "keep_identity",
                                  "mask", "emotion", "speaker_embedding"]
    assert next_version(root / "demo") == 2


def test_masked_signatures_after_reload(exported, small_corpus):
    model, path, masks, _ = exported
    loaded = tf.saved_model.load(str(path))
    assert set(loaded.signatures) == {"serving_default", "identity_free", "emotion_free", "keep_emotion",
                                      "keep_identity", "mask", "emotion", "speaker_embedding"}
    x = _x(small_corpus)
    full = loaded.signatures["serving_default"](features=x)["latent"].numpy()
    np.testing.assert_allclose(full, model.encode(x).numpy(), rtol=1e-5, atol=1e-6)
    for sig, mask in masks.items():
        out = loaded.signatures[sig](features=x)["latent"].numpy()
        alias = {"identity_free": "keep_emotion", "emotion_free": "keep_identity"}[sig]  # the general view name
        np.testing.assert_array_equal(loaded.signatures[alias](features=x)["latent"].numpy(), out)
        assert out.shape == (7, N)
        keep = mask > 0
        assert np.all(out[:, ~keep] == 0.0) and not np.any(np.signbit(out[:, ~keep]))
        np.testing.assert_array_equal(out[:, keep], full[:, keep])
        assert np.all(out[:, keep] != 0.0)


def test_signature_shapes(exported):
    _, path, _, _ = exported
    sigs = tf.saved_model.load(str(path)).signatures
    spec = sigs["identity_free"].structured_input_signature[1]["features"]
    assert spec.shape.as_list() == [None, 1582] and spec.dtype == tf.float32
    assert sigs["identity_free"].structured_outputs["latent"].shape.as_list() == [None, N]
    keep = sigs["mask"].structured_input_signature[1]["keep"]
    assert keep.shape.as_list() == [None, N] and keep.dtype == tf.float32
    emo = sigs["emotion"].structured_outputs
    assert emo["probabilities"].shape.as_list() == [None, 5] and emo["class_index"].dtype == tf.int64
    assert emo["class_name"].dtype == tf.string
    assert sigs["speaker_embedding"].structured_outputs["speaker_embedding"].shape.as_list() == [None, 32]


def test_mask_signature_takes_a_keep_vector_checked_in_graph(exported, small_corpus):
    _, path, masks, _ = exported
    sigs = tf.saved_model.load(str(path)).signatures
    x = _x(small_corpus, 3)
    ident = sigs["identity_free"](features=x)["latent"].numpy()
    one_row = sigs["mask"](features=x, keep=tf.constant(masks["identity_free"][None]))["latent"].numpy()
    np.testing.assert_array_equal(one_row, ident)
    per_row = np.stack([masks["identity_free"], masks["emotion_free"], np.zeros(N, np.float32)])
    out = sigs["mask"](features=x, keep=tf.constant(per_row))["latent"].numpy()
    np.testing.assert_array_equal(out[0], ident[0])
    np.testing.assert_array_equal(out[1], sigs["emotion_free"](features=x)["latent"].numpy()[1])
    assert np.all(out[2] == 0.0) and not np.any(np.signbit(out[2]))
    with pytest.raises(tf.errors.InvalidArgumentError, match="keep must hold only 0 and 1"):
        sigs["mask"](features=x, keep=tf.fill((1, N), 0.5))
    with pytest.raises(tf.errors.InvalidArgumentError, match="keep must have 1 row or one row per example"):
        sigs["mask"](features=x, keep=tf.ones((2, N)))


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_features_fail_in_graph(exported, small_corpus, bad):
    _, path, _, _ = exported
    sigs = tf.saved_model.load(str(path)).signatures
    x = small_corpus.splits["test"].features[:2].copy()
    x[1, 7] = bad
    for name in ("serving_default", "identity_free", "emotion", "speaker_embedding"):
        with pytest.raises(tf.errors.InvalidArgumentError, match="features must be finite"):
            sigs[name](features=tf.constant(x))


def test_head_signatures_match_the_model(exported, small_corpus):
    model, path, _, _ = exported
    sigs = tf.saved_model.load(str(path)).signatures
    x = _x(small_corpus)
    ref = model(x, training=False)
    emo = sigs["emotion"](features=x)
    np.testing.assert_allclose(emo["probabilities"].numpy(), ref["emotion_probabilities"].numpy(), rtol=1e-5, atol=1e-6)
    idx = np.argmax(ref["emotion_probabilities"].numpy(), axis=1)
    np.testing.assert_array_equal(emo["class_index"].numpy(), idx)
    assert [s.decode() for s in emo["class_name"].numpy()] == [small_corpus.emotion_names[i] for i in idx]
    np.testing.assert_allclose(sigs["speaker_embedding"](features=x)["speaker_embedding"].numpy(),
                               ref["speaker_embedding"].numpy(), rtol=1e-5, atol=1e-6)


def test_dnn_exports_its_heads(small_corpus, tmp_path):
    c = small_corpus
    m = LRVAE(c.dim, 5, len(c.speaker_index()), method="dnn", head_units=(16,), seed=0)
    m.build()
    m.adapt_normalizer(c.splits["train"].features)
    path = export_encoder(m, tmp_path, "dnn", {}, {})
    loaded = tf.saved_model.load(str(path))
    assert set(loaded.signatures) == {"serving_default", "emotion", "speaker_embedding"}
    out = loaded.signatures["serving_default"](features=tf.constant(c.splits["test"].features[:2]))
    assert out["emotion_probabilities"].shape == (2, 5) and out["speaker_embedding"].shape == (2, 16)
    np.testing.assert_allclose(out["emotion_probabilities"].numpy().sum(1), 1.0, rtol=1e-5)


def test_existing_version_is_never_overwritten(exported):
    m, path, masks, root = exported
    with pytest.raises(FileExistsError, match="immutable"):
        export_encoder(m, root, "demo", masks, {}, version=1)


# ---------------------------------------------------------------------- models.config
def test_models_config_covers_every_model_and_keeps_settings(exported, tmp_path):
    import shutil

    _, path, _, _ = exported
    root = tmp_path / "sm"
    for name in ("a", "b"):
        shutil.copytree(path, root / name / "3")
    (root / "empty").mkdir(parents=True)  # no version: not a model
    (root / "c" / "junk").mkdir(parents=True)  # no numeric version: not a model
    cfg = read_models_config(write_models_config(root))
    entries = {c.name: c for c in cfg.model_config_list.config}
    assert sorted(entries) == ["a", "b"]
    assert entries["a"].base_path == str((root / "a").resolve()) and entries["a"].model_platform == "tensorflow"
    assert entries["a"].model_version_policy.WhichOneof("policy_choice") == "all"
    text = (root / CONFIG_FILE).read_text()
    assert text.startswith("model_config_list {") and 'name: "a"' in text
    # a hand-set policy survives a refresh; a removed model disappears; a new one appears
    text = text.replace("all {\n      }", "latest {\n        num_versions: 2\n      }", 1)
    (root / CONFIG_FILE).write_text(text)
    shutil.rmtree(root / "b")
    shutil.copytree(path, root / "d" / "1")
    entries = {c.name: c for c in read_models_config(write_models_config(root)).model_config_list.config}
    assert sorted(entries) == ["a", "d"]
    assert entries["a"].model_version_policy.latest.num_versions == 2
    entries = {c.name: c for c in read_models_config(
        write_models_config(root, base_path_prefix="/models")).model_config_list.config}
    assert entries["d"].base_path == "/models/d" and entries["a"].model_version_policy.latest.num_versions == 2


def test_export_writes_models_config(exported):
    _, _, _, root = exported
    names = [c.name for c in read_models_config(root / CONFIG_FILE).model_config_list.config]
    assert names == ["demo"]


# ---------------------------------------------------------------------- privacy-safe export
def _reachable(obj):
    """Every object reachable from a loaded SavedModel through its object graph."""
    seen, stack, out = set(), [obj], []
    while stack:
        o = stack.pop()
        if id(o) in seen:
            continue
        seen.add(id(o))
        out.append(o)
        try:
            children = o._trackable_children(save_type="savedmodel")
        except TypeError:
            children = o._trackable_children()
        except AttributeError:
            children = {}
        stack.extend(children.values())
        if isinstance(o, tf.types.experimental.PolymorphicFunction):
            stack.extend(getattr(o, "concrete_functions", []))
    return out


def _protected_paths(path, x, full, protected, kept_count):
    """Every way the SavedModel at ``path`` exposes a protected node; empty when there is none."""
    found = []
    loaded = tf.saved_model.load(str(path))
    fns = [(f"signature {k}", f) for k, f in loaded.signatures.items()]
    fns += [(f"object function {type(o).__name__}", o) for o in _reachable(loaded)
            if isinstance(o, tf.types.experimental.ConcreteFunction)]
    assert fns
    for where, fn in fns:
        args, kwargs = fn.structured_input_signature
        feed = lambda s: tf.constant(x) if s.shape.as_list() == [None, x.shape[1]] else tf.ones(  # noqa: E731
            [x.shape[0] if d is None else d for d in s.shape.as_list()], s.dtype)
        out = fn(*[feed(s) for s in args], **{k: feed(s) for k, s in kwargs.items()})
        for t in tf.nest.flatten(out):
            if t.dtype != tf.float32 or t.shape.rank != 2:
                continue
            if t.shape[-1] != kept_count:
                found.append(f"{where} outputs {t.shape[-1]} columns, not {kept_count}")
            for j in protected:
                if np.any(np.all(np.isclose(t.numpy(), full[:, j:j + 1], rtol=1e-4, atol=1e-5), axis=0)):
                    found.append(f"{where} outputs protected node {j}")
    ckpt = str(path / "variables" / "variables")
    for name, shape in tf.train.list_variables(ckpt):
        if 2 * N in shape or N in shape:
            found.append(f"variable {name} has shape {shape}: the width of the full final layer")
    sm = saved_model_pb2.SavedModel()
    sm.ParseFromString((path / "saved_model.pb").read_bytes())
    g = sm.meta_graphs[0]
    for node in list(g.graph_def.node) + [n for f in g.graph_def.library.function for n in f.node_def]:
        if node.op == "Const" and node.attr["value"].tensor.dtype == tf.float32.as_datatype_enum:
            size = int(np.prod([d.size for d in node.attr["value"].tensor.tensor_shape.dim]))
            if size >= 48:
                found.append(f"constant {node.name} holds {size} floats")
    return found


@pytest.mark.parametrize("protect,view", [("identity", "identity_free"), ("emotion", "emotion_free")])
def test_privacy_safe_export_has_no_path_to_protected_nodes(exported, small_corpus, tmp_path, protect, view):
    model, _, masks, _ = exported
    path = export_protected(model, tmp_path, f"demo-{view}", protect, masks[view], {"emotion_names": ["a"]})
    loaded = tf.saved_model.load(str(path))
    assert set(loaded.signatures) == {"serving_default", view}
    kept = np.flatnonzero(masks[view])
    protected = np.flatnonzero(masks[view] == 0)
    x = small_corpus.splits["test"].features[:9]
    full = model.encode(x).numpy()
    z = loaded.signatures[view](features=tf.constant(x))["latent"].numpy()
    assert z.shape == (9, kept.size)
    np.testing.assert_allclose(z, full[:, kept], rtol=1e-5, atol=1e-5)  # the kept nodes, in order
    assert _protected_paths(path, x, full, protected, kept.size) == []
    # the final layer's protected columns are in no variable
    final = model.encoder.layers[-1].kernel.numpy()
    for name, shape in tf.train.list_variables(str(path / "variables" / "variables")):
        if len(shape) == 2 and shape[0] == final.shape[0]:
            value = tf.train.load_variable(str(path / "variables" / "variables"), name)
            for j in [*protected, *range(N, 2 * N)]:
                assert not np.any(np.all(np.isclose(value, final[:, j:j + 1]), axis=0)), (name, j)
    meta = json.loads((path / METADATA_FILE).read_text())
    assert meta["protect"] == protect and meta["kept_nodes"] == kept.tolist()
    with pytest.raises(tf.errors.InvalidArgumentError, match="features must be finite"):
        loaded.signatures[view](features=tf.constant(np.full((1, x.shape[1]), np.nan, np.float32)))


@pytest.mark.parametrize("kw", [{"encoder_skip": True}, {"linear_nodes": 16}, {"linear_nodes": 8, "encoder_skip": True}])
def test_privacy_safe_export_keeps_the_linear_paths_of_the_input(small_corpus, tmp_path, kw):
    """Nodes with a linear path of the input (``encoder_skip``, the ``linear_nodes`` band) are exported
    exactly, and the band's protected columns are in no variable."""
    c = small_corpus
    m = LRVAE(c.dim, 5, len(c.speaker_index()), latent_dim=N, encoder_units=(48,), decoder_units=(64,),
              head_units=(32,), seed=0, **kw)
    m.build()
    m.adapt_normalizer(c.splits["train"].features)
    x = c.splits["test"].features[:9]
    full = m.encode(x).numpy()
    for protect, view, cut in (("identity", "identity_free", 12), ("emotion", "emotion_free", 20)):
        keep = keep_mask(N, view, cut)
        path = export_protected(m, tmp_path, f"{view}-{len(kw)}", protect, keep, {"emotion_names": ["a"]})
        z = tf.saved_model.load(str(path)).signatures[view](features=tf.constant(x))["latent"].numpy()
        np.testing.assert_allclose(z, full[:, keep > 0], rtol=1e-5, atol=1e-5)
        if "linear_nodes" in kw:
            band = m.encoder_band.layers[0].kernel.numpy()  # [mean, log-variance] of the last nodes
            protected = [j for j in range(2 * m.linear_nodes)
                         if j >= m.linear_nodes or keep[N - m.linear_nodes + j] == 0]
            for name, shape in tf.train.list_variables(str(path / "variables" / "variables")):
                if len(shape) == 2 and shape[0] == band.shape[0]:
                    value = tf.train.load_variable(str(path / "variables" / "variables"), name)
                    for j in protected:
                        assert not np.any(np.all(np.isclose(value, band[:, j:j + 1]), axis=0)), (name, j)


def test_privacy_check_flags_the_full_export(exported, small_corpus):
    """The check above can fail: the full export exposes the protected nodes in several ways."""
    model, path, masks, _ = exported
    x = small_corpus.splits["test"].features[:9]
    found = _protected_paths(path, x, model.encode(x).numpy(), np.flatnonzero(masks["identity_free"] == 0), 12)
    assert any("signature serving_default outputs protected node" in f for f in found)
    assert any("variable" in f and "64" in f for f in found)


# ---------------------------------------------------------------------- CLI from a run directory
@pytest.fixture(scope="module")
def run_dir(small_corpus, tmp_path_factory):
    from tfvae.config import TrainConfig
    from tfvae.model_builder import build_model

    c = small_corpus
    d = tmp_path_factory.mktemp("runs") / "demo-run"
    d.mkdir()
    cfg = TrainConfig(latent_dim=N, encoder_units=(48,), decoder_units=(32,), head_units=(16,), mask_groups=4,
                      epochs=1)
    model = build_model(cfg, c.dim, len(c.emotion_names), len(c.speaker_index()), total_steps=1)
    model.adapt_normalizer(c.splits["train"].features)
    model.save_weights(str(d / "best.weights.h5"))
    (d / "config.json").write_text(cfg.to_json())
    norm = {w.name: w.numpy().ravel() for w in model.normalizer.weights}
    np.savez(d / "normalization.npz", mean=norm["mean"], variance=norm["variance"], feature_names=np.asarray([]))
    masks = {"identity_free": keep_mask(N, "identity_free", 8), "emotion_free": keep_mask(N, "emotion_free", 16)}
    (d / "mask.json").write_text(json.dumps({"identity_free_cut": 8, "emotion_free_cut": 16,
                                             "masks": {k: v.astype(int).tolist() for k, v in masks.items()}}))
    (d / "summary.json").write_text(json.dumps({"run_name": "demo-run", "emotion_names": c.emotion_names}))
    from tfvae.erasure import save_erasers, view_erasers

    tr = c.splits["train"]
    save_erasers(d / "erasure.npz", view_erasers(model.encode(tr.features).numpy(), tr.emotion, tr.speaker, masks))
    return d, model, masks


def test_export_cli_from_run_dir(run_dir, small_corpus, tmp_path, capsys):
    d, model, masks = run_dir
    out = tmp_path / "sm"
    assert main(["--run_dir", str(d), "--export_dir", str(out)]) == 0
    assert main(["--run_dir", str(d), "--export_dir", str(out), "--protect", "emotion"]) == 0
    assert main(["--run_dir", str(d), "--export_dir", str(out)]) == 0  # a second version of the run
    assert sorted(p.name for p in (out / "demo-run").iterdir()) == ["1", "2"]
    x = tf.constant(small_corpus.splits["test"].features[:4])
    full = tf.saved_model.load(str(out / "demo-run" / "2")).signatures
    np.testing.assert_allclose(full["serving_default"](features=x)["latent"].numpy(), model.encode(x).numpy(),
                               rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(full["identity_free"](features=x)["latent"].numpy()[:, 8:], 0.0)
    np.testing.assert_array_equal(full["emotion_free_leace"](features=x)["latent"].numpy()[:, :16], 0.0)
    names = [s.decode() for s in full["emotion"](features=x)["class_name"].numpy()]
    assert set(names) <= set(small_corpus.emotion_names)
    private = tf.saved_model.load(str(out / "demo-run-emotion-free" / "1")).signatures
    assert set(private) == {"serving_default", "emotion_free"}
    z = private["emotion_free"](features=x)["latent"].numpy()
    np.testing.assert_allclose(z, model.encode(x).numpy()[:, 16:], rtol=1e-5, atol=1e-5)
    cfg = read_models_config(out / CONFIG_FILE)
    assert sorted(c.name for c in cfg.model_config_list.config) == ["demo-run", "demo-run-emotion-free"]
    assert "models.config: 2 model(s)" in capsys.readouterr().out


def test_export_cli_errors(run_dir, tmp_path, capsys):
    assert main(["--run_dir", str(tmp_path / "nope"), "--export_dir", str(tmp_path)]) == 2
    assert "missing config.json" in capsys.readouterr().err


def test_saved_model_cli_shows_the_signatures(exported):
    _, path, _, _ = exported
    cli = Path(sys.executable).with_name("saved_model_cli")  # the console script of the tensorflow package
    out = subprocess.run([str(cli), "show", "--dir", str(path), "--all"], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    for sig in ("serving_default", "identity_free", "emotion_free", "mask", "emotion", "speaker_embedding"):
        assert f"signature_def['{sig}']" in out.stdout
    assert "inputs['keep'] tensor_info:" in out.stdout and "outputs['class_name'] tensor_info:" in out.stdout
    assert "shape: (-1, 1582)" in out.stdout


def test_leace_signatures_apply_the_fixed_eraser_after_reload(small_corpus, tmp_path):
    from tfvae.erasure import view_erasers

    c = small_corpus
    m, masks = _model_and_masks(c)
    tr = c.splits["train"]
    erasers = view_erasers(m.encode(tr.features).numpy(), tr.emotion, tr.speaker, masks)
    path = export_encoder(m, tmp_path, "leace", masks, {"emotion_names": c.emotion_names}, erasers=erasers)
    meta = json.loads((path / METADATA_FILE).read_text())
    assert {"identity_free_leace", "emotion_free_leace"} <= set(meta["signatures"])
    assert meta["erasers"]["emotion_free_leace"]["removed_dimensions"] == len(np.unique(tr.emotion)) - 1
    loaded = tf.saved_model.load(str(path))
    x = _x(c)
    z = m.encode(x).numpy()
    for sig, eraser in erasers.items():
        keep = masks[sig.removesuffix("_leace")] > 0
        out = loaded.signatures[sig](features=x)["latent"].numpy()
        np.testing.assert_allclose(out, eraser(z * keep), rtol=1e-4, atol=1e-4)
        assert np.all(out[:, ~keep] == 0.0)
    with pytest.raises(ValueError, match="needs the mask 'identity_free'"):
        export_encoder(m, tmp_path, "bad", {"emotion_free": masks["emotion_free"]}, {}, erasers=erasers)
