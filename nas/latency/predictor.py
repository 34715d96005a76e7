"""Pure latency and size predictors over a latency table.

For an architecture with kept layers K::

    raw(arch) = overhead + embed[b_E] + head[b_E] + rest + Σ_{i∈K} (attn[h_i, a_i] + ffn[f_i, m_i])
    latency_ms(arch) = s·(overhead + rest) + s_{b_E}·(embed[b_E] + head[b_E])
                       + Σ_{i∈K} (s_{a_i}·attn[h_i, a_i] + s_{m_i}·ffn[f_i, m_i] + per_layer_ms) + constant_ms

where ``head[b]`` is a decoder's tied LM head (``head:bits=B``, picked by the ``embed.bits`` label),
counted when the table has head entries (0 for encoders and for tables built before them), and
``s`` (``scale``), ``s_b`` (``bit_scale[b]``, else ``scale``), ``per_layer_ms`` and
``constant_ms`` are the table's fitted calibration (:class:`nas.latency.calibration.Calibration`;
defaults 1, 0, 0): every entry is scaled by its own precision's factor, so the prediction stays
linear in the entries. Under the supernet's independent categorical distributions the
expectation is then linear too; with ``Ŝ[x] = s_b·x`` for an entry ``x`` at ``b`` bits::

    E[LAT] = s·(overhead + rest) + Σ_b p_E(b)·Ŝ[embed[b] + head[b]]
             + Σ_i p_keep,i · (Σ_{h,a} p_h p_a Ŝ[attn[h,a]] + Σ_{f,m} p_f p_m Ŝ[ffn[f,m]] + per_layer_ms)
             + constant_ms

which :func:`expected_latency` evaluates in torch, differentiable in the probabilities. The formulas
are the same for a prefill table (one call over the prompt) and a decode table (one token after a
cache of the table's ``context``); only the entries differ.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import Tensor

from nas.errors import ArchError, LatencyTableError
from nas.latency.calibration import Calibration
from nas.latency.table import OVERHEAD, REST, LatencyTable, attn_key, embed_key, ffn_key, head_key
from nas.spaces.choice import layer_label
from nas.spaces.size import block_bytes
from nas.spaces.space import SearchSpace


def _check_hash(table: LatencyTable, space: SearchSpace) -> None:
    if table.space_hash != space.hash:
        raise LatencyTableError(
            f"space hash: table {table.id} was built for space hash {table.space_hash}, "
            f"but space {space.name!r} has hash {space.hash}"
        )


def raw_latency_ms(table: LatencyTable, space: SearchSpace, arch: Mapping[str, int]) -> float:
    """Plain sum of table entries for ``arch`` (no calibration).

    Raises:
        LatencyTableError: the table is for another space, or misses an entry (naming the key).
        ArchError: ``arch`` does not fit the space (naming the label).
    """
    _check_hash(table, space)
    return sum(table.ms(key) for key, _ in entry_keys(space, space.validate(arch), head=table.has_head))


def entry_keys(space: SearchSpace, arch: Mapping[str, int], *, head: bool = False) -> list[tuple[str, int | None]]:
    """The table entries that price ``arch`` (a validated architecture), each with its weight bits (None: fixed parts).

    ``head``: include the LM head (``head:bits=B`` at ``embed.bits``; :attr:`LatencyTable.has_head`).
    """
    v = space.value
    eb = v(arch, "embed.bits")
    keys: list[tuple[str, int | None]] = [(OVERHEAD, None), (REST, None), (embed_key(eb), eb)]
    if head:
        keys.append((head_key(eb), eb))
    for i in space.kept_layers(arch):
        ab, fb = v(arch, layer_label(i, "attn.bits")), v(arch, layer_label(i, "ffn.bits"))
        keys.append((attn_key(v(arch, layer_label(i, "heads")), ab), ab))
        keys.append((ffn_key(v(arch, layer_label(i, "ffn")), fb), fb))
    return keys


def space_bits(space: SearchSpace) -> tuple[int, ...]:
    """Every weight precision an architecture of ``space`` can use (searched options and fixed values), widest first."""
    bits = {b for c in space if c.kind == "bits" for b in c.options}
    bits |= {b for _, b in entry_keys(space, space.full()) if b is not None}
    return tuple(sorted(bits, reverse=True))


def raw_by_bits(table: LatencyTable, space: SearchSpace, arch: Mapping[str, int]) -> dict[int, float]:
    """``arch``'s table entries summed per weight precision, every precision of the space a key (0 if unused).

    The fixed entries (``overhead``, ``rest``) are in no part: ``raw − Σ parts`` is their sum.
    """
    _check_hash(table, space)
    out = dict.fromkeys(space_bits(space), 0.0)
    for key, bits in entry_keys(space, space.validate(arch), head=table.has_head):
        if bits is not None:
            out[bits] = out.get(bits, 0.0) + table.ms(key)
    return out


def latency_ms(table: LatencyTable, space: SearchSpace, arch: Mapping[str, int]) -> float:
    """Calibrated predicted latency of one concrete architecture, in ms."""
    _check_hash(table, space)
    return _calibrated_ms(table, space, arch, Calibration.from_dict(table.calibration))


def _calibrated_ms(table: LatencyTable, space: SearchSpace, arch: Mapping[str, int], cal: Calibration) -> float:
    arch = space.validate(arch)
    blocks = sum(cal.entry_scale(bits) * table.ms(key) for key, bits in entry_keys(space, arch, head=table.has_head))
    return blocks + cal.per_layer_ms * len(space.kept_layers(arch)) + cal.constant_ms


class Predictor:
    """A table bound to a space, with its entries laid out as tensors per label.

    Raises:
        LatencyTableError: at construction, if the table was built for another
            space or misses an entry (naming the key).
    """

    def __init__(self, table: LatencyTable, space: SearchSpace) -> None:
        table.check_space(space)
        self.table, self.space = table, space
        self.cal = cal = Calibration.from_dict(table.calibration)  # parsed once: latency_ms runs in derive's walks
        self.per_layer, self.constant = cal.per_layer_ms, cal.constant_ms
        o = space.options
        ms = lambda key, bits: cal.entry_scale(bits) * table.ms(key)  # noqa: E731  (entries calibrated in place)
        head = (lambda b: ms(head_key(b), b)) if table.has_head else (lambda b: 0.0)  # the head rides on embed.bits
        self.embed = torch.tensor([ms(embed_key(b), b) + head(b) for b in o("embed.bits")])
        self.fixed = cal.scale * (table.ms(OVERHEAD) + table.ms(REST))
        self.attn: list[Tensor] = []
        self.ffn: list[Tensor] = []
        for i in range(space.dims.num_layers):
            L = lambda w: layer_label(i, w)  # noqa: E731
            self.attn.append(torch.tensor([[ms(attn_key(h, b), b) for b in o(L("attn.bits"))] for h in o(L("heads"))]))
            self.ffn.append(torch.tensor([[ms(ffn_key(f, b), b) for b in o(L("ffn.bits"))] for f in o(L("ffn"))]))

    def latency_ms(self, arch: Mapping[str, int]) -> float:
        return _calibrated_ms(self.table, self.space, arch, self.cal)

    def expected_latency(self, probs: Mapping[str, Tensor]) -> Tensor:
        """E[LAT] in ms under per-label probabilities (see module docstring); differentiable.

        Args:
            probs: ``{label: probabilities over the label's options}`` for every searched label.

        Raises:
            ArchError: a searched label is missing or has the wrong number of probabilities.
        """
        ref = next(iter(probs.values())) if probs else torch.ones(1)
        like = {"dtype": ref.dtype if ref.is_floating_point() else torch.float32, "device": ref.device}
        p = lambda label: _probs(probs, self.space, label).to(**like)  # noqa: E731
        total = self.fixed + (p("embed.bits") * self.embed.to(**like)).sum() + self.constant
        for i in range(self.space.dims.num_layers):
            L = lambda w: layer_label(i, w)  # noqa: E731
            attn = p(L("heads")) @ self.attn[i].to(**like) @ p(L("attn.bits"))
            ffn = p(L("ffn")) @ self.ffn[i].to(**like) @ p(L("ffn.bits"))
            keep_opts = self.space.options(L("keep"))
            p_keep = p(L("keep"))[keep_opts.index(1)] if 1 in keep_opts else torch.zeros((), **like)
            total = total + p_keep * (attn + ffn + self.per_layer)
        return total

    def min_latency_ms(self) -> float:
        """The lowest predicted latency any architecture of the space can reach."""
        n = self.space.dims.num_layers
        cost = [float(self.attn[i].min()) + float(self.ffn[i].min()) + self.per_layer for i in range(n)]
        # Layers that cannot be skipped are paid for; if all can be, one layer is still kept.
        forced = [cost[i] for i in range(n) if 0 not in self.space.options(layer_label(i, "keep"))]
        layers = sum(forced) if forced else min(cost)
        return self.fixed + float(self.embed.min()) + self.constant + layers


def _probs(probs: Mapping[str, Tensor], space: SearchSpace, label: str) -> Tensor:
    n = len(space.options(label))
    if label in probs:
        p = probs[label]
        if p.shape != (n,):
            raise ArchError(f"{label}: probabilities of shape {tuple(p.shape)}, expected ({n},)")
        return p
    if label in space:
        raise ArchError(f"{label}: missing from the probabilities")
    return torch.ones(1)  # a label the space does not search has one option


def expected_latency(table: LatencyTable, space: SearchSpace, probs: Mapping[str, Tensor]) -> Tensor:
    """E[LAT] in ms (see :class:`Predictor`; build one to reuse across steps)."""
    return Predictor(table, space).expected_latency(probs)


def size_bytes(space: SearchSpace, arch: Mapping[str, int]) -> int:
    """Bytes of the derived subnet at its chosen bit-widths (scales included), from shapes alone.

    Equals ``derive(net, arch).size().bytes``; the per-block formula is :func:`nas.spaces.size.block_bytes`.
    """
    d, v = space.dims, space.value
    total = block_bytes(d, "embed", bits=v(arch, "embed.bits")) + block_bytes(d, "rest")
    for i in space.kept_layers(arch):
        total += block_bytes(d, "attn", v(arch, layer_label(i, "heads")), v(arch, layer_label(i, "attn.bits")))
        total += block_bytes(d, "ffn", v(arch, layer_label(i, "ffn")), v(arch, layer_label(i, "ffn.bits")))
        total += block_bytes(d, "norms")
    return total
