"""The decoder benchmark's export_point on tiny-llama: a saved fp32 subnet deployed at int4, absmax or calibrated."""

import numpy as np
import onnx
import torch
from onnx import numpy_helper

import nas
from experiments.studies.benchmark_smollm2_cpu.baselines import with_bits
from experiments.studies.benchmark_smollm2_cpu.measure import export_point


def _scales(folder):
    proto = onnx.load(str(folder / "model.quant.onnx"))
    nbits = [n for n in proto.graph.node if n.op_type == "MatMulNBits"]
    inits = {i.name: i for i in proto.graph.initializer}
    return {n.name: numpy_helper.to_array(inits[n.input[2]]) for n in nbits}


def test_int4_deploys_of_a_saved_subnet_take_calibrated_scales_and_the_saved_grid_is_kept(tmp_path):
    space = nas.load_space("tiny-llama")
    full = nas.derive(nas.Supernet.build(space), space.full())
    full.save(tmp_path / "subnet")
    ids = torch.randint(1, space.dims.vocab_size, (16, 12), generator=torch.Generator().manual_seed(0))
    calibration = (ids, torch.ones_like(ids))
    int4 = {"subnet_dir": str(tmp_path / "subnet"), "arch": with_bits(space, space.full(), "int4"), "deploy": "int4"}
    plain = _scales(export_point(int4, tmp_path / "absmax", accuracy_level=1))
    cal = _scales(export_point(int4, tmp_path / "calibrated", accuracy_level=1, calibration=calibration))
    assert plain.keys() == cal.keys() and plain
    ratio = np.concatenate([(cal[k] / plain[k]).ravel() for k in plain])
    assert ratio.max() <= 1 + 1e-6 and ratio.min() >= 0.5 - 1e-6  # clipped: α in 0.5..1 of absmax/7
    assert (ratio < 1 - 1e-6).any()
    fp32 = {"subnet_dir": str(tmp_path / "subnet"), "arch": dict(space.full()), "deploy": "fp32"}
    folder = export_point(fp32, tmp_path / "fp32", accuracy_level=1, calibration=calibration)
    assert not _scales(folder)  # its own precision: nothing re-quantized
