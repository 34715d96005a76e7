"""Benchmark: time to first token and time per output token of SmolLM2-135M exported for generation.

The full architecture of ``smollm2-135m`` at uniform precisions — fp32; int8 everywhere as ``nas export``
writes it (the layers 8-bit ``MatMulNBits``, the embedding/LM head ``MatMulInteger``); ``int8-dynamic``,
onnxruntime's dynamic int8 alone (every linear ``MatMulInteger``, activations per tensor); int4 linears
(``MatMulNBits`` at the accuracy level the shipped SmolLM2 tables priced, which export writes) with an
int8 embedding/LM head — and any
``--export DIR`` folders of ``nas export`` (their ``model.quant.onnx``), derived and exported with the generation graph
(past keys/values in and out, :mod:`nas.runtime.decoder_onnx`), then run greedily with the KV
cache (:class:`nas.runtime.decoder_session.DecoderSession`, 1 thread): a ``--prompt-tokens``
prompt (seeded token ids) and ``--new-tokens`` generated. The graphs are measured interleaved,
``--rounds`` rounds in a fresh random order each; TTFT is the median over rounds, TPOT the median
over every decode step of every round, each with its IQR.

    PYTHONPATH=. .venv/bin/python -m experiments.studies.generation_latency --rounds 5 [--export DIR ...]

``--split-precision`` adds the layers quantized with the embedding / LM head in fp32 (``int8-layers``,
``int4-layers``) and the embedding / LM head alone at int8 (``int8-head``). ``--int4-levels 0 1 4`` adds the int4
graph at other ``MatMulNBits`` accuracy levels (``int4-l<N>``; 0 is onnxruntime's default) to see which one
this CPU runs fastest. ``--int4-grids sym asym`` adds the int4 layers on onnxruntime's own grid instead of the
supernet's (``int4-ort-sym``: codes −8..7 with scale absmax/8 per block of 32; ``int4-ort-asym``: min..max per block
with an integer zero point), at the same level: how much of int4's loss is the grid; ``mse`` adds the supernet's own
grid (−7..7, no zero point, the same kernel) with each block's scale clipped to the one of ``absmax·α/7``,
α ∈ 0.50..1.00, that minimises the block's squared error (``int4-mse``); ``wmse`` the same with each input feature's
error weighted by its mean square on calibration text (``int4-wmse``, AWQ's clipping search: ``derive`` with
``int4_importance``, :func:`nas.quant.clip_int4`, then export's writer); ``gptq`` the supernet's
grid reached by GPTQ (``int4-gptq``: input features rounded in order, each error spread over the rest through the
inverse Hessian of 128 × 64 tokens of training glosses); ``offset`` the grid of the GGUF file itself (``Q4_1``:
16 levels from each block's minimum to its maximum, a float scale and offset), exact for SmolLM2's layers, its
offsets added beside the kernel (:func:`nbits_graph`). ``--int8-nbits 0 4`` adds the layers at int8 through ``MatMulNBits`` (8-bit codes, one scale per
block of 32 input features, weight-only at level 0/1, activations quantized per block at level 4) instead of
``MatMulInteger`` (one scale per output channel, activations quantized per tensor at run time), the embedding and LM
head as in ``int8-dynamic``, on onnxruntime's own grid (``int8nb-l<N>``; with ``--split-precision`` also ``int8nb-layers-l<N>``, embedding / LM head
in fp32): whether the int8 layers' error is their activations' per-tensor scale, and what the other kernel costs.
Each graph's next-token predictions are compared with fp32's over ``--glosses``
held-out WordNet glosses (``top1_agreement``: the share of positions whose argmax equals fp32's; numerics, not
task quality), and each graph's perplexity of those glosses; ``--mc-items N`` adds definition → word multiple-choice
accuracy on N held-out items (the SmolLM2 benchmark's scorer).

Writes ``experiments/reports/generation_latency.{json,md}`` (``--out STEM`` elsewhere).
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import random
import shlex
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from experiments.studies.report_files import md_table, write_report

ROOT = Path(__file__).resolve().parents[2]
REPORT = ROOT / "experiments" / "reports" / "generation_latency"


def med_iqr(xs) -> dict:
    q1, med, q3 = np.percentile(xs, [25, 50, 75])
    return {"median": float(med), "iqr": float(q3 - q1), "n": len(xs)}


def next_token_stats(sessions: dict, space, n: int) -> dict[str, dict[str, float]]:
    """Per graph, over the first ``n`` test glosses (64 tokens at most, teacher-forced): ``top1_agreement``, the
    share of next-token positions whose argmax equals the fp32 graph's, and ``perplexity`` of the glosses' own next
    tokens."""
    from tokenizers import Tokenizer

    from nas.models import load_model
    from nas.tasks.definitions import load_definitions

    tok = Tokenizer.from_file(str(load_model(space.model).model_dir / "tokenizer.json"))
    sums = {k: [0.0, 0.0] for k in sessions}
    total = scored = 0
    for d in load_definitions().test[:n]:
        ids = torch.tensor([tok.encode(d.gloss).ids[:64]])
        logits = {k: s.forward(ids, torch.ones_like(ids)) for k, s in sessions.items()}
        total += ids.shape[1]
        scored += ids.shape[1] - 1
        for k, (same, nll) in position_scores(logits, ids, "fp32").items():
            sums[k][0] += same
            sums[k][1] += nll
    return {k: {"top1_agreement": same / max(total, 1), "perplexity": math.exp(nll / max(scored, 1))}
            for k, (same, nll) in sums.items()}


def choice_accuracies(sessions: dict, space, n: int) -> dict[str, float]:
    """Per graph, definition → word multiple-choice accuracy on the first ``n`` held-out items (all four parts of
    speech), scored through the KV cache as the SmolLM2 benchmark scores its points (``lm_eval.choice_scores_cached``)."""
    from nas.models import load_model
    from nas.tasks.batches import tokenizer_for
    from nas.tasks.definitions import load_definitions
    from nas.tasks.lm_eval import choice_scores_cached, correct_of, encode_choices
    from nas.tasks.metric import CHOICE_MAX_TOKENS

    enc = encode_choices(tokenizer_for(load_model(space.model), CHOICE_MAX_TOKENS),
                         load_definitions().choice_items("test", n))
    return {k: float(correct_of(choice_scores_cached(s, enc), enc).float().mean()) for k, s in sessions.items()}


def position_scores(logits: dict[str, torch.Tensor], ids: torch.Tensor, ref: str) -> dict[str, tuple[int, float]]:
    """Per graph, for one sequence ``ids`` (1, T) and its logits (1, T, V): how many of the T positions' argmax
    equal graph ``ref``'s, and the summed negative log-likelihood of the T − 1 next tokens ``ids[1:]``."""
    top = logits[ref].argmax(-1)
    return {k: (int((lg.argmax(-1) == top).sum()),
                float(torch.nn.functional.cross_entropy(lg[0, :-1].float(), ids[0, 1:], reduction="sum")))
            for k, lg in logits.items()}


def ort_grid_graph(fp32: Path, out: Path, bits: dict[str, int], level: int | None, *, layer_bits: int = 8,
                   symmetric: bool = True) -> Path:
    """``fp32`` with its ``layer_bits`` layer MatMuls as ``MatMulNBits`` on onnxruntime's own grid
    (:func:`nas.runtime.quantize.nbits_quantize`, at accuracy ``level``, ``symmetric`` or with a zero point per
    block) and its embedding / LM head as :func:`nas.runtime.quantize.quantize_onnx` writes them."""
    import logging

    import onnx

    from nas.runtime.decoder_onnx import LM_HEAD_NODE
    from nas.runtime.onnx import EMBED_NODE, save_checked
    from nas.runtime.quantize import nbits_quantize, quantize_onnx

    heads = (EMBED_NODE, LM_HEAD_NODE)
    layers = sorted(n for n, b in bits.items() if b == layer_bits and n not in heads)
    logging.disable(logging.WARNING)  # the quantizer logs every tensor on the root logger
    try:
        proto = nbits_quantize(onnx.load(str(fp32)), layers, bits=layer_bits, accuracy_level=level,
                               symmetric=symmetric)
    finally:
        logging.disable(logging.NOTSET)
    rest = {n: b for n, b in bits.items() if n in heads and b < 32}
    if not rest:
        return save_checked(proto, out)
    return quantize_onnx(save_checked(proto, out.with_suffix(".layers.onnx")), out, rest)


def mse_clipped_int4(w: torch.Tensor, alphas=np.linspace(0.5, 1.0, 21)) -> torch.Tensor:
    """``w`` (out × in) on the supernet's int4 grid, each block's scale ``absmax·α/7`` at the α of ``alphas`` with
    the least squared error (α = 1 is :func:`nas.quant.quantize_dequantize`): :func:`nas.quant.clip_int4` with
    every input feature weighted alike."""
    from nas.quant import clip_int4

    return clip_int4(w, torch.ones(w.shape[1]), tuple(float(a) for a in alphas))


def offset_int4(w: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``w`` (N × K) on the grid of the GGUF source (``Q4_1``): per block of ``INT4_BLOCK`` input features, 16
    levels from the block's minimum to its maximum, ``w = d·c + m`` (codes ``c`` 0..15, a float scale ``d`` and
    offset ``m``); weights already on that grid (SmolLM2's layers in the file's own order) come back exactly.
    Returns the codes (N, blocks, INT4_BLOCK), ``d`` and ``m + 8·d`` (N, blocks): ``w = d·(c − 8) + (m + 8·d)``,
    the form :func:`nbits_graph` writes."""
    from nas.quant import INT4_BLOCK

    n_out, k = w.shape
    blocks = w.astype(np.float64).reshape(n_out, k // INT4_BLOCK, INT4_BLOCK)
    lo, hi = blocks.min(-1), blocks.max(-1)
    d = np.where(hi > lo, (hi - lo) / 15, 1.0)
    codes = np.clip(np.round((blocks - lo[..., None]) / d[..., None]), 0, 15).astype(np.uint8)
    return codes, d, lo + 8 * d


def gptq_int4(w: np.ndarray, hessian: np.ndarray, *, damp: float = 0.01, lazy: int = 128
              ) -> tuple[np.ndarray, np.ndarray]:
    """GPTQ (Frantar et al. 2023) onto the supernet's int4 grid: input features quantized in order, each
    one's rounding error spread over the features not yet quantized through the inverse of ``hessian``
    (``Σ x xᵀ`` of the linear's inputs on calibration text, damped by ``damp`` × its mean diagonal); each block of
    ``INT4_BLOCK`` features takes its scale ``absmax/7`` from the weights as updated when the block starts.
    ``w`` is N × K; returns codes −7..7 (N, blocks, INT4_BLOCK) and scales (N, blocks)."""
    from nas.quant import INT4_BLOCK

    w = torch.tensor(w, dtype=torch.float64)
    h = torch.tensor(hessian, dtype=torch.float64).clone()
    n_out, k = w.shape
    dead = torch.diag(h) == 0
    h[dead, dead] = 1
    w[:, dead] = 0
    h += damp * torch.mean(torch.diag(h)) * torch.eye(k, dtype=h.dtype)
    hinv = torch.linalg.cholesky(torch.cholesky_inverse(torch.linalg.cholesky(h)), upper=True)
    codes = torch.zeros(n_out, k, dtype=torch.int8)
    scales = torch.zeros(n_out, k // INT4_BLOCK, dtype=torch.float64)
    for i1 in range(0, k, lazy):
        i2 = min(i1 + lazy, k)
        w1, err1, h1 = w[:, i1:i2].clone(), torch.zeros(n_out, i2 - i1, dtype=w.dtype), hinv[i1:i2, i1:i2]
        for i in range(i2 - i1):
            col = i1 + i
            if col % INT4_BLOCK == 0:
                scale = w1[:, i:i + INT4_BLOCK].abs().amax(-1).clamp(min=1e-12) / 7
                scales[:, col // INT4_BLOCK] = scale
            q = torch.clamp(torch.round(w1[:, i] / scale), -7, 7)
            codes[:, col] = q.to(torch.int8)
            e = (w1[:, i] - q * scale) / h1[i, i]
            w1[:, i:] -= e[:, None] * h1[i, i:][None, :]
            err1[:, i] = e
        w[:, i2:] -= err1 @ hinv[i1:i2, i2:]
    return codes.reshape(n_out, -1, INT4_BLOCK).numpy(), scales.numpy()


def gloss_ids(space, *, sequences: int = 128, tokens: int = 64) -> torch.Tensor:
    """``sequences × tokens`` token ids of the WordNet definitions' training glosses, concatenated one after
    another: the calibration text of ``int4-wmse`` and ``int4-gptq``."""
    from nas.models import load_model
    from nas.tasks.batches import tokenizer_for
    from nas.tasks.definitions import load_definitions

    tok = tokenizer_for(load_model(space.model), tokens)
    train = load_definitions().train
    stream: list[int] = []
    for at in range(0, len(train), 64):
        ids, mask = tok([d.gloss for d in train[at:at + 64]])
        stream += ids[mask.bool()].tolist()
        if len(stream) >= sequences * tokens:
            break
    return torch.tensor(stream[:sequences * tokens]).reshape(sequences, tokens)


def nbits_graph(proto, quantized: dict, level: int | None):
    """``proto`` with each named fp32 MatMul replaced by 4-bit ``MatMulNBits`` (blocks of ``INT4_BLOCK``) holding
    exactly the given ``(codes, scales, offsets)``: codes 0..15 (N, blocks, INT4_BLOCK) read with the kernel's
    implied zero point 8, scales (N, blocks), and ``offsets`` (N, blocks) or None. onnxruntime's ``MatMulNBits``
    has only an integer zero point on its fast path (a float one falls back to dequantizing on every call), so
    float offsets are added exactly beside it: ``Σ_b offset_b·Σ_{j∈b} x_j`` — the input summed per block
    (``Reshape`` + ``ReduceSum``, once per input tensor), times the ``blocks × N`` offsets (``MatMul``), added
    to the kernel's output."""
    from onnx import helper, numpy_helper

    from nas.quant import INT4_BLOCK

    graph = proto.graph
    inits = {i.name: i for i in graph.initializer}
    sums: dict[str, str] = {}
    for node in [n for n in graph.node if n.name in quantized and n.op_type == "MatMul"]:
        codes, scales, offsets = quantized[node.name]
        x, out, name = node.input[0], node.output[0], node.name
        n_out, nb = scales.shape
        graph.initializer.remove(inits[node.input[1]])
        packed = codes[..., 0::2] | (codes[..., 1::2] << 4)
        graph.initializer.extend([numpy_helper.from_array(packed.astype(np.uint8), f"{name}.q4"),
                                  numpy_helper.from_array(scales.astype(np.float32).reshape(-1), f"{name}.q4_scales")])
        y = out if offsets is None else f"{out}.codes"
        new = [helper.make_node("MatMulNBits", [x, f"{name}.q4", f"{name}.q4_scales"], [y], name=f"{name}_Q4",
                                domain="com.microsoft", K=nb * INT4_BLOCK, N=n_out, bits=4, block_size=INT4_BLOCK,
                                **({"accuracy_level": level} if level else {}))]
        if offsets is not None:
            graph.initializer.append(numpy_helper.from_array(np.ascontiguousarray(offsets.T.astype(np.float32)),
                                                             f"{name}.q4_offsets"))
            if x not in sums:
                shape, axis = f"{x}.block_shape", f"{x}.block_axis"
                graph.initializer.extend([numpy_helper.from_array(np.array([0, 0, nb, INT4_BLOCK], np.int64), shape),
                                          numpy_helper.from_array(np.array([-1], np.int64), axis)])
                sums[x] = f"{x}.block_sums"
                new += [helper.make_node("Reshape", [x, shape], [f"{x}.blocks"], name=f"{name}.blocks"),
                        helper.make_node("ReduceSum", [f"{x}.blocks", axis], [sums[x]], name=f"{name}.block_sums",
                                         keepdims=0)]
            new += [helper.make_node("MatMul", [sums[x], f"{name}.q4_offsets"], [f"{out}.offsets"],
                                     name=f"{name}.offsets"),
                    helper.make_node("Add", [y, f"{out}.offsets"], [out], name=f"{name}.add")]
        at = list(graph.node).index(node)
        graph.node.remove(node)
        for j, nd in enumerate(new):
            graph.node.insert(at + j, nd)
    if not any(o.domain == "com.microsoft" for o in proto.opset_import):
        proto.opset_import.append(helper.make_opsetid("com.microsoft", 1))
    return proto


def uniform_arch(space, bits: int, embed_bits: int) -> dict:
    arch = dict(space.full())
    for label in arch:
        if label.endswith(".bits"):
            arch[label] = embed_bits if label == "embed.bits" else bits
    return space.validate(arch)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--prompt-tokens", type=int, default=128)
    ap.add_argument("--new-tokens", type=int, default=32)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--export", nargs="*", default=[], metavar="DIR",
                    help="nas export folders of SmolLM2 subnets, measured alongside (named by their folder)")
    ap.add_argument("--int4-levels", nargs="*", type=int, default=[], metavar="N",
                    help="also int4 at these MatMulNBits accuracy levels (0: onnxruntime's default, 1 fp32, "
                         "2 fp16, 3 bf16, 4 int8)")
    ap.add_argument("--int4-grids", nargs="*", choices=("sym", "asym", "mse", "offset", "gptq", "wmse"), default=[],
                    help="also the int4 layers on onnxruntime's own grid: sym (codes -8..7, scale absmax/8 per "
                         "block), asym (min..max per block, integer zero point); mse: the supernet's grid with "
                         "each block's scale clipped to its least squared error")
    ap.add_argument("--int8-nbits", nargs="*", type=int, default=[], metavar="N",
                    help="also the int8 layers as 8-bit MatMulNBits at these accuracy levels (0-4)")
    ap.add_argument("--split-precision", action="store_true",
                    help="also int8-layers, int4-layers (embedding and LM head fp32) and int8-head (layers fp32)")
    ap.add_argument("--glosses", type=int, default=100, help="held-out glosses for the top-1 agreement with fp32")
    ap.add_argument("--mc-items", type=int, default=0,
                    help="also definition→word multiple-choice accuracy on this many held-out items (0: none)")
    ap.add_argument("--out", default=str(REPORT), help="report stem (default: experiments/reports/generation_latency)")
    a = ap.parse_args()
    for flag, levels in (("--int4-levels", a.int4_levels), ("--int8-nbits", a.int8_nbits)):
        if any(lv not in range(5) for lv in levels):
            raise SystemExit(f"{flag}: each must be 0-4, got {levels}")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    torch.set_num_threads(2)

    import nas
    from nas.export.artifacts import QUANT
    from nas.latency import load_table
    from nas.latency.table import table_accuracy_level
    from nas.runtime.decoder_onnx import decoder_bits_by_node, export_decoder_onnx, int8_nbits_nodes
    from nas.runtime.decoder_session import DecoderSession
    from nas.runtime.quantize import quantize_onnx

    space = nas.load_space("smollm2-135m")
    level = table_accuracy_level(load_table("smollm2-135m.onnxruntime-cpu.t1.b1.s128")) or None
    exports = {Path(d).name: Path(d) / QUANT for d in a.export}
    missing = [str(p) for p in exports.values() if not p.is_file()]
    if missing:
        raise SystemExit(f"--export: no {QUANT} in {missing[0]}")
    net = nas.Supernet.build(space)
    work = Path(tempfile.mkdtemp(prefix="nas-genlat-"))
    graphs: dict[str, Path] = {}
    uniform = [("fp32", 32, 32), ("int8", 8, 8), ("int8-dynamic", 8, 8), ("int4", 4, 8)]
    if a.split_precision:  # which part moves the predictions and the time: the layers or the embedding / LM head
        uniform += [("int8-layers", 8, 32), ("int4-layers", 4, 32), ("int8-head", 32, 8)]
    for name, bits, embed_bits in uniform:
        sub = nas.derive(net, uniform_arch(space, bits, embed_bits))
        fp32 = export_decoder_onnx(sub.model, work / f"{name}.fp32.onnx")
        node_bits = decoder_bits_by_node(sub)
        nbits = [] if name == "int8-dynamic" else int8_nbits_nodes(node_bits)  # as nas export writes it
        graphs[name] = fp32 if name == "fp32" else quantize_onnx(
            fp32, work / f"{name}.onnx", node_bits, accuracy_level=level, int8_nbits=nbits)
        print(f"exported {name}: {graphs[name].stat().st_size / 1e6:.0f} MB", flush=True)
        if name == "int4":
            for grid in dict.fromkeys(a.int4_grids):  # the layers on onnxruntime's own int4 grid instead
                if grid == "mse":  # fp32 layer weights moved onto the clipped grid; quantize_onnx recovers it exactly
                    full = nas.derive(net, uniform_arch(space, 32, embed_bits))  # embedding already on its grid
                    with torch.no_grad():
                        for block in full.model.layers:
                            for lin in (*block.attn.children(), *block.ffn.children()):
                                if isinstance(lin, torch.nn.Linear):
                                    lin.weight.copy_(mse_clipped_int4(lin.weight))
                    graphs["int4-mse"] = quantize_onnx(export_decoder_onnx(full.model, work / "int4-mse.fp32.onnx"),
                                                       work / "int4-mse.onnx", node_bits, accuracy_level=level)
                    continue
                if grid == "wmse":  # the product's path: derive with calibrated int4 scales, then export's writer
                    from nas.supernet.calibrate import linear_inputs

                    stats = linear_inputs(net.model, gloss_ids(space))
                    cal = nas.derive(net, uniform_arch(space, 4, embed_bits), int4_importance=stats)
                    graphs["int4-wmse"] = quantize_onnx(export_decoder_onnx(cal.model, work / "int4-wmse.fp32.onnx"),
                                                        work / "int4-wmse.onnx", decoder_bits_by_node(cal),
                                                        accuracy_level=level)
                    continue
                if grid in ("offset", "gptq"):  # codes and scales written straight into MatMulNBits
                    import onnx

                    from nas.runtime.onnx import save_checked
                    from nas.supernet.calibrate import linear_inputs, linear_nodes

                    # offset: the file's own neuron order (the importance order permutes down_proj's input
                    # features across the file's blocks of 32)
                    src = nas.Supernet.build(space, reorder=False) if grid == "offset" else net
                    full = nas.derive(src, uniform_arch(space, 32, embed_bits))
                    layers = sorted(n for n, b in node_bits.items() if b == 4)
                    linears = linear_nodes(full.model)
                    weights = {n: linears[n].weight.detach().numpy() for n in layers}
                    if grid == "offset":
                        quantized = {n: offset_int4(w) for n, w in weights.items()}
                    else:
                        xx = linear_inputs(full.model, gloss_ids(space), outer=True)
                        print(f"{grid}: quantizing {len(layers)} linears", flush=True)
                        quantized = {}
                        for n, w in weights.items():
                            codes, scales = gptq_int4(w, xx[n].numpy())
                            quantized[n] = ((codes + 8).astype(np.uint8), scales, None)
                    heads = {n: b for n, b in node_bits.items() if b != 4}
                    base = quantize_onnx(export_decoder_onnx(full.model, work / f"int4-{grid}.fp32.onnx"),
                                         work / f"int4-{grid}.heads.onnx", heads)
                    graphs[f"int4-{grid}"] = save_checked(nbits_graph(onnx.load(str(base)), quantized, level),
                                                          work / f"int4-{grid}.onnx")
                    continue
                graphs[f"int4-ort-{grid}"] = ort_grid_graph(fp32, work / f"int4-ort-{grid}.onnx", node_bits, level,
                                                            layer_bits=4, symmetric=grid == "sym")
            for lv in dict.fromkeys(a.int4_levels):
                if lv != (level or 0):
                    graphs[f"int4-l{lv}"] = quantize_onnx(fp32, work / f"int4-l{lv}.onnx", decoder_bits_by_node(sub),
                                                         accuracy_level=lv or None)
        if name in ("int8-dynamic", "int8-layers"):
            stem = "int8nb" if name == "int8-dynamic" else "int8nb-layers"
            for lv in dict.fromkeys(a.int8_nbits):
                graphs[f"{stem}-l{lv}"] = ort_grid_graph(fp32, work / f"{stem}-l{lv}.onnx",
                                                        decoder_bits_by_node(sub), lv or None)
    del net
    graphs.update(exports)
    sessions = {k: DecoderSession(p, threads=a.threads) for k, p in graphs.items()}
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(1, space.dims.vocab_size, (1, a.prompt_tokens), generator=g)
    for s in sessions.values():  # warm-up
        s.generate(ids, 2)
    stats = next_token_stats(sessions, space, a.glosses)
    if a.mc_items:
        for k, acc in choice_accuracies(sessions, space, a.mc_items).items():
            stats[k]["mc_accuracy"] = acc
    ttft: dict[str, list[float]] = {k: [] for k in sessions}
    tpot: dict[str, list[float]] = {k: [] for k in sessions}
    rng = random.Random(0)
    for r in range(a.rounds):
        order = list(sessions)
        rng.shuffle(order)
        for k in order:
            out = sessions[k].generate(ids, a.new_tokens)
            ttft[k].append(out.ttft_ms)
            tpot[k].extend(out.step_ms)
        print(f"round {r + 1}/{a.rounds}: " + ", ".join(f"{k} {ttft[k][-1]:.0f} ms" for k in order), flush=True)
    rows = {k: {"ttft_ms": med_iqr(ttft[k]), "tpot_ms": med_iqr(tpot[k]),
                "file_mb": graphs[k].stat().st_size / 1e6, **stats[k]}
            for k in sessions}
    from nas.latency.device import device_info

    doc = {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "host": platform.processor() or platform.machine(),
           "device": device_info(),
           "loadavg": Path("/proc/loadavg").read_text().split()[:3], "threads": a.threads, "rounds": a.rounds,
           "prompt_tokens": a.prompt_tokens, "agreement_glosses": a.glosses, "mc_items": a.mc_items,
           "new_tokens": a.new_tokens,
           "int4_accuracy_level": level, "int8_nbits_levels": a.int8_nbits, "int4_grids": a.int4_grids,
           "exports": {k: str(v.parent) for k, v in exports.items()},
           "results": rows}
    base = rows["fp32"]
    md = [f"# SmolLM2-135M generation latency ({doc['date']})", "",
          f"Full architecture, onnxruntime CPU, {a.threads} thread(s), prompt {a.prompt_tokens} tokens, "
          f"{a.new_tokens} generated, {a.rounds} interleaved rounds; load average at start {' '.join(doc['loadavg'])}. "
          f"Command: `PYTHONPATH=. .venv/bin/python -m experiments.studies.generation_latency "
          f"{shlex.join(sys.argv[1:])}`.", "",
          f"Host: {doc['device']['cpu']} ({doc['device']['fingerprint']}), {doc['device']['cores']} cores.", "",
          *md_table(["graph", "TTFT median (IQR) ms", "TPOT median (IQR) ms", "TTFT × vs fp32", "TPOT × vs fp32",
                     "file MB", "top-1 = fp32", "perplexity", *(["multiple choice"] if a.mc_items else [])],
                    [[k, f"{v['ttft_ms']['median']:.1f} ({v['ttft_ms']['iqr']:.1f})",
                      f"{v['tpot_ms']['median']:.2f} ({v['tpot_ms']['iqr']:.2f})",
                      f"{base['ttft_ms']['median'] / v['ttft_ms']['median']:.2f}",
                      f"{base['tpot_ms']['median'] / v['tpot_ms']['median']:.2f}", f"{v['file_mb']:.0f}",
                      f"{100 * v['top1_agreement']:.1f} %", f"{v['perplexity']:.1f}",
                      *([f"{100 * v['mc_accuracy']:.1f} %"] if a.mc_items else [])]
                     for k, v in rows.items()]), "",
          f"int4 is `MatMulNBits` at accuracy_level {level} (the shipped SmolLM2 tables' and so what export "
          "writes); `int4-l<N>` the same weights at accuracy level N (0: onnxruntime's default); int4 keeps the "
          "embedding and LM head at int8 (`*-layers`: fp32; `int8-head`: only they are int8). `int8`: as `nas "
          "export` writes it, the layers 8-bit `MatMulNBits` at level 4 on the per-channel grid, the embedding and "
          "LM head `MatMulInteger`; `int8-dynamic`: onnxruntime's `quantize_dynamic` alone (every linear "
          "`MatMulInteger`, activations per tensor). `int8nb-l<N>`: the int8 layers as 8-bit `MatMulNBits` on "
          "onnxruntime's own grid (one scale per block of 32 input features) at accuracy level N. "
          "`int4-ort-sym` / `int4-ort-asym`: the int4 layers on onnxruntime's own grid (`MatMulNBitsQuantizer`: "
          "codes −8..7 at absmax/8 per block of 32 / min..max per block with an integer zero point) instead of "
          "the supernet's (codes −7..7 at absmax/7). `int4-mse`: the supernet's grid with each block's scale clipped to "
          "`absmax·α/7`, α ∈ 0.50..1.00 the least squared error (same kernel); `int4-wmse` the same with each input "
          "feature's error weighted by its mean square on 128 × 64 tokens of training glosses (AWQ's clipping search); "
          "`int4-gptq`: the supernet's grid reached by GPTQ on those tokens' Hessians (damping 0.01, blocks of 32 "
          "scaled as they start); `int4-offset`: the GGUF file's own `Q4_1` grid (16 levels from each block's "
          "minimum to its maximum), exact for SmolLM2's layers, written as `MatMulNBits` (scale, zero point 8) plus "
          "the offsets times the input's block sums (`Reshape`, `ReduceSum`, `MatMul`, `Add` beside each kernel). "
          "`top-1 = fp32`: the "
          "share of next-token positions over the first "
          f"{a.glosses} held-out WordNet glosses whose argmax equals fp32's; perplexity: of those glosses' own "
          "next tokens." + (f" Multiple choice: definition → word accuracy on the first {a.mc_items} held-out items "
                            "(all four parts of speech, chance 25 %), scored through the KV cache as the SmolLM2 "
                            "benchmark scores its points." if a.mc_items else "")
          + "".join(f" `{k}`: `model.quant.onnx` of the export folder `{v.parent}`." for k, v in exports.items())]
    write_report(Path(a.out), doc, "\n".join(md) + "\n")
    print(f"wrote {a.out}.md")


if __name__ == "__main__":
    main()
