"""What a SmolLM2 user would do instead of searching: quantize the full model, or prune it uniformly.

* ``full`` – the pretrained model as is (the distillation teacher), deployed at each precision:
  ``fp32``; ``int8`` as ``nas export`` writes it (the layers 8-bit ``MatMulNBits``, the embedding and
  LM head ``MatMulInteger``: llama.cpp's Q8_0 layout); ``int8-dynamic`` (onnxruntime's
  ``quantize_dynamic`` alone: every linear ``MatMulInteger``, activations per tensor; the full model
  only, :data:`FULL_ONLY`: it is what a user quantizing it with onnxruntime alone runs); ``int4``
  (every linear ``MatMulNBits`` at the tables' accuracy level, the embedding and LM head int8: the
  "just run it at 4 bits" path). Each is an architecture of the space (:func:`with_bits`), so the
  tables predict every baseline too, but ``int8-dynamic``, whose kernel no table prices.
* ``depth<k>`` – depth pruning as in Shortened-LLaMA: block importance is the perplexity of
  calibration text (train items: prompt + true word) with one layer dropped (:func:`block_importance`);
  the ``k`` skippable layers whose removal hurts least are dropped, then the model is distilled with
  the DNAS trials' fine-tuning budget.
* ``width<f>`` – uniform width pruning as in Minitron: heads (in whole KV groups) and FFN neurons,
  importance-ordered by the supernet (:mod:`nas.supernet.importance`), cut to the same fraction ``f``
  in every layer (:func:`width_arch`), then distilled alike.

Every pruned structure is distilled once in fp32 and deployed at every precision of ``deploys``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from experiments.studies.benchmark_minilm_cpu.context import Trained
from experiments.studies.benchmark_minilm_cpu.methods import MethodRun, cpu_seconds
from nas.errors import ConfigError
from nas.spaces.summary import format_arch

FULL = "full"
DEPLOY_BITS = {"fp32": (32, 32), "int8": (8, 8), "int8-dynamic": (8, 8), "int4": (4, 8)}  # (linears, embedding + LM head)
DYNAMIC = "int8-dynamic"  # deployed by onnxruntime's quantize_dynamic alone (measure.export_point)
FULL_ONLY = (DYNAMIC,)


def with_bits(space: Any, arch: Mapping[str, int], deploy: str) -> dict[str, int]:
    """``arch`` with every precision set for ``deploy`` (:data:`DEPLOY_BITS`); the embedding keeps its
    nearest option at or above the asked bits.

    Raises:
        ConfigError: an unknown deploy, or a linear that cannot take the asked bits.
    """
    if deploy not in DEPLOY_BITS:
        raise ConfigError(f"deploys: unknown deploy {deploy!r}; one of {', '.join(DEPLOY_BITS)}")
    linear, embed = DEPLOY_BITS[deploy]
    out = dict(arch)
    for label in out:
        if not label.endswith(".bits"):
            continue
        opts = space.options(label)
        want = embed if label == "embed.bits" else linear
        if want in opts:
            out[label] = want
        elif label == "embed.bits":
            out[label] = min(b for b in opts if b >= want)
        else:
            raise ConfigError(f"deploys: {deploy}: {label} has no {want}-bit option ({list(opts)})")
    return space.validate(out)


def width_arch(space: Any, fraction: float) -> dict[str, int]:
    """The full architecture with every layer's heads and FFN at the largest option ≤ ``fraction`` of the
    widest (the smallest option when none is), all layers kept, fp32."""
    arch = dict(space.full())
    for label in arch:
        if label.endswith(".heads") or label.endswith(".ffn"):
            opts = space.options(label)
            fit = [o for o in opts if o <= fraction * max(opts) + 1e-9]
            arch[label] = max(fit) if fit else min(opts)
    return space.validate(arch)


def skippable(space: Any) -> list[int]:
    """Layers the space may drop (``layer<i>.keep`` offers 0)."""
    return [i for i in range(space.dims.num_layers) if 0 in space.options(f"layer{i}.keep")]


def depth_arch(space: Any, dropped_ppl: Sequence[float], k: int) -> tuple[dict[str, int], list[int]]:
    """The full architecture without the ``k`` skippable layers whose removal raised perplexity least.

    Returns:
        ``(arch, dropped layer indices)``.

    Raises:
        ConfigError: fewer than ``k`` skippable layers.
    """
    can = skippable(space)
    if k > len(can):
        raise ConfigError(f"depth_drops: {k} layers asked, the space may drop {len(can)}")
    drop = sorted(sorted(can, key=lambda i: (dropped_ppl[i], i))[:k])
    arch = dict(space.full())
    for i in drop:
        arch[f"layer{i}.keep"] = 0
    return space.validate(arch), drop


@torch.no_grad()
def block_importance(model: Any, forward: Callable[..., Any], ids: torch.Tensor, mask: torch.Tensor) -> dict[str, Any]:
    """Shortened-LLaMA block importance: ``{"full": perplexity, "dropped": [perplexity with layer i dropped]}``.

    ``model`` is a :class:`nas.models.transformer.TransformerModel`; its layers are restored afterwards.
    """
    from nas.tasks.lm_eval import perplexity

    full = list(model.layers)
    out = {"full": perplexity(forward, ids, mask), "dropped": []}
    try:
        for i in range(len(full)):
            model.layers = torch.nn.ModuleList(full[:i] + full[i + 1:])
            out["dropped"].append(perplexity(forward, ids, mask))
    finally:
        model.layers = torch.nn.ModuleList(full)
    return out


def calibration_importance(bench: Any, n_items: int) -> dict[str, Any]:
    """:func:`block_importance` of the pretrained model on ``n_items`` train items (prompt + true word)."""
    from nas.supernet.derive import derive
    from nas.tasks.batches import tokenizer_for
    from nas.tasks.definitions import answered
    from nas.tasks.lm_eval import lm_forward

    items = bench.recipe.data.choice_items("train", n_items)
    ids, mask = tokenizer_for(bench.loaded, 64)([answered(it) for it in items])
    model = derive(bench.net, bench.space.full()).model
    model.eval()
    return {**block_importance(model, lm_forward(model), ids, mask), "items": len(items)}


def structures(bench: Any, depth_drops: Sequence[int], width_fractions: Sequence[float],
               importance: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """``{structure name: {"arch", "detail"}}``: ``full``, ``depth<k>``, ``width<f>`` (fp32 architectures)."""
    space = bench.space
    out = {FULL: {"arch": dict(space.full()), "detail": "the pretrained model"}}
    for k in depth_drops:
        arch, drop = depth_arch(space, importance["dropped"], int(k))
        out[f"depth{k}"] = {"arch": arch, "detail": f"layers {drop} dropped (least important)"}
    for f in width_fractions:
        out[f"width{f:g}"] = {"arch": width_arch(space, float(f)), "detail": f"every layer's heads and FFN at ≤ {f:g}"}
    return out


def run_baselines(bench: Any, work: Path, say: Callable[[str], None], *, depth_drops: Sequence[int],
                  width_fractions: Sequence[float], deploys: Sequence[str], calibration_items: int) -> MethodRun:
    """Block importance, then every structure distilled (``full`` is not: it is the teacher), each at every deploy."""
    run = MethodRun("baselines")
    t0, c0 = time.perf_counter(), cpu_seconds()
    say(f"baselines: block importance on {calibration_items} calibration items ({bench.space.dims.num_layers} layers)")
    imp = calibration_importance(bench, calibration_items)
    run.extra["block_importance"] = imp
    for name, s in structures(bench, depth_drops, width_fractions, imp).items():
        if name == FULL:
            from nas.supernet.derive import derive

            tr = Trained(s["arch"], derive(bench.net, s["arch"]), None, 0.0)
        else:
            say(f"baselines: distilling {name} ({s['detail']}; {bench.config.finetune_steps} steps)")
            tr = bench.train_arch(s["arch"])
        run.compute_s += tr.seconds
        files = bench.save(tr, work / "baselines" / name)
        for deploy in deploys:
            if deploy in FULL_ONLY and name != FULL:
                continue
            arch = with_bits(bench.space, s["arch"], deploy)
            priced = deploy != DYNAMIC
            run.candidates.append({
                "method": "baselines", "name": f"{name}-{deploy}", "structure": name, "deploy": deploy,
                "detail": s["detail"], "arch": arch, "arch_summary": format_arch(bench.space, arch),
                "subnet_dir": files["subnet_dir"], "predicted": bench.predicted(arch) if priced else None,
                "predicted_ms": bench.predicted_ms(arch) if priced else None, "train_s": tr.seconds})
    run.wall_s, run.cpu_s = time.perf_counter() - t0, cpu_seconds() - c0
    return run
