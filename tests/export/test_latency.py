"""Export's per-budget latency re-measurement (:mod:`nas.export.latency`)."""

import pytest

import nas
from nas.export.export import verify_export
from nas.export.latency import check_name, measured_latencies, recorded_tables
from nas.export.verify import Check
from nas.latency import latency_ms
from nas.latency.table import load_table
from nas.search import attrs as A


def _check(name, budget, predicted, measured, **extra):
    return Check(name, None, (measured - predicted) / predicted, None, "",
                 {"budget": budget, "predicted_ms": predicted, "median_ms": measured, "iqr_ms": 0.5, **extra})


def test_measured_latencies_per_budget_and_the_request_profile():
    checks = [Check("parity", True, 0.0, 1e-4, ""),
              _check("latency.ttft_ms", "ttft_ms", 100.0, 110.0, phase="prefill", seq=128, context=0),
              _check("latency.tpot_ms", "tpot_ms", 10.0, 9.0, phase="decode", seq=1, context=256)]
    m = measured_latencies(checks, output_tokens=64)
    assert set(m) == {"ttft_ms", "tpot_ms", "request_ms"}
    assert m["ttft_ms"]["measured_ms"] == 110.0 and m["ttft_ms"]["predicted_ms"] == 100.0
    assert m["tpot_ms"]["context"] == 256 and "median_ms" not in m["tpot_ms"]
    # request = TTFT + 64·TPOT: predicted 100 + 640, measured 110 + 576
    assert m["request_ms"] == {"output_tokens": 64, "predicted_ms": 740.0, "measured_ms": 686.0}
    assert "request_ms" not in measured_latencies(checks)  # no request profile


def test_check_names_and_recorded_tables():
    assert check_name("latency_ms", {"latency_ms": 0}) == "latency"
    assert check_name("ttft_ms", {"ttft_ms": 0, "tpot_ms": 0}) == "latency.ttft_ms"
    one = {A.LATENCY_TABLE: {"id": "t", "sha256": "ab"}}
    assert recorded_tables(one) == {"latency_ms": {"id": "t", "sha256": "ab"}}
    two = {**one, "latency_tables": {"tpot_ms": {"id": "d"}, "ttft_ms": {"id": "t"}}}
    assert list(recorded_tables(two)) == ["ttft_ms", "tpot_ms"]  # prefill first, whatever the stored order


@pytest.mark.slow
def test_a_decoder_export_is_measured_in_both_phases(tmp_path):
    from tests.export.test_decoder_export import MIXED, agreement_metric
    from nas.export.artifacts import write_artifacts
    from nas.files import atomic_dir

    sub = nas.derive(nas.Supernet.build(nas.load_space("tiny-llama")), MIXED)
    tables = {"ttft_ms": load_table("tiny-llama.onnxruntime-cpu.t1.b1.s32"),
              "tpot_ms": load_table("tiny-llama.onnxruntime-cpu.t1.b1.c32.decode")}
    with atomic_dir(tmp_path / "out") as tmp:
        write_artifacts(sub, tmp)
        checks = {c.name: c for c in verify_export(tmp, task_metric=agreement_metric(sub), latency_tables=tables,
                                                   references=2)}
    ttft, tpot = checks["latency.ttft_ms"], checks["latency.tpot_ms"]
    assert "latency" not in checks
    assert ttft.data["phase"] == "prefill" and ttft.data["seq"] == 32 and "32 new tokens after 0" in ttft.detail
    assert tpot.data["phase"] == "decode" and tpot.data["context"] == 32 and "1 new tokens after 32" in tpot.detail
    for c in (ttft, tpot):  # the tables' own models measured in the same rounds: drift-free error first, raw beside
        r = c.data["reference_ratio"]
        assert len(c.data["references"]) == 2 and r > 0
        assert c.value == pytest.approx((c.data["predicted_ms"] * r - c.data["median_ms"]) / c.data["median_ms"])
        assert c.data["relative_error"] == pytest.approx((c.data["predicted_ms"] - c.data["median_ms"])
                                                         / c.data["median_ms"])
        assert "reference-normalised (r = " in c.detail and ", raw " in c.detail
    m = measured_latencies(checks.values(), output_tokens=16)
    assert m["ttft_ms"]["normalised_error"] == ttft.value and m["ttft_ms"]["reference_ratio"] > 0
    assert m["request_ms"]["measured_ms"] == pytest.approx(m["ttft_ms"]["measured_ms"] + 16 * m["tpot_ms"]["measured_ms"])
    assert m["ttft_ms"]["predicted_ms"] == pytest.approx(latency_ms(tables["ttft_ms"], sub.space, sub.arch))
