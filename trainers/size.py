"""Expected size as a table: the bytes of each block, laid out like a latency table.

Size is additive over the same blocks the latency table prices, so a
:class:`~nas.latency.LatencyTable` whose entries hold bytes instead of
milliseconds lets :class:`~nas.latency.Predictor` give the expected size
(differentiable) and the size of one architecture, which equals
``nas.latency.size_bytes(space, arch)``: both are built from
:func:`nas.spaces.size.block_bytes`.
"""

from __future__ import annotations

from nas.latency.table import OVERHEAD, REST, LatencyTable, required_keys
from nas.spaces.size import block_bytes
from nas.spaces.space import SearchSpace


def size_table(space: SearchSpace) -> LatencyTable:
    """A pseudo latency table whose ``median_ms`` are bytes (see module docstring)."""
    d = space.dims
    entries: dict[str, float] = {OVERHEAD: 0.0, REST: float(block_bytes(d, "rest"))}
    for key in required_keys(space):
        kind, _, rest = key.partition(":")
        if kind in ("embed", "attn", "ffn"):
            f = {k: int(v) for k, v in (part.split("=") for part in rest.split(":"))}
            entries[key] = float(block_bytes(d, kind, f.get("heads", f.get("width", 0)), f["bits"]))
    assert set(required_keys(space)) <= set(entries)
    norms = float(block_bytes(d, "norms"))
    return LatencyTable(
        space_name=space.name, space_hash=space.hash, device={"cpu": "size"}, runtime={"name": "bytes"},
        threads=0, batch=0, seq=0, entries={k: {"median_ms": v} for k, v in entries.items()},
        calibration={"scale": 1.0, "per_layer_ms": norms, "constant_ms": 0.0},
    )
