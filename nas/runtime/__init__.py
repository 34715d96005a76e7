"""The deployment runtime: ONNX export of blocks and subnets, onnxruntime quantization, sessions.

Used by both latency measurement (:mod:`nas.latency`) and export
(:mod:`nas.export`), so neither depends on the other:

* :mod:`nas.runtime.onnx` – a subnet (or one block) to ONNX with named MatMul nodes;
* :mod:`nas.runtime.quantize` – quantize chosen nodes with onnxruntime's own tools,
  onto the grids of :mod:`nas.quant`;
* :mod:`nas.runtime.session` – the one onnxruntime session configuration;
* :mod:`nas.runtime.decoder_onnx` – a decoder as one generation graph with past keys/values in and out;
* :mod:`nas.runtime.decoder_session` – greedy generation with that graph and its KV cache, timed per phase.

``import nas.runtime`` is light: onnx and onnxruntime load inside the functions.
"""
