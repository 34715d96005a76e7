"""Device placement of training (trainers.devices) on the CPU: the code paths a GPU trial takes, minus the GPU."""

import contextlib
import re

import pytest
import torch

from nas.errors import DeviceError
from nas.models import load_model
from trainers import SearchConfig, search_once
from trainers.devices import module_device, to_device, train_autocast
from trainers.search import make_task
from trainers.teacher import backbone
from tests.trainers.test_search import make_search


def test_module_device_and_to_device():
    assert module_device(torch.nn.Linear(2, 2)) == torch.device("cpu")
    assert module_device(torch.nn.ReLU()) == torch.device("cpu")  # no parameters: the CPU
    batch = to_device({"ids": torch.ones(2, 3, dtype=torch.long), "mask": torch.ones(2, 3)}, "cpu")
    assert set(batch) == {"ids", "mask"} and all(v.device.type == "cpu" for v in batch.values())


def test_autocast_is_bf16_where_the_device_computes_bf16_natively(monkeypatch):
    from trainers import devices

    assert isinstance(train_autocast(torch.device("cuda:0"), "none"), contextlib.nullcontext)
    with pytest.warns(UserWarning) if not torch.cuda.is_available() else contextlib.nullcontext():
        ctx = train_autocast("cuda:0", "bf16")
    assert isinstance(ctx, torch.autocast) and ctx.fast_dtype == torch.bfloat16
    assert devices.train_dtype("cuda:0", "bf16") == "bf16" and devices.train_dtype("cuda:0", "none") == "fp32"
    # the CPU: bf16 with AMX tiles only (AVX512-BF16 alone and AVX2 CPUs train in fp32), never with "none"
    for isa, want in ((frozenset({"avx2", "avx512f", "avx512_bf16", "amx_tile", "amx_bf16"}), "bf16"),
                      (frozenset({"avx2", "avx512f", "avx512_bf16"}), "fp32"), (frozenset({"avx2", "fma"}), "fp32")):
        monkeypatch.setattr(devices, "_cpu_isa", lambda isa=isa: isa)
        assert devices.train_dtype("cpu", "bf16") == want and devices.train_dtype("cpu", "none") == "fp32"
        ctx = train_autocast("cpu", "bf16")
        if want == "bf16":
            assert isinstance(ctx, torch.autocast) and ctx.device == "cpu" and ctx.fast_dtype == torch.bfloat16
            with ctx:  # a matmul in the context runs in bf16
                assert (torch.ones(2, 2) @ torch.ones(2, 2)).dtype == torch.bfloat16
        else:
            assert isinstance(ctx, contextlib.nullcontext)
    assert devices.bf16_native("cpu", frozenset({"amx_bf16"})) and not devices.bf16_native("cpu", frozenset())


@pytest.mark.parametrize("name", ["tiny-bert", "tiny-llama"])
def test_a_search_step_on_an_explicit_device(name, tiny_table):
    search, _ = make_search(name, tiny_table(name))
    search = type(search)(search.net, search.task, search.predictor, search.target, search.wdata, search.adata,
                          search.config, device="cpu")
    assert search.device == module_device(search.net) == torch.device("cpu")
    loss = search.weight_step(0, 1.0)
    details = search.arch_step(1, 1.0)
    assert loss == loss and details["expected_ms"] > 0  # finite
    assert all(p.grad is None or p.grad.device == search.device for p in search.net.arch_parameters())


def test_the_decoder_teacher_moves_with_its_task(tiny_table):
    cfg = SearchConfig(space="tiny-llama", latency_table=tiny_table("tiny-llama"), task="wordnet-definitions")
    teacher = backbone(load_model("tiny-llama"))
    task = make_task(cfg, teacher.dims.hidden, 0, teacher=teacher)
    assert task.to(torch.float64) is task  # .to() reaches the teacher (dtype stands in for a device here)
    assert all(p.dtype == torch.float64 for p in teacher.parameters())
    task.to(torch.float32)
    assert all(p.dtype == torch.float32 for p in teacher.parameters()) and task.teacher is teacher


def test_search_once_asking_cuda_without_it_is_refused_before_compute(tiny_table, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    lines = []
    build = f"torch {torch.__version__} (CUDA {torch.version.cuda or 'none'})"
    with pytest.raises(DeviceError, match=re.escape(build)):
        search_once(SearchConfig(space="tiny-bert", latency_table=tiny_table()), progress=lines.append, device="cuda")
    assert lines == []
