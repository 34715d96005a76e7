"""onnxruntime CPU sessions, configured one way for every user (latency measurement, export checks).

Intra-op threads are pinned to ``threads``, inter-op to 1 with sequential
execution, all graph optimizations on, warnings off: the configuration the
latency tables are measured with and the one exported models are checked in.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from torch import Tensor


def cpu_session(path: str | Path | bytes, *, threads: int = 1) -> Any:
    """An onnxruntime ``InferenceSession`` on the CPU provider for a model file (or serialized bytes)."""
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.log_severity_level = 3
    model = path if isinstance(path, bytes) else str(path)
    return ort.InferenceSession(model, so, providers=["CPUExecutionProvider"])


def run(sess: Any, ids: Tensor, mask: Tensor) -> np.ndarray:
    """The first output of an encoder graph for ``input_ids`` / ``attention_mask``."""
    return sess.run(None, {"input_ids": ids.numpy(), "attention_mask": mask.numpy()})[0]
