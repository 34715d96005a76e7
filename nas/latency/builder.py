"""Build a latency table: measure every entry a space needs, then calibrate on whole models.

Entries are measured on modules cut from a real derived model (layer ``i``
where the choice exists), exported and quantized by the backend, all in one
interleaved measurement (:mod:`nas.latency.protocol`) together with a handful
of whole random subnets whose latencies fit the calibration
(:mod:`nas.latency.calibration`).
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
from nas.latency.backends import BaseLatencyBackend, Runner, get_backend
from nas.latency.blocks import AttnPart, EmbedPart, FFNPart, OverheadPart, RestPart
from nas.latency.calibration import fit_calibration
from nas.latency.device import device_info
from nas.latency.predictor import raw_by_bits, raw_latency_ms
from nas.latency.protocol import Protocol, measure
from nas.latency.table import OVERHEAD, REST, LatencyTable, attn_key, embed_key, ffn_key, required_keys
from nas.spaces.choice import layer_label
from nas.spaces.space import Arch, SearchSpace


def table_filename(space: str, runtime: str, threads: int, batch: int, seq: int) -> str:
    """``<space>.<runtime>.t<threads>.b<batch>.s<seq>.json`` (the shipped tables' names)."""
    return f"{space}.{runtime}.t{threads}.b{batch}.s{seq}.json"


def model_inputs(space: SearchSpace, batch: int, seq: int, *, seed: int = 0) -> dict[str, torch.Tensor]:
    """Fixed ``input_ids`` / ``attention_mask`` (no padding) for measuring."""
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(1, min(space.dims.vocab_size, 30000), (batch, seq), generator=g)
    return {"input_ids": ids, "attention_mask": torch.ones_like(ids)}


def _arch_for(space: SearchSpace, layer: int, **values: int) -> Arch:
    arch = space.full()
    for what, v in values.items():
        label = layer_label(layer, what.replace("_", "."))
        if label in space:
            arch[label] = v
    return arch


def entry_runners(
    net: torch.nn.Module, backend: BaseLatencyBackend, *, batch: int, seq: int, log: TextIO | None = None
) -> dict[str, Runner]:
    """One prepared runner per key of :func:`required_keys` of ``net.space``."""
    from nas.supernet.derive import derive

    space: SearchSpace = net.space  # type: ignore[assignment]
    dims = space.dims
    ids = model_inputs(space, batch, seq)
    hidden = {"hidden_states": torch.randn(batch, seq, dims.hidden, generator=torch.Generator().manual_seed(1))}
    keys = required_keys(space)
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
            part = AttnPart(dims, sub.model.layers[i])
            runner = backend.prepare(part, {**hidden, "attention_mask": ids["attention_mask"]},
                                     bits={f"attn.{x}": b for x in ("q", "k", "v", "o")})
        elif kind == "ffn":
            w = int(params["width"])
            i = next(i for i in range(dims.num_layers)
                     if w in space.options(layer_label(i, "ffn")) and b in space.options(layer_label(i, "ffn.bits")))
            sub = derive(net, _arch_for(space, i, ffn=w, ffn_bits=b))
            part = FFNPart(sub.model.layers[i])
            names = ("gate", "up", "down") if part.ffn.gated else ("up", "down")
            runner = backend.prepare(part, hidden, bits={f"ffn.{x}": b for x in names})
        elif kind == "embed":
            arch = space.full()
            arch["embed.bits"] = b
            sub = derive(net, arch)
            runner = backend.prepare(EmbedPart(sub.model.embed), {"input_ids": ids["input_ids"]},
                                     bits={"embed.word": b})
        elif key == REST:
            runner = backend.prepare(RestPart(net.model.final_norm), hidden, bits={})  # type: ignore[union-attr]
        elif key == OVERHEAD:
            runner = backend.prepare(OverheadPart(), ids, bits={})
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


def model_runner(net: torch.nn.Module, arch: Arch, backend: BaseLatencyBackend, *, batch: int, seq: int) -> Runner:
    """A runner of the whole derived subnet ``arch`` (exported and quantized like ``nas export``)."""
    from nas.runtime.quantize import bits_by_node
    from nas.supernet.derive import derive

    sub = derive(net, arch)
    return backend.prepare(sub.model, model_inputs(net.space, batch, seq),  # type: ignore[arg-type]
                           bits=bits_by_node(sub), output_names=("last_hidden_state",))


def build_table(
    space: SearchSpace,
    *,
    backend: str | BaseLatencyBackend = "onnxruntime-cpu",
    threads: int = 1,
    batch: int = 1,
    seq: int = 128,
    protocol: Protocol | None = None,
    calibration_samples: int = 14,
    seed: int = 0,
    supernet: torch.nn.Module | None = None,
    log: TextIO | None = None,
    clock: Callable[[], float] | None = None,
) -> LatencyTable:
    """Measure a complete latency table for ``space`` on this machine.

    Args:
        space: the search space (every key of ``required_keys(space)`` is measured).
        backend: a backend name (``onnxruntime-cpu``, ``torch-cpu``) or instance.
        threads: intra-op threads (pinned).
        batch, seq: input shape measured.
        protocol: measurement protocol (default :class:`Protocol`).
        calibration_samples: whole models measured to fit the calibration (0 disables it).
        seed: seed of the calibration architectures and inputs.
        supernet: a built supernet of ``space`` (built here if None).
        log: where progress lines go.

    Returns:
        The table (not yet saved: call ``.save(path)``, which writes atomically).

    Raises:
        ConfigError: bad threads, batch, seq or sample count.
        LatencyTableError: the backend lacks kernels for a bit-width of the
            space, or too many entries stay noisy.
    """
    for name, v in (("threads", threads), ("batch", batch), ("seq", seq)):
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise ConfigError(f"{name}: must be a positive integer, got {v!r}")
    be = get_backend(backend, threads=threads)
    if seq > space.dims.max_positions:
        raise ConfigError(f"seq: {seq} exceeds the model's {space.dims.max_positions} positions")
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
    runners = entry_runners(supernet, be, batch=batch, seq=seq, log=log)
    archs = calibration_archs(space, calibration_samples, seed=seed) if calibration_samples else []
    for n, arch in enumerate(archs):
        runners[f"model:{n}"] = model_runner(supernet, arch, be, batch=batch, seq=seq)
        if log is not None:
            print(f"[calibration {n + 1}/{len(archs)}] prepared {len(space.kept_layers(arch))}-layer subnet", file=log, flush=True)
    if log is not None:
        print(f"prepared {len(runners)} runners in {time.perf_counter() - t0:.0f} s; measuring "
              f"({protocol.rounds} interleaved rounds × {protocol.repeats} calls)", file=log, flush=True)
    stats = measure(runners, protocol, clock=clock, log=log)
    entries = {k: {**v, "kernel": be.kernels.get(int(k.rsplit("=", 1)[1]), "") if "bits=" in k else "fp32"}
               for k, v in stats.items() if not k.startswith("model:")}
    table = LatencyTable(
        space_name=space.name, space_hash=space.hash, device=device_info(), runtime=be.info(),
        threads=threads, batch=batch, seq=seq, entries=entries, protocol=protocol.to_dict(),
        created=_dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
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
