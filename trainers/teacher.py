"""The teacher: the uncompressed model plus a classification head, cached on disk.

The backbone is the pretrained model itself (frozen), so its pooled embeddings
of the examples a run uses are computed once; the head is a linear layer
trained full-batch (Adam) on those embeddings of the train split. Embeddings
(train and eval examples), head and test quality are cached as
``teacher.safetensors`` + ``teacher.json`` in ``$NAS_CACHE_DIR/teacher/<key>``
(default ``~/.cache/nas``), where ``key`` hashes every input: model and space
hash, data-file sha256 and size, example counts, ``max_length``, seed and head
steps. A later run with the same inputs reuses it. The embeddings are computed in
fp32 on the ``device`` given (no autocast: the cache serves every trial, whatever it
trains on) and stored on the CPU.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

from nas.files import atomic_dir
from nas.models.sources import LoadedModel
from nas.models.transformer import TransformerModel, mean_pool
from nas.tasks.batches import Encoded, length_ordered_chunks
from trainers.devices import module_device, to_device

TEACHER_SCHEMA = 1


def cache_root() -> Path:
    return Path(os.environ.get("NAS_CACHE_DIR") or Path.home() / ".cache" / "nas")


@dataclass
class Teacher:
    """Cached teacher outputs: pooled embeddings, the head, and its test quality."""

    key: str
    train_emb: Tensor  # (n_train, hidden)
    eval_emb: Tensor  # (n_eval, hidden)
    head_weight: Tensor  # (classes, hidden)
    head_bias: Tensor  # (classes,)
    accuracy: float  # of the head on the eval examples
    reused: bool = False

    def logits(self, emb: Tensor) -> Tensor:
        return emb @ self.head_weight.T + self.head_bias


def teacher_key(inputs: dict) -> str:
    return hashlib.sha256(json.dumps(inputs, sort_keys=True).encode()).hexdigest()[:16]


def backbone(loaded: LoadedModel) -> TransformerModel:
    """The frozen uncompressed model."""
    model = TransformerModel(loaded.dims)
    model.load_state_dict(loaded.state)
    for p in model.parameters():
        p.requires_grad_(False)
    return model.eval()


@torch.no_grad()
def pooled_embeddings(model: torch.nn.Module, data: Encoded, *, batch_size: int = 128,
                      progress: Callable[[str], None] | None = None, what: str = "") -> Tensor:
    """Mean-pooled last hidden states of every example (length-bucketed batches), computed on ``model``'s device,
    returned on the CPU."""
    out: Tensor | None = None
    device = module_device(model)
    chunks = length_ordered_chunks(data.mask, batch_size)
    for k, idx in enumerate(chunks):
        b = to_device(data.batch(idx), device)
        pooled = mean_pool(model(b["ids"], b["mask"]), b["mask"]).float().cpu()
        if out is None:
            out = torch.zeros(len(data), pooled.shape[-1])
        out[idx] = pooled
        if progress and (k + 1) % 20 == 0:
            progress(f"teacher: embedded {min((k + 1) * batch_size, len(data))}/{len(data)} {what}")
    assert out is not None
    return out


def train_head(emb: Tensor, labels: Tensor, num_classes: int, *, steps: int, seed: int,
               lr: float = 1e-2, weight_decay: float = 1e-4) -> tuple[Tensor, Tensor]:
    """A linear head fitted full-batch with Adam on fixed embeddings (pure, deterministic)."""
    g = torch.Generator().manual_seed(seed)
    w = (torch.randn(num_classes, emb.shape[1], generator=g) * 0.01).requires_grad_(True)
    b = torch.zeros(num_classes, requires_grad=True)
    opt = torch.optim.Adam([w, b], lr=lr, weight_decay=weight_decay)
    for _ in range(steps):
        opt.zero_grad()
        torch.nn.functional.cross_entropy(emb @ w.T + b, labels).backward()
        opt.step()
    return w.detach(), b.detach()


def load_or_train_teacher(
    *,
    loaded: LoadedModel,
    train: Encoded,
    evals: Encoded,
    num_classes: int,
    inputs: dict,
    steps: int,
    seed: int,
    progress: Callable[[str], None] | None = None,
    device: torch.device | str = "cpu",
) -> Teacher:
    """Load the teacher cached under ``inputs`` or build and cache it.

    Args:
        loaded: the pretrained model.
        train, evals: the train examples the run uses and the evaluation examples.
        num_classes: classes of the head.
        inputs: everything the teacher depends on (hashed into the cache key).
        steps, seed: head training.
        device: where the backbone embeds the examples (the head trains on the CPU).
    """
    key = teacher_key({**inputs, "steps": steps, "seed": seed, "schema": TEACHER_SCHEMA})
    folder = cache_root() / "teacher" / key
    cached = _load(folder, key, len(train), len(evals))
    if cached is not None:
        if progress:
            progress(f"teacher: reusing cache {folder}")
        return cached
    model = backbone(loaded).to(device)
    train_emb = pooled_embeddings(model, train, progress=progress, what="train")
    eval_emb = pooled_embeddings(model, evals, progress=progress, what="eval")
    w, b = train_head(train_emb, train.labels, num_classes, steps=steps, seed=seed)
    acc = float(((eval_emb @ w.T + b).argmax(-1) == evals.labels).float().mean())
    if progress:
        progress(f"teacher: head trained ({steps} steps), eval accuracy {acc:.4f}")
    t = Teacher(key, train_emb, eval_emb, w, b, acc)
    _save(folder, t, inputs)
    return t


def _load(folder: Path, key: str, n_train: int, n_eval: int) -> Teacher | None:
    from safetensors.torch import load_file

    meta_p, weights = folder / "teacher.json", folder / "teacher.safetensors"
    if not (meta_p.is_file() and weights.is_file()):
        return None
    try:
        meta = json.loads(meta_p.read_text())
        s = load_file(str(weights))
    except Exception:  # a corrupt cache entry is rebuilt, never trusted
        return None
    if meta.get("key") != key or s["train_emb"].shape[0] != n_train or s["eval_emb"].shape[0] != n_eval:
        return None
    return Teacher(key, s["train_emb"], s["eval_emb"], s["head_weight"], s["head_bias"], float(meta["accuracy"]),
                   reused=True)


def _save(folder: Path, t: Teacher, inputs: dict) -> None:
    from safetensors.torch import save_file

    with atomic_dir(folder) as tmp:
        save_file({"train_emb": t.train_emb.contiguous(), "eval_emb": t.eval_emb.contiguous(),
                   "head_weight": t.head_weight.contiguous(), "head_bias": t.head_bias.contiguous()},
                  str(tmp / "teacher.safetensors"))
        meta = {"schema": TEACHER_SCHEMA, "key": t.key, "accuracy": t.accuracy, "inputs": inputs}
        (tmp / "teacher.json").write_text(json.dumps(meta, indent=1))
