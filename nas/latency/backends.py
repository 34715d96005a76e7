"""Measurement backends: run one block or model with a runtime's real kernels.

Contract of :class:`BaseLatencyBackend` (what the builder and the validator rely on):

* ``name`` is the runtime name stored in tables (``onnxruntime-cpu``, ``torch-cpu``);
  ``info()`` returns ``{"name", "version", "provider"}`` for the table's provenance.
* ``kernels`` maps each supported bit-width to what actually runs for it; a
  bit-width absent from it is unsupported and the builder refuses a space that
  needs it (no guessing). :meth:`~BaseLatencyBackend.kernel` says it for one
  bit-width, with the int4 ``accuracy_level`` where the backend has one.
* ``accuracy_level`` (constructor keyword) is the ``MatMulNBits`` compute
  accuracy of int4 weights (``None``: unset, onnxruntime's fp32 compute); a
  backend accepts the levels in its ``accuracy_levels`` (none: it has no such
  kernel and takes only ``None``).
* ``prepare(module, inputs, bits=...)`` returns a zero-argument callable that
  runs one synchronous inference of ``module`` on the fixed ``inputs`` with the
  linears named in ``bits`` at those bit-widths (names are module paths, as in
  :mod:`nas.runtime.onnx`), intra-op threads pinned to ``threads``;
  ``dynamic_axes`` names the axes that stay dynamic (default: axes 0 and 1 of
  every input and output, batch and sequence); the 8-bit linears named in
  ``int8_nbits`` run the runtime's blocked weight-only int8 kernel (a decoder's
  layers, :func:`nas.runtime.decoder_onnx.int8_nbits_nodes`) in place of its
  dynamic int8 one, and ``kernel(8, nbits=True)`` says what that is. Everything
  costly (export, quantization, session creation) happens in ``prepare``; the
  callable does nothing but run.
* ``prepare_generation(model, inputs, bits=...)`` is ``prepare`` for a decoder's
  whole generation graph (:mod:`nas.runtime.decoder_onnx`: logits and presents
  out), exported and quantized as ``nas export`` does.

:func:`get_backend` turns a name (or an instance) into a backend.
"""

from __future__ import annotations

import copy
import tempfile
from abc import ABC, abstractmethod
from collections.abc import Callable, Collection, Mapping
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from nas.errors import ConfigError, MissingDependencyError
from nas.latency.table import ACCURACY_LEVELS
from nas.runtime.quantize import INT8_NBITS_LEVEL

Runner = Callable[[], object]
Axes = Mapping[str, Mapping[int, str]]


class BaseLatencyBackend(ABC):
    """A runtime that measures blocks with its real kernels (see module docstring for the contract)."""

    name: str = ""
    kernels: dict[int, str] = {}
    int8_nbits_kernel: str = ""
    accuracy_levels: tuple[int, ...] = ()

    def __init__(self, *, threads: int = 1, accuracy_level: int | None = None) -> None:
        if int(threads) < 1:
            raise ConfigError(f"threads: must be at least 1, got {threads}")
        if accuracy_level is not None and accuracy_level not in self.accuracy_levels:
            raise ConfigError(
                f"accuracy_level: {self.name} takes {list(self.accuracy_levels)}, got {accuracy_level!r}"
                if self.accuracy_levels else
                f"accuracy_level: {self.name} has no MatMulNBits kernel; leave it unset, got {accuracy_level!r}")
        self.threads = int(threads)
        self.accuracy_level = accuracy_level

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
        dynamic_axes: Axes | None = None,
        int8_nbits: Collection[str] = (),
    ) -> Runner:
        """A callable running one inference of ``module`` on ``inputs`` (see module docstring)."""

    def prepare_generation(self, model: nn.Module, inputs: Mapping[str, Tensor], *, bits: Mapping[str, int]) -> Runner:
        """A callable running one call of ``model``'s generation graph on ``inputs``.

        ``inputs`` as :func:`~nas.runtime.decoder_onnx.step_inputs` makes them.

        ``bits`` names the graph's nodes (:func:`~nas.runtime.decoder_onnx.decoder_bits_by_node`).
        """
        from nas.runtime.decoder_onnx import LOGITS, DecoderGraph, generation_axes, int8_nbits_nodes, present_names

        n = len(model.layers)  # type: ignore[arg-type]
        return self.prepare(DecoderGraph(model).eval(), inputs, bits=bits,  # type: ignore[arg-type]
                            output_names=(LOGITS, *present_names(n)), dynamic_axes=generation_axes(n),
                            int8_nbits=int8_nbits_nodes(bits))

    def supports(self, bits: int) -> bool:
        return bits in self.kernels

    def kernel(self, bits: int, *, nbits: bool = False) -> str:
        """What runs for ``bits``-bit weights (``""`` if unsupported); ``nbits``: an ``int8_nbits`` linear's."""
        return self.int8_nbits_kernel if nbits and bits == 8 else self.kernels.get(bits, "")


class OnnxRuntimeCPUBackend(BaseLatencyBackend):
    """onnxruntime, CPU execution provider: export to ONNX, quantize with onnxruntime's tools, run a session."""

    name = "onnxruntime-cpu"
    kernels = {
        32: "fp32 MatMul",
        16: "fp16 weights + Cast (constant-folded at session start: fp32 MatMul; ORT CPU has no x86 fp16 MatMul)",
        8: "quantize_dynamic int8 per-channel symmetric (DynamicQuantizeLinear + MatMulInteger)",
        4: "MatMulNBitsQuantizer int4 symmetric block 32 (MatMulNBits)",
    }
    int8_nbits_kernel = (f"8-bit MatMulNBits block 32 on the per-channel grid, accuracy_level {INT8_NBITS_LEVEL} "
                         "(activations int8 per block at run time)")

    accuracy_levels = ACCURACY_LEVELS

    def __init__(self, *, threads: int = 1, accuracy_level: int | None = None) -> None:
        super().__init__(threads=threads, accuracy_level=accuracy_level)
        try:
            import onnxruntime  # noqa: F401
        except ImportError:
            raise MissingDependencyError("onnxruntime-cpu: needs onnxruntime (pip install onnxruntime)") from None

    def kernel(self, bits: int, *, nbits: bool = False) -> str:
        k = super().kernel(bits, nbits=nbits)
        return f"{k}, accuracy_level {self.accuracy_level or 0}" if bits == 4 and k else k

    def info(self) -> dict[str, Any]:
        import onnxruntime as ort

        return {"name": self.name, "version": ort.__version__, "provider": "CPUExecutionProvider"}

    def session(self, path: str | Path) -> Any:
        """An inference session with intra-op threads pinned to ``threads``."""
        from nas.runtime.session import cpu_session

        return cpu_session(path, threads=self.threads)

    def prepare(self, module, inputs, *, bits, output_names=("output",), dynamic_axes=None, int8_nbits=()):
        from nas.runtime.onnx import export_module

        axes = dynamic_axes if dynamic_axes is not None else {n: {0: "batch", 1: "sequence"}
                                                               for n in (*inputs, *output_names)}
        with tempfile.TemporaryDirectory() as tmp:
            fp32 = export_module(module, Path(tmp) / "fp32.onnx", inputs=inputs, output_names=output_names,
                                 dynamic_axes=axes)
            return self.runner_for(self._quantized(fp32, bits, Path(tmp) / "quant.onnx", int8_nbits), inputs)

    def prepare_generation(self, model, inputs, *, bits):
        """The generation graph exported by :func:`~nas.runtime.decoder_onnx.export_decoder_onnx` (as ``nas export``
        does: traced at its own shapes, every axis dynamic), quantized as export does, run on ``inputs``."""
        from nas.runtime.decoder_onnx import export_decoder_onnx, int8_nbits_nodes

        with tempfile.TemporaryDirectory() as tmp:
            fp32 = export_decoder_onnx(model, Path(tmp) / "fp32.onnx")
            quant = self._quantized(fp32, bits, Path(tmp) / "quant.onnx", int8_nbits_nodes(bits))
            return self.runner_for(quant, inputs)

    def _quantized(self, fp32: Path, bits: Mapping[str, int], out: Path, int8_nbits: Collection[str]) -> Path:
        from nas.runtime.quantize import quantize_onnx

        quant = {k: b for k, b in bits.items() if b < 32}
        return quantize_onnx(fp32, out, quant, accuracy_level=self.accuracy_level,
                             int8_nbits=int8_nbits) if quant else fp32

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
    int8_nbits_kernel = "int8 weights dequantized to fp32 at load (fp32 nn.Linear)"

    def info(self) -> dict[str, Any]:
        return {"name": self.name, "version": torch.__version__, "provider": "cpu"}

    def prepare(self, module, inputs, *, bits, output_names=("output",), dynamic_axes=None, int8_nbits=()):
        torch.set_num_threads(self.threads)
        m = copy.deepcopy(module).eval()
        mods = dict(m.named_modules())
        packed: dict[int, Any] = {}
        for name, b in bits.items():
            lin = mods.get(name)
            if b == 8 and isinstance(lin, nn.Linear) and name not in int8_nbits:
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


def get_backend(backend: str | BaseLatencyBackend, *, threads: int = 1,
                accuracy_level: int | None = None) -> BaseLatencyBackend:
    """A backend by name (``onnxruntime-cpu``, ``torch-cpu``), or ``backend`` itself if it is one.

    Args:
        backend: a name or an instance (returned as it is).
        threads: intra-op threads.
        accuracy_level: ``MatMulNBits`` accuracy level of int4 weights (``None``: unset).

    Raises:
        ConfigError: unknown name, or an accuracy level the backend cannot run.
    """
    if isinstance(backend, BaseLatencyBackend):
        return backend
    return backend_class(backend)(threads=threads, accuracy_level=accuracy_level)


def backend_class(name: str) -> type[BaseLatencyBackend]:
    """The backend class registered as ``name``.

    Raises:
        ConfigError: unknown name.
    """
    try:
        return _BACKENDS[name]
    except KeyError:
        raise ConfigError(f"runtime: unknown latency backend {name!r}; known: {', '.join(BACKENDS)}") from None
