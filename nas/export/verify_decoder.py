"""The checks of a decoder export (:mod:`nas.export.generation`), each returning a :class:`~nas.export.verify.Check`.

* ``parity_fp32`` – for every batch×sequence shape a prefill (empty cache,
  padding in the last row) and then one decode step after it (a cache of that
  many tokens), the fp32 graph's logits and presents against the PyTorch
  subnet's ``extend``/``logits``: max abs diff divided by ``max(1, max |PyTorch
  value|)`` ≤ ``tolerance``. Relative to scale because a 30-layer decoder's
  logits reach ±50, where fp32 rounding alone moves them by 1e-4 (torch's own
  cached and uncached forwards differ by 1.3e-4 on SmolLM2); the absolute
  values are recorded per shape and phase;
* ``greedy_fp32`` – greedy generation of ``new_tokens`` tokens on a couple of
  prompts (the chat question and a plain text with a tokenizer, seeded ids
  without), token-identical between :func:`nas.models.generate.greedy_generate`
  and the fp32 graph with its KV cache (:class:`~nas.runtime.decoder_session.DecoderSession`);
* ``metric_quant`` – the task metric of ``model.quant.onnx`` within
  ``metric_tolerance`` points of the subnet at its deployed precision
  (:func:`nas.quant.fake_quantized`: every weight on its grid, the layers'
  linears weight-only as their ``MatMulNBits`` nodes are up to the
  activations' per-block rounding, and the 8-bit LM head computed as
  ``MatMulInteger`` computes it; a folder exported before the layers' int8 became
  8-bit ``MatMulNBits`` runs them as ``MatMulInteger`` too, and they are then
  emulated as such, :func:`integer_layers`); ``forward(ids, mask)`` returns logits (B, T, V).
  Recorded, not gated: the metric of the weight-only fake-quantized subnet (the
  search's view, which differs only in the 8-bit LM head's activations);
* ``generation_latency`` – report only: time to first token and median ms per
  output token of ``model.quant.onnx`` (1 thread, 16-token prompt, 16 tokens);
* ``latency`` – with a latency table: one call in the table's phase (a prefill
  at its shape, or a decode step after its context) re-measured next to its
  prediction (gated only with a tolerance).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TextIO

import numpy as np
import torch
from torch import Tensor, nn

from nas.errors import ConfigError
from nas.export.verify import Check, check_metric, inputs

CHAT_PROMPT = "What is the capital of France?"
TEXT_PROMPT = "Once upon a time, in a small village by the sea,"
NEW_TOKENS = 32


def _log(log: TextIO | None, msg: str) -> None:
    if log is not None:
        print(f"export: {msg}", file=log, flush=True)


def _scaled(got: Sequence[np.ndarray], ref: Sequence[np.ndarray]) -> tuple[float, float]:
    """(max abs diff, that divided by max(1, max |ref|)) over paired arrays."""
    diff = max(float(np.abs(g - r).max()) if r.size else 0.0 for g, r in zip(got, ref))
    scale = max(1.0, max(float(np.abs(r).max()) if r.size else 0.0 for r in ref))
    return diff, diff / scale


@torch.no_grad()
def check_parity_cached(model: Any, sess: Any, vocab: int, *, shapes: Sequence[tuple[int, int]],
                        tolerance: float = 1e-4) -> Check:
    """Prefill at each shape, then one decode step with that cache: graph vs ``model.extend`` (see module docstring)."""
    per_shape: dict[str, dict[str, float]] = {}
    worst = 0.0
    for b, t in shapes:
        ids, mask = inputs(vocab, b, t)
        nxt = torch.randint(1, vocab, (b, 1), generator=torch.Generator().manual_seed(b * 1000 + t))
        hidden, cache = model.extend(ids, mask)
        logits, present = sess.step(ids.numpy(), mask.numpy(), sess.empty_past(b))
        ref = [model.logits(hidden).numpy(), *[x.numpy() for kv in zip(cache.keys, cache.values) for x in kv]]
        pre_abs, pre_rel = _scaled([logits, *present], ref)
        hidden2, cache2 = model.extend(nxt, cache=cache)
        full_mask = torch.cat((mask, torch.ones(b, 1, dtype=mask.dtype)), 1)
        logits2, present2 = sess.step(nxt.numpy(), full_mask.numpy(), present)
        ref2 = [model.logits(hidden2).numpy(), *[x.numpy() for kv in zip(cache2.keys, cache2.values) for x in kv]]
        dec_abs, dec_rel = _scaled([logits2, *present2], ref2)
        per_shape[f"{b}x{t}"] = {"prefill_abs": pre_abs, "prefill": pre_rel,
                                 f"decode_after_{t}_abs": dec_abs, f"decode_after_{t}": dec_rel}
        worst = max(worst, pre_rel, dec_rel)
    ok = worst <= tolerance
    return Check("parity_fp32", ok, worst, tolerance,
                 f"max abs diff / max(1, |logits|) {worst:.3g} {'<=' if ok else '>'} {tolerance:g} over "
                 f"{len(shapes)} prefills and a decode step after each (cache of {', '.join(str(t) for _, t in shapes)})",
                 {"per_shape": per_shape, "relative_to": "max(1, max |PyTorch value|)"})


@torch.no_grad()
def check_greedy(model: Any, sess: Any, prompts: dict[str, list[int]], *, new_tokens: int = NEW_TOKENS,
                 eos_token_id: int | None = None) -> Check:
    """Greedy tokens of the fp32 graph (with its cache) equal PyTorch's on every prompt."""
    from nas.models.generate import greedy_generate

    mismatched, detail = [], {}
    for name, ids in prompts.items():
        x = torch.tensor([ids], dtype=torch.long)
        n = min(new_tokens, model.dims.max_positions - x.shape[1])
        ref = greedy_generate(model, x, n, eos_token_id=eos_token_id)[0, x.shape[1]:].tolist()
        got = sess.generate(x, n, eos_token_id=eos_token_id).new_ids[0].tolist()
        same = next((i for i, (a, c) in enumerate(zip(ref, got)) if a != c), None)
        if got != ref:
            mismatched.append(name)
        detail[name] = {"prompt_tokens": len(ids), "tokens": len(ref), "identical": got == ref,
                        "first_difference": same if got != ref else None, "pytorch": ref, "onnx": got}
    ok = not mismatched
    return Check("greedy_fp32", ok, float(len(mismatched)), 0.0,
                 (f"greedy tokens identical on {len(prompts)} prompts (up to {new_tokens} tokens)" if ok else
                  f"greedy tokens differ on {', '.join(mismatched)}"), {"prompts": detail})


class FakeQuantLogits(nn.Module):
    """``forward(ids, mask) -> logits`` of a decoder subnet at the precision ``model.quant.onnx`` runs it.

    :func:`nas.quant.fake_quantized` puts every weight on its grid; the layers' 8-bit linears stay
    weight-only (8-bit ``MatMulNBits``, :func:`nas.runtime.decoder_onnx.int8_nbits_nodes`), and with
    ``activations`` the tied LM head (``lm_head``, at ``embed.bits``) runs as onnxruntime's dynamic
    int8 (``MatMulInteger``) does when it is 8-bit. ``integer_layers`` (with ``activations``): the layers'
    8-bit linears run as ``MatMulInteger`` too, as in a graph from before 8-bit ``MatMulNBits``.
    """

    def __init__(self, subnet: Any, *, activations: bool = True, integer_layers: bool = False) -> None:
        super().__init__()
        from nas.quant import fake_quantized, int8_pairs_saturate

        self.fq = fake_quantized(subnet, activations=activations and integer_layers)
        self.int8_head = activations and subnet.space.value(subnet.arch, "embed.bits") == 8
        self.saturate = activations and int8_pairs_saturate()
        self.head = nn.Linear(subnet.space.dims.hidden, subnet.space.dims.vocab_size, bias=False)
        self.head.weight = self.fq.model.embed.word.weight
        self._cache: dict[int, tuple[Tensor, Tensor]] = {}

    def forward(self, ids: Tensor, mask: Tensor) -> Tensor:
        from nas.quant import int8_linear

        hidden = self.fq.model(ids, mask)
        if self.int8_head:
            return int8_linear(hidden, self.head, saturate=self.saturate, cache=self._cache)
        return self.head(hidden)


def integer_layers(directory: Path, subnet: Any) -> bool:
    """Whether the folder's ``model.quant.onnx`` runs 8-bit layer linears as ``MatMulInteger`` (exported before
    they became 8-bit ``MatMulNBits``), read from the graph as the manifest's ``applied`` is."""
    from nas.export.artifacts import QUANT, applied_formats, node_labels
    from nas.runtime.onnx import EMBED_NODE

    layers = sorted(n for n in node_labels(subnet) if n != EMBED_NODE)
    return any("MatMulInteger" in a["ops"] for a in applied_formats(directory / QUANT, layers).values())


def greedy_prompts(exported: Any, vocab: int) -> dict[str, list[int]]:
    """The chat question and a plain text when the export has a tokenizer (and template); else two seeded id rows."""
    if exported.meta.get("tokenizer"):
        out = {"text": exported.encode(TEXT_PROMPT)}
        if exported.meta.get("chat_template"):
            out = {"chat": exported.encode(CHAT_PROMPT, chat=True), **out}
        return out
    g = torch.Generator().manual_seed(29)
    return {f"ids[{n}]": torch.randint(1, vocab, (n,), generator=g).tolist() for n in (5, 11)}


def check_generation_latency(exported: Any, vocab: int, *, prompt_tokens: int = 16, new_tokens: int = 16) -> Check:
    """Report only: TTFT and ms/token of the quantized graph on a seeded prompt (no end-of-sequence stop)."""
    n = max(1, min(prompt_tokens, exported.session.max_positions - new_tokens))
    ids = torch.randint(1, vocab, (1, n), generator=torch.Generator().manual_seed(7))
    exported.session.generate(ids, 2)  # warm-up
    g = exported.session.generate(ids, new_tokens)
    return Check("generation_latency", None, g.ttft_ms, None,
                 f"model.quant.onnx, 1 thread: TTFT {g.ttft_ms:.2f} ms for {n} prompt tokens, "
                 f"{g.tpot_ms_median:.2f} ms/token (median of {len(g.step_ms)} decode steps, IQR {g.tpot_ms_iqr:.2f})",
                 {"ttft_ms": g.ttft_ms, "tpot_ms_median": g.tpot_ms_median, "tpot_ms_iqr": g.tpot_ms_iqr,
                  "prompt_tokens": n, "new_tokens": int(g.new_ids.shape[1]), "threads": 1})


def check_phase_latency(directory: Path, subnet: Any, table: Any, *, tolerance: float | None = None,
                        references: int = 0) -> Check:
    """``latency``: one call of ``model.quant.onnx`` in the table's phase — a prefill of ``seq`` tokens (empty
    pasts) or one decode token after ``context`` cached ones — re-measured with the table's backend and
    protocol next to the table's prediction (:func:`nas.export.verify.check_latency`; ``references``: the
    table's models measured alongside, for the reference-normalised error)."""
    from nas.export.artifacts import QUANT
    from nas.export.verify import check_latency
    from nas.latency import latency_ms
    from nas.runtime.decoder_onnx import decoder_bits_by_node, int8_nbits_nodes, step_inputs

    feeds = step_inputs(subnet.model, batch=table.batch, new=table.seq, context=table.context)
    c = check_latency(directory / QUANT, table, latency_ms(table, subnet.space, subnet.arch), subnet.space,
                      tolerance=tolerance, inputs=feeds, references=references)
    what = (f"a {table.phase} call of the generation graph ({table.seq} new tokens after {table.context})"
            + ("" if table.has_head else "; this table prices no LM head, which the graph runs"))
    ok, data = c.ok, {**c.data, "phase": table.phase}
    if int8_nbits_nodes(decoder_bits_by_node(subnet)) and integer_layers(directory, subnet):
        ok, data["comparable"] = None, False  # measured, but against another kernel's prices: not gated
        what += ("; not compared: the graph's 8-bit layers run MatMulInteger (exported before 8-bit MatMulNBits) "
                 "and the table prices 8-bit MatMulNBits; export the subnet again to compare")
    return Check(c.name, ok, c.value, c.limit, f"{c.detail}; {what}", data)


def decoder_checks(directory: Path, subnet: Any, *, shapes: Sequence[tuple[int, int]], tolerance: float,
                   metric_tolerance: float, task_metric: tuple[str, Callable[..., float]] | None = None,
                   log: TextIO | None = None) -> list[Check]:
    """The decoder's checks after ``onnx_checker`` (module docstring), from the folder's files and its subnet.

    The per-phase latency re-measurement follows (:func:`nas.export.latency.latency_checks`)."""
    from nas.export.generation import ExportedDecoder
    from nas.tasks.metric import task_metric as default_task_metric

    model = subnet.model
    vocab = subnet.space.dims.vocab_size
    if any(t >= model.dims.max_positions for _, t in shapes):
        raise ConfigError(f"shapes: a decoder's parity shapes leave room for one decode step; "
                          f"sequences must be < {model.dims.max_positions}")
    fp32 = ExportedDecoder(directory, quant=False)
    checks = [check_parity_cached(model, fp32.session, vocab, shapes=shapes, tolerance=tolerance)]
    _log(log, f"check {checks[-1].name}: {checks[-1].detail}")
    checks.append(check_greedy(model, fp32.session, greedy_prompts(fp32, vocab), eos_token_id=fp32.eos_token_id))
    _log(log, f"check {checks[-1].name}: {checks[-1].detail}")
    quant = ExportedDecoder(directory, quant=True)
    name, metric = task_metric if task_metric is not None else default_task_metric(subnet)
    legacy = integer_layers(directory, subnet)
    c = check_metric(metric, name, FakeQuantLogits(subnet, integer_layers=legacy), quant.session,
                     tolerance_points=metric_tolerance)
    with torch.no_grad():  # the search's view (weights on their grids, activations fp32), recorded
        weight_only = float(metric(FakeQuantLogits(subnet, activations=False)))
    detail = c.detail + f"; weight-only fake quant, report only: {weight_only:.3f}"
    if legacy:
        detail += "; the graph's 8-bit layers run MatMulInteger (an export before 8-bit MatMulNBits), emulated so"
    checks.append(Check(c.name, c.ok, c.value, c.limit, detail,
                        {**c.data, "pytorch_weight_only": weight_only, "integer_layers": legacy}))
    _log(log, f"check {checks[-1].name}: {checks[-1].detail}")
    checks.append(check_generation_latency(quant, vocab))
    _log(log, f"check {checks[-1].name}: {checks[-1].detail}")
    return checks
