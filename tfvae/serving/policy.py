"""Which signatures each model exposes: the allowlist that REST and gRPC both apply.

A :class:`SignaturePolicy` maps model names to rules; models it does not name get the default rule.
A rule is a list of

- signature names or ``fnmatch`` patterns (``identity_free``, ``keep_*``, ``*_leace``; ``*``: every
  signature of the model),
- ``@privacy``: the privacy views (:func:`is_privacy_view`: ``identity_free``, ``emotion_free``,
  ``keep_<attributes>``, each also with ``_leace`` and/or ``_wav``), plus ``serving_default`` of a
  privacy-safe export (:func:`tfvae.export.export_protected`, whose ``serving_default`` is its view).

``python -m tfvae.serve``'s default rule is ``@privacy`` (``--expose_unmasked``: ``*``), so the full
latent (``serving_default`` of a full export), ``mask`` (any keep vector: it can unmask every node)
and the unmasked heads (``emotion``, ``speaker_embedding``, ...) are served only when asked for.

A signature that is not allowed is answered exactly as one the model does not have (REST: 400
``Serving signature name: "x" not found in signature def``; gRPC: ``FAILED_PRECONDITION``
``Serving signature key "x" not found.``), and model metadata lists only the allowed signatures.
A request without a signature name asks for ``serving_default`` and is answered the same way.

The flag form (``--allowed_signatures``) is ``MODEL=RULE;MODEL=RULE`` with ``RULE`` a comma list;
an entry without ``MODEL=`` sets the default rule. The file form (``--signature_policy_file``) is
JSON: ``{"default": RULE, "models": {MODEL: RULE}}`` with ``RULE`` a list or a comma string. TF
Serving's ``models.config`` cannot carry the rules: its ``ModelConfig`` has no such field.
"""

from __future__ import annotations

import fnmatch
import json
import logging
import re
import threading
import weakref
from pathlib import Path
from typing import Iterable, Mapping

import grpc
from google.protobuf import json_format
from tensorflow_serving.apis import get_model_metadata_pb2

from tfvae.serving.errors import ServingError, _invalid
from tfvae.serving.servable import DEFAULT_SIGNATURE, Servable, Signature

log = logging.getLogger("tfvae.serve")

PRIVACY = "@privacy"
EVERYTHING = "*"
#: tfvae's export metadata inside a version directory (``tfvae.export.METADATA_FILE``)
METADATA_FILE = "assets.extra/tfvae.json"
_VIEW = re.compile(r"identity_free|emotion_free|keep_[A-Za-z0-9]+(?:_[A-Za-z0-9]+)*")
_TOKEN = re.compile(r"[A-Za-z0-9_.\-/*?\[\]!]+")


def is_privacy_view(name: str) -> bool:
    """``identity_free``, ``emotion_free`` or ``keep_<attributes>``, optionally + ``_leace`` and/or ``_wav``."""
    return bool(_VIEW.fullmatch(name.removesuffix("_wav").removesuffix("_leace")))


def privacy_safe_view(servable: Servable) -> str | None:
    """The view of a privacy-safe export (its ``serving_default`` is that view), else None.

    Told by ``assets.extra/tfvae.json``: ``"view"`` names a privacy view, and the model's signatures
    are exactly ``serving_default`` and that view (as :func:`tfvae.export.export_protected` writes)."""
    try:
        meta = json.loads((Path(servable.path) / METADATA_FILE).read_text())
    except (OSError, ValueError):
        return None
    view = meta.get("view") if isinstance(meta, dict) else None
    if isinstance(view, str) and is_privacy_view(view) and set(servable.signatures) == {DEFAULT_SIGNATURE, view}:
        return view
    return None


def signature_not_found(name: str, api: str) -> ServingError:
    """The answer to a signature the model does not have (as :meth:`Servable.signature` gives it)."""
    key = name or DEFAULT_SIGNATURE
    if api == "rest":
        return _invalid(f'Serving signature name: "{key}" not found in signature def')
    return ServingError(grpc.StatusCode.FAILED_PRECONDITION, f'Serving signature key "{key}" not found.')


def _rule(value, where: str) -> tuple[str, ...]:
    """A rule from a comma string or a list of strings; ValueError says what is wrong and where."""
    items = value.split(",") if isinstance(value, str) else value
    if not isinstance(items, list) or not all(isinstance(t, str) for t in items):
        raise ValueError(f"{where}: a rule is a list of signature names or a comma-separated string, "
                         f"got {json.dumps(value)[:80]}")
    tokens = tuple(t.strip() for t in items)
    if not tokens or any(not t for t in tokens):
        raise ValueError(f"{where}: empty signature name (give names, patterns, '{EVERYTHING}' or '{PRIVACY}')")
    for t in tokens:
        if t.startswith("@") and t != PRIVACY:
            raise ValueError(f"{where}: unknown rule {t!r} (the only one is '{PRIVACY}')")
        if not t.startswith("@") and not _TOKEN.fullmatch(t):
            raise ValueError(f"{where}: {t!r} is not a signature name or pattern")
    return tokens


class SignaturePolicy:
    """Per-model signature allowlists; ``models`` maps a model name to its rule, ``default`` is the rest's."""

    def __init__(self, models: Mapping[str, Iterable[str]] | None = None, default: Iterable[str] = (PRIVACY,)):
        self.default = _rule(_listed(default), "default rule")
        self.models = {name: _rule(_listed(rule), f"model {name!r}") for name, rule in (models or {}).items()}
        self._cache: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
        self._lock = threading.Lock()

    # -- construction
    @classmethod
    def expose_all(cls) -> "SignaturePolicy":
        return cls(default=(EVERYTHING,))

    @classmethod
    def parse(cls, values: str | Iterable[str], expose_unmasked: bool = False) -> "SignaturePolicy":
        """From ``--allowed_signatures`` values: ``MODEL=SIG,SIG;MODEL=...``; ``SIG,...`` alone sets the default."""
        models, default = {}, None
        for value in [values] if isinstance(values, str) else values:
            for entry in value.split(";"):
                if not entry.strip():
                    continue
                name, eq, rule = entry.partition("=")
                name = name.strip()
                if not eq:
                    if default is not None:
                        raise ValueError(f"--allowed_signatures: two default rules ({','.join(default)!r} and "
                                         f"{entry.strip()!r}); an entry without MODEL= sets the default")
                    default = _rule(entry, "--allowed_signatures default rule")
                    continue
                if not name:
                    raise ValueError(f"--allowed_signatures: {entry.strip()!r} has no model name before '='")
                if name in models:
                    raise ValueError(f"--allowed_signatures: model {name!r} is given twice")
                models[name] = _rule(rule, f"--allowed_signatures: model {name!r}")
        return cls(models, _default(default, expose_unmasked, "--allowed_signatures"))

    @classmethod
    def from_file(cls, path: str | Path, expose_unmasked: bool = False) -> "SignaturePolicy":
        """From a JSON file ``{"default": RULE, "models": {"name": RULE}}`` (both keys optional)."""
        where = f"signature policy file {path}"
        try:
            data = json.loads(Path(path).read_text())
        except OSError as e:
            raise ValueError(f"{where}: cannot read it: {e.strerror or e}") from None
        except ValueError as e:
            raise ValueError(f"{where}: not valid JSON: {e}") from None
        if not isinstance(data, dict) or set(data) - {"default", "models"}:
            extra = sorted(set(data) - {"default", "models"}) if isinstance(data, dict) else None
            raise ValueError(f"{where}: expected a JSON object with 'default' and/or 'models'"
                             + (f"; unknown keys {extra}" if extra else ""))
        models = data.get("models", {})
        if not isinstance(models, dict):
            raise ValueError(f"{where}: 'models' must be an object mapping model names to rules")
        rules = {name: _rule(rule, f"{where}: model {name!r}") for name, rule in models.items()}
        default = _rule(data["default"], f"{where}: default") if "default" in data else None
        return cls(rules, _default(default, expose_unmasked, where))

    @classmethod
    def from_args(cls, allowed: Iterable[str] | None, file: str | None, expose_unmasked: bool) -> "SignaturePolicy":
        """The CLI's policy: ``--allowed_signatures`` or ``--signature_policy_file`` (not both), and
        ``--expose_unmasked``."""
        allowed = list(allowed or [])
        if allowed and file:
            raise ValueError("give --allowed_signatures or --signature_policy_file, not both")
        if file:
            return cls.from_file(file, expose_unmasked)
        return cls.parse(allowed, expose_unmasked)

    # -- checks
    def check_models(self, served: Iterable[str]) -> None:
        """ValueError for a rule naming a model that is not served (a typo would give it the default rule)."""
        unknown = sorted(set(self.models) - set(served))
        if unknown:
            raise ValueError(f"the signature policy names model(s) that are not served: {', '.join(unknown)} "
                             f"(served: {', '.join(sorted(served)) or 'none'})")

    def describe(self) -> str:
        parts = [f"{name}={','.join(rule)}" for name, rule in sorted(self.models.items())]
        return "; ".join(parts + [f"other models: {','.join(self.default)}"])

    # -- what a servable exposes
    def rule(self, model: str) -> tuple[str, ...]:
        return self.models.get(model, self.default)

    def allowed(self, servable: Servable) -> frozenset[str]:
        """The signature keys of ``servable`` that the policy exposes."""
        return self._entry(servable)[0]

    def _entry(self, servable: Servable) -> tuple:
        """(allowed keys, metadata proto, metadata JSON) of ``servable``, computed once per servable."""
        with self._lock:
            got = self._cache.get(servable)
        if got is not None:
            return got
        rule = self.rule(servable.name)
        view = privacy_safe_view(servable) if PRIVACY in rule else None
        names = set(servable.signature_defs) | set(servable.signatures)
        allowed = frozenset(n for n in names if any(
            (is_privacy_view(n) or (view is not None and n == DEFAULT_SIGNATURE)) if t == PRIVACY
            else fnmatch.fnmatchcase(n, t) for t in rule))
        resp = get_model_metadata_pb2.GetModelMetadataResponse()
        resp.model_spec.name = servable.name
        resp.model_spec.version.value = servable.version
        sdm = get_model_metadata_pb2.SignatureDefMap()
        for k, v in servable.signature_defs.items():
            if k in allowed:
                sdm.signature_def[k].CopyFrom(v)
        resp.metadata["signature_def"].Pack(sdm)
        opts = dict(preserving_proto_field_name=True, always_print_fields_with_no_presence=True)
        meta_json = {"model_spec": json_format.MessageToDict(resp.model_spec, **opts),
                     "metadata": {"signature_def": json_format.MessageToDict(sdm, **opts)}}
        with self._lock:
            return self._cache.setdefault(servable, (allowed, resp, meta_json))

    def signature(self, servable: Servable, name: str, api: str) -> Signature:
        """The signature a request names (``""``: ``serving_default``), or the not-found answer."""
        if (name or DEFAULT_SIGNATURE) not in self.allowed(servable):
            raise signature_not_found(name, api)
        return servable.signature(name, api)

    def metadata_proto(self, servable: Servable) -> get_model_metadata_pb2.GetModelMetadataResponse:
        """gRPC ``GetModelMetadataResponse`` with the allowed signature defs only."""
        out = get_model_metadata_pb2.GetModelMetadataResponse()
        out.CopyFrom(self._entry(servable)[1])
        return out

    def metadata_json(self, servable: Servable) -> dict:
        """REST ``GET /v1/models/<name>[/versions/<v>]/metadata`` with the allowed signature defs only."""
        return self._entry(servable)[2]

    def log_exposure(self, manager) -> None:
        """Log, per loaded model, what is exposed and hidden; warn for named signatures no version has."""
        for name, state in sorted(manager.models.items()):
            versions = list(state.versions.values())
            if not versions:
                continue
            newest = state.versions[max(state.versions)]
            shown = sorted(self.allowed(newest) & set(newest.signatures))
            hidden = sorted(set(newest.signatures) - set(shown))
            log.info("model %s: exposing %s%s", name, ", ".join(shown) or "no signature",
                     f"; not exposed: {', '.join(hidden)}" if hidden else "")
            have = set().union(*(v.signatures for v in versions))
            for t in self.rule(name):
                if _TOKEN.fullmatch(t) and not any(c in t for c in "*?[") and t not in have:
                    log.warning("model %s: the signature policy allows %r, which no loaded version has", name, t)


def _listed(rule):
    return rule if isinstance(rule, str) else list(rule)


def _default(rule, expose_unmasked: bool, where: str) -> tuple[str, ...]:
    if rule is not None and expose_unmasked:
        raise ValueError(f"{where} sets a default rule; --expose_unmasked would set another ('{EVERYTHING}')")
    return rule if rule is not None else ((EVERYTHING,) if expose_unmasked else (PRIVACY,))
