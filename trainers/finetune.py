"""Distillation fine-tuning of a derived subnet, and evaluation.

Fine-tuning is quantization-aware: each linear is fake-quantized at its
chosen bit-width in the forward pass (straight-through gradient), the word
embeddings stay frozen (already on their grid), and at the end every weight is
snapped back onto its grid, so the subnet still is what its architecture says.

Both run on the device the model is on (batches follow it, :mod:`trainers.devices`);
fine-tuning steps may run under bf16 autocast (CUDA, AMX CPUs: :func:`trainers.devices.bf16_native`),
evaluation always in fp32.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Collection, Mapping
from functools import partial

import torch
from torch import Tensor, nn

from nas.models.transformer import LayerControl, ModelControl
from nas.supernet.derive import Subnet
from nas.quant import clip_int4, fake_quant, quantize_dequantize
from nas.supernet.calibrate import linear_inputs
from nas.tasks.batches import Encoded, batch_indices, length_ordered_chunks
from trainers.devices import module_device, to_device, train_autocast


def qat_control(subnet: Subnet) -> ModelControl:
    """Per kept layer, fake-quantize attention and FFN weights at the subnet's bits."""
    layers = []
    for ld in subnet.model.layer_dims:
        fns = []
        for group in ("attn", "ffn"):
            b = subnet.bits(ld.index, group)
            fns.append(None if b >= 32 else partial(fake_quant, bits=b))
        layers.append(LayerControl(attn_weight=fns[0], ffn_weight=fns[1]))
    return ModelControl(layers=layers)


@torch.no_grad()
def snap_to_grid(subnet: Subnet, int4_importance: Mapping[str, Tensor] | None = None) -> None:
    """Round every attention and FFN weight onto its chosen bit grid (in place); int4 linears named in
    ``int4_importance`` (``{node: input mean squares}`` of the subnet's own model,
    :func:`nas.supernet.calibrate.linear_inputs`) take scales clipped for their output error."""
    for k, ld in enumerate(subnet.model.layer_dims):
        block = subnet.model.layers[k]
        for group, mod in (("attn", block.attn), ("ffn", block.ffn)):
            b = subnet.bits(ld.index, group)
            for name, lin in mod.named_children():
                if not isinstance(lin, nn.Linear):
                    continue
                imp = (int4_importance or {}).get(f"layers.{k}.{group}.{name}") if b == 4 else None
                lin.weight.copy_(quantize_dequantize(lin.weight, b) if imp is None
                                 else clip_int4(lin.weight, imp.to(lin.weight.device)))


def lr_factor(schedule: str, step: int, steps: int) -> float:
    """The learning rate of step ``step`` (0-based) of ``steps``, as a fraction of the peak.

    ``constant``: 1. ``cosine``: linear warm-up over the first 10 % of the steps (at least one),
    then cosine decay that reaches 0 after the last step.

    Example:
        >>> [round(lr_factor("cosine", s, 10), 3) for s in (0, 1, 5, 9)]
        [1.0, 0.976, 0.5, 0.024]
    """
    if schedule == "constant":
        return 1.0
    if schedule != "cosine":
        raise ValueError(f"finetune_schedule: unknown schedule {schedule!r}")
    warm = max(1, steps // 10)
    if step < warm:
        return (step + 1) / warm
    return 0.5 * (1.0 + math.cos(math.pi * (step - warm + 1) / (steps - warm + 1)))


def finetune(subnet: Subnet, task: nn.Module, data: Encoded, *, steps: int, lr: float, batch_size: int, seed: int,
             log_every: int = 25, progress: Callable[[str], None] | None = None,
             autocast: str = "none", schedule: str = "constant",
             calibration: tuple[Tensor, Tensor] | None = None,
             checkpoints: Collection[int] = (), on_checkpoint: Callable[[int], None] | None = None) -> list[float]:
    """Distil into ``subnet`` (and the task head) for ``steps`` steps on the device ``subnet`` is on (``task`` is
    moved there); ``autocast="bf16"`` runs the steps under bf16 autocast where the device computes bf16 natively
    (:func:`trainers.devices.train_autocast`); ``schedule`` shapes the
    learning rate over the steps (:func:`lr_factor`); ``calibration`` (ids, mask): texts whose inputs to each
    linear calibrate the int4 scales when the weights are snapped back onto their grid (None: ``absmax/7``).
    ``on_checkpoint(n)`` runs after the ``n``-th step for each ``n`` in ``checkpoints`` (0 included: before any),
    with the model in eval mode and its weights as trained so far (not yet snapped onto their grid); the
    steps go on afterwards as if it had not run (a budget ladder in one run, under a constant schedule).
    Returns the loss per step."""
    model = subnet.model
    device = module_device(model)
    task.to(device)
    model.train()
    model.embed.word.weight.requires_grad_(False)
    params = [p for p in model.parameters() if p.requires_grad] + list(task.parameters())
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=0.0)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: lr_factor(schedule, s, steps))
    ctl = qat_control(subnet)
    losses = []
    t0 = time.perf_counter()

    def checkpoint(done: int) -> None:
        if on_checkpoint is not None and done in checkpoints:
            model.eval()
            with torch.no_grad():
                on_checkpoint(done)
            model.train()

    checkpoint(0)
    for step in range(steps):
        batch = to_device(data.batch(batch_indices(len(data), batch_size, seed=seed, step=step, salt=3)), device)
        opt.zero_grad(set_to_none=True)
        with train_autocast(device, autocast):
            hidden = model(batch["ids"], batch["mask"], ctl)
            loss = task.loss(task.out(model, hidden, batch, ctl), batch).float()
        loss.backward()
        opt.step()
        sched.step()
        losses.append(loss.item())
        if progress and (step % log_every == 0 or step == steps - 1):
            progress(f"finetune step {step + 1}/{steps} loss {losses[-1]:.4f} ({time.perf_counter() - t0:.0f}s)")
        checkpoint(step + 1)
    model.eval()
    importance = None
    if calibration is not None:
        importance = linear_inputs(model, *(t.to(device) for t in calibration))
    snap_to_grid(subnet, importance)
    return losses


@torch.no_grad()
def evaluate(model: nn.Module, task: nn.Module, data: Encoded, *, batch_size: int = 128) -> float:
    """Mean per-example task score (accuracy or cosine of the pooled embeddings) of ``model`` over ``data``, in fp32 on
    the device ``model`` and ``task`` are on."""
    was = model.training
    model.eval()
    device = module_device(model)
    total = torch.zeros((), device=device)
    for idx in length_ordered_chunks(data.mask, batch_size):
        b = to_device(data.batch(idx), device)
        total += task.score(task.out(model, model(b["ids"], b["mask"]), b), b).sum()
    model.train(was)
    return float(total) / max(len(data), 1)

