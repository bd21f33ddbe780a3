"""``python -m tfvae.export --format litert``: LiteRT files of a run's privacy views, run with ai-edge-litert."""

import contextlib
import io
import json
import re

import numpy as np
import pytest
import tensorflow as tf
from ai_edge_litert.interpreter import Interpreter

from tfvae import export_litert
from tfvae.export import main
from tfvae.masking import keep_mask

N = 32
PAPER_FILES = ["emotion_free-privacy_safe.tflite", "emotion_free.tflite", "emotion_free_leace.tflite",
               "identity_free-privacy_safe.tflite", "identity_free.tflite", "identity_free_leace.tflite"]


def _write_run(d, c, cfg, masks, summary, model_kw=None, erasers=True):
    """A run directory with the files load_run reads (an untrained model: export does not care)."""
    from tfvae.erasure import save_erasers, view_erasers
    from tfvae.model_builder import build_model

    d.mkdir(parents=True)
    model = build_model(cfg, c.dim, len(c.emotion_names), len(c.speaker_index()), total_steps=1, **(model_kw or {}))
    model.adapt_normalizer(c.splits["train"].features)
    model.save_weights(str(d / "best.weights.h5"))
    (d / "config.json").write_text(cfg.to_json())
    norm = {w.name: w.numpy().ravel() for w in model.normalizer.weights}
    np.savez(d / "normalization.npz", mean=norm["mean"], variance=norm["variance"], feature_names=np.asarray([]))
    (d / "mask.json").write_text(json.dumps({"masks": {k: np.asarray(v).astype(int).tolist()
                                                       for k, v in masks.items()}}))
    (d / "summary.json").write_text(json.dumps({"run_name": d.name, "emotion_names": c.emotion_names, **summary}))
    if erasers and masks:
        tr = c.splits["train"]
        save_erasers(d / "erasure.npz", view_erasers(model.encode(tr.features).numpy(), tr.emotion, tr.speaker, masks))
    return model


def _cli(argv):
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        rc = main(argv)
    return rc, out.getvalue(), err.getvalue()


@pytest.fixture(scope="module")
def run(small_corpus, tmp_path_factory):
    from tfvae.config import TrainConfig

    d = tmp_path_factory.mktemp("runs") / "demo-run"
    cfg = TrainConfig(latent_dim=N, encoder_units=(48,), decoder_units=(32,), head_units=(16,), mask_groups=4, epochs=1)
    masks = {"identity_free": keep_mask(N, "identity_free", 8), "emotion_free": keep_mask(N, "emotion_free", 16)}
    model = _write_run(d, small_corpus, cfg, masks, {})
    out = tmp_path_factory.mktemp("exports")
    rc, stdout, stderr = _cli(["--run_dir", str(d), "--export_dir", str(out), "--format", "litert"])
    assert rc == 0, stderr
    assert main(["--run_dir", str(d), "--export_dir", str(out)]) == 0  # the SavedModel to compare with
    return d, model, masks, out, stdout


def _litert(path, x):
    runner = Interpreter(model_path=str(path)).get_signature_runner()
    return runner(features=np.ascontiguousarray(x, np.float32))["latent"]


def test_cli_prints_size_latency_and_difference_per_file(run):
    d, _, masks, out, stdout = run
    lite = out / "demo-run-litert"
    assert sorted(p.name for p in lite.glob("*.tflite")) == PAPER_FILES
    manifest = json.loads((lite / export_litert.MANIFEST_FILE).read_text())
    assert "--format litert" in manifest["command"] and manifest["run_name"] == "demo-run"
    assert sorted(r["file"] for r in manifest["files"]) == PAPER_FILES
    for r in manifest["files"]:
        path = lite / r["file"]
        line = next(l for l in stdout.splitlines() if f"LiteRT {path}:" in l)
        m = re.search(r": (\d+) bytes, batch-1 latency ([0-9.]+) ms \(median\), max \|diff\| ([0-9.e+-]+) ", line)
        assert m, line
        size, latency, diff = int(m[1]), float(m[2]), float(m[3])
        assert size == path.stat().st_size == r["size_bytes"] and latency > 0 and r["latency_ms"] > 0
        assert diff == pytest.approx(r["max_abs_diff"], rel=1e-2, abs=1e-12) and 0 <= diff <= 1e-4
        view = r["view"]
        assert r["kept_nodes"] == np.flatnonzero(masks[view.removesuffix("_leace")]).tolist()
        assert r["signature"] == view and r["inputs"] == {"features": {"shape": [-1, 1582], "dtype": "float32"}}
        width = len(r["kept_nodes"]) if r["privacy_safe"] else N
        assert r["outputs"] == {"latent": {"shape": [-1, width], "dtype": "float32"}}
    assert not (out / "models.config").read_text().count("litert")  # not a TF Serving model


def test_identity_free_file_matches_the_saved_model(run, small_corpus):
    _, _, masks, out, _ = run
    lite = out / "demo-run-litert"
    sigs = tf.saved_model.load(str(out / "demo-run" / "1")).signatures
    x = small_corpus.splits["test"].features[:7]  # real features of the demo corpus, raw
    for view in ("identity_free", "emotion_free", "identity_free_leace", "emotion_free_leace"):
        ref = sigs[view](features=tf.constant(x))["latent"].numpy()
        got = _litert(lite / f"{view}.tflite", x)  # batch 7: the batch dimension is dynamic
        assert got.shape == (7, N)
        assert np.max(np.abs(got - ref)) <= 1e-4, view
        np.testing.assert_allclose(_litert(lite / f"{view}.tflite", x[2:3]), ref[2:3], rtol=0, atol=1e-4)
        keep = masks[view.removesuffix("_leace")] > 0
        assert np.all(got[:, ~keep] == 0.0) and not np.any(np.signbit(got[:, ~keep]))  # exactly +0.0
        assert np.all(got[:, keep] != 0.0)
    # the comparison can fail: another view's signature is far from this file
    other = sigs["emotion_free"](features=tf.constant(x))["latent"].numpy()
    assert np.max(np.abs(_litert(lite / "identity_free.tflite", x) - other)) > 1e-2
    full = sigs["serving_default"](features=tf.constant(x))["latent"].numpy()
    for view in ("identity_free", "emotion_free"):
        kept = np.flatnonzero(masks[view])
        got = _litert(lite / f"{view}-privacy_safe.tflite", x)
        assert got.shape == (7, kept.size)  # the masked nodes are absent
        assert np.max(np.abs(got - full[:, kept])) <= 1e-4


def _tensors(path):
    interp = Interpreter(model_path=str(path))
    interp.allocate_tensors()
    out = []
    for t in interp.get_tensor_details():
        try:
            out.append((t["name"], interp.get_tensor(t["index"])))
        except ValueError:  # an intermediate without a buffer
            pass
    return out


def test_privacy_safe_file_holds_no_protected_weights(run):
    _, model, masks, out, _ = run
    lite = out / "demo-run-litert"
    # every column of the encoder's output layers, named (node, "mean" | "log_var"): the MLP's
    # [hidden, 2 (N - k)] kernel gives nodes 0..N-k-1, the linear band's [D, 2 k] kernel the last k nodes
    m, k = N - model.linear_nodes, model.linear_nodes
    assert k > 0  # the defaults have a linear band (--linear_band)
    layers = [(model.encoder.layers[-1].kernel.numpy(), 0, m), (model.encoder_band.layers[0].kernel.numpy(), m, k)]
    columns = {(first + j % nodes, "mean" if j < nodes else "log_var"): w[:, j]
               for w, first, nodes in layers for j in range(2 * nodes)}

    def columns_in(path):
        found = set()
        for _, value in _tensors(path):
            if value.ndim != 2:
                continue
            for key, col in columns.items():  # a FULLY_CONNECTED weight is [out, in]
                if value.shape[1] == col.size and np.any(np.all(np.isclose(value, col[None, :], rtol=1e-6, atol=1e-7),
                                                                 axis=1)):
                    found.add(key)
        return found

    for view in ("identity_free", "emotion_free"):
        kept = {(j, "mean") for j in np.flatnonzero(masks[view]).tolist()}
        assert columns_in(lite / f"{view}-privacy_safe.tflite") == kept
        dims = {d for _, v in _tensors(lite / f"{view}-privacy_safe.tflite") for d in v.shape}
        assert N not in dims and 2 * N not in dims and 2 * m not in dims and 2 * k not in dims
    # the check can fail: the full-width file holds every mean column (its output zeroes the masked ones)
    assert columns_in(lite / "identity_free.tflite") == {(j, "mean") for j in range(N)}


def test_builtin_ops_only_and_no_numerics_check(run):
    _, _, _, out, _ = run
    for f in PAPER_FILES:
        details = export_litert.file_details(out / "demo-run-litert" / f)
        assert details["ops"] and not [op for op in details["ops"] if op.startswith("Flex") or op == "CUSTOM"]
        assert "FULLY_CONNECTED" in details["ops"]


def test_non_finite_features_make_the_kept_nodes_nan(run, small_corpus):
    _, _, masks, out, _ = run
    x = small_corpus.splits["test"].features[:3].copy()
    x[1, 11] = np.nan
    x[2, 5] = np.inf
    got = _litert(out / "demo-run-litert" / "identity_free.tflite", x)
    keep = masks["identity_free"] > 0
    assert np.all(np.isfinite(got[0])) and np.all(np.isnan(got[1:, keep])) and np.all(got[1:, ~keep] == 0.0)
    assert np.all(np.isnan(_litert(out / "demo-run-litert" / "emotion_free-privacy_safe.tflite", x)[1:]))


def test_run_without_masks_is_a_clear_error(small_corpus, tmp_path):
    from tfvae.config import TrainConfig

    d = tmp_path / "dnn-run"
    _write_run(d, small_corpus, TrainConfig(method="dnn", head_units=(16,), epochs=1), {}, {})
    rc, stdout, stderr = _cli(["--run_dir", str(d), "--export_dir", str(tmp_path / "out"), "--format", "litert"])
    assert rc == 2 and "has no masked views" in stderr and "method dnn" in stderr
    assert not (tmp_path / "out").exists()


def test_general_views_and_one_view(small_corpus, tmp_path):
    """A run over emotion,gender,identity exports its keep_<attributes> views; --view picks one."""
    from tfvae.masking import view_keep
    from tfvae.config import TrainConfig

    d = tmp_path / "attrs-run"
    cfg = TrainConfig(latent_dim=N, encoder_units=(40,), decoder_units=(32,), head_units=(16,), mask_groups=4,
                      epochs=1, attributes="emotion,gender,identity")
    attrs = ("emotion", "gender", "identity")
    masks = {"keep_emotion": view_keep(N, ("emotion",), attrs, (10,)),
             "keep_gender_identity": view_keep(N, ("gender", "identity"), attrs, (10,))}
    model = _write_run(d, small_corpus, cfg, masks, {"label_names": {"gender": ["f", "m"]}},
                       model_kw={"n_classes": {"gender": 2}}, erasers=False)
    rc, stdout, stderr = _cli(["--run_dir", str(d), "--export_dir", str(tmp_path), "--format", "litert",
                               "--view", "keep_gender_identity", "--name", "g"])
    assert rc == 0, stderr
    lite = tmp_path / "g-litert"
    assert sorted(p.name for p in lite.glob("*.tflite")) == ["keep_gender_identity-privacy_safe.tflite",
                                                            "keep_gender_identity.tflite"]
    assert stdout.count(" bytes, batch-1 latency ") == 2
    x = small_corpus.splits["test"].features[:5]
    z = model.encode(x).numpy()
    keep = masks["keep_gender_identity"] > 0
    got = _litert(lite / "keep_gender_identity.tflite", x)
    assert np.max(np.abs(got[:, keep] - z[:, keep])) <= 1e-4 and np.all(got[:, ~keep] == 0.0)
    # a second export replaces the directory (now every view)
    rc, stdout, stderr = _cli(["--run_dir", str(d), "--export_dir", str(tmp_path), "--format", "litert", "--name", "g"])
    assert rc == 0, stderr
    assert sorted(p.name for p in lite.glob("*.tflite")) == [
        "keep_emotion-privacy_safe.tflite", "keep_emotion.tflite",
        "keep_gender_identity-privacy_safe.tflite", "keep_gender_identity.tflite"]
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary directory left
    rc, _, stderr = _cli(["--run_dir", str(d), "--export_dir", str(tmp_path), "--format", "litert", "--view", "keep_x"])
    assert rc == 2 and "no keep_x mask" in stderr


def test_a_difference_above_the_tolerance_fails_and_writes_nothing(run, tmp_path, monkeypatch):
    d, _, _, _, _ = run
    masked = export_litert._masked_encoder

    def off(model, keep):  # a reference 1e-3 away from what the file computes
        fn = masked(model, keep)
        return lambda x: {"latent": fn(x)["latent"] + 1e-3}

    monkeypatch.setattr(export_litert, "_masked_encoder", off)
    rc, _, stderr = _cli(["--run_dir", str(d), "--export_dir", str(tmp_path), "--format", "litert",
                          "--protect", "identity"])
    assert rc == 2 and "identity_free.tflite differs from the TensorFlow identity_free function" in stderr
    assert not list(tmp_path.iterdir())


def test_litert_cli_errors(run, tmp_path):
    d, _, _, _, _ = run
    (tmp_path / "demo-run-litert").mkdir()  # not ours: never replaced
    rc, _, stderr = _cli(["--run_dir", str(d), "--export_dir", str(tmp_path), "--format", "litert"])
    assert rc == 2 and "is no LiteRT export" in stderr
    rc, _, stderr = _cli(["--run_dir", str(d), "--export_dir", str(tmp_path), "--format", "litert", "--version", "3"])
    assert rc == 2 and "--version only apply to --format savedmodel" in stderr
