"""TF Serving's ``models.config`` (a text ``ModelServerConfig``) for every model directory an export
root holds: written after each export (:mod:`tfvae.export`), read by :mod:`tfvae.serve`.
"""

from __future__ import annotations

import os
import re
import sys
import uuid
from pathlib import Path

CONFIG_FILE = "models.config"
#: Version policy written for models new to ``models.config`` (TF Serving's text form).
DEFAULT_VERSION_POLICY = "all"


def _model_dirs(export_dir: Path) -> list[Path]:
    """Model directories: those holding at least one numeric version with a saved_model.pb."""
    if not export_dir.is_dir():
        return []
    out = []
    for d in sorted(p for p in export_dir.iterdir() if p.is_dir() and not p.name.startswith(".")):
        if any(v.is_dir() and re.fullmatch(r"\d+", v.name) and (v / "saved_model.pb").exists() for v in d.iterdir()):
            out.append(d)
    return out


def read_models_config(path: str | Path):
    """Parse a TF Serving ``models.config`` (text ``ModelServerConfig``) and return it."""
    from google.protobuf import text_format
    from tensorflow_serving.config import model_server_config_pb2

    cfg = model_server_config_pb2.ModelServerConfig()
    text_format.Parse(Path(path).read_text(), cfg)
    return cfg


def write_models_config(export_dir: str | Path, config_path: str | Path | None = None,
                        base_path_prefix: str | None = None) -> Path:
    """(Re)write ``models.config`` with one ``config`` entry per model directory under ``export_dir``.

    Entries already in the file keep their settings (version policy, labels, base path) while
    their directory exists; new models get ``base_path`` = ``<base_path_prefix>/<name>`` (the
    absolute path of the directory by default) and ``model_version_policy { all {} }``: every
    version is served and a request without a version gets the newest.
    """
    from google.protobuf import text_format
    from tensorflow_serving.config import model_server_config_pb2

    export_dir = Path(export_dir)
    config_path = Path(config_path) if config_path else export_dir / CONFIG_FILE
    old = {}
    if config_path.exists():
        try:
            old = {c.name: c for c in read_models_config(config_path).model_config_list.config}
        except Exception as e:  # noqa: BLE001 - an unreadable file is replaced, but say so
            print(f"tfvae.export: warning: replacing unreadable {config_path}: {e}", file=sys.stderr)
    cfg = model_server_config_pb2.ModelServerConfig()
    for d in _model_dirs(export_dir):
        entry = cfg.model_config_list.config.add()
        if d.name in old and base_path_prefix is None:
            entry.CopyFrom(old[d.name])
            continue
        entry.name = d.name
        entry.base_path = f"{base_path_prefix.rstrip('/')}/{d.name}" if base_path_prefix else str(d.resolve())
        entry.model_platform = "tensorflow"
        if d.name in old and old[d.name].HasField("model_version_policy"):
            entry.model_version_policy.CopyFrom(old[d.name].model_version_policy)
            for k, v in old[d.name].version_labels.items():
                entry.version_labels[k] = v
        else:
            getattr(entry.model_version_policy, DEFAULT_VERSION_POLICY).SetInParent()
    tmp = config_path.with_name(f".{config_path.name}.{uuid.uuid4().hex[:8]}")
    tmp.write_text(text_format.MessageToString(cfg))
    os.replace(tmp, config_path)  # a polling server never reads a half-written file
    return config_path
