"""Export a derived subnet (or one block) to ONNX and quantize it with onnxruntime's own tools.

Nothing here is imported by ``import nas``: onnx and onnxruntime load inside the functions.
"""
