"""Quiet TensorFlow's C++ start-up logs in tfvae's command-line tools.

Importing TensorFlow prints C++ log lines that are not about the user's run: the CUDA probe of a
CPU-only host (``cudart_stub.cc] Could not find cuda drivers``, on GPU hosts the cuDNN/cuBLAS
"factory already registered" errors), the oneDNN notice (``port.cc] oneDNN custom operations are
on``), ``cpu_feature_guard.cc``'s instruction-set notice and absl's "All log messages before
absl::InitializeLog() is called are written to STDERR" banner.

``TF_CPP_MIN_LOG_LEVEL=3`` alone no longer hides them (TF 2.19+): most are logged by static
initializers while TensorFlow's shared libraries load, before TensorFlow applies the variable.
So :func:`quiet_tensorflow` does two things before anything imports TensorFlow:

1. ``os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")``: TensorFlow's C++ logs below FATAL
   are off for the rest of the process (Python-level warnings and exceptions are not affected);
2. a one-shot import hook on the ``tensorflow`` package: while its ``__init__`` runs (that is when
   the libraries load), file descriptor 2 goes to a temporary file; afterwards everything is
   written back to stderr except C++ log records below FATAL (``I``/``W``/``E`` lines in absl's
   or TensorFlow's format) and absl's banner. Python warnings, tracebacks and FATAL lines of that
   window still reach stderr.

The CLIs call :func:`quiet_main` with their ``__name__`` at the very top of their imports (and
the ``tfvae-train`` console script goes through :func:`tfvae_train`), so importing a tfvae module
as a library changes nothing. Set ``TFVAE_TF_LOG=1`` to see TensorFlow's start-up logs, or set
``TF_CPP_MIN_LOG_LEVEL`` yourself: either way tfvae leaves TensorFlow's logging alone.
"""

from __future__ import annotations

import contextlib
import importlib.abc
import os
import re
import sys
import tempfile
from collections.abc import Iterator, MutableMapping

__all__ = ["LOG_ENV", "drop_startup_noise", "quiet_main", "quiet_tensorflow", "tfvae_train", "wants_quiet"]

#: set to 1 (or true/yes/on) to keep TensorFlow's C++ start-up logs
LOG_ENV = "TFVAE_TF_LOG"
TF_LEVEL_ENV = "TF_CPP_MIN_LOG_LEVEL"

# absl's format (``I0000 00:00:1795876700.248023    4268 port.cc:153] ...``) and TensorFlow's older
# one (``2025-09-17 14:44:05.157831: I external/local_xla/xla/tsl/cuda/cudart_stub.cc:32] ...``),
# severities INFO, WARNING and ERROR (FATAL lines are kept)
_NOISE = re.compile(
    rb"^(?:[IWE]\d{4} \d\d:\d\d:\d+\.\d+ +\d+ [^\]\s]+:\d+\]"
    rb"|\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d+: [IWE] [^\]\s]+:\d+\]"
    rb"|WARNING: All log messages before absl::InitializeLog\(\) is called are written to STDERR"
    # the second line of cpu_feature_guard.cc's notice
    rb"|To enable the following instructions: .*rebuild TensorFlow with the appropriate compiler flags\.)"
)


def wants_quiet(environ: MutableMapping[str, str] | None = None) -> bool:
    """Whether tfvae should quiet TensorFlow: neither ``TFVAE_TF_LOG=1`` nor a user's ``TF_CPP_MIN_LOG_LEVEL``."""
    env = os.environ if environ is None else environ
    if env.get(LOG_ENV, "").strip().lower() in ("1", "true", "yes", "on"):
        return False
    return TF_LEVEL_ENV not in env


def quiet_tensorflow(environ: MutableMapping[str, str] | None = None, *, filter_import: bool = True) -> bool:
    """Turn TensorFlow's C++ start-up logs off, before TensorFlow is imported; True if it did.

    Does nothing (False) when ``TFVAE_TF_LOG=1`` or ``TF_CPP_MIN_LOG_LEVEL`` is already set.
    ``environ``: the mapping to update (default ``os.environ``). ``filter_import``: also install the
    hook that filters stderr while the ``tensorflow`` package loads (not needed, and skipped, when
    TensorFlow is already imported).
    """
    env = os.environ if environ is None else environ
    if not wants_quiet(env):
        return False
    env.setdefault(TF_LEVEL_ENV, "3")
    if filter_import and "tensorflow" not in sys.modules \
            and not any(isinstance(f, _QuietTensorFlowImport) for f in sys.meta_path):
        sys.meta_path.insert(0, _QuietTensorFlowImport())
    return True


def quiet_main(module_name: str) -> bool:
    """``quiet_tensorflow()`` if ``module_name`` is ``"__main__"`` (a CLI run as ``python -m``), else nothing."""
    return quiet_tensorflow() if module_name == "__main__" else False


def tfvae_train() -> int:
    """The ``tfvae-train`` console script: ``python -m tfvae.train`` with the same quiet start-up."""
    quiet_tensorflow()
    from tfvae.train import main

    return main()


def drop_startup_noise(data: bytes) -> bytes:
    """``data`` (stderr of TensorFlow's import) without the C++ log records below FATAL and absl's banner."""
    return b"".join(line for line in data.splitlines(keepends=True) if not _NOISE.match(line))


@contextlib.contextmanager
def _filtered_stderr() -> Iterator[None]:
    """File descriptor 2 into a temporary file, written back through :func:`drop_startup_noise` on exit."""
    try:
        sys.stderr.flush()
    except (AttributeError, OSError, ValueError):
        pass
    try:
        saved = os.dup(2)
    except OSError:  # no stderr to filter
        yield
        return
    try:
        tmp = tempfile.TemporaryFile()
    except OSError:
        os.close(saved)
        yield
        return
    with tmp:
        os.dup2(tmp.fileno(), 2)
        try:
            yield
        finally:
            try:
                sys.stderr.flush()
            except (AttributeError, OSError, ValueError):
                pass
            os.dup2(saved, 2)
            os.close(saved)
            tmp.seek(0)
            kept = drop_startup_noise(tmp.read())
            if kept:
                os.write(2, kept)


class _QuietTensorFlowImport(importlib.abc.MetaPathFinder):
    """One-shot meta-path finder: the ``tensorflow`` package's ``__init__`` runs inside :func:`_filtered_stderr`."""

    def find_spec(self, fullname, path, target=None):
        if fullname != "tensorflow":
            return None
        with contextlib.suppress(ValueError):
            sys.meta_path.remove(self)
        spec = None
        for finder in list(sys.meta_path):
            find = getattr(finder, "find_spec", None)
            if find is not None:
                spec = find(fullname, path, target)
                if spec is not None:
                    break
        loader = getattr(spec, "loader", None)
        if loader is None or not hasattr(loader, "exec_module"):
            return spec
        exec_module = loader.exec_module

        def exec_quietly(module):
            try:
                with _filtered_stderr():
                    exec_module(module)
            finally:
                # the loader object is this spec's own: drop the wrapper again
                with contextlib.suppress(AttributeError):
                    del loader.exec_module

        # an instance attribute on this spec's loader: module.__loader__ stays the real loader
        with contextlib.suppress(AttributeError, TypeError):
            loader.exec_module = exec_quietly
        return spec
