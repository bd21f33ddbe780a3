"""Which parts each training method has over the attributes (paper section 3.1.1), and the loss terms
of eq. 4 they give: a head per attribute, adversaries behind gradient reversal per (predicted, branch)
pair (issue 13: adversaries per pair, all pairs by default or the pairs a user wants to protect).
"""

from __future__ import annotations

from tfvae.attributes import DEFAULT as DEFAULT_ATTRIBUTES, parse_attributes
from tfvae.config import METHODS


def method_parts(method: str, protect: str = "identity", attributes=DEFAULT_ATTRIBUTES,
                 adversaries: str = "all") -> dict:
    """Components of a method over the attributes (latent order); ``protect`` only matters for ``a-vae``.

    Returns ``vae``, ``layered`` (layered dropout, one branch per attribute), ``heads`` (attributes with a
    head), ``adversaries`` (``(predicted, branch)`` attribute-name pairs, each behind gradient reversal),
    and, for every loss term of :func:`loss_terms`, whether the method has it (``emo``, ``id``, ``id_adv``...).

    - ``dnn``/``vae``/``lrvae-noadv``: a head per attribute, no adversary;
    - ``a-vae``: heads for every attribute but ``protect``; one adversary predicting ``protect`` from the
      (shared, unmasked) representation;
    - ``lrvae``: a head per attribute and the adversaries ``adversaries`` names (:func:`parse_adversaries`):
      by default every ordered pair, i.e. each attribute's branch hides every other attribute.
    """
    if method not in METHODS:
        raise ValueError(f"method {method!r} is unknown; choose one of {', '.join(METHODS)}")
    attrs = parse_attributes(attributes)
    order = [a.name for a in attrs]
    if method == "a-vae" and protect not in order:
        raise ValueError(f"a-vae protects one of the attributes {', '.join(order)}, got {protect!r}")
    heads = tuple(n for n in order if not (method == "a-vae" and n == protect))
    if method == "lrvae":
        adv = parse_adversaries(adversaries, attrs)
    elif method == "a-vae":
        adv = ((protect, heads[0]),)
    else:
        adv = ()
    parts = {"vae": method != "dnn", "layered": method in ("lrvae", "lrvae-noadv"), "heads": heads,
             "adversaries": adv}
    terms = adversary_terms(attrs, adv)
    for a in attrs:
        parts[a.short] = a.name in heads
    for pair, term in terms.items():
        parts[term] = pair in adv
    for a in attrs:  # terms of adversaries the method does not have
        parts.setdefault(f"{a.short}_adv", False)
    return parts


def parse_adversaries(spec: str, attrs) -> tuple[tuple[str, str], ...]:
    """``all`` (every ordered pair), ``none``, or ``predicted@branch,...`` (e.g. ``identity@emotion``: a
    speaker discriminator on the emotion branch) -> ``(predicted, branch)`` pairs in latent order."""
    order = [a.name for a in attrs]
    spec = (spec or "all").strip()
    if spec == "all":
        return tuple((b, a) for a in order for b in order if a != b)
    if spec == "none":
        return ()
    pairs = []
    for item in spec.split(","):
        bits = item.strip().split("@")
        if len(bits) != 2 or not all(bits):
            raise ValueError(f"adversary {item.strip()!r} is not of the form predicted@branch (e.g. identity@emotion)")
        bad = [b for b in bits if b not in order]
        if bad:
            raise ValueError(f"adversary {item.strip()!r} names unknown attribute(s) {bad}; the attributes are "
                             f"{', '.join(order)}")
        if bits[0] == bits[1]:
            raise ValueError(f"adversary {item.strip()!r} predicts an attribute on its own branch")
        pairs.append(tuple(bits))
    return tuple(sorted(set(pairs), key=lambda p: (order.index(p[1]), order.index(p[0]))))


def adversary_terms(attrs, adversaries) -> dict[tuple[str, str], str]:
    """Loss-term name of each adversary: ``<short>_adv`` of the attribute it predicts (``id_adv``,
    ``emo_adv``), ``<short>_adv_<branch short>`` when several adversaries predict the same attribute."""
    by = {a.name: a for a in attrs}
    out = {}
    for pred, branch in adversaries:
        many = sum(p == pred for p, _ in adversaries) > 1
        out[(pred, branch)] = f"{by[pred].short}_adv" + (f"_{by[branch].short}" if many else "")
    return out


def loss_terms(attributes=DEFAULT_ATTRIBUTES, adversaries=()) -> tuple[str, ...]:
    """Weighted terms of eq. 4 over the attributes: ``vae``, one per head, one per adversary."""
    attrs = parse_attributes(attributes)
    order = [a.name for a in attrs]
    terms = adversary_terms(attrs, adversaries)
    # adversary terms by the attribute they predict (the paper's order: emo_adv, id_adv)
    adv = [terms[p] for p in sorted(terms, key=lambda p: (order.index(p[0]), order.index(p[1])))]
    return ("vae", *(a.short for a in attrs), *adv)


def _base(term: str) -> str:
    """The weight a term falls back to: ``<short>_adv`` for ``<short>_adv_<branch>``."""
    return "_".join(term.split("_")[:2]) if "_adv_" in term else term
