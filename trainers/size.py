"""Expected size as a table: the bytes of each block, laid out like a latency table.

Size is additive over the same blocks the latency table prices, so a
:class:`~nas.latency.LatencyTable` whose entries hold bytes instead of
milliseconds lets :class:`~nas.latency.Predictor` give the expected size
(differentiable) and the size of one architecture, which equals
``nas.latency.size_bytes(space, arch)``.
"""

from __future__ import annotations

from nas.latency.table import OVERHEAD, REST, LatencyTable, attn_key, embed_key, ffn_key, required_keys
from nas.spaces.space import SearchSpace
from nas.quant import weight_bytes


def size_table(space: SearchSpace) -> LatencyTable:
    """A pseudo latency table whose ``median_ms`` are bytes (see module docstring)."""
    d = space.dims
    entries: dict[str, float] = {OVERHEAD: 0.0}
    if d.family == "bert":
        entries[REST] = 4.0 * (d.max_positions * d.hidden + max(d.type_vocab_size, 1) * d.hidden + 2 * d.hidden)
    else:
        entries[REST] = 4.0 * d.hidden
    for key in required_keys(space):
        kind, _, rest = key.partition(":")
        if kind not in ("attn", "ffn", "embed"):
            continue
        f = dict(part.split("=") for part in rest.split(":"))
        bits = int(f["bits"])
        if kind == "embed":
            entries[key] = float(weight_bytes((d.vocab_size, d.hidden), bits))
        elif kind == "attn":
            h = int(f["heads"])
            q, kv = h * d.head_dim, h // d.group_size * d.head_dim
            b = sum(weight_bytes(s, bits) for s in ((q, d.hidden), (kv, d.hidden), (kv, d.hidden), (d.hidden, q)))
            b += 4 * ((q + 2 * kv if d.attn_bias else 0) + (d.hidden if d.o_bias else 0))
            entries[key] = float(b)
        else:
            w = int(f["width"])
            mats = [(w, d.hidden), (d.hidden, w)] + ([(w, d.hidden)] if d.family == "llama" else [])
            b = sum(weight_bytes(s, bits) for s in mats)
            b += 4 * (w * (len(mats) - 1) + d.hidden if d.mlp_bias else 0)
            entries[key] = float(b)
    assert set(required_keys(space)) <= set(entries)
    norms = 4.0 * (4 if d.family == "bert" else 2) * d.hidden
    return LatencyTable(
        space_name=space.name, space_hash=space.hash, device={"cpu": "size"}, runtime={"name": "bytes"},
        threads=0, batch=0, seq=0, entries={k: {"median_ms": v} for k, v in entries.items()},
        calibration={"scale": 1.0, "per_layer_ms": norms, "constant_ms": 0.0},
    )
