"""Per-device latency lookup tables: schema, pure predictor, measurement backends, builder.

``import nas.latency`` loads the table schema and the predictor only; measuring
needs onnxruntime or torch backends that are imported when a table is built.
"""

from nas.latency.predictor import Predictor, expected_latency, latency_ms, size_bytes
from nas.latency.table import LatencyTable, attn_key, embed_key, ffn_key, load_table, required_keys

__all__ = [
    "LatencyTable", "Predictor", "attn_key", "embed_key", "expected_latency", "ffn_key", "latency_ms",
    "load_table", "required_keys", "size_bytes",
]
