"""``validate_table`` with reference models: the shipped tiny tables (both decoder phases, and tiny-bert), few samples."""

import pytest

import nas.latency.protocol as protocol
from nas.latency.table import load_table
from nas.latency.validate import primary_figures, scatter_plot, validate_table
from tests.latency.test_build_validate import nas

TABLES = ["tiny-llama.onnxruntime-cpu.t1.b1.s32", "tiny-llama.onnxruntime-cpu.t1.b1.c32.decode",
          "tiny-bert.onnxruntime-cpu.t1.b1.s32"]


@pytest.fixture
def measured_calls(monkeypatch):
    """The keys of every ``measure()`` call, and the ``median_ms`` it returned."""
    calls = []
    real = protocol.measure

    def spy(runners, proto, log=None):
        out = real(runners, proto, log=log)
        calls.append({k: v["median_ms"] for k, v in out.items()})
        return out

    monkeypatch.setattr(protocol, "measure", spy)
    return calls


@pytest.mark.parametrize("name", TABLES)
def test_references_are_measured_in_every_group_with_the_subnets(name, measured_calls, tmp_path):
    table = load_table(name)
    rep = validate_table(table, samples=3, seed=1, group=2, rounds=1, references=2)
    assert rep["phase"] == table.phase and rep["primary"] == "normalised"
    refs = rep["references"]
    keys = [f"ref/{m['index']}" for m in refs["models"]]
    assert refs["count"] == 2 and len(keys) == 2
    recorded = {m["index"]: m["measured_ms"] for m in [dict(m, index=i) for i, m in
                                                        enumerate(table.calibration["models"])]}
    assert [m["recorded_ms"] for m in refs["models"]] == [recorded[m["index"]] for m in refs["models"]]
    # two groups (subnets 0-1, then 2), each one measure() call holding its subnets and both references
    assert [sorted(c) for c in measured_calls] == [sorted(["0", "1", *keys]), sorted(["2", *keys])]
    assert [g["subnets"] for g in refs["groups"]] == [[0, 1], [2, 2]]
    for g, call in zip(refs["groups"], measured_calls):
        ratios = sorted(call[k] / m["recorded_ms"] for k, m in zip(keys, refs["models"]))
        assert g["ratio"] == pytest.approx(sum(ratios) / 2)  # the median of two
        assert g["measured_ms"] == [call[k] for k in keys]
    for n, row in enumerate(rep["subnets"]):
        g = refs["groups"][n // 2]
        p, m = row["predicted_ms"], row["measured_ms"]
        assert row["ratio"] == g["ratio"] and m == measured_calls[n // 2][str(n)]
        assert row["error"] == pytest.approx((p - m) / m)
        assert row["normalised_error"] == pytest.approx((p * g["ratio"] - m) / m)
    norm = [abs(r["normalised_error"]) for r in rep["subnets"]]
    assert rep["normalised"]["mape"] == pytest.approx(sum(norm) / 3)
    assert rep["raw"]["mape"] == pytest.approx(sum(abs(r["error"]) for r in rep["subnets"]) / 3)
    assert rep["mape"] == rep["raw"]["mape"]  # the top-level figures stay the raw ones
    assert primary_figures(rep) == ("normalised", rep["normalised"])
    assert scatter_plot(rep, tmp_path / "s.png").read_bytes()[:4] == b"\x89PNG"


def test_without_references_the_raw_figures_are_primary(measured_calls):
    rep = validate_table(load_table(TABLES[2]), samples=2, rounds=1, references=0)
    assert rep["primary"] == "raw" and rep["normalised"] is None and rep["references"] is None
    assert [sorted(c) for c in measured_calls] == [["0", "1"]]
    assert all(r["normalised_error"] is None for r in rep["subnets"])
    assert primary_figures(rep) == ("raw", rep["raw"])


def test_cli_prints_normalised_first_raw_beside_and_the_ratios():
    out = nas("lut", "validate", TABLES[1], "--samples", "2", "--rounds", "1", "--references", "2", "-f", "table")
    lines = out.stdout.splitlines()
    assert lines[0].split()[:3] == ["error", "spearman", "kendall"]
    assert lines[2].startswith("normalised") and lines[3].startswith("raw")
    assert "reference ratio per group (measured/recorded, median of 2 calibration models): " in lines[4]
    js = nas("lut", "validate", TABLES[2], "--samples", "2", "--rounds", "1", "--references", "2")
    import json

    doc = json.loads(js.stdout)
    assert list(doc)[:4] == ["primary", "normalised", "raw", "reference_ratios"]
    assert doc["primary"] == "normalised" and len(doc["reference_ratios"]) == 1 and "spearman" in doc
