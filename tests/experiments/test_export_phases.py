"""export_phases: exported tiny-llama folders timed side by side (quick tables), and its argument checks."""

import json

import pytest

from experiments.studies.export_phases import main, parse_folders


def _folder(tmp_path, name, arch):
    import nas
    from nas.export.artifacts import write_artifacts

    space = nas.load_space("tiny-llama")
    sub = nas.derive(nas.Supernet.build(space), space.validate(arch))
    out = tmp_path / name
    out.mkdir()
    write_artifacts(sub, out)
    return out


def test_folder_arguments_are_checked_before_any_measurement(tmp_path):
    with pytest.raises(SystemExit, match="LABEL=FOLDER"):
        parse_folders([str(tmp_path)])
    with pytest.raises(SystemExit, match="no model.quant.onnx"):
        parse_folders([f"a={tmp_path}"])


@pytest.mark.slow
def test_quick_folders_are_timed_in_both_phases_against_the_baseline(tmp_path):
    import nas

    space = nas.load_space("tiny-llama")
    full = {k: (4 if k.endswith(".bits") and k != "embed.bits" else v) for k, v in space.full().items()}
    small = {**full, "layer1.keep": 0}
    a, b = _folder(tmp_path, "full", full), _folder(tmp_path, "small", small)
    with pytest.raises(SystemExit, match="--baseline"):
        main([f"full={a}", "--baseline", "nope", "--quick"])
    stem = tmp_path / "r"
    assert main([f"full={a}", f"small={b}", "--baseline", "full", "--quick", "--threads", "1",
                 "--rounds", "2", "--out", str(stem)]) == 0
    doc = json.loads(stem.with_suffix(".json").read_text())
    rows = {r["label"]: r for r in doc["rows"]}
    for phase in ("ttft_ms", "tpot_ms"):
        assert rows["full"]["phases"][phase]["t1"]["speedup_vs_baseline"] == pytest.approx(1.0)
        s = rows["small"]["phases"][phase]
        assert s["t1"]["median_ms"] > 0 and s["predicted_ms"] > 0
        assert s["raw_error"] == pytest.approx((s["predicted_ms"] - s["t1"]["median_ms"]) / s["t1"]["median_ms"])
        assert s["predicted_ms"] < rows["full"]["phases"][phase]["predicted_ms"]  # a layer fewer, by the table
    md = stem.with_suffix(".md").read_text()
    assert "| small |" in md and "**1 thread**" in md
