"""End to end on tiny-llama: build a prefill and a decode table with real kernels, validate, show and drift them."""

import json

import pytest

from nas.latency.predictor import Predictor
from nas.latency.table import check_phase, load_table, required_keys
from nas.spaces import load_space
from tests.latency.test_build_validate import nas

FAST = ["--rounds", "2", "--repeats", "3", "--warmup", "1", "--remeasure", "0", "--max-noisy", "1.0",
        "--calibration-samples", "4"]
PHASES = {"prefill": ["--seq", "8"], "decode": ["--context", "8"]}
pytestmark = pytest.mark.slow  # subprocess builds and validations with real kernels: minutes on a loaded 2-core box


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    folder = tmp_path_factory.mktemp("lut")
    out = {}
    for phase, shape in PHASES.items():
        path = folder / f"{phase}.json"
        res = nas("lut", "build", "tiny-llama", "--phase", phase, *shape, *FAST, "--out", str(path))
        out[phase] = path, res
    return out


@pytest.mark.parametrize("phase", PHASES)
def test_build_writes_a_table_of_the_phase_with_the_head(built, phase):
    path, res = built[phase]
    assert f"wrote {path}: 30 entries" in res.stdout and "[30/30] prepared" in res.stderr
    table = load_table(path)
    space = load_space("tiny-llama")
    table.check_space(space)
    check_phase(table, phase)
    assert sorted(table.entries) == required_keys(space, head=True) and table.has_head
    assert (table.phase, table.seq, table.context) == (("prefill", 8, 0) if phase == "prefill" else ("decode", 1, 8))
    assert table.accuracy_level == 4 and table.to_dict()["schema"] == 2
    e = table.entries["ffn:width=64:bits=4"]
    assert e["accuracy_level"] == 4 and "MatMulNBits" in e["kernel"] and "accuracy_level 4" in e["kernel"]
    assert "accuracy_level" not in table.entries["ffn:width=64:bits=8"]
    # a decoder's int8 layers run 8-bit MatMulNBits, as export writes them; the LM head MatMulInteger
    assert all("8-bit MatMulNBits" in table.entries[k]["kernel"] for k in ("ffn:width=64:bits=8", "attn:heads=4:bits=8"))
    assert "MatMulInteger" in table.entries["head:bits=8"]["kernel"]
    assert table.calibration["samples"] == 4
    full = space.full()
    pred = Predictor(table, space)
    assert pred.latency_ms(full) > 0 and table.ms("head:bits=32") > 0


@pytest.mark.parametrize("phase", PHASES)
def test_validate_measures_the_phase(built, phase, tmp_path):
    path, _ = built[phase]
    report = tmp_path / "report.json"
    res = nas("lut", "validate", str(path), "--samples", "2", "--seed", "1", "--rounds", "2", "-f", "json",
              "--out", str(report))
    figures = json.loads(res.stdout)
    assert -1 <= figures["spearman"] <= 1 and figures["mape"] >= 0
    full = json.loads(report.read_text())
    assert (full["phase"], full["context"], full["accuracy_level"]) == (
        (phase, 0 if phase == "prefill" else 8, 4))
    assert len(full["subnets"]) == 2 and all(r["measured_ms"] > 0 for r in full["subnets"])


def test_show_and_drift_of_a_decode_table(built):
    path, _ = built["decode"]
    out = nas("lut", "show", str(path))
    assert "tiny-llama/onnxruntime-cpu/t1/b1/c8.decode" in out.stdout
    assert "phase decode: 1 token after 8 cached × batch 1; int4 accuracy_level 4; LM head priced" in out.stdout
    res = nas("lut", "drift", str(path), "--rounds", "1", "-f", "json")
    report = json.loads(res.stdout)
    assert len(report["models"]) == 4 and all(m["now_ms"] > 0 for m in report["models"])


def test_bad_phase_requests_are_one_line(tmp_path):
    out = nas("lut", "build", "tiny-bert", "--phase", "decode", "--context", "8", "--out", str(tmp_path / "x.json"),
              check=False)
    assert out.returncode == 1 and out.stderr.startswith("nas: error: phase: decode needs a decoder")
    assert len(out.stderr.strip().splitlines()) == 1
    out = nas("lut", "build", "tiny-llama", "--phase", "decode", "--out", str(tmp_path / "x.json"), check=False)
    assert out.returncode == 1 and "context: a decode table needs the cached tokens" in out.stderr
    assert not list(tmp_path.iterdir())
