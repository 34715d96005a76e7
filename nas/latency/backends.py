"""Measurement backends: run one block or model with a runtime's real kernels.

Contract of :class:`BaseLatencyBackend` (what the builder and the validator rely on):

* ``name`` is the runtime name stored in tables (``onnxruntime-cpu``, ``torch-cpu``);
  ``info()`` returns ``{"name", "version", "provider"}`` for the table's provenance.
* ``kernels`` maps each supported bit-width to what actually runs for it; a
  bit-width absent from it is unsupported and the builder refuses a space that
  needs it (no guessing).
* ``prepare(module, inputs, bits=...)`` returns a zero-argument callable that
  runs one synchronous inference of ``module`` on the fixed ``inputs`` with the
  linears named in ``bits`` at those bit-widths (names are module paths, as in
  :mod:`nas.runtime.onnx`), intra-op threads pinned to ``threads``. Everything
  costly (export, quantization, session creation) happens in ``prepare``; the
  callable does nothing but run.

:func:`get_backend` turns a name (or an instance) into a backend.
"""

from __future__ import annotations

import copy
import tempfile
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from nas.errors import ConfigError, MissingDependencyError

Runner = Callable[[], object]


class BaseLatencyBackend(ABC):
    """A runtime that measures blocks with its real kernels (see module docstring for the contract)."""

    name: str = ""
    kernels: dict[int, str] = {}

    def __init__(self, *, threads: int = 1) -> None:
        if int(threads) < 1:
            raise ConfigError(f"threads: must be at least 1, got {threads}")
        self.threads = int(threads)

    @abstractmethod
    def info(self) -> dict[str, Any]:
        """``{"name", "version", "provider"}`` of the runtime."""

    @abstractmethod
    def prepare(
        self,
        module: nn.Module,
        inputs: Mapping[str, Tensor],
        *,
        bits: Mapping[str, int],
        output_names: tuple[str, ...] = ("output",),
    ) -> Runner:
        """A callable running one inference of ``module`` on ``inputs`` (see module docstring)."""

    def supports(self, bits: int) -> bool:
        return bits in self.kernels


class OnnxRuntimeCPUBackend(BaseLatencyBackend):
    """onnxruntime, CPU execution provider: export to ONNX, quantize with onnxruntime's tools, run a session."""

    name = "onnxruntime-cpu"
    kernels = {
        32: "fp32 MatMul",
        16: "fp16 weights + Cast (constant-folded at session start: fp32 MatMul; ORT CPU has no x86 fp16 MatMul)",
        8: "quantize_dynamic int8 per-channel symmetric (DynamicQuantizeLinear + MatMulInteger)",
        4: "MatMulNBitsQuantizer int4 symmetric block 32 (MatMulNBits)",
    }

    def __init__(self, *, threads: int = 1) -> None:
        super().__init__(threads=threads)
        try:
            import onnxruntime  # noqa: F401
        except ImportError:
            raise MissingDependencyError("onnxruntime-cpu: needs onnxruntime (pip install onnxruntime)") from None

    def info(self) -> dict[str, Any]:
        import onnxruntime as ort

        return {"name": self.name, "version": ort.__version__, "provider": "CPUExecutionProvider"}

    def session(self, path: str | Path) -> Any:
        """An inference session with intra-op threads pinned to ``threads``."""
        from nas.runtime.session import cpu_session

        return cpu_session(path, threads=self.threads)

    def prepare(self, module, inputs, *, bits, output_names=("output",)):
        from nas.runtime.onnx import export_module
        from nas.runtime.quantize import quantize_onnx

        axes = {n: {0: "batch", 1: "sequence"} for n in (*inputs, *output_names)}
        with tempfile.TemporaryDirectory() as tmp:
            fp32 = export_module(module, Path(tmp) / "fp32.onnx", inputs=inputs, output_names=output_names,
                                 dynamic_axes=axes)
            quant = {k: b for k, b in bits.items() if b < 32}
            path = quantize_onnx(fp32, Path(tmp) / "quant.onnx", quant) if quant else fp32
            return self.runner_for(path, inputs)

    def runner_for(self, path: str | Path, inputs: Mapping[str, Tensor]) -> Runner:
        """A runner over an existing ONNX file (used for exported subnets)."""
        sess = self.session(path)
        feeds = {k: v.detach().numpy() for k, v in inputs.items()}
        names = [o.name for o in sess.get_outputs()]
        return lambda: sess.run(names, feeds)


class TorchCPUBackend(BaseLatencyBackend):
    """PyTorch eager on CPU; int8 linears run the dynamic-quantized kernel ``quantized::linear_dynamic``.

    PyTorch has no CPU int4 or fp16 linear kernel used by eager ``nn.Linear``
    inference here, so 16 and 4 bits run the dequantized weights in fp32 (what
    one would deploy on this runtime); the table's ``kernels`` says so.
    """

    name = "torch-cpu"
    kernels = {
        32: "fp32 nn.Linear",
        16: "fp16 weights dequantized to fp32 at load (fp32 nn.Linear)",
        8: "int8 per-channel symmetric weights, dynamic int8 activations (quantized::linear_dynamic)",
        4: "int4 weights dequantized to fp32 at load (fp32 nn.Linear)",
    }

    def info(self) -> dict[str, Any]:
        return {"name": self.name, "version": torch.__version__, "provider": "cpu"}

    def prepare(self, module, inputs, *, bits, output_names=("output",)):
        torch.set_num_threads(self.threads)
        m = copy.deepcopy(module).eval()
        mods = dict(m.named_modules())
        packed: dict[int, Any] = {}
        for name, b in bits.items():
            lin = mods.get(name)
            if b == 8 and isinstance(lin, nn.Linear):
                w = lin.weight.detach()
                scale = (w.abs().amax(dim=1).clamp(min=1e-12) / 127).double()
                qw = torch.quantize_per_channel(w, scale, torch.zeros(w.shape[0], dtype=torch.long), 0, torch.qint8)
                bias = None if lin.bias is None else lin.bias.detach()
                packed[id(lin.weight)] = torch.ops.quantized.linear_prepack(qw, bias)
        args = tuple(inputs.values())
        import torch.nn.functional as F

        fp32_linear = F.linear

        def int8_linear(x: Tensor, weight: Tensor, bias: Tensor | None = None) -> Tensor:
            p = packed.get(id(weight))
            if p is None:
                return fp32_linear(x, weight, bias)
            return torch.ops.quantized.linear_dynamic(x, p, False)

        def run() -> object:
            # The model calls F.linear with its weights; route the int8 ones to the
            # quantized kernel for the duration of the call (runners run one at a time).
            F.linear = int8_linear if packed else fp32_linear
            try:
                with torch.inference_mode():
                    return m(*args)
            finally:
                F.linear = fp32_linear

        return run


_BACKENDS: dict[str, type[BaseLatencyBackend]] = {
    OnnxRuntimeCPUBackend.name: OnnxRuntimeCPUBackend,
    TorchCPUBackend.name: TorchCPUBackend,
}
BACKENDS = tuple(_BACKENDS)


def get_backend(backend: str | BaseLatencyBackend, *, threads: int = 1) -> BaseLatencyBackend:
    """A backend by name (``onnxruntime-cpu``, ``torch-cpu``), or ``backend`` itself if it is one.

    Raises:
        ConfigError: unknown name.
    """
    if isinstance(backend, BaseLatencyBackend):
        return backend
    try:
        cls = _BACKENDS[backend]
    except KeyError:
        raise ConfigError(f"runtime: unknown latency backend {backend!r}; known: {', '.join(BACKENDS)}") from None
    return cls(threads=threads)
