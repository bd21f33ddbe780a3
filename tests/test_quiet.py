"""tfvae.quiet: the CLIs start without TensorFlow's C++ start-up logs unless TFVAE_TF_LOG=1."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tfvae import quiet

REPO = Path(__file__).resolve().parents[1]
CLIS = ["train", "experiments", "export", "speaker_encoder", "table1", "serve"]
NOISE = ("cuda", "onednn", "cpu_feature_guard", "absl::initializelog")


def _clean_env(**extra) -> dict[str, str]:
    """This process's environment without the variables the helper looks at (conftest sets TF_CPP_MIN_LOG_LEVEL)."""
    env = {k: v for k, v in os.environ.items() if k not in (quiet.TF_LEVEL_ENV, quiet.LOG_ENV)}
    env.update(extra)
    return env


@pytest.mark.parametrize("cli", CLIS)
def test_cli_help_has_no_tensorflow_startup_noise(cli):
    r = subprocess.run([sys.executable, "-m", f"tfvae.{cli}", "--help"], cwd=REPO, env=_clean_env(),
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith(f"usage: python -m tfvae.{cli}")
    noisy = [line for line in r.stderr.splitlines() if any(word in line.lower() for word in NOISE)]
    assert not noisy, r.stderr


def test_quiet_sets_the_level_by_default():
    env: dict[str, str] = {}
    assert quiet.wants_quiet(env)
    assert quiet.quiet_tensorflow(env, filter_import=False) is True
    assert env == {"TF_CPP_MIN_LOG_LEVEL": "3"}


@pytest.mark.parametrize("value", ["1", "true", "YES", "on"])
def test_tfvae_tf_log_keeps_tensorflow_logging(value, monkeypatch):
    monkeypatch.setattr(sys, "meta_path", list(sys.meta_path))
    monkeypatch.delitem(sys.modules, "tensorflow", raising=False)  # the hook is only installed before TF loads
    env = {"TFVAE_TF_LOG": value}
    assert not quiet.wants_quiet(env)
    assert quiet.quiet_tensorflow(env) is False
    assert env == {"TFVAE_TF_LOG": value}  # TF_CPP_MIN_LOG_LEVEL not forced
    assert not any(isinstance(f, quiet._QuietTensorFlowImport) for f in sys.meta_path)


def test_tfvae_tf_log_0_still_quiets():
    env = {"TFVAE_TF_LOG": "0"}
    assert quiet.quiet_tensorflow(env, filter_import=False) is True
    assert env["TF_CPP_MIN_LOG_LEVEL"] == "3"


def test_users_tf_cpp_min_log_level_wins():
    env = {"TF_CPP_MIN_LOG_LEVEL": "0"}
    assert quiet.quiet_tensorflow(env, filter_import=False) is False
    assert env == {"TF_CPP_MIN_LOG_LEVEL": "0"}


def test_quiet_main_only_for_main(monkeypatch):
    monkeypatch.delenv("TF_CPP_MIN_LOG_LEVEL", raising=False)
    monkeypatch.delenv("TFVAE_TF_LOG", raising=False)
    assert quiet.quiet_main("tfvae.train") is False  # imported as a library: nothing changes
    assert "TF_CPP_MIN_LOG_LEVEL" not in os.environ


def test_drop_startup_noise_keeps_what_matters():
    data = (b"WARNING: All log messages before absl::InitializeLog() is called are written to STDERR\n"
            b"I0000 00:00:1795876700.248023    4268 port.cc:153] oneDNN custom operations are on.\n"
            b"I0000 00:00:1795876700.248398    4268 cudart_stub.cc:31] Could not find cuda drivers on your machine.\n"
            b"E0000 00:00:1758131045.203198 3722035 cuda_dnn.cc:8579] Unable to register cuDNN factory\n"
            b"2025-09-17 14:44:05.157831: I external/local_xla/xla/tsl/cuda/cudart_stub.cc:32] Could not find cuda\n"
            b"W1231 23:59:59.000001   12 some_file.cc:7] a warning\n"
            b"To enable the following instructions: AVX2 FMA, in other operations, rebuild TensorFlow with the "
            b"appropriate compiler flags.\n"
            b"F0000 00:00:1795876700.248398    4268 check.cc:1] Check failed: fatal\n"
            b"/x.py:1: UserWarning: a Python warning\n"
            b"Traceback (most recent call last):\n")
    assert quiet.drop_startup_noise(data) == (b"F0000 00:00:1795876700.248398    4268 check.cc:1] Check failed: fatal\n"
                                              b"/x.py:1: UserWarning: a Python warning\n"
                                              b"Traceback (most recent call last):\n")


def test_import_hook_filters_only_the_tensorflow_import(tmp_path):
    """A stand-in ``tensorflow`` package that logs like TF's libraries do (on file descriptor 2)."""
    fake = tmp_path / "tensorflow"
    fake.mkdir()
    (fake / "__init__.py").write_text(textwrap.dedent("""\
        import os, sys, warnings
        os.write(2, b"I0000 00:00:1795876700.248398    4268 cudart_stub.cc:31] Could not find cuda drivers\\n")
        warnings.warn("a Python warning of the import")
        os.write(2, b"F0000 00:00:1795876700.248398    4268 check.cc:1] a fatal line\\n")
        """))
    script = textwrap.dedent("""\
        import os, sys
        from tfvae.quiet import quiet_tensorflow
        print(quiet_tensorflow(), os.environ["TF_CPP_MIN_LOG_LEVEL"])
        import tensorflow
        print(type(tensorflow.__loader__).__name__, "exec_module" in vars(tensorflow.__loader__))
        print([type(f).__name__ for f in sys.meta_path if "Quiet" in type(f).__name__])
        os.write(2, b"I0000 00:00:1795876700.248398    4268 later.cc:1] after the import\\n")
        """)
    env = _clean_env(PYTHONPATH=os.pathsep.join([str(tmp_path), str(REPO)]))
    r = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines() == ["True 3", "SourceFileLoader False", "[]"]
    assert "cuda" not in r.stderr
    assert "a Python warning of the import" in r.stderr
    assert "a fatal line" in r.stderr
    assert "after the import" in r.stderr  # stderr is only filtered while the package loads
