"""End to end on tiny-bert: build a table with real kernels, validate it, show it (few entries, fast)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from nas.errors import LatencyTableError
from nas.latency.table import load_table, required_keys
from nas.spaces import load_space

ROOT = Path(__file__).resolve().parents[2]
FAST = ["--seq", "16", "--rounds", "2", "--repeats", "3", "--warmup", "1", "--remeasure", "0",
        "--max-noisy", "1.0", "--calibration-samples", "4"]


def nas(*args, check=True):
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1"}
    out = subprocess.run([sys.executable, "-m", "nas.cli", *args], capture_output=True, text=True, env=env)
    if check and out.returncode:
        raise AssertionError(f"nas {' '.join(args)} failed:\n{out.stderr[-3000:]}")
    return out


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    path = tmp_path_factory.mktemp("lut") / "tiny.json"
    out = nas("lut", "build", "tiny-bert", *FAST, "--out", str(path))
    return path, out


def test_build_writes_a_complete_table_with_provenance(built):
    path, out = built
    assert f"wrote {path}" in out.stdout
    assert "[1/28] prepared" in out.stderr and "round 2/2" in out.stderr  # progress lines
    table = load_table(path)
    space = load_space("tiny-bert")
    table.check_space(space)
    assert sorted(table.entries) == required_keys(space)
    assert table.runtime["name"] == "onnxruntime-cpu" and table.runtime["version"]
    assert (table.threads, table.batch, table.seq) == (1, 1, 16)
    assert table.device["fingerprint"] and table.device["cores"] >= 1
    assert table.protocol["rounds"] == 2 and table.protocol["repeats"] == 3
    e = table.entries["ffn:width=64:bits=4"]
    assert e["n"] == 6 and e["median_ms"] > 0 and "MatMulNBits" in e["kernel"]
    cal = table.calibration
    assert cal["samples"] == 4 and len(cal["models"]) == 4 and cal["fit_mape"] >= 0
    assert [p.name for p in path.parent.iterdir()] == ["tiny.json"]


def test_validate_prints_the_figures_and_a_plot(built, tmp_path):
    path, _ = built
    png = tmp_path / "scatter.png"
    report = tmp_path / "report.json"
    out = nas("lut", "validate", str(path), "--samples", "3", "--seed", "1", "--rounds", "2", "-f", "json",
              "--plot", str(png), "--out", str(report))
    figures = json.loads(out.stdout)
    for k in ("spearman", "kendall", "mape", "within_10pct"):
        assert k in figures
    assert -1 <= figures["spearman"] <= 1 and 0 <= figures["within_10pct"] <= 1 and figures["mape"] >= 0
    full = json.loads(report.read_text())
    assert len(full["subnets"]) == 3
    for row in full["subnets"]:
        assert row["error"] == pytest.approx((row["predicted_ms"] - row["measured_ms"]) / row["measured_ms"])
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_show_and_mismatch_errors(built, tmp_path):
    path, _ = built
    out = nas("lut", "show", str(path))
    assert "tiny-bert/onnxruntime-cpu/t1/b1/s16" in out.stdout and "attn:heads=4:bits=8" in out.stdout
    d = json.loads(path.read_text())
    d["runtime"]["version"] = "0.0.1"
    other = tmp_path / "other.json"
    other.write_text(json.dumps(d))
    warned = nas("lut", "show", str(other))
    assert "runtime.version" in warned.stderr  # a warning, still exit 0
    strict = nas("lut", "show", str(other), "--strict", check=False)
    assert strict.returncode == 1 and strict.stderr.startswith("nas: error:") and "runtime.version" in strict.stderr
    d["space"]["hash"] = "0" * 16
    other.write_text(json.dumps(d))
    wrong = nas("lut", "validate", str(other), "--samples", "2", check=False)
    assert wrong.returncode == 1 and "space hash" in wrong.stderr and len(wrong.stderr.strip().splitlines()) == 1
    other.write_text(path.read_text()[:100])
    corrupt = nas("lut", "show", str(other), check=False)
    assert corrupt.returncode == 1 and "corrupt or truncated" in corrupt.stderr


def test_bad_build_input_is_one_line(tmp_path):
    out = nas("lut", "build", "tiny-bert", "--runtime", "tflite", "--seq", "16", "--out", str(tmp_path / "x.json"), check=False)
    assert out.returncode == 1 and "runtime: unknown latency backend 'tflite'" in out.stderr
    out = nas("lut", "build", "tiny-bert", "--threads", "0", "--out", str(tmp_path / "x.json"), check=False)
    assert out.returncode == 1 and "threads" in out.stderr
    assert not list(tmp_path.iterdir())


def test_torch_backend_builds_a_complete_table():
    from nas.latency.builder import build_table
    from nas.latency.protocol import Protocol

    space = load_space("tiny-bert")
    table = build_table(space, backend="torch-cpu", seq=8, calibration_samples=3,
                        protocol=Protocol(warmup=1, rounds=2, repeats=2, remeasure=0, max_noisy_fraction=1.0))
    assert table.runtime["name"] == "torch-cpu"
    table.check_space(space)
    assert "quantized::linear_dynamic" in table.entries["attn:heads=2:bits=8"]["kernel"]


def test_torch_backend_runs_int8_nbits_linears_on_their_weights_in_fp32():
    """torch-cpu has no blocked weight-only int8 kernel: such linears run fp32 nn.Linear, the others its dynamic int8."""
    import torch

    from nas.latency.backends import TorchCPUBackend

    m = torch.nn.Sequential(torch.nn.Linear(64, 32)).eval()
    x = torch.randn(4, 64, generator=torch.Generator().manual_seed(0))
    be = TorchCPUBackend()
    with torch.no_grad():
        ref = m(x)
    assert torch.equal(be.prepare(m, {"x": x}, bits={"0": 8}, int8_nbits=["0"])(), ref)
    dynamic = be.prepare(m, {"x": x}, bits={"0": 8})()
    # x86 CPUs without VNNI multiply u8 x s8 with int16 pair sums that saturate (nas.quant.int8_pairs_saturate
    # probes onnxruntime's kernel; torch's uses the same instruction): 0.38 off a 1.79 output on the AVX2 EPYC.
    from nas.quant import int8_pairs_saturate

    atol = 0.5 if int8_pairs_saturate() else 0.05
    assert not torch.equal(dynamic, ref) and torch.allclose(dynamic, ref, atol=atol)
    assert be.kernel(8, nbits=True) == be.int8_nbits_kernel != be.kernel(8)


def test_drift_remeasures_the_calibration_models_and_recalibrates(built, tmp_path):
    path, _ = built
    out = tmp_path / "re.json"
    res = nas("lut", "drift", str(path), "--rounds", "2", "--recalibrate", str(out), "-f", "json")
    report = json.loads(res.stdout)
    table, new = load_table(path), load_table(out)
    assert [m["arch"] for m in report["models"]] == [m["arch"] for m in table.calibration["models"]]
    assert all(m["now_ms"] > 0 for m in report["models"])
    assert report["q1"] <= report["median_ratio"] <= report["q3"]
    assert new.entries == table.entries  # only the calibration moves
    assert [m["measured_ms"] for m in new.calibration["models"]] == [m["now_ms"] for m in report["models"]]
    assert new.calibration["recalibrated"]["previous"]["scale"] == table.calibration["scale"]
    res = nas("lut", "drift", str(path), "--rounds", "2")  # human form: one row per model and a verdict
    assert "now/then median" in res.stdout and len(report["models"]) == 4


def test_drift_without_calibration_models_is_a_typed_error(built, tmp_path):
    path, _ = built
    d = json.loads(Path(path).read_text())
    d["calibration"].pop("models")
    bad = tmp_path / "nocal.json"
    bad.write_text(json.dumps(d))
    res = nas("lut", "drift", str(bad), check=False)
    assert res.returncode == 1 and "calibration.models" in res.stderr


def test_drift_with_an_unparsable_calibration_model_names_it(built, tmp_path):
    path, _ = built
    d = json.loads(Path(path).read_text())
    d["calibration"]["models"][1]["arch"] = "L0 H2 Fx A8 M8 E32"
    bad = tmp_path / "badarch.json"
    bad.write_text(json.dumps(d))
    res = nas("lut", "drift", str(bad), check=False)
    assert res.returncode == 1 and "cannot re-derive 'L0 H2 Fx A8 M8 E32'" in res.stderr


def test_calibration_models_measured_among_other_entries_give_the_drift_report(built):
    """The runners of ``nas lut drift``'s models run in any interleaved measurement; the report reads their stats."""
    from nas.latency.drift import calibration_runners, drift_report
    from nas.latency.protocol import Protocol, measure

    path, _ = built
    table = load_table(path)
    runners, rows = calibration_runners(table)
    assert list(runners) == [str(n) for n in range(4)] and [r["arch"] for r in rows] == [
        m["arch"] for m in table.calibration["models"]]
    assert all(r["then_ms"] == m["measured_ms"] for r, m in zip(rows, table.calibration["models"]))
    other = {"other/busy": lambda: sum(range(20000))}  # an entry that is not a calibration model
    stats = measure({**{f"cal/{k}": r for k, r in runners.items()}, **other},
                    Protocol(warmup=1, rounds=2, repeats=2, remeasure=0, max_noisy_fraction=1.0))
    report = drift_report(table, rows, {k.removeprefix("cal/"): v for k, v in stats.items() if k.startswith("cal/")},
                          clock="wall")
    assert [m["now_ms"] for m in report["models"]] == [stats[f"cal/{n}"]["median_ms"] for n in range(4)]
    ratios = sorted(m["now_ms"] / m["then_ms"] for m in report["models"])
    assert report["median_ratio"] == pytest.approx((ratios[1] + ratios[2]) / 2)
    with pytest.raises(LatencyTableError, match="not measured: 3"):
        drift_report(table, rows, {str(n): stats[f"cal/{n}"] for n in range(3)}, clock="wall")
