"""Benchmark: what onnxruntime's dynamic int8 computes on this CPU, and what exactness would cost.

    PYTHONPATH=. .venv/bin/python experiments/studies/int8_kernels.py [--rounds R]

``quantize_dynamic`` (what ``nas export`` applies to the 8-bit linears) runs uint8 activations
× int8 weights (``MatMulInteger``). On x86 CPUs without VNNI that kernel (``vpmaddubsw``) adds
each neighbouring pair of products into a saturating int16; with unsigned weights (zero point
128, the same codes) onnxruntime takes a kernel that widens to 16 bits first and is exact.

For all-MiniLM-L6-v2 with every linear at 8 bits (embeddings fp32) this measures, side by side:

* exactness of ``MatMulInteger`` on random codes (max |ONNX − exact integer product|);
* latency of the signed-weight graph (the export's) and of the same codes as unsigned weights,
  interleaved with the latency table's protocol (1 thread, batch 1, 128 tokens; median, IQR);
* the cosine of each graph's mean-pooled output on 64 WordNet test glosses against three
  PyTorch references: weight-only fake quantization (the search's view), dynamic int8 without
  and with pair saturation (:func:`nas.export.verify.int8_linear`).

Writes ``experiments/reports/int8_kernels.{md,json}``.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from experiments.studies.report_files import write_report  # noqa: E402

REPORTS = ROOT / "experiments" / "reports"
TABLE = "minilm-l6.onnxruntime-cpu.t1.b1.s128"


def log(msg: str) -> None:
    print(f"[int8_kernels] {msg}", file=sys.stderr, flush=True)


def matmul_integer_error(unsigned: bool, *, m: int = 64, k: int = 384, n: int = 256, seed: int = 0) -> int:
    """Max |onnxruntime MatMulInteger − exact| on random codes (weights as int8, or as uint8 with zero point 128)."""
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(seed)
    a = rng.integers(0, 256, (m, k)).astype(np.uint8)
    codes = rng.integers(-127, 128, (k, n))
    b = (codes + 128).astype(np.uint8) if unsigned else codes.astype(np.int8)
    zb = np.full(n, 128 if unsigned else 0, np.uint8 if unsigned else np.int8)
    graph = helper.make_graph(
        [helper.make_node("MatMulInteger", ["a", "b", "za", "zb"], ["y"])], "mmi",
        [helper.make_tensor_value_info("a", TensorProto.UINT8, [m, k])],
        [helper.make_tensor_value_info("y", TensorProto.INT32, [m, n])],
        initializer=[numpy_helper.from_array(b, "b"), numpy_helper.from_array(np.array(128, np.uint8), "za"),
                     numpy_helper.from_array(zb, "zb")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    y = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"a": a})[0]
    return int(np.abs(y.astype(np.int64) - (a.astype(np.int64) - 128) @ codes).max())


def to_unsigned_weights(src: Path, dst: Path) -> int:
    """Rewrite every ``MatMulInteger`` int8 weight as uint8 ``code + 128`` with zero point 128 (same values)."""
    import onnx
    from onnx import numpy_helper

    from nas.runtime.onnx import save_checked

    proto = onnx.load(str(src))
    inits = {i.name: i for i in proto.graph.initializer}
    done = 0
    for node in proto.graph.node:
        if node.op_type != "MatMulInteger" or node.input[1] not in inits:
            continue
        w = numpy_helper.to_array(inits[node.input[1]])
        if w.dtype != np.int8:
            continue
        inits[node.input[1]].CopyFrom(numpy_helper.from_array((w.astype(np.int16) + 128).astype(np.uint8),
                                                              node.input[1]))
        zp_name = f"{node.input[1]}_uzp"
        proto.graph.initializer.append(numpy_helper.from_array(np.full(w.shape[1], 128, np.uint8), zp_name))
        while len(node.input) < 4:
            node.input.append("")
        node.input[3] = zp_name
        done += 1
    save_checked(proto, dst)
    return done


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=None, help="interleaved rounds (default: the table's protocol)")
    ap.add_argument("--out", default=str(REPORTS / "int8_kernels"))
    args = ap.parse_args()
    t0 = time.perf_counter()
    load0 = os.getloadavg()

    import nas
    from nas.tasks.metric import eval_inputs
    from nas.runtime.onnx import export_onnx
    from nas.runtime.quantize import bits_by_node, quantize_onnx
    from nas.quant import fake_quantized, int8_pairs_saturate
    from nas.runtime.session import cpu_session as session, run

    def _cos(a, b):
        return (a * b).sum(-1) / (np.linalg.norm(a, axis=-1) * np.linalg.norm(b, axis=-1) + 1e-12)
    from nas.latency import load_table
    from nas.latency.backends import get_backend
    from nas.latency.device import device_info
    from nas.latency.builder import model_inputs
    from nas.latency.protocol import Protocol, measure
    from nas.models.transformer import mean_pool

    space = nas.load_space("minilm-l6")
    arch = space.full()
    arch.update({k: 8 for k in space.labels if k.endswith((".attn.bits", ".ffn.bits"))})
    sub = nas.derive(nas.Supernet.build(space, reorder=False), arch)
    work = Path(tempfile.mkdtemp(prefix="int8_kernels."))
    fp32 = export_onnx(sub, work / "fp32.onnx")
    graphs = {"u8s8": quantize_onnx(fp32, work / "u8s8.onnx", {n: b for n, b in bits_by_node(sub).items()
                                                               if n.startswith("layers.")})}
    graphs["u8u8"] = work / "u8u8.onnx"
    rewritten = to_unsigned_weights(graphs["u8s8"], graphs["u8u8"])
    log(f"{rewritten} MatMulInteger weights rewritten as uint8")

    saturates = int8_pairs_saturate()
    exact = {"u8s8": matmul_integer_error(False), "u8u8": matmul_integer_error(True)}
    log(f"MatMulInteger max |error| vs exact: {exact}; pair saturation probed: {saturates}")

    source, ids, mask = eval_inputs(space)
    with torch.no_grad():
        refs = {"weight_only": fake_quantized(sub, activations=False)}
        refs["dynamic_int8_exact"] = fake_quantized(sub, saturate=False)
        if saturates:
            refs["dynamic_int8_saturating"] = fake_quantized(sub, saturate=True)
        pooled = {k: mean_pool(m(ids, mask), mask).numpy() for k, m in refs.items()}
    cosines = {}
    for g, path in graphs.items():
        got = mean_pool(torch.from_numpy(run(session(path), ids, mask)), mask).numpy()
        cosines[g] = {k: {"min": float(_cos(ref, got).min()), "mean": float(_cos(ref, got).mean())}
                      for k, ref in pooled.items()}
        log(f"{g}: " + ", ".join(f"{k} min {v['min']:.6f}" for k, v in cosines[g].items()))

    depth = []  # how rounding flips grow with the number of int8 layers (signed graph vs the matching reference)
    for n_int8 in (1, 2, 3, 6):
        a = space.full()
        a.update({f"layer{i}.{g}.bits": 8 for i in range(n_int8) for g in ("attn", "ffn")})
        s = nas.derive(nas.Supernet.build(space, reorder=False), a)
        g = quantize_onnx(export_onnx(s, work / f"d{n_int8}.onnx"), work / f"d{n_int8}.q.onnx",
                          {k: b for k, b in bits_by_node(s).items() if k.startswith("layers.")})
        with torch.no_grad():
            ref = mean_pool(fake_quantized(s)(ids, mask), mask).numpy()
            wo = mean_pool(fake_quantized(s, activations=False)(ids, mask), mask).numpy()
        got = mean_pool(torch.from_numpy(run(session(g), ids, mask)), mask).numpy()
        c, cw = _cos(ref, got), _cos(wo, got)
        depth.append({"int8_layers": n_int8, "min": float(c.min()), "mean": float(c.mean()),
                      "weight_only_min": float(cw.min()), "weight_only_mean": float(cw.mean())})
        log(f"{n_int8} int8 layer(s): cosine vs deployed reference min {c.min():.6f} mean {c.mean():.6f}")

    table = load_table(TABLE)
    backend = get_backend("onnxruntime-cpu", threads=table.threads)
    known = set(Protocol.__dataclass_fields__)
    proto = Protocol(**{**{k: v for k, v in table.protocol.items() if k in known}, "max_noisy_fraction": 1.0,
                        **({"rounds": args.rounds} if args.rounds else {})})
    inputs = model_inputs(space, table.batch, table.seq)
    stats = measure({k: backend.runner_for(p, inputs) for k, p in {"fp32": fp32, **graphs}.items()}, proto,
                    log=sys.stderr)
    report = {
        "model": "all-MiniLM-L6-v2, every linear int8 (per-channel, symmetric), embeddings fp32",
        "cpu": platform.processor() or platform.machine(), "device": device_info(),
        "onnxruntime": backend.info(), "pair_saturation_probed": saturates, "matmul_integer_max_error": exact,
        "eval": source, "cosines": cosines, "depth": depth, "latency": stats, "protocol": proto.to_dict(),
        "threads": table.threads, "batch": table.batch, "seq": table.seq,
        "slowdown_u8u8_vs_u8s8": stats["u8u8"]["median_ms"] / stats["u8s8"]["median_ms"],
        "loadavg_before": load0, "loadavg_after": os.getloadavg(), "seconds": round(time.perf_counter() - t0, 1),
    }
    out = Path(args.out)
    write_report(out, report, markdown(report))
    log(f"wrote {out}.md and .json")
    return 0


def markdown(r: dict) -> str:
    lat, cos = r["latency"], r["cosines"]
    refs = list(next(iter(cos.values())))
    lines = [
        "# onnxruntime dynamic int8 on this CPU: saturation and the cost of exactness",
        "",
        "Command: `PYTHONPATH=. .venv/bin/python experiments/studies/int8_kernels.py`  ",
        f"CPU: {r['device'].get('cpu', r['cpu'])} (ISA {', '.join(r['device'].get('isa', []))}); "
        f"onnxruntime {r['onnxruntime'].get('version', '?')}; {r['threads']} thread, batch {r['batch']}, "
        f"{r['seq']} tokens; protocol {r['protocol']['rounds']} rounds × {r['protocol']['repeats']} calls "
        f"interleaved, warm-up {r['protocol']['warmup']}. Load average before/after: "
        f"{', '.join(f'{x:.2f}' for x in r['loadavg_before'])} / {', '.join(f'{x:.2f}' for x in r['loadavg_after'])}.",
        "",
        f"Model: {r['model']}. Pair saturation probed on this machine: **{'yes' if r['pair_saturation_probed'] else 'no'}**.",
        "",
        "| graph | weights | MatMulInteger max abs error vs exact (random codes) | latency median ms (IQR) | "
        + " | ".join(f"cosine vs {k} (min / mean)" for k in refs) + " |",
        "| --- | --- | --- | --- | " + " | ".join("---" for _ in refs) + " |",
        f"| fp32 | fp32 | – | {lat['fp32']['median_ms']:.2f} ({lat['fp32']['iqr_ms']:.2f}) | "
        + " | ".join("–" for _ in refs) + " |",
    ]
    for g, w in (("u8s8", "int8 codes (the export's)"), ("u8u8", "same codes as uint8, zero point 128")):
        lines.append(
            f"| {g} | {w} | {r['matmul_integer_max_error'][g]} | {lat[g]['median_ms']:.2f} ({lat[g]['iqr_ms']:.2f}) | "
            + " | ".join(f"{cos[g][k]['min']:.6f} / {cos[g][k]['mean']:.6f}" for k in refs) + " |")
    lines += [
        "",
        f"Unsigned weights are **{r['slowdown_u8u8_vs_u8s8']:.2f}×** the signed graph's latency (same run, interleaved).",
        "",
        "Cosine of the signed graph against the reference that matches this machine's kernel, by the number "
        "of leading layers at int8 (the rest fp32):",
        "",
        "| int8 layers | cosine min | cosine mean | weight-only reference: min | mean |",
        "| --- | --- | --- | --- | --- |",
        *[f"| {d['int8_layers']} | {d['min']:.6f} | {d['mean']:.6f} | {d['weight_only_min']:.6f} | "
          f"{d['weight_only_mean']:.6f} |" for d in r.get("depth", [])],
        "",
        "Each int8 linear alone is bit-exact against the reference (max |Δ| ≈ 2e-6, "
        "`tests/export/test_onnx_quantize.py`), but fp32 noise of ~1e-6 between PyTorch and onnxruntime flips "
        "a few activation codes per layer (the per-tensor scale follows the batch's largest value), and a deep "
        "int8 stack amplifies the flips on a few sequences: the export gates the *mean* cosine and records the min.",
        "",
        "References (`nas.export.verify`): `weight_only` = weights on the int8 grid, activations fp32 (the "
        "search's fake quantization); `dynamic_int8_exact` = plus per-tensor uint8 activations with exact "
        "integer accumulation; `dynamic_int8_saturating` = plus the int16 saturation of neighbouring-pair sums "
        "(present only where the probe finds it). The export gates its cosine on the reference that matches this "
        "machine's kernel, and keeps the signed (faster) graph.",
        f"Eval inputs: {r['eval']}. Wall time {r['seconds']:.0f} s.",
        "",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
