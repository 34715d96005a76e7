"""A hand-checkable fixture: a 2-layer space and a 6-row table (numbers worked out in the tests)."""

import pytest

from nas.latency.table import LatencyTable
from nas.models.dims import ModelDims
from nas.spaces.choice import Choice
from nas.spaces.space import SearchSpace

DIMS = ModelDims(family="bert", num_layers=2, hidden=8, num_heads=2, num_kv_heads=2, head_dim=4,
                 intermediate=8, vocab_size=10, max_positions=16, type_vocab_size=2)

# Searched: layer 1 may be skipped; each layer's attention is fp32 or int8. Everything else is fixed
# (2 heads, FFN 8, fp32), so the table needs exactly these six entries.
ENTRIES = {
    "overhead": 0.5,
    "rest": 0.25,
    "embed:bits=32": 1.0,
    "attn:heads=2:bits=32": 2.0,
    "attn:heads=2:bits=8": 1.5,
    "ffn:width=8:bits=32": 3.0,
}
CALIBRATION = {"scale": 2.0, "per_layer_ms": 0.1, "constant_ms": 0.3}


@pytest.fixture
def hand_space() -> SearchSpace:
    return SearchSpace(name="hand", model="tiny-bert", dims=DIMS, choices=(
        Choice("layer0.attn.bits", (32, 8)),
        Choice("layer1.keep", (1, 0)),
        Choice("layer1.attn.bits", (32, 8)),
    ))


def make_table(space: SearchSpace, *, calibration=None, entries=None, **over) -> LatencyTable:
    fields = dict(
        space_name=space.name, space_hash=space.hash,
        device={"cpu": "Test CPU", "isa": ["avx2"], "cores": 2, "fingerprint": "abc123"},
        runtime={"name": "onnxruntime-cpu", "version": "1.31.1", "provider": "CPUExecutionProvider"},
        threads=1, batch=1, seq=8,
        entries={k: {"median_ms": v, "iqr_ms": 0.0, "n": 1} for k, v in (entries or ENTRIES).items()},
        calibration=dict(CALIBRATION if calibration is None else calibration),
    )
    fields.update(over)
    return LatencyTable(**fields)


@pytest.fixture
def hand_table(hand_space) -> LatencyTable:
    return make_table(hand_space)
