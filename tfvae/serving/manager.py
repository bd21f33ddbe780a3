"""The served models and their versions: which to load (version policy), file-system polling
for new/removed versions, config re-reading, lookup by name/version/label, and model status."""

from __future__ import annotations

import logging
import os
import re
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import grpc
from google.protobuf import text_format
from tensorflow_serving.apis import get_model_status_pb2
from tensorflow_serving.config import model_server_config_pb2

from tfvae.serving.batching import BatchingOptions
from tfvae.serving.errors import ServingError, _invalid
from tfvae.serving.servable import Servable

log = logging.getLogger("tfvae.serve")

_VERSION_DIR = re.compile(r"\d+")


def _dir_stamp(path: Path) -> tuple:
    """Changes whenever files of a version directory are added, removed or rewritten."""
    items = []
    for root, dirs, files in os.walk(path):
        dirs.sort()
        for f in sorted(files):
            try:
                st = os.stat(os.path.join(root, f))
            except OSError:
                continue
            items.append((os.path.relpath(os.path.join(root, f), path), st.st_size, st.st_mtime_ns))
    return tuple(items)


def _close(servables) -> None:
    for s in list(servables):
        try:
            s.close()
        except Exception:  # noqa: BLE001
            log.exception("model %s: stopping version %d's batch threads failed", s.name, s.version)


@dataclass
class ModelState:
    config: model_server_config_pb2.ModelConfig
    versions: dict[int, Servable] = field(default_factory=dict)
    failed: dict[int, tuple[tuple, str]] = field(default_factory=dict)  # version -> (stamp, error)
    seen: dict[int, tuple] = field(default_factory=dict)  # stamp at the previous scan

    @property
    def name(self) -> str:
        return self.config.name


class ModelManager:
    """Keeps the versions each model's policy asks for loaded; polls the file system for changes.

    ``batching`` (:class:`~tfvae.serving.batching.BatchingOptions`, TF Serving's ``--enable_batching``):
    every loaded version batches its concurrent predicts; its batch threads stop when it is unloaded
    and on :meth:`stop`.
    """

    def __init__(self, config_path: str | Path | None = None, model_name: str | None = None,
                 model_base_path: str | None = None, poll_seconds: float = 1.0,
                 config_poll_seconds: float = 1.0, max_batch_size: int = 1024,
                 batching: BatchingOptions | None = None):
        if (config_path is None) == (model_base_path is None):
            raise ValueError("give either a model config file or --model_base_path")
        self.config_path = Path(config_path) if config_path else None
        self.single = (model_name or "default", model_base_path) if model_base_path else None
        self.poll_seconds, self.config_poll_seconds = poll_seconds, config_poll_seconds
        self.max_batch_size = max_batch_size
        self.batching = batching
        self.models: dict[str, ModelState] = {}
        self._config_mtime = None
        self._last_config_check = 0.0
        self._lock = threading.Lock()  # one refresh at a time
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._read_config(initial=True)

    # -- configuration
    def _parse_config(self) -> list[model_server_config_pb2.ModelConfig]:
        if self.single:
            c = model_server_config_pb2.ModelConfig(name=self.single[0], base_path=self.single[1],
                                                    model_platform="tensorflow")
            return [c]
        cfg = model_server_config_pb2.ModelServerConfig()
        text_format.Parse(self.config_path.read_text(), cfg)
        if cfg.WhichOneof("config") != "model_config_list":
            raise ValueError(f"{self.config_path}: expected a model_config_list")
        configs = list(cfg.model_config_list.config)
        names = [c.name for c in configs]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise ValueError(f"{self.config_path}: duplicate model names {dup}")
        for c in configs:
            if not c.name or not c.base_path:
                raise ValueError(f"{self.config_path}: every config needs a name and a base_path")
            if c.model_platform not in ("", "tensorflow"):
                raise ValueError(f"{self.config_path}: model {c.name}: model_platform {c.model_platform!r} "
                                 "is not supported (only 'tensorflow')")
        return configs

    def _read_config(self, initial: bool = False) -> None:
        if self.single:
            if initial:
                self.models = {c.name: ModelState(c) for c in self._parse_config()}
            return
        mtime = self.config_path.stat().st_mtime_ns if self.config_path.exists() else None
        if not initial and mtime == self._config_mtime:
            return
        try:
            configs = self._parse_config()
        except Exception as e:  # noqa: BLE001
            if initial:
                raise
            log.error("could not re-read %s, keeping the models as they are: %s", self.config_path, e)
            self._config_mtime = mtime
            return
        self._config_mtime = mtime
        models = {}
        for c in configs:
            old = self.models.get(c.name)
            if old is not None and old.config.base_path == c.base_path:
                old.config = c
                models[c.name] = old
            else:
                models[c.name] = ModelState(c)
        removed = [self.models[name] for name in set(self.models) - set(models)]
        for state in removed:
            log.info("model %s removed from the config: unloading it", state.name)
        for name in set(models) - set(self.models):
            if not initial:
                log.info("model %s added to the config", name)
        self.models = models  # readers see the old or the new dict, never a mix
        for state in removed:
            _close(state.versions.values())

    # -- versions
    @staticmethod
    def _aspired(state: ModelState, on_disk: list[int]) -> list[int]:
        policy = state.config.model_version_policy
        kind = policy.WhichOneof("policy_choice")
        if kind == "all":
            return on_disk
        if kind == "specific":
            return [v for v in on_disk if v in set(policy.specific.versions)]
        n = max(1, policy.latest.num_versions) if kind == "latest" else 1  # TF Serving's default: latest 1
        return sorted(on_disk)[-n:]

    def _scan(self, state: ModelState, initial: bool) -> None:
        base = Path(state.config.base_path)
        try:
            on_disk = sorted(int(p.name) for p in base.iterdir() if p.is_dir() and _VERSION_DIR.fullmatch(p.name))
        except OSError as e:
            if initial or state.versions or not state.failed.get(-1):
                log.error("model %s: cannot list base path %s: %s", state.name, base, e)
            state.failed[-1] = ((), f"cannot list base path {base}: {e}")
            on_disk = []
        else:
            state.failed.pop(-1, None)
        aspired = self._aspired(state, on_disk)
        versions = dict(state.versions)
        unloaded = []
        for v in list(versions):
            if v not in aspired:
                log.info("model %s: unloading version %d", state.name, v)
                unloaded.append(versions.pop(v))
        for v in aspired:
            if v in versions:
                continue
            path = base / str(v)
            stamp = _dir_stamp(path)
            stable = initial or state.seen.get(v) == stamp  # unchanged since the last scan: not being written
            state.seen[v] = stamp
            if not stable or (v in state.failed and state.failed[v][0] == stamp):
                continue
            t0 = time.perf_counter()
            try:
                versions[v] = Servable(state.name, v, path, self.max_batch_size, batching=self.batching)
            except Exception as e:  # noqa: BLE001 - a broken version must not take the server down
                msg = f"{type(e).__name__}: {str(e).strip().splitlines()[0] if str(e).strip() else ''}"
                state.failed[v] = (stamp, msg)
                log.error("model %s: version %d at %s failed to load (kept the other versions): %s",
                          state.name, v, path, msg)
                continue
            state.failed.pop(v, None)
            log.info("model %s: version %d loaded from %s in %.2f s (signatures: %s)", state.name, v, path,
                     time.perf_counter() - t0, ", ".join(sorted(versions[v].signatures)))
        for v in list(state.failed):
            if v >= 0 and v not in on_disk:
                del state.failed[v]
        for v in list(state.seen):
            if v not in on_disk:
                del state.seen[v]
        state.versions = versions  # atomic swap: requests see the old or the new set
        _close(unloaded)  # requests that still hold one of these run unbatched

    def refresh(self, initial: bool = False) -> None:
        with self._lock:
            now = time.monotonic()
            if self.config_poll_seconds > 0 and now - self._last_config_check >= self.config_poll_seconds:
                self._last_config_check = now
                self._read_config()
            for state in list(self.models.values()):
                self._scan(state, initial)

    def start(self) -> None:
        self.refresh(initial=True)
        if self.poll_seconds > 0:
            self._thread = threading.Thread(target=self._poll, name="tfvae-serve-poll", daemon=True)
            self._thread.start()

    def _poll(self) -> None:
        while not self._stop.wait(self.poll_seconds):
            try:
                self.refresh()
            except Exception:  # noqa: BLE001
                log.exception("polling the model directories failed; trying again")

    def stop(self) -> None:
        """Stop polling and the batch threads of every loaded version."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
        with self._lock:
            for state in list(self.models.values()):
                _close(state.versions.values())

    # -- lookup
    def state(self, name: str) -> ModelState:
        state = self.models.get(name)
        if state is None:
            raise ServingError(grpc.StatusCode.NOT_FOUND, f"Servable not found for request: Latest({name})")
        return state

    def resolve(self, name: str, version: int | None = None, label: str | None = None) -> Servable:
        state = self.models.get(name)
        versions = state.versions if state else {}
        if label:
            if state is None or label not in state.config.version_labels:
                raise ServingError(grpc.StatusCode.NOT_FOUND,
                                   f"Servable not found for request: Label({name}, {label})")
            version = state.config.version_labels[label]
        if version is None:
            if not versions:
                raise ServingError(grpc.StatusCode.NOT_FOUND, f"Servable not found for request: Latest({name})")
            return versions[max(versions)]
        servable = versions.get(int(version))
        if servable is None:
            raise ServingError(grpc.StatusCode.NOT_FOUND,
                               f"Servable not found for request: Specific({name}, {version})")
        return servable

    def resolve_spec(self, spec) -> Servable:
        """A servable from a ``tensorflow.serving.ModelSpec``."""
        if not spec.name:
            raise _invalid("Missing ModelSpec name")
        which = spec.WhichOneof("version_choice")
        return self.resolve(spec.name, spec.version.value if which == "version" else None,
                            spec.version_label if which == "version_label" else None)

    def status(self, name: str, version: int | None = None) -> get_model_status_pb2.GetModelStatusResponse:
        state = self.models.get(name)
        if state is None:
            raise ServingError(grpc.StatusCode.NOT_FOUND, f"Could not find any versions of model {name}")
        resp = get_model_status_pb2.GetModelStatusResponse()
        # snapshots (one C-level copy each, atomic under the GIL): the poll thread mutates these while reloading
        versions, failed = dict(state.versions), dict(state.failed)
        entries = {v: ("AVAILABLE", 0, "") for v in versions}
        for v, (_, msg) in failed.items():
            if v >= 0 and v not in entries:
                entries[v] = ("END", 2, msg)  # UNKNOWN: failed to load
        if version is not None:
            if version not in entries:
                raise ServingError(grpc.StatusCode.NOT_FOUND, f"Could not find version {version} of model {name}")
            entries = {version: entries[version]}
        if not entries:
            raise ServingError(grpc.StatusCode.NOT_FOUND, f"Could not find any versions of model {name}")
        for v in sorted(entries, reverse=True):
            st, code, msg = entries[v]
            s = resp.model_version_status.add()
            s.version = v
            s.state = get_model_status_pb2.ModelVersionStatus.State.Value(st)
            s.status.error_code = code
            s.status.error_message = msg
        return resp

