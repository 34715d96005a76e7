"""Export a chosen trial: safetensors + transformers folder + ONNX fp32 + per-layer quantized ONNX, verified.

``nas.runtime.onnx`` exports a subnet (or one block) with named MatMul nodes,
``nas.runtime.quantize`` quantizes chosen nodes with onnxruntime's own tools,
``nas.export.export`` turns a study trial into a verified folder.

``import nas.export`` is light: onnx, onnxruntime, Optuna and transformers are
imported by the functions that use them.

Example:
    >>> from nas.export import export_trial
    >>> export_trial(study="minilm_cpu", storage="sqlite:///study.db", max_latency_ms=5.0, out="exported")  # doctest: +SKIP
"""

from nas.export.export import export_trial, reverify, verify_export

__all__ = ["export_trial", "reverify", "verify_export"]
