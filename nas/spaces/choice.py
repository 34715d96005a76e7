"""A searchable choice and the label scheme that keys it everywhere.

Labels (the key in the supernet's logits, the latency table, Optuna's
parameters, trial attributes and export manifests)::

    embed.bits          weight bits of the embedding tables
    layer{i}.keep       1 keeps layer i, 0 skips it (identity)
    layer{i}.heads      attention heads kept (a prefix in importance order)
    layer{i}.attn.bits  weight bits of q/k/v/o
    layer{i}.ffn        FFN neurons kept (a prefix in importance order)
    layer{i}.ffn.bits   weight bits of the FFN linears

Options are stored largest first, so ``options[0]`` is always the
uncompressed choice. Bits mean: 32 fp32, 16 fp16, 8 and 4 symmetric
per-output-channel integers.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from nas.errors import SpaceError

KINDS = ("keep", "heads", "ffn", "bits")
SUPPORTED_BITS = (32, 16, 8, 4)
_LABEL = re.compile(r"^(?:embed\.bits|layer(\d+)\.(keep|heads|ffn|attn\.bits|ffn\.bits))$")


@dataclass(frozen=True)
class Choice:
    """One categorical choice of the space.

    Attributes:
        label: stable key (see module docstring).
        options: allowed values, largest (uncompressed) first.
    """

    label: str
    options: tuple[int, ...]

    def __post_init__(self) -> None:
        parse_label(self.label)
        if not self.options:
            raise SpaceError(f"{self.label}: empty choice list")
        if len(set(self.options)) != len(self.options):
            raise SpaceError(f"{self.label}: repeated options {list(self.options)}")
        if list(self.options) != sorted(self.options, reverse=True):
            object.__setattr__(self, "options", tuple(sorted(self.options, reverse=True)))

    @property
    def kind(self) -> str:
        return parse_label(self.label)[1]

    @property
    def layer(self) -> int | None:
        return parse_label(self.label)[0]

    @property
    def default(self) -> int:
        """The uncompressed option."""
        return self.options[0]

    def index(self, value: int) -> int:
        try:
            return self.options.index(value)
        except ValueError:
            raise SpaceError(f"{self.label}: {value!r} is not one of {list(self.options)}") from None


def parse_label(label: str) -> tuple[int | None, str]:
    """``(layer index or None, kind)`` of a label; kind is one of :data:`KINDS`.

    Raises:
        SpaceError: the label is not of the documented form.
    """
    m = _LABEL.match(label)
    if not m:
        raise SpaceError(
            f"{label}: not a choice label (expected embed.bits or layer<i>.keep|heads|ffn|attn.bits|ffn.bits)"
        )
    if label == "embed.bits":
        return None, "bits"
    kind = m.group(2)
    return int(m.group(1)), "bits" if kind.endswith(".bits") else kind


def layer_label(i: int, what: str) -> str:
    """``layer_label(3, "ffn.bits") == "layer3.ffn.bits"``."""
    return f"layer{i}.{what}"
