"""``manifest.json``: what was exported, from which trial, and the proof that it checks out.

Fields::

    schema, nas_version, created          format and provenance
    study, storage, trial, on_front, rule what was picked, how (storage password hidden)
    objectives                            the trial's quality, latency_ms (ttft_ms, tpot_ms, request_ms), size_mb
    space, arch, arch_summary, layers     the architecture (labels as keys)
    size                                  params and bytes at the chosen bit-widths
    hf                                    whether transformers can load it (and why not)
    nodes                                 {node: {label, bits, applied}} of model.quant.onnx
    checks                                {name: {ok, value, limit, detail, ...}}
    latency_table                         the trial's table as recorded (id, path, sha256, ...), and the one the
                                          latency check used: sha256, resolved_path, resolved_by, environment mismatches
    latency_tables                        a trial priced per phase: the same per budget (ttft_ms, tpot_ms)
    latency                               {budget: {predicted_ms, measured_ms, iqr_ms, relative_error, table, phase,
                                          seq, context, threads, ...}} of model.quant.onnx re-measured with each table's
                                          protocol; request_ms (predicted and measured) with a request profile
    versions                              python, torch, onnx, onnxruntime, transformers, optuna
    files                                 {relative path: sha256} of every other file in the folder
    ok                                    every check passed
"""

from __future__ import annotations

import json
import platform
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any

from nas.errors import ExportError
from nas.files import sha256_file, write_text_atomic

MANIFEST = "manifest.json"
MANIFEST_SCHEMA = 1
_PACKAGES = ("torch", "onnx", "onnxruntime", "transformers", "optuna", "safetensors", "numpy")


def versions() -> dict[str, str]:
    from nas.version import __version__

    out = {"nas": __version__, "python": platform.python_version()}
    for p in _PACKAGES:
        try:
            out[p] = metadata.version(p)
        except metadata.PackageNotFoundError:
            out[p] = "not installed"
    return out


def file_hashes(directory: str | Path) -> dict[str, str]:
    """sha256 of every file under ``directory`` except the manifest, by relative path."""
    directory = Path(directory)
    return {
        str(p.relative_to(directory)): sha256_file(p)
        for p in sorted(directory.rglob("*")) if p.is_file() and p.name != MANIFEST
    }


def now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def write_manifest(directory: str | Path, manifest: dict[str, Any]) -> Path:
    path = Path(directory) / MANIFEST
    write_text_atomic(path, json.dumps(manifest, indent=1, default=str))
    return path


def read_manifest(directory: str | Path) -> dict[str, Any]:
    path = Path(directory) / MANIFEST
    if not path.is_file():
        raise ExportError(f"manifest: {path} not found (not an exported folder)")
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise ExportError(f"manifest: {path} is not valid JSON: {e.msg}") from None
    if data.get("schema") != MANIFEST_SCHEMA:
        raise ExportError(f"manifest: {path}: unknown schema {data.get('schema')!r}")
    return data
