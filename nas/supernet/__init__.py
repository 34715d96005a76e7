"""Supernet (Gumbel-softmax over width, depth and bits), importance ordering and derive()."""

from nas.supernet.derive import Subnet, derive, load_subnet
from nas.supernet.gumbel import gumbel_softmax, tau
from nas.quant import fake_quant, quantize_dequantize
from nas.supernet.supernet import Supernet, calibration_batch

__all__ = [
    "Subnet", "Supernet", "calibration_batch", "derive", "fake_quant", "gumbel_softmax",
    "load_subnet", "quantize_dequantize", "tau",
]
