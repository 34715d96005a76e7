"""experiments/studies/calibration_forms.py: the precision split and the fits (no measurement)."""

import random

import numpy as np
import pytest

from experiments.studies.calibration_forms import design, fit, precision_parts, report, scores
from nas.latency import latency_ms, load_table
from nas.spaces import load_space
from tests.search.fixtures import tiny_table


def test_precision_parts_sum_to_the_raw_prediction(tmp_path):
    space, table = load_space("tiny-bert"), load_table(tiny_table(tmp_path / "t.json"))
    rng = random.Random(0)
    for _ in range(20):
        a = space.sample(rng)
        parts = precision_parts(table, space, a)
        assert parts.sum() == pytest.approx(latency_ms(table, space, a))  # the fixture table has no calibration
        bits = {space.value(a, "embed.bits")} | {space.value(a, f"layer{i}.{k}.bits")
                                                   for i in space.kept_layers(a) for k in ("attn", "ffn")}
        assert {b for b, v in zip((32, 16, 8, 4), parts[1:]) if v > 0} == bits


def test_per_precision_fit_recovers_per_bit_scales():
    rng = np.random.default_rng(0)
    parts = np.column_stack([np.full(40, 0.3), rng.uniform(0, 5, (40, 4))])
    y = parts[:, 1:] @ np.array([1.0, 1.1, 1.8, 0.9]) + 0.3 - 0.2
    coef = fit(design("per_precision", parts), y)
    assert coef == pytest.approx([1.0, 1.1, 1.8, 0.9, 0.1], abs=1e-9)
    affine = design("affine", parts) @ fit(design("affine", parts), y)
    s_aff, s_pp = scores(affine, y, np.ones(40, bool), 0.1), scores(design("per_precision", parts) @ coef, y,
                                                                     np.ones(40, bool), 0.1)
    assert s_pp["mape"] < 1e-9 < s_aff["mape"] and s_pp["all_within"] == 1.0
    md = report({"device": {"cpu": "x", "fingerprint": "f"}, "table": "t", "measured": "now", "seed": 1,
                 "points": 40, "front_points": 40, "bench": "b", "bench_finished": "then", "within": 0.1,
                 "rows": [{"models": 40, "form": "per_precision", "coef": list(coef), "loo_mape": 0.0, **s_pp}]})
    assert "| 40 | per_precision | 1.000, 1.100, 1.800, 0.900, 0.100 |" in md and "a_32, a_16, a_8, a_4, c" in md
