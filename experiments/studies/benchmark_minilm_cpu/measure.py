"""Turn every point into deployed artifacts and measure them the same way.

* **Artifact**: the subnet exported with :func:`nas.runtime.onnx.export_onnx` and, for
  searched points, quantized per layer with :func:`nas.runtime.quantize.quantize_onnx`
  (what ``nas export`` ships); the user baselines' int8 is onnxruntime's own
  ``quantize_dynamic`` with its defaults (what a user would type).
* **Accuracy**: the artifact run by onnxruntime on the WordNet test examples, mean-pooled,
  through the point's fine-tuned classification head.
* **Latency**: every artifact of the run measured *interleaved* with
  :func:`nas.latency.protocol.measure` (batch 1, seq 128 by default) at each thread count;
  median and IQR. At the latency table's thread count the table's calibration models run
  in the same interleaved rounds (:func:`nas.latency.drift.calibration_runners`): their
  now/then ratio is the host's drift *while the points were measured*.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

from nas.latency.protocol import Protocol, Runner, measure


def export_artifact(subnet: Any, folder: Path, *, bits: Mapping[str, int] | None = None,
                    user_int8: bool = False) -> Path:
    """Write ``folder/model.fp32.onnx`` and, if asked, a quantized ``folder/model.quant.onnx``; return the one to run.

    Args:
        subnet: a derived :class:`nas.supernet.Subnet`.
        folder: where to write.
        bits: ``{node: bits}`` for :func:`quantize_onnx` (entries < 32 are quantized); None keeps fp32.
        user_int8: quantize with onnxruntime's ``quantize_dynamic`` defaults (weight type QInt8) instead.
    """
    from nas.runtime.onnx import export_onnx

    folder.mkdir(parents=True, exist_ok=True)
    fp32 = folder / "model.fp32.onnx"
    if not fp32.is_file():
        export_onnx(subnet, fp32)
    if user_int8:
        import logging

        from onnxruntime.quantization import QuantType, quantize_dynamic

        out = folder / "model.ort-int8.onnx"
        logging.disable(logging.WARNING)
        try:
            quantize_dynamic(str(fp32), str(out), weight_type=QuantType.QInt8)
        finally:
            logging.disable(logging.NOTSET)
        return out
    quant = {k: int(b) for k, b in (bits or {}).items() if int(b) < 32}
    if not quant:
        return fp32
    from nas.runtime.quantize import quantize_onnx

    return quantize_onnx(fp32, folder / "model.quant.onnx", quant)


def onnx_accuracy(path: Path, head: tuple[torch.Tensor, torch.Tensor], data: Any, *, threads: int = 2,
                  batch_size: int = 64) -> float:
    """Accuracy of ``path`` (mean-pooled ``last_hidden_state`` → linear head) on ``data`` (a ``trainers`` Encoded)."""
    from nas.latency.backends import OnnxRuntimeCPUBackend
    from nas.tasks.batches import length_ordered_chunks

    sess = OnnxRuntimeCPUBackend(threads=threads).session(path)
    w, b = head[0].numpy(), head[1].numpy()
    correct = 0
    for idx in length_ordered_chunks(data.mask, batch_size):
        batch = data.batch(idx)
        ids, mask = batch["ids"].numpy(), batch["mask"].numpy()
        h = sess.run(["last_hidden_state"], {"input_ids": ids, "attention_mask": mask})[0]
        m = mask[..., None].astype(np.float32)
        pooled = (h * m).sum(1) / np.maximum(m.sum(1), 1e-9)
        correct += int(((pooled @ w.T + b).argmax(-1) == batch["labels"].numpy()).sum())
    return correct / max(len(data), 1)


def file_mb(path: Path) -> float:
    """Size of the ONNX file in MB (10^6 bytes)."""
    return Path(path).stat().st_size / 1e6


def measure_latency(paths: Mapping[str, Path], *, space: Any, threads: int, batch: int, seq: int, warmup: int,
                    rounds: int, repeats: int, remeasure: int, clock: str,
                    extra: Mapping[str, Runner] | None = None) -> dict[str, dict[str, Any]]:
    """``{name: {"median_ms", "iqr_ms", "rel_iqr", "n", "noisy"}}``: every path (and ``extra`` runner) measured interleaved."""
    from nas.latency.backends import OnnxRuntimeCPUBackend
    from nas.latency.builder import model_inputs

    backend = OnnxRuntimeCPUBackend(threads=threads)
    inputs = model_inputs(space, batch, seq)
    runners = {k: backend.runner_for(p, inputs) for k, p in paths.items()}
    runners.update(extra or {})
    proto = Protocol(warmup=warmup, rounds=rounds, repeats=repeats, remeasure=remeasure, max_noisy_fraction=1.0,
                     clock=clock if threads == 1 else "wall")
    return measure(runners, proto, log=sys.stderr)
