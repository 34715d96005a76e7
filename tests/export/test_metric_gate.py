"""The metric_quant gate: a tolerance in points, and for per-item accuracies a paired (McNemar) test."""

from __future__ import annotations

import math

import onnx
import pytest
import torch
from onnx import TensorProto, helper

from nas.export.verify import PAIRED_ALPHA, check_metric, paired_p_value
from nas.runtime.session import cpu_session
from nas.tasks.metric import ItemAccuracy

IDS = torch.tensor([list(range(12))]).T  # 12 items, one token each: ids 0 … 11
MASK = torch.ones_like(IDS)


def _shifted_session(shift: float):
    """An ONNX graph returning ``float(input_ids) + shift`` (the mask is an unused input)."""
    nodes = [helper.make_node("Cast", ["input_ids"], ["f"], to=TensorProto.FLOAT),
             helper.make_node("Add", ["f", "shift"], ["output"])]
    graph = helper.make_graph(
        nodes, "shifted",
        [helper.make_tensor_value_info("input_ids", TensorProto.INT64, ["b", "t"]),
         helper.make_tensor_value_info("attention_mask", TensorProto.INT64, ["b", "t"])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, ["b", "t"])],
        [helper.make_tensor("shift", TensorProto.FLOAT, [], [shift])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    return cpu_session(model.SerializeToString())


def _identity(ids, mask):
    return ids.float()


# item i is right when the model's value for it lies in [0, 10): the identity gets items 0 … 9
ACCURACY = ItemAccuracy(lambda forward: ((x := torch.as_tensor(forward(IDS, MASK))[:, 0]) >= 0) & (x < 10))


def test_paired_p_value_by_hand():
    assert paired_p_value(0, 0) == 1.0
    assert paired_p_value(3, 3) == 1.0
    assert paired_p_value(4, 2) == pytest.approx(2 * (1 + 6 + 15) / 64)  # d = 6, P(B ≤ 2) = 22/64
    assert paired_p_value(10, 0) == pytest.approx(2 / 1024)
    assert paired_p_value(0, 10) == paired_p_value(10, 0)
    with pytest.raises(ValueError, match="counts"):
        paired_p_value(-1, 2)


def test_item_accuracy_is_the_mean_of_its_items():
    assert ACCURACY(_identity) == pytest.approx(100 * 10 / 12)
    assert ACCURACY.correct(_identity).tolist() == [True] * 10 + [False] * 2


def test_gap_from_flips_both_ways_passes_as_chance():
    # ONNX computes ids − 4: right on items 4 … 11; 4 items right only in PyTorch, 2 only in ONNX
    c = check_metric(ACCURACY, "toy", _identity, _shifted_session(-4.0), tolerance_points=1.0)
    assert c.value == pytest.approx(100 * (8 - 10) / 12)
    assert (c.data["only_pytorch"], c.data["only_onnx"], c.data["items"]) == (4, 2, 12)
    assert c.data["p_value"] == pytest.approx(paired_p_value(4, 2)) and c.data["p_value"] >= PAIRED_ALPHA
    assert c.ok and c.data["within_chance"] and "within chance" in c.detail


def test_systematic_loss_fails():
    # ONNX computes ids + 100: every item wrong, 10 right only in PyTorch, none only in ONNX
    c = check_metric(ACCURACY, "toy", _identity, _shifted_session(100.0), tolerance_points=1.0)
    assert not c.ok and not c.data["within_chance"]
    assert (c.data["only_pytorch"], c.data["only_onnx"]) == (10, 0)
    assert c.data["p_value"] < PAIRED_ALPHA


def test_plain_metric_keeps_the_tolerance_only():
    def mean_value(forward):  # no per-item results: the tolerance alone decides
        return float(torch.as_tensor(forward(IDS, MASK)).mean())

    assert check_metric(mean_value, "toy", _identity, _shifted_session(0.5), tolerance_points=1.0).ok
    c = check_metric(mean_value, "toy", _identity, _shifted_session(-4.0), tolerance_points=1.0)
    assert not c.ok and math.isclose(c.value, -4.0, abs_tol=1e-6) and "p_value" not in c.data
