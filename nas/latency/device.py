"""Device fingerprint: CPU model, the ISA flags that change kernel choice, core count."""

from __future__ import annotations

import hashlib
import json
import os
import platform
from pathlib import Path
from typing import Any

# Flags that select different MatMul/quantized kernels in onnxruntime (MLAS) and torch.
ISA_FLAGS = (
    "sse4_2", "avx", "avx2", "fma", "f16c", "avx512f", "avx512bw", "avx512vl", "avx512_vnni", "avx512_bf16",
    "avx512_fp16", "avx_vnni", "amx_tile", "amx_int8", "amx_bf16", "asimd", "asimddp", "sve", "i8mm",
)


def parse_cpuinfo(text: str) -> tuple[str, list[str]]:
    """``(model name, ISA flags of interest)`` from the text of ``/proc/cpuinfo`` (first CPU)."""
    model, flags = "", set()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key = key.strip().lower()
        if key in ("model name", "processor name", "cpu model") and not model:
            model = value.strip()
        elif key in ("flags", "features") and not flags:
            flags = set(value.split())
    return model, [f for f in ISA_FLAGS if f in flags]


def fingerprint(cpu: str, isa: list[str], cores: int) -> str:
    """First 12 hex digits of sha256 over the CPU model, ISA flags and core count."""
    key = json.dumps({"cpu": cpu, "isa": sorted(isa), "cores": cores}, sort_keys=True)
    return hashlib.sha256(key.encode()).hexdigest()[:12]


def device_info(cpuinfo: str | Path = "/proc/cpuinfo") -> dict[str, Any]:
    """This machine's ``{"cpu", "isa", "cores", "machine", "fingerprint"}``."""
    try:
        text = Path(cpuinfo).read_text()
    except OSError:
        text = ""
    cpu, isa = parse_cpuinfo(text)
    cpu = cpu or platform.processor() or platform.machine()
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return {"cpu": cpu, "isa": isa, "cores": cores, "machine": platform.machine(),
            "fingerprint": fingerprint(cpu, isa, cores)}
