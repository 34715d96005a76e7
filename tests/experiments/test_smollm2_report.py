"""The decoder benchmark report's "what limits it" sentences follow the run's points."""

from experiments.studies.benchmark_smollm2_cpu.config import PHASES
from experiments.studies.benchmark_smollm2_cpu.report import limits


def _point(method: str, name: str, accuracy: float) -> dict:
    return {"method": method, "name": name, "key": f"{method}/{name}", "accuracy": accuracy}


def _doc(points: list[dict]) -> dict:
    met = [{"key": f"hv_region_{b}_{o}", "met": True} for b in PHASES for o in ("nsga2", "random")]
    return {
        "points": points,
        "config": {"region": {"accuracy_drop_points": 1.0}, "budget_minutes": 5,
                   "trainer": {"finetune_steps": 96, "distill_text": "items"}},
        "summary": {"accuracy_reference": {"accuracy": 0.584},
                    "targets": [{"key": "tpot_speedup", "met": False}, {"key": "fidelity", "met": True}, *met],
                    "best_quantized": {"name": "full-int4", "accuracy": 0.622},
                    "cost": {"dnas": {"trials": 1, "wall_s": 457.0}}},
    }


FULL = [_point("baselines", "full-fp32", 0.584), _point("baselines", "full-int4", 0.622)]
SEARCHED = [_point("dnas", "trial-00000", 0.351), _point("random", "trial-00001", 0.318)]


def test_accuracy_limit_names_the_pruned_baselines_the_same_steps_kept_within_range():
    text = limits(_doc([*FULL, _point("baselines", "depth12-int4", 0.624), _point("baselines", "width0.5-int4", 0.345),
                        *SEARCHED]))[0]
    assert "96 distillation steps (`distill_text: items`)" in text
    assert "enough for the pruned baselines baselines/depth12-int4 to stay within 1 pt" in text
    assert "width0.5" not in text.split("Points within")[0] and "seeded with the pruned structures" in text
    assert "too few" not in text


def test_accuracy_limit_blames_the_steps_when_no_pruned_point_stays_within_range():
    text = limits(_doc([*FULL, _point("baselines", "depth12-int4", 0.50), *SEARCHED]))[0]
    assert "too few to recover a pruned decoder" in text and "a longer distillation" in text
    assert "Points within 1 pt: baselines/full-int4." in text
