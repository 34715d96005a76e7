"""Per-device latency lookup tables, per phase: schema, pure predictor, measurement backends, builder.

``import nas.latency`` loads the table schema and the predictor only. Measuring lives in
:mod:`nas.latency.backends` (``BaseLatencyBackend``, ``get_backend``), :mod:`nas.latency.protocol`
(interleaved rounds, median/IQR, noisy entries), :mod:`nas.latency.builder` (``build_table``),
:mod:`nas.latency.calibration` and :mod:`nas.latency.validate`; onnxruntime is imported only there.
"""

from nas.latency.predictor import Predictor, expected_latency, latency_ms, size_bytes
from nas.latency.table import (
    LatencyTable, attn_key, check_accuracy_level, check_lengths, check_phase, embed_key, ffn_key, head_key, load_table,
    required_keys, table_accuracy_level,
)

__all__ = [
    "LatencyTable", "Predictor", "attn_key", "check_accuracy_level", "check_lengths", "check_phase", "embed_key",
    "expected_latency", "ffn_key", "head_key", "latency_ms", "load_table", "required_keys", "size_bytes",
    "table_accuracy_level",
]
