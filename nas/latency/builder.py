"""Build a latency table: measure every entry a space needs, then calibrate on whole models.

Entries are measured on modules cut from a real derived model (layer ``i``
where the choice exists), exported and quantized by the backend, all in one
interleaved measurement (:mod:`nas.latency.protocol`) together with a handful
of whole random subnets whose latencies fit the calibration
(:mod:`nas.latency.calibration`).

Per phase (:mod:`nas.latency.table`): a ``prefill`` table feeds ``seq`` new tokens
with nothing cached; a ``decode`` table (decoders only) one new token after
``context`` cached ones, each attention entry with past keys/values of that
length (:class:`~nas.runtime.decoder_onnx.AttentionStep`). A decoder's table also
prices its tied LM head (``head:bits=B``) over the call's new tokens, and its
calibration models are whole generation graphs (:mod:`nas.runtime.decoder_onnx`,
logits and presents out), one call each: the prompt with empty pasts, or one
token after a ``context``-long cache.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import random
import time
from collections.abc import Callable
from typing import Any, TextIO

import torch

from nas.errors import ConfigError, LatencyTableError
from nas.latency.backends import BaseLatencyBackend, Runner, backend_class, get_backend
from nas.latency.blocks import AttnPart, EmbedPart, FFNPart, HeadPart, OverheadPart, RestPart
from nas.latency.calibration import fit_calibration
from nas.latency.device import device_info
from nas.latency.predictor import raw_by_bits, raw_latency_ms
from nas.latency.protocol import Protocol, measure
from nas.latency.table import (
    DECODE, OVERHEAD, PHASES, PREFILL, REST, LatencyTable, is_decoder, required_keys, table_filename,
)
from nas.models.dims import synthetic_id_high
from nas.spaces.choice import layer_label
from nas.spaces.space import Arch, SearchSpace

__all__ = ["DEFAULT_ACCURACY_LEVEL", "backend_for", "build_table", "calibration_archs", "entry_runners",
           "model_inputs", "model_runner", "precision_anchors", "runner_options", "table_filename"]

DEFAULT_ACCURACY_LEVEL = 4
"""``MatMulNBits`` accuracy level of a table's int4 entries when the build names none (onnxruntime only).

Level 4 (int8 compute, activations quantized per block at run time) runs int4 faster than level 1
(fp32 compute, ``nas export``'s default) in both phases: SmolLM2 shapes, 2-core AVX-512 VNNI EPYC,
onnxruntime 1.32, 1 thread, thread-CPU medians: gated FFN 576→1536 0.067 ms against 0.199 ms at
one token, 5.59 ms against 6.57 ms at 128; LM head 576×49152 0.77 ms against 2.04 ms at one token,
59 ms against 71 ms at 128 (int8 through MatMulInteger: 0.061, 1.76, 1.47 and 19.1 ms; fp32: 0.146, 6.34, 5.25 and 67 ms).
A table records its level (:func:`~nas.latency.table.table_accuracy_level`) so an export can check
that it quantizes the same way (:func:`~nas.latency.table.check_accuracy_level`).
"""


def model_inputs(space: SearchSpace, batch: int, seq: int, *, seed: int = 0) -> dict[str, torch.Tensor]:
    """Fixed ``input_ids`` / ``attention_mask`` (no padding) for measuring."""
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(1, synthetic_id_high(space.dims.vocab_size), (batch, seq), generator=g)
    return {"input_ids": ids, "attention_mask": torch.ones_like(ids)}


def _arch_for(space: SearchSpace, layer: int, **values: int) -> Arch:
    arch = space.full()
    for what, v in values.items():
        label = layer_label(layer, what.replace("_", "."))
        if label in space:
            arch[label] = v
    return arch


def entry_runners(
    net: torch.nn.Module, backend: BaseLatencyBackend, *, batch: int, seq: int, context: int = 0,
    log: TextIO | None = None,
) -> dict[str, Runner]:
    """One prepared runner per key of :func:`required_keys` of ``net.space`` (a decoder's: with its head).

    Each runs ``seq`` new tokens; a decoder's attention entries after ``context`` cached ones
    (0: a prefill's empty pasts), as its generation graph runs them.
    """
    from nas.runtime.decoder_onnx import LM_HEAD_NODE, LOGITS, AttentionStep, int8_nbits_nodes
    from nas.supernet.derive import derive

    space: SearchSpace = net.space  # type: ignore[assignment]
    dims = space.dims
    decoder = is_decoder(space)
    ids = model_inputs(space, batch, seq)
    mask = torch.ones(batch, context + seq, dtype=torch.long)  # past and new tokens
    hidden = {"hidden_states": torch.randn(batch, seq, dims.hidden, generator=torch.Generator().manual_seed(1))}
    keys = required_keys(space, head=decoder)
    runners: dict[str, Runner] = {}
    for n, key in enumerate(keys):
        t0 = time.perf_counter()
        kind, _, rest = key.partition(":")
        params = dict(p.split("=") for p in rest.split(":")) if rest else {}
        b = int(params.get("bits", 32))
        if kind == "attn":
            h = int(params["heads"])
            i = next(i for i in range(dims.num_layers)
                     if h in space.options(layer_label(i, "heads")) and b in space.options(layer_label(i, "attn.bits")))
            sub = derive(net, _arch_for(space, i, heads=h, attn_bits=b))
            attn_bits = {f"attn.{x}": b for x in ("q", "k", "v", "o")}
            if decoder:
                step = AttentionStep(dims, sub.model.layers[i])
                past = torch.zeros(batch, step.attn.num_kv, context, dims.head_dim)
                feeds = {**hidden, "attention_mask": mask, "past_k": past, "past_v": past.clone()}
                runner = backend.prepare(step, feeds, bits=attn_bits, output_names=AttentionStep.OUTPUTS,
                                         dynamic_axes=AttentionStep.AXES, int8_nbits=int8_nbits_nodes(attn_bits))
            else:
                runner = backend.prepare(AttnPart(dims, sub.model.layers[i]),
                                         {**hidden, "attention_mask": ids["attention_mask"]}, bits=attn_bits)
        elif kind == "ffn":
            w = int(params["width"])
            i = next(i for i in range(dims.num_layers)
                     if w in space.options(layer_label(i, "ffn")) and b in space.options(layer_label(i, "ffn.bits")))
            sub = derive(net, _arch_for(space, i, ffn=w, ffn_bits=b))
            part = FFNPart(sub.model.layers[i])
            names = ("gate", "up", "down") if part.ffn.gated else ("up", "down")
            ffn_bits = {f"ffn.{x}": b for x in names}
            runner = backend.prepare(part, hidden, bits=ffn_bits, int8_nbits=int8_nbits_nodes(ffn_bits) if decoder else ())
        elif kind in ("embed", "head"):
            arch = space.full()
            arch["embed.bits"] = b
            sub = derive(net, arch)
            if kind == "embed":
                runner = backend.prepare(EmbedPart(sub.model.embed), {"input_ids": ids["input_ids"]},
                                         bits={"embed.word": b})
            else:
                runner = backend.prepare(HeadPart(sub.model.embed), hidden, bits={LM_HEAD_NODE: b},
                                         output_names=(LOGITS,))
        elif key == REST:
            runner = backend.prepare(RestPart(net.model.final_norm), hidden, bits={})  # type: ignore[union-attr]
        elif key == OVERHEAD:
            runner = backend.prepare(OverheadPart(), {"input_ids": ids["input_ids"], "attention_mask": mask}, bits={},
                                     dynamic_axes={"input_ids": {0: "batch", 1: "sequence"},
                                                   "attention_mask": {0: "batch", 1: "total_sequence"},
                                                   "output": {0: "batch", 1: "total_sequence"}})
        else:  # pragma: no cover - required_keys only makes the kinds above
            raise LatencyTableError(f"{key}: unknown entry kind")
        runners[key] = runner
        if log is not None:
            print(f"[{n + 1}/{len(keys)}] prepared {key} ({time.perf_counter() - t0:.1f} s)", file=log, flush=True)
    return runners


def precision_anchors(space: SearchSpace) -> list[Arch]:
    """The smallest architecture at each weight precision of the space (every ``bits`` choice set to it).

    Which precision is fastest depends on the device and runtime (int8 on VNNI/AMX, while
    ORT's int4 ``MatMulNBits`` runs slower than fp32 there), so the fastest corner of the
    space, where low-latency searches end up, is one of these, not necessarily
    :meth:`~nas.spaces.space.SearchSpace.smallest`.
    """
    base = space.smallest()
    bits = sorted({b for c in space.choices if c.kind == "bits" for b in c.options}, reverse=True)
    out = []
    for b in bits:
        arch = {**base, **{c.label: b for c in space.choices if c.kind == "bits" and b in c.options}}
        if arch != base and arch not in out:
            out.append(arch)
    return out


def calibration_archs(space: SearchSpace, count: int, *, seed: int = 0) -> list[Arch]:
    """``count`` architectures: the full one, the smallest one, the smallest at each other precision,
    then seeded random ones spread over depths.

    The anchors bound the calibration's range at both ends: without them a search that ends
    below the fastest calibration model extrapolates the fitted constant (a 1-layer int8
    subnet predicted at 0.36 ms by a fit whose fastest model, int4, measured 0.74 ms).
    Uniform sampling piles up in the middle depths (3–4 of 6 layers), while the
    search's fronts live at 1–3 layers; so the random ones cycle through the depths
    the space allows (rejection sampling, the first sample taken after 200 misses).
    """
    rng = random.Random(seed + 7919)
    archs = [space.full(), space.smallest(), *precision_anchors(space)][:count]
    depths = sorted({len(space.kept_layers(space.sample(random.Random(seed + k)))) for k in range(200)}
                    | {len(space.kept_layers(a)) for a in archs})
    n = 0
    while len(archs) < count:
        want = depths[n % len(depths)]
        n += 1
        first = None
        for _ in range(200):
            a = space.sample(rng)
            first = first or a
            if len(space.kept_layers(a)) == want:
                break
        else:
            a = first
        archs.append(a)
    return archs


def model_runner(net: torch.nn.Module, arch: Arch, backend: BaseLatencyBackend, *, batch: int, seq: int,
                 context: int = 0, generation: bool = False) -> Runner:
    """A runner of the whole derived subnet ``arch`` (exported and quantized like ``nas export``).

    Args:
        batch, seq: the new tokens of the call.
        context: cached tokens before them (a decoder's generation graph; 0: a prefill's empty pasts).
        generation: run a decoder's generation graph (logits of the new tokens and presents out,
            :mod:`nas.runtime.decoder_onnx`) instead of the encoder-style ``last_hidden_state`` graph;
            implied by ``context`` > 0.
    """
    from nas.runtime.quantize import bits_by_node
    from nas.supernet.derive import derive

    sub = derive(net, arch)
    if generation or context:
        from nas.runtime.decoder_onnx import decoder_bits_by_node, step_inputs

        return backend.prepare_generation(sub.model, step_inputs(sub.model, batch=batch, new=seq, context=context),
                                          bits=decoder_bits_by_node(sub))
    bits = bits_by_node(sub)
    if is_decoder(net.space):  # type: ignore[arg-type]
        from nas.runtime.decoder_onnx import int8_nbits_nodes

        nbits = int8_nbits_nodes(bits)
    else:
        nbits = []
    return backend.prepare(sub.model, model_inputs(net.space, batch, seq),  # type: ignore[arg-type]
                           bits=bits, output_names=("last_hidden_state",), int8_nbits=nbits)


def runner_options(table: LatencyTable) -> dict[str, Any]:
    """:func:`model_runner`'s shape keywords for whole models measured as ``table``'s were.

    A table with head entries (a decoder's, built with phases) was calibrated on generation graphs;
    one without (an encoder's, or a decoder's from before) on ``last_hidden_state`` graphs.
    """
    return {"batch": table.batch, "seq": table.seq, "context": table.context, "generation": table.has_head}


def backend_for(table: LatencyTable) -> BaseLatencyBackend:
    """``table``'s backend, with its threads and the int4 accuracy level it measured with.

    Raises:
        ConfigError: the table's runtime is unknown here.
    """
    return get_backend(table.runtime.get("name", "onnxruntime-cpu"), threads=table.threads,
                       accuracy_level=table.accuracy_level)


def _shape(space: SearchSpace, phase: str, seq: int | None, context: int | None) -> tuple[int, int]:
    """``(seq, context)`` of a build: a prefill's ``seq`` (default 128) and no cache, or 1 token after ``context``."""
    if phase not in PHASES:
        raise ConfigError(f"phase: {phase!r} is not one of {list(PHASES)}")
    if phase == DECODE:
        if not is_decoder(space):
            raise ConfigError(f"phase: decode needs a decoder, but space {space.name!r} is a "
                              f"{space.dims.family} encoder (it has only the prefill phase)")
        if seq not in (None, 1):
            raise ConfigError(f"seq: a decode table times one new token, got seq {seq} (give --context)")
        if context is None:
            raise ConfigError("context: a decode table needs the cached tokens before the step (--context C)")
        seq = 1
    else:
        if context:
            raise ConfigError(f"context: a prefill has no cached tokens, got {context} (use --phase decode)")
        context, seq = 0, 128 if seq is None else seq
    for name, v, low in (("seq", seq, 1), ("context", context, 1 if phase == DECODE else 0)):
        if isinstance(v, bool) or not isinstance(v, int) or v < low:
            raise ConfigError(f"{name}: must be an integer >= {low}, got {v!r}")
    if context + seq > space.dims.max_positions:
        what = f"{context} cached + {seq} new tokens" if context else f"{seq} tokens"
        raise ConfigError(f"{'context' if context else 'seq'}: {what} exceed the model's "
                          f"{space.dims.max_positions} positions")
    return seq, context


def build_table(
    space: SearchSpace,
    *,
    backend: str | BaseLatencyBackend = "onnxruntime-cpu",
    threads: int = 1,
    batch: int = 1,
    seq: int | None = None,
    phase: str = PREFILL,
    context: int | None = None,
    accuracy_level: int | None = None,
    protocol: Protocol | None = None,
    calibration_samples: int = 14,
    seed: int = 0,
    supernet: torch.nn.Module | None = None,
    log: TextIO | None = None,
    clock: Callable[[], float] | None = None,
) -> LatencyTable:
    """Measure a complete latency table for ``space`` on this machine, for one phase.

    Args:
        space: the search space (every key of ``required_keys(space)`` is measured, a decoder's head too).
        backend: a backend name (``onnxruntime-cpu``, ``torch-cpu``) or instance (used as it is, with its
            own accuracy level).
        threads: intra-op threads (pinned).
        batch: input batch measured.
        seq: a prefill's tokens (default 128); a decode table's is 1.
        phase: ``"prefill"`` (one call over ``seq`` tokens) or ``"decode"`` (one token after
            ``context`` cached ones; decoders only).
        context: a decode step's cached tokens (required for decode, none for prefill).
        accuracy_level: ``MatMulNBits`` accuracy level of int4 weights (default: :data:`DEFAULT_ACCURACY_LEVEL`
            where the backend has that kernel, onnxruntime; recorded in the table).
        protocol: measurement protocol (default :class:`Protocol`).
        calibration_samples: whole models measured to fit the calibration (0 disables it).
        seed: seed of the calibration architectures and inputs.
        supernet: a built supernet of ``space`` (built here if None).
        log: where progress lines go.

    Returns:
        The table (not yet saved: call ``.save(path)``, which writes atomically; :func:`table_filename`
        names it).

    Raises:
        ConfigError: bad threads, batch, seq, context, phase (decode of an encoder), accuracy level or
            sample count.
        LatencyTableError: the backend lacks kernels for a bit-width of the
            space, or too many entries stay noisy.

    Example:
        >>> t = build_table(load_space("tiny-llama"), phase="decode", context=32)  # doctest: +SKIP
        >>> t.id  # doctest: +SKIP
        'tiny-llama/onnxruntime-cpu/t1/b1/c32.decode'
    """
    for name, v in (("threads", threads), ("batch", batch)):
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise ConfigError(f"{name}: must be a positive integer, got {v!r}")
    seq, context = _shape(space, phase, seq, context)
    if isinstance(backend, BaseLatencyBackend):
        if accuracy_level is not None and accuracy_level != backend.accuracy_level:
            raise ConfigError(f"accuracy_level: {accuracy_level} asked, but the backend given runs "
                              f"{backend.accuracy_level}")
        be = backend
    else:
        if accuracy_level is None and DEFAULT_ACCURACY_LEVEL in backend_class(backend).accuracy_levels:
            accuracy_level = DEFAULT_ACCURACY_LEVEL
        be = get_backend(backend, threads=threads, accuracy_level=accuracy_level)
    if calibration_samples and calibration_samples < 2:
        raise ConfigError(f"calibration_samples: needs 0 or at least 2, got {calibration_samples}")
    protocol = protocol or Protocol()
    if protocol.clock == "thread-cpu" and threads != 1:
        raise ConfigError(f"protocol.clock: thread-cpu time is not latency with {threads} threads (use wall)")
    bits_needed = sorted({b for c in space if c.kind == "bits" for b in c.options}, reverse=True)
    missing = [b for b in bits_needed if not be.supports(b)]
    if missing:
        raise LatencyTableError(f"bits: backend {be.name} has no kernels for {missing}-bit weights needed by {space.name!r}")
    if supernet is None:
        from nas.supernet.supernet import Supernet

        supernet = Supernet.build(space)
    t0 = time.perf_counter()
    runners = entry_runners(supernet, be, batch=batch, seq=seq, context=context, log=log)
    archs = calibration_archs(space, calibration_samples, seed=seed) if calibration_samples else []
    decoder = is_decoder(space)
    for n, arch in enumerate(archs):
        runners[f"model:{n}"] = model_runner(supernet, arch, be, batch=batch, seq=seq, context=context,
                                             generation=decoder)
        if log is not None:
            print(f"[calibration {n + 1}/{len(archs)}] prepared {len(space.kept_layers(arch))}-layer subnet", file=log, flush=True)
    if log is not None:
        print(f"prepared {len(runners)} runners in {time.perf_counter() - t0:.0f} s; measuring "
              f"({protocol.rounds} interleaved rounds × {protocol.repeats} calls)", file=log, flush=True)
    stats = measure(runners, protocol, clock=clock, log=log)
    level = be.accuracy_level if be.accuracy_levels else None
    entries = {k: _entry(k, v, be, level, decoder) for k, v in stats.items() if not k.startswith("model:")}
    table = LatencyTable(
        space_name=space.name, space_hash=space.hash, device=device_info(), runtime=be.info(),
        threads=threads, batch=batch, seq=seq, entries=entries, protocol=protocol.to_dict(),
        created=_dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        phase=phase, context=context, accuracy_level=level,
    )
    if archs:
        from nas.spaces.summary import format_arch

        raw = [raw_latency_ms(table, space, a) for a in archs]
        meas = [stats[f"model:{n}"]["median_ms"] for n in range(len(archs))]
        layers = [len(space.kept_layers(a)) for a in archs]
        cal = fit_calibration(raw, layers, meas, raw_by_bits=[raw_by_bits(table, space, a) for a in archs])
        cal["models"] = [
            {"arch": format_arch(space, a), "raw_ms": r, "measured_ms": m, "iqr_ms": stats[f"model:{n}"]["iqr_ms"]}
            for n, (a, r, m) in enumerate(zip(archs, raw, meas))
        ]
        table = dataclasses.replace(table, calibration=cal)
    if log is not None:
        noisy = sum(1 for e in entries.values() if e["noisy"])
        print(f"built {table.id}: {len(entries)} entries ({noisy} noisy) in {time.perf_counter() - t0:.0f} s", file=log, flush=True)
    return table


def _entry(key: str, stats: dict[str, Any], backend: BaseLatencyBackend, level: int | None,
           decoder: bool) -> dict[str, Any]:
    """A table row: the measured figures, the kernel that ran, and an int4 entry's accuracy level."""
    bits = int(key.rsplit("=", 1)[1]) if "bits=" in key else None
    nbits = decoder and key.startswith(("attn:", "ffn:"))  # as entry_runners quantized it
    row = {**stats, "kernel": backend.kernel(bits, nbits=nbits) if bits is not None else "fp32"}
    if bits == 4 and level is not None:
        row["accuracy_level"] = level
    return row
