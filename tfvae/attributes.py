"""The attributes a latent is aligned with: declared once, everything else derived from the list.

Paper section 1 describes speech as a mixture of attributes ("gender, age, emotion and semantics")
and section 2.3 aligns two of them, emotion (top of the latent) and identity (bottom), with layered
dropout. tfvae generalises this to an ordered list of K attributes: attribute k of K owns the k-th
band of the latent (node 0 is the top), its branch gets the keep-rate profile peaked on that band
(:func:`tfvae.schedules.band_keep_rates`), it has its own head, and adversaries behind gradient
reversal keep it out of the other attributes' branches. The paper's model is ``("emotion", "identity")``.

An :class:`Attribute` is one of two kinds:

- ``class``: classification over the known classes of a label feature (emotion, gender, any extra
  label column of a manifest); evaluated by weighted F1, leakage = WF1 above chance;
- ``identity``: open-set identity, verified by embedding on unseen speakers (the speaker label);
  evaluated by the EER of cosine trials, leakage = EER below 0.5.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Sequence

KINDS = ("class", "identity")


class AttributeSpecError(ValueError):
    """A bad attribute or view specification (named in the message)."""


@dataclass(frozen=True)
class Attribute:
    """One attribute of the aligned latent.

    Args:
        name: the attribute's name, used in views, signatures and reports (``emotion``).
        label: the example feature holding its label (``emotion``; ``speaker`` for identity).
        kind: ``class`` or ``identity`` (see the module docstring).
        short: prefix of its loss terms and weights (``emo`` -> ``emo``, ``emo_adv``, ``--emo_weight``).
        task: key of its cells in evaluation results (``emotion``, ``gender``, ``speaker``).
    """

    name: str
    label: str
    kind: str = "class"
    short: str = ""
    task: str = ""

    def __post_init__(self):
        if self.kind not in KINDS:
            raise AttributeSpecError(f"attribute {self.name!r}: kind {self.kind!r} is unknown; choose one of {KINDS}")
        if not self.name.isidentifier():
            raise AttributeSpecError(f"attribute name {self.name!r} must be a Python identifier (letters, digits, _)")
        object.__setattr__(self, "short", self.short or self.name)
        object.__setattr__(self, "task", self.task or self.name)

    @property
    def is_identity(self) -> bool:
        return self.kind == "identity"

    @property
    def output(self) -> str:
        """The model output of its head: class probabilities, or the speaker embedding."""
        return "speaker_embedding" if self.is_identity else f"{self.name}_probabilities"


#: Attributes tfvae knows by name; any other name is a classification attribute over the label
#: feature of the same name (e.g. an extra column of a CSV manifest).
REGISTRY = {
    "emotion": Attribute("emotion", "emotion", "class", "emo", "emotion"),
    "gender": Attribute("gender", "gender", "class", "gen", "gender"),
    "identity": Attribute("identity", "speaker", "identity", "id", "speaker"),
}
#: The paper's two attributes, in latent order (emotion at the top, identity at the bottom).
DEFAULT = ("emotion", "identity")


def attribute(name: str) -> Attribute:
    """The registered attribute ``name``, or a classification attribute over the label ``name``."""
    name = name.strip()
    return REGISTRY.get(name) or Attribute(name, name, "class")


def parse_attributes(names: str | Iterable[str]) -> tuple[Attribute, ...]:
    """``"emotion,gender,identity"`` (or a sequence of names) -> attributes in latent order.

    Exactly one ``identity`` attribute is required (it carries the speaker label that verification,
    speaker-disjoint folds and the speaker classifier need) and names may not repeat.
    """
    if isinstance(names, str):
        names = names.split(",")
    names = [n.name if isinstance(n, Attribute) else n.strip() for n in names]
    names = [n for n in names if n]
    errs = []
    if len(names) < 2:
        errs.append(f"need at least 2 attributes, got {names}")
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        errs.append(f"attribute(s) {dup} listed twice")
    try:
        attrs = tuple(attribute(n) for n in names)
    except AttributeSpecError as e:
        errs.append(str(e))
        attrs = ()
    if attrs and sum(a.is_identity for a in attrs) != 1:
        errs.append("exactly one attribute must be 'identity' (the speaker label)")
    shorts = [a.short for a in attrs]
    if len(set(shorts)) != len(shorts):
        errs.append(f"attribute short names collide: {shorts}")
    if errs:
        raise AttributeSpecError("invalid --attributes: " + "; ".join(errs))
    return attrs


def names(attrs: Sequence[Attribute]) -> tuple[str, ...]:
    return tuple(a.name for a in attrs)


# --------------------------------------------------------------------------------- views
#: The paper's two views by their historical names: PP-SER keeps emotion, PP-SV keeps identity.
ALIASES = {"identity_free": ("emotion",), "emotion_free": ("identity",)}


def view_name(kept: Iterable[str]) -> str:
    """Signature/view name of the view keeping ``kept`` (in latent order): ``keep_emotion_gender``."""
    return "keep_" + "_".join(kept)


def parse_views(spec: str | Iterable[str] | None, attrs: Sequence[Attribute]) -> dict[str, tuple[str, ...]]:
    """``"emotion,identity,emotion+gender"`` -> ``{view name: kept attributes in latent order}``.

    ``None`` or empty: one view per attribute keeping only it (with the paper's attributes these
    are the identity-free and the emotionless view). ``identity_free`` / ``emotion_free`` are
    accepted for the paper's attributes. A view must keep at least one attribute and mask at least one.
    """
    order = names(attrs)
    if spec is None or spec == "" or spec == ():
        items = [(a,) for a in order]
    else:
        if isinstance(spec, str):
            spec = spec.split(",")
        items = []
        for v in spec:
            v = v.strip()
            if not v:
                continue
            items.append(ALIASES[v] if v in ALIASES else tuple(p.strip() for p in v.split("+")))
    out, errs = {}, []
    for kept in items:
        unknown = [k for k in kept if k not in order]
        if unknown:
            errs.append(f"view {'+'.join(kept)!r} names unknown attribute(s) {unknown}; the attributes are "
                        f"{', '.join(order)}")
            continue
        kept = tuple(a for a in order if a in kept)
        if len(kept) == len(order):
            errs.append(f"view {'+'.join(kept)!r} keeps every attribute (that is the full latent, 'origin')")
            continue
        out[view_name(kept)] = kept
    if errs:
        raise AttributeSpecError("invalid --views: " + "; ".join(errs))
    if not out:
        raise AttributeSpecError("invalid --views: no view given")
    return out


def view_aliases(views: dict[str, tuple[str, ...]], attrs: Sequence[Attribute]) -> dict[str, str]:
    """Historical names of views, ``{alias: view name}``: with the paper's two attributes, the view
    keeping emotion is also ``identity_free`` and the one keeping identity ``emotion_free``."""
    if names(attrs) != DEFAULT:
        return {}
    return {alias: view_name(kept) for alias, kept in ALIASES.items() if view_name(kept) in views}


def masked(kept: Sequence[str], attrs: Sequence[Attribute]) -> tuple[Attribute, ...]:
    """The attributes a view keeping ``kept`` hides."""
    return tuple(a for a in attrs if a.name not in kept)


def view_key(kept: Sequence[str], attrs: Sequence[Attribute]) -> str:
    """The name a view has inside a run (masks, reports, erasers): the paper's historical name
    (``identity_free``, ``emotion_free``) for the paper's attributes, else :func:`view_name`."""
    if names(attrs) == DEFAULT:
        for alias, k in ALIASES.items():
            if tuple(kept) == k:
                return alias
    return view_name([a for a in names(attrs) if a in kept])


def view_attributes(key: str, attrs: Sequence[Attribute]) -> tuple[str, ...]:
    """The attributes a view named ``key`` (:func:`view_key`, ``<view>_leace`` included) keeps."""
    key = key.removesuffix("_leace")
    if key in ALIASES and names(attrs) == DEFAULT:
        return ALIASES[key]
    if not key.startswith("keep_"):
        raise AttributeSpecError(f"{key!r} is not a view name")
    rest, out = key[len("keep_"):], []
    for a in names(attrs):  # attribute names may contain '_': match them greedily in latent order
        if rest == a or rest.startswith(a + "_"):
            out.append(a)
            rest = rest[len(a) + 1:]
    if rest:
        raise AttributeSpecError(f"view {key!r} names attributes that are not among {', '.join(names(attrs))}")
    return tuple(out)
