"""A classification trial's head travels with its subnet; the export scores real test accuracy with it."""

from __future__ import annotations

import json

import pytest

import nas
from nas.errors import ModelError
from nas.export import export_trial
from nas.search import attrs as A
from tests.export.conftest import FULL_UNIFORM, MIXED, make_study


@pytest.fixture(scope="module")
def head_study(tmp_path_factory):
    return make_study(tmp_path_factory.mktemp("heads"), "heads", {"full_uniform": FULL_UNIFORM, "mixed": MIXED},
                      extra_states=False, heads=True)


def _recorded_quality(study, number):
    import optuna

    t = optuna.load_study(study_name=study.name, storage=study.url).trials[number]
    return t.user_attrs[A.METRICS]["quality_after"]


@pytest.mark.parametrize("key", ["full_uniform", "mixed"])
def test_export_scores_test_accuracy_with_the_trials_head(head_study, tmp_path, key):
    number = head_study.numbers[key]
    out = tmp_path / key
    m = export_trial(study=head_study.name, storage=head_study.url, trial=number, out=out, measure_latency=False)
    metric = m["checks"]["metric_quant"]
    assert metric["metric"] == "wordnet-nouns test accuracy on wordnet test[:300]"
    # the PyTorch subnet's accuracy is exactly what the trial recorded: same head, examples and tokenization
    assert metric["pytorch"] == pytest.approx(_recorded_quality(head_study, number), abs=1e-9)
    assert 100 / 26 < metric["pytorch"] <= 100  # a nearest-class-mean head beats chance on WordNet nouns
    if key == "full_uniform":  # fp32 everywhere: the "quantized" graph is the fp32 one
        assert metric["onnx_quant"] == pytest.approx(metric["pytorch"])
    assert "head.safetensors" in m["files"]
    assert nas.load_subnet(out).head.labels == nas.load_subnet(head_study.root / "heads" / key).head.labels
    assert json.loads((out / "manifest.json").read_text())["checks"]["metric_quant"]["pytorch"] == metric["pytorch"]


def test_replaced_head_fails_the_recorded_sha256(tmp_path):
    study = make_study(tmp_path / "own", "own", {"full": FULL_UNIFORM}, extra_states=False, heads=True)
    head = study.root / "own" / "full" / "head.safetensors"
    data = bytearray(head.read_bytes())
    data[-1] ^= 0xFF
    head.write_bytes(bytes(data))
    with pytest.raises(ModelError, match=r"head_sha256: .*head.safetensors has sha256 \w+…, trial 0 recorded"):
        export_trial(study="own", storage=study.url, trial=0, out=tmp_path / "o")
    head.unlink()
    with pytest.raises(ModelError, match=r"head_sha256: task head of trial 0 not found"):
        export_trial(study="own", storage=study.url, trial=0, out=tmp_path / "o")
