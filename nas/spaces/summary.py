"""Compact one-line architecture summary and its parser.

Format (fields separated by one space, per-layer lists over *kept* layers)::

    L0,1,3,5 H12,12,8,8 F1536,1024,768,768 A8,8,8,4 M8,8,4,4 E8

* ``L`` – indices of the kept layers (the others are skipped);
* ``H`` – attention heads kept per kept layer;
* ``F`` – FFN neurons kept per kept layer;
* ``A`` – attention weight bits per kept layer;
* ``M`` – FFN (MLP) weight bits per kept layer;
* ``E`` – embedding weight bits.

Choices of skipped layers are not shown; :func:`parse_arch` sets them to the
uncompressed option.
"""

from __future__ import annotations

from collections.abc import Mapping

from nas.errors import ArchError
from nas.spaces.choice import layer_label
from nas.spaces.space import Arch, SearchSpace

_FIELDS = (("H", "heads"), ("F", "ffn"), ("A", "attn.bits"), ("M", "ffn.bits"))


def format_arch(space: SearchSpace, arch: Mapping[str, int]) -> str:
    """The summary string of ``arch`` (see module docstring)."""
    kept = space.kept_layers(arch)
    parts = ["L" + ",".join(map(str, kept))]
    for letter, what in _FIELDS:
        parts.append(letter + ",".join(str(space.value(arch, layer_label(i, what))) for i in kept))
    parts.append(f"E{space.value(arch, 'embed.bits')}")
    return " ".join(parts)


def parse_arch(space: SearchSpace, summary: str) -> Arch:
    """Inverse of :func:`format_arch`; raises :class:`ArchError` naming the bad field."""
    fields = {p[0]: p[1:] for p in summary.split()}
    if set(fields) != {"L", "H", "F", "A", "M", "E"}:
        raise ArchError(f"summary: expected fields L H F A M E, got {' '.join(sorted(fields))}")

    def ints(key: str) -> list[int]:
        try:
            return [int(x) for x in fields[key].split(",")] if fields[key] else []
        except ValueError:
            raise ArchError(f"summary: field {key}: {fields[key]!r} is not a list of integers") from None

    kept = ints("L")
    arch = {c.label: c.options[0] for c in space.choices}
    for i in range(space.dims.num_layers):
        if layer_label(i, "keep") in space:
            arch[layer_label(i, "keep")] = int(i in kept)
    for letter, what in _FIELDS:
        vals = ints(letter)
        if len(vals) != len(kept):
            raise ArchError(f"summary: field {letter} has {len(vals)} values for {len(kept)} kept layers")
        for i, v in zip(kept, vals):
            if layer_label(i, what) in space:
                arch[layer_label(i, what)] = v
    if "embed.bits" in space:
        arch["embed.bits"] = ints("E")[0]
    return space.validate(arch)


def canonical(space: SearchSpace, arch: Mapping[str, int]) -> Arch:
    """``arch`` with the choices of skipped layers reset, so equal subnets compare equal."""
    return parse_arch(space, format_arch(space, arch))
