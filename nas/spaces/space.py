"""The search space: typed, validated, hashable; architectures are ``{label: choice}``."""

from __future__ import annotations

import hashlib
import json
import random
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from nas.errors import ArchError, SpaceError
from nas.models.dims import ModelDims
from nas.spaces.choice import SUPPORTED_BITS, Choice, layer_label

Arch = dict[str, int]

SCHEMA_VERSION = 1


@dataclass(frozen=True)
class SearchSpace:
    """Width × depth × bit-width choices over one pretrained model.

    Attributes:
        name: the space's name (``minilm-l6``).
        model: the model source the weights come from (see :mod:`nas.models.sources`).
        dims: the model's shapes.
        choices: every choice, in a fixed order (embed first, then layer by layer).
    """

    name: str
    model: str
    dims: ModelDims
    choices: tuple[Choice, ...]
    description: str = ""
    _by_label: dict[str, Choice] = field(default_factory=dict, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        by = {}
        for c in self.choices:
            if c.label in by:
                raise SpaceError(f"{c.label}: declared twice")
            by[c.label] = c
        object.__setattr__(self, "_by_label", by)
        self._validate()

    # -- validation ---------------------------------------------------------
    def _validate(self) -> None:
        d = self.dims
        for c in self.choices:
            i, kind = c.layer, c.kind
            if i is not None and not 0 <= i < d.num_layers:
                raise SpaceError(f"{c.label}: layer {i} does not exist (model has {d.num_layers} layers)")
            if kind == "heads":
                for h in c.options:
                    if not 0 < h <= d.num_heads:
                        raise SpaceError(f"{c.label}: {h} heads outside 1..{d.num_heads}")
                    if h % d.group_size:
                        raise SpaceError(
                            f"{c.label}: {h} heads do not fill whole KV groups of {d.group_size} "
                            f"({d.num_heads} query heads share {d.num_kv_heads} KV heads)"
                        )
            elif kind == "ffn":
                for w in c.options:
                    if not 0 < w <= d.intermediate:
                        raise SpaceError(f"{c.label}: FFN width {w} outside 1..{d.intermediate}")
            elif kind == "bits":
                bad = [b for b in c.options if b not in SUPPORTED_BITS]
                if bad:
                    raise SpaceError(f"{c.label}: unsupported bit-width(s) {bad}; supported: {list(SUPPORTED_BITS)}")
            elif kind == "keep":
                if not set(c.options) <= {0, 1}:
                    raise SpaceError(f"{c.label}: keep options must be 1 (keep) and/or 0 (skip)")
        if not any(1 in self.options(layer_label(i, "keep")) for i in range(d.num_layers)):
            raise SpaceError("keep: every layer is forced to be skipped")

    # -- lookup -------------------------------------------------------------
    @property
    def labels(self) -> list[str]:
        return [c.label for c in self.choices]

    def __getitem__(self, label: str) -> Choice:
        try:
            return self._by_label[label]
        except KeyError:
            raise ArchError(f"{label}: no such label in space {self.name!r}") from None

    def __contains__(self, label: object) -> bool:
        return label in self._by_label

    def __iter__(self) -> Iterator[Choice]:
        return iter(self.choices)

    def __len__(self) -> int:
        return len(self.choices)

    def options(self, label: str) -> tuple[int, ...]:
        """Options of ``label``; a label the space does not search is fixed to its uncompressed value."""
        if label in self._by_label:
            return self._by_label[label].options
        return (self._fixed(label),)

    def _fixed(self, label: str) -> int:
        from nas.spaces.choice import parse_label

        _, kind = parse_label(label)
        return {"keep": 1, "bits": 32, "heads": self.dims.num_heads, "ffn": self.dims.intermediate}[kind]

    # -- architectures ------------------------------------------------------
    def validate(self, arch: Mapping[str, Any]) -> Arch:
        """Check an architecture and return it complete (fixed labels filled in).

        Raises:
            ArchError: naming the first unknown label, missing label or bad value.
        """
        unknown = [k for k in arch if k not in self._by_label]
        if unknown:
            raise ArchError(f"{unknown[0]}: no such label in space {self.name!r}")
        out: Arch = {}
        for c in self.choices:
            if c.label not in arch:
                raise ArchError(f"{c.label}: missing from the architecture")
            v = arch[c.label]
            if isinstance(v, bool) or not isinstance(v, int) or v not in c.options:
                raise ArchError(f"{c.label}: {v!r} is not one of {list(c.options)}")
            out[c.label] = int(v)
        if not any(self.value(out, layer_label(i, "keep")) for i in range(self.dims.num_layers)):
            raise ArchError("keep: the architecture skips every layer")
        return out

    def value(self, arch: Mapping[str, int], label: str) -> int:
        """The value of ``label`` in ``arch``, or its fixed value if the space does not search it."""
        return arch[label] if label in self._by_label else self._fixed(label)

    def full(self) -> Arch:
        """The uncompressed architecture."""
        return {c.label: c.options[0] for c in self.choices}

    def smallest(self) -> Arch:
        """Every choice at its smallest option, keeping at least one layer."""
        arch = {c.label: c.options[-1] for c in self.choices}
        keeps = [layer_label(i, "keep") for i in range(self.dims.num_layers)]
        if not any(self.value(arch, k) for k in keeps):
            arch[next(k for k in keeps if 1 in self.options(k))] = 1
        return arch

    def sample(self, rng: random.Random) -> Arch:
        """A uniformly random valid architecture."""
        while True:
            arch = {c.label: rng.choice(c.options) for c in self.choices}
            if any(self.value(arch, layer_label(i, "keep")) for i in range(self.dims.num_layers)):
                return arch

    def kept_layers(self, arch: Mapping[str, int]) -> list[int]:
        return [i for i in range(self.dims.num_layers) if self.value(arch, layer_label(i, "keep"))]

    # -- serialisation ------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return {
            "schema": SCHEMA_VERSION,
            "name": self.name,
            "model": self.model,
            "description": self.description,
            "dims": self.dims.to_dict(),
            "choices": {c.label: list(c.options) for c in self.choices},
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "SearchSpace":
        if d.get("schema") != SCHEMA_VERSION:
            raise SpaceError(f"schema: unknown space schema version {d.get('schema')!r}")
        return cls(
            name=d["name"],
            model=d["model"],
            description=d.get("description", ""),
            dims=ModelDims.from_dict(dict(d["dims"])),
            choices=tuple(Choice(k, tuple(v)) for k, v in d["choices"].items()),
        )

    @property
    def hash(self) -> str:
        """sha256 (first 16 hex digits) of what the space searches over: dims and choices."""
        d = self.to_dict()
        key = json.dumps({"dims": d["dims"], "choices": d["choices"]}, sort_keys=True)
        return hashlib.sha256(key.encode()).hexdigest()[:16]


def width_options(full: int, fractions: Sequence[float], multiple: int = 1) -> tuple[int, ...]:
    """Widths ``full·f`` rounded to ``multiple`` (at least ``multiple``), largest first, deduplicated."""
    vals = {max(multiple, int(round(full * f / multiple)) * multiple) for f in fractions}
    return tuple(sorted((v for v in vals if v <= full), reverse=True))


DEFAULT_FRACTIONS = (1.0, 0.75, 0.5, 0.25)


def space_from_dims(
    dims: ModelDims,
    *,
    name: str,
    model: str,
    head_fractions: Sequence[float] = DEFAULT_FRACTIONS,
    ffn_fractions: Sequence[float] = DEFAULT_FRACTIONS,
    bits: Sequence[int] = SUPPORTED_BITS,
    embed_bits: Sequence[int] = (32, 16, 8),
    skippable: Sequence[int] | None = None,
    overrides: Mapping[str, Sequence[int]] | None = None,
    description: str = "",
) -> SearchSpace:
    """Derive a space from a model's shapes.

    Heads are kept in whole KV groups (multiples of ``dims.group_size``); FFN
    widths are multiples of 8 where the model is that wide. ``skippable``
    lists the layers that may be skipped (default: all). ``overrides`` replace
    the options of individual labels.
    """
    heads = width_options(dims.num_heads, head_fractions, dims.group_size)
    ffn = width_options(dims.intermediate, ffn_fractions, 8 if dims.intermediate >= 64 else 1)
    skippable = range(dims.num_layers) if skippable is None else skippable
    opts: dict[str, tuple[int, ...]] = {"embed.bits": tuple(embed_bits)}
    for i in range(dims.num_layers):
        opts[layer_label(i, "keep")] = (1, 0) if i in skippable else (1,)
        opts[layer_label(i, "heads")] = heads
        opts[layer_label(i, "attn.bits")] = tuple(bits)
        opts[layer_label(i, "ffn")] = ffn
        opts[layer_label(i, "ffn.bits")] = tuple(bits)
    for label, values in (overrides or {}).items():
        if label not in opts:
            raise SpaceError(f"overrides.{label}: no such label (model has {dims.num_layers} layers)")
        opts[label] = tuple(values)
    choices = tuple(Choice(k, v) for k, v in opts.items())
    return SearchSpace(name=name, model=model, dims=dims, choices=choices, description=description)
