"""The task head saved with a subnet: round trip, and typed errors for damaged files."""

from __future__ import annotations

import pytest
import torch

import nas
from nas.errors import ModelError
from nas.supernet.head import HEAD_FILE, TaskHead, load_head

LABELS = ("a", "b", "c")


def _head(hidden: int) -> TaskHead:
    g = torch.Generator().manual_seed(0)
    return TaskHead(task="t", labels=LABELS, weight=torch.randn(3, hidden, generator=g), bias=torch.randn(3, generator=g),
                    max_length=16, n_eval=7)


def test_subnet_saves_and_loads_its_head(tmp_path):
    space = nas.load_space("tiny-bert")
    sub = nas.derive(nas.Supernet.build(space), space.full())
    sub.head = _head(space.dims.hidden)
    back = nas.load_subnet(sub.save(tmp_path / "s"))
    assert (tmp_path / "s" / HEAD_FILE).is_file()
    assert back.head.labels == LABELS and back.head.max_length == 16 and back.head.n_eval == 7
    assert torch.equal(back.head.weight, sub.head.weight) and torch.equal(back.head.bias, sub.head.bias)
    pooled = torch.randn(4, space.dims.hidden)
    assert torch.allclose(back.head.logits(pooled), pooled @ sub.head.weight.T + sub.head.bias)


def test_subnet_without_head_loads_with_none(tmp_path):
    space = nas.load_space("tiny-bert")
    back = nas.load_subnet(nas.derive(nas.Supernet.build(space), space.full()).save(tmp_path / "s"))
    assert back.head is None and not (tmp_path / "s" / HEAD_FILE).exists()


def test_head_shape_must_fit_labels():
    with pytest.raises(ModelError, match=r"head: weight \(2, 8\) / bias \(3,\) do not fit 3 labels"):
        TaskHead(task="t", labels=LABELS, weight=torch.zeros(2, 8), bias=torch.zeros(3), max_length=8, n_eval=1)


def test_corrupt_or_foreign_head_is_a_typed_error(tmp_path):
    space = nas.load_space("tiny-bert")
    sub = nas.derive(nas.Supernet.build(space), space.full())
    sub.head = _head(space.dims.hidden + 1)
    d = sub.save(tmp_path / "s")
    with pytest.raises(ModelError, match=rf"head: .* has hidden size {space.dims.hidden + 1}, the subnet {space.dims.hidden}"):
        nas.load_subnet(d)
    (d / HEAD_FILE).write_bytes(b"garbage")
    with pytest.raises(ModelError, match=r"head: .*head.safetensors is corrupt"):
        load_head(d / HEAD_FILE)


SAVE_TWICE = """
import sys, torch, nas
from nas.supernet.head import TaskHead
space = nas.load_space("tiny-bert")
sub = nas.derive(nas.Supernet.build(space), space.full())
g = torch.Generator().manual_seed(0)
sub.head = TaskHead(task="t", labels=("a", "b", "c"), weight=torch.randn(3, space.dims.hidden, generator=g),
                    bias=torch.randn(3, generator=g), max_length=16, n_eval=7)
for k in range(3):
    sub.save(f"{sys.argv[1]}/{k}")
"""


def test_saved_subnet_and_head_are_byte_identical_across_processes(tmp_path):
    """Same subnet and head -> same bytes: safetensors' writer orders metadata keys by a per-call random hash."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    for seed in ("1", "2"):
        env = {**os.environ, "PYTHONHASHSEED": seed, "PYTHONPATH": str(root), "HF_HUB_OFFLINE": "1"}
        subprocess.run([sys.executable, "-c", SAVE_TWICE, str(tmp_path / seed)], check=True, env=env)
    dirs = [tmp_path / s / str(k) for s in ("1", "2") for k in range(3)]
    for name in ("model.safetensors", "subnet.json", HEAD_FILE):
        blobs = {(d / name).read_bytes() for d in dirs}
        assert len(blobs) == 1, f"{name}: {len(blobs)} different byte strings from 6 saves"
    back = load_head(dirs[0] / HEAD_FILE)
    assert back.labels == LABELS and back.max_length == 16 and back.n_eval == 7
