"""Verification catches tampered weights: in the ONNX graph, in the safetensors, and through the CLI."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import numpy_helper
from safetensors.torch import load_file, save_file

from nas.errors import ExportError
from nas.export import export_trial, reverify, verify_export
from nas.export.verify import failures

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def exported(smoke_study, tmp_path_factory):
    out = tmp_path_factory.mktemp("verify") / "mixed"
    export_trial(study="smoke", storage=smoke_study.url, trial=smoke_study.numbers["mixed"], out=out,
                 measure_latency=False)
    return out


def _copy(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


def _tamper_onnx(path: Path, node: str, delta: float) -> None:
    """Add ``delta`` to every weight of ``node``'s (fp32) MatMul initializer."""
    model = onnx.load(str(path))
    name = next(n.input[1] for n in model.graph.node if n.name == node)
    init = next(i for i in model.graph.initializer if i.name == name)
    init.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(init) + np.float32(delta), name))
    onnx.save(model, str(path))


def test_untampered_folder_passes(exported):
    _, checks = reverify(exported)
    assert not failures(checks)
    assert {c.name for c in checks} == {"onnx_checker", "parity_fp32", "cosine_quant", "metric_quant", "file_hashes"}


def test_tampered_onnx_weights_fail_parity_and_hashes(exported, tmp_path):
    d = _copy(exported, tmp_path / "t")
    _tamper_onnx(d / "model.onnx", "layers.1.ffn.up", 0.05)  # fp32 in MIXED's fp32 graph
    failed = {c.name: c for c in failures(verify_export(d))}
    assert set(failed) == {"parity_fp32", "file_hashes"}
    assert failed["parity_fp32"].value > 1e-3 and "model.onnx" in failed["file_hashes"].detail


def test_tampered_safetensors_fail_parity(exported, tmp_path):
    d = _copy(exported, tmp_path / "t")
    state = load_file(str(d / "model.safetensors"))
    state["layers.1.ffn.down.weight"] = -state["layers.1.ffn.down.weight"]
    save_file(state, str(d / "model.safetensors"))
    failed = {c.name: c for c in failures(verify_export(d))}
    assert {"parity_fp32", "file_hashes"} <= set(failed)
    assert failed["parity_fp32"].value > 1e-2 and "model.safetensors" in failed["file_hashes"].detail


def test_cli_check_exits_nonzero_naming_the_check(exported, tmp_path):
    d = _copy(exported, tmp_path / "t")
    _tamper_onnx(d / "model.onnx", "layers.1.ffn.up", 0.05)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    r = subprocess.run([sys.executable, "-m", "nas.cli", "export", "--check", str(d)], capture_output=True, text=True,
                       env=env, cwd=ROOT, timeout=300)
    assert r.returncode == 1
    last = r.stderr.strip().splitlines()[-1]
    assert last.startswith("nas: error: check failed: parity_fp32: max abs diff") and "> 0.0001" in last
    assert "Traceback" not in r.stderr


def test_failed_check_aborts_export_without_output(smoke_study, tmp_path, monkeypatch):
    """A check that fails during export (here: a parity bound no float graph meets) leaves no folder."""
    out = tmp_path / "o"
    with pytest.raises(ExportError, match=r"check failed: parity_fp32: max abs diff .* > 1e-30"):
        export_trial(study="smoke", storage=smoke_study.url, trial=smoke_study.numbers["mixed"], out=out,
                     tolerance=1e-30, measure_latency=False)
    assert not out.exists() and list(tmp_path.iterdir()) == []


def test_keep_failed_leaves_the_folder_with_a_failing_manifest(smoke_study, tmp_path):
    import json

    out = tmp_path / "o"
    with pytest.raises(ExportError, match=r"check failed: parity_fp32: .* \(folder kept: .*o\)"):
        export_trial(study="smoke", storage=smoke_study.url, trial=smoke_study.numbers["mixed"], out=out,
                     tolerance=1e-30, measure_latency=False, keep_failed=True)
    m = json.loads((out / "manifest.json").read_text())
    assert m["ok"] is False and m["checks"]["parity_fp32"]["ok"] is False and m["checks"]["cosine_quant"]["ok"]
