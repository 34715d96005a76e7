"""hypervolume_2d on point sets whose areas are worked out by hand."""

import math

import pytest

from experiments.studies.benchmark_minilm_cpu.hypervolume import hypervolume_2d

REF = (0.0, 4.0)  # accuracy 0, latency 4 ms


def test_one_point_is_a_rectangle():
    # [0, 0.5] × [1, 4]: 0.5 · 3
    assert hypervolume_2d([(0.5, 1.0)], REF) == pytest.approx(1.5)


def test_two_points_staircase():
    # fastest (0.6 @ 1 ms) covers latency 1→2 at 0.6; then (0.8 @ 2 ms) covers 2→4 at 0.8: 0.6 + 1.6
    assert hypervolume_2d([(0.8, 2.0), (0.6, 1.0)], REF) == pytest.approx(2.2)


def test_dominated_and_duplicate_points_add_nothing():
    base = hypervolume_2d([(0.8, 2.0), (0.6, 1.0)], REF)
    assert hypervolume_2d([(0.8, 2.0), (0.6, 1.0), (0.5, 3.0), (0.6, 1.0)], REF) == pytest.approx(base)


def test_points_outside_the_reference_box_add_nothing():
    # slower than the reference latency, or not better than the reference accuracy
    assert hypervolume_2d([(0.9, 4.0), (0.9, 5.0), (0.0, 1.0), (-0.1, 1.0)], REF) == 0.0
    assert hypervolume_2d([], REF) == 0.0


def test_reference_accuracy_shifts_the_height():
    # [0.5, 0.8] × [2, 4]: 0.3 · 2
    assert hypervolume_2d([(0.8, 2.0)], (0.5, 4.0)) == pytest.approx(0.6)


def test_faster_point_with_better_accuracy_dominates_all():
    # (0.9 @ 1 ms) dominates (0.8 @ 2 ms): 0.9 · 3
    v = hypervolume_2d([(0.8, 2.0), (0.9, 1.0)], REF)
    assert v == pytest.approx(2.7) and math.isfinite(v)
