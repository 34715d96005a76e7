"""``nas lut build|validate|drift|show``: measure, check, re-anchor and inspect per-device latency tables."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from nas.commands.output import add_format, render


def register(sub) -> None:
    p = sub.add_parser("lut", help="per-device latency lookup tables")
    ss = p.add_subparsers(dest="lut_command", metavar="ACTION")
    ss.required = True

    b = ss.add_parser("build", help="measure every entry a space needs on this machine, for one phase")
    b.add_argument("space", help="a shipped space name or a YAML path")
    b.add_argument("--runtime", default="onnxruntime-cpu", help="onnxruntime-cpu (default) or torch-cpu")
    b.add_argument("--threads", type=int, default=1, help="intra-op threads (default 1)")
    b.add_argument("--batch", type=int, default=1)
    b.add_argument("--phase", choices=("prefill", "decode"), default="prefill",
                   help="prefill (default): one call over --seq tokens; decode (decoders only): one token "
                        "after a --context-long KV cache")
    b.add_argument("--seq", type=int, default=None, help="prefill tokens (default 128)")
    b.add_argument("--context", type=int, default=None, help="decode: tokens in the KV cache (required)")
    b.add_argument("--accuracy-level", type=int, choices=(0, 1, 2, 3, 4), default=None,
                   help="MatMulNBits accuracy_level of int4 weights (onnxruntime; default 4, int8 compute: "
                        "the faster on AVX-512 VNNI CPUs in both phases); recorded in the table")
    b.add_argument("--out", help="output JSON (default latency_luts/<space>.<runtime>.t<T>.b<B>.s<S>.json, "
                                 "decode: ...b<B>.c<C>.decode.json)")
    b.add_argument("--rounds", type=int, default=10, help="interleaved measurement rounds (default 10)")
    b.add_argument("--repeats", type=int, default=5, help="timed calls per entry per round (default 5)")
    b.add_argument("--warmup", type=int, default=5)
    b.add_argument("--noise-threshold", type=float, default=0.10, help="IQR/median flagged as noisy (default 0.10)")
    b.add_argument("--remeasure", type=int, default=2, help="extra passes over noisy entries (default 2)")
    b.add_argument("--max-noisy", type=float, default=0.2, help="refuse when more than this fraction stays noisy")
    b.add_argument("--clock", choices=("wall", "thread-cpu"), default="wall",
                   help="wall (default) or thread-cpu (threads 1 only: excludes time stolen by other processes)")
    b.add_argument("--calibration-samples", type=int, default=14, help="whole models measured for calibration")
    b.add_argument("--seed", type=int, default=0)
    b.set_defaults(func=cmd_build)

    v = ss.add_parser("validate", help="predicted vs measured latency of random subnets (reference-normalised and raw)")
    v.add_argument("lut", help="a table path or shipped table name")
    v.add_argument("--samples", type=int, default=20)
    v.add_argument("--references", type=int, default=4,
                   help="the table's calibration models measured in every group with the subnets; their "
                        "median measured/recorded ratio scales the predictions (default 4; 0: raw errors only)")
    v.add_argument("--seed", type=int, default=0)
    v.add_argument("--rounds", type=int, default=None, help="interleaved rounds per group (default: the table's)")
    v.add_argument("--clock", choices=("wall", "thread-cpu"), default=None, help="default: the table's clock")
    v.add_argument("--strict", action="store_true", help="device/runtime mismatch is an error")
    v.add_argument("--plot", help="write the predicted-vs-measured scatter to this PNG")
    v.add_argument("--out", help="also write the full JSON report here")
    add_format(v, default="json")
    v.set_defaults(func=cmd_validate)

    d = ss.add_parser("drift", help="re-measure the table's calibration models: is it still true on this machine?")
    d.add_argument("lut", help="a table path or shipped table name")
    d.add_argument("--rounds", type=int, default=None, help="interleaved rounds (default: the table's)")
    d.add_argument("--strict", action="store_true", help="device/runtime mismatch is an error")
    d.add_argument("--recalibrate", metavar="OUT", help="write the table with its calibration refitted on the new "
                                                         "measurements here (atomically; may be the table itself)")
    add_format(d, default="table")
    d.set_defaults(func=cmd_drift)

    s = ss.add_parser("show", help="print a table's provenance, calibration and entries")
    s.add_argument("lut")
    s.add_argument("--strict", action="store_true", help="device/runtime mismatch is an error")
    add_format(s)
    s.set_defaults(func=cmd_show)


def cmd_build(args) -> int:
    from nas.latency.builder import build_table
    from nas.latency.calibration import form_of
    from nas.latency.table import table_filename
    from nas.latency.protocol import Protocol
    from nas.spaces import load_space

    space = load_space(args.space)
    protocol = Protocol(warmup=args.warmup, rounds=args.rounds, repeats=args.repeats,
                        noise_threshold=args.noise_threshold, remeasure=args.remeasure,
                        max_noisy_fraction=args.max_noisy, seed=args.seed, clock=args.clock)
    table = build_table(space, backend=args.runtime, threads=args.threads, batch=args.batch, seq=args.seq,
                        phase=args.phase, context=args.context, accuracy_level=args.accuracy_level,
                        protocol=protocol, calibration_samples=args.calibration_samples, seed=args.seed, log=sys.stderr)
    out = Path(args.out) if args.out else Path("latency_luts") / table_filename(
        space.name, table.runtime["name"], table.threads, table.batch, table.seq, phase=table.phase,
        context=table.context)
    table.save(out)
    cal = table.calibration
    print(f"wrote {out}: {len(table.entries)} entries"
          + (f", calibration {form_of(cal)}: fit MAPE {cal['fit_mape']:.1%} (raw sum "
             f"{cal['raw_mape']:.1%})" if cal else ""))
    return 0


def cmd_validate(args) -> int:
    """Normalised figures first (predictions × the group's reference ratio), raw beside, then the ratios."""
    from nas.latency.table import load_table
    from nas.latency.validate import scatter_plot, validate_table

    table = load_table(args.lut)
    report = validate_table(table, samples=args.samples, seed=args.seed, strict=args.strict, rounds=args.rounds,
                            clock=args.clock, references=args.references, log=sys.stderr)
    if args.plot:
        report["plot"] = str(scatter_plot(report, args.plot))
        print(f"wrote plot to {Path(report['plot']).resolve()}", file=sys.stderr)
    if args.out:
        from nas.files import write_json_atomic

        write_json_atomic(args.out, report)
    refs = report["references"]
    ratios = [g["ratio"] for g in refs["groups"]] if refs else []
    if args.format == "json":
        head = {k: report[k] for k in ("primary", "normalised", "raw")}
        head["reference_ratios"] = ratios
        rest = ({k: v for k, v in report.items() if k not in ("subnets", *head)} if not args.out else
                {k: report[k] for k in ("phase", "spearman", "kendall", "mape", "within_10pct", "max_abs_pct", "samples",
                                          "threads", "table", "loadavg_before", "loadavg_after")})
        print(json.dumps({**head, **rest}, indent=1))
        return 0
    figures = ("spearman", "kendall", "mape", "within_10pct", "max_abs_pct", "mean_signed_pct")
    rows = [{"error": name, **{k: report[name][k] for k in figures}}
            for name in ("normalised", "raw") if report[name] is not None]
    print(render(rows, args.format))
    if args.format == "table":
        print(f"{table.id} ({report['phase']}, {report['samples']} subnets, {report['threads']} thread(s), "
              f"clock {report['clock']}): "
              + (f"reference ratio per group (measured/recorded, median of {refs['count']} calibration models): "
                 + ", ".join(f"{r:.3f}" for r in ratios) if refs else "no reference models: raw errors only")
              + f"; loadavg {report['loadavg_before']} -> {report['loadavg_after']}")
    return 0


def cmd_drift(args) -> int:
    from nas.latency.drift import check_drift, recalibrated
    from nas.latency.table import load_table

    table = load_table(args.lut)
    report = check_drift(table, rounds=args.rounds, strict=args.strict, log=sys.stderr)
    if args.recalibrate:
        new = recalibrated(table, report)
        new.save(args.recalibrate)
        report["recalibrated"] = {"out": args.recalibrate, "fit_mape": new.calibration["fit_mape"]}
    if args.format == "json":
        print(json.dumps(report, indent=1))
        return 0
    print(render([{"arch": r["arch"], "then_ms": round(r["then_ms"], 3), "now_ms": round(r["now_ms"], 3),
                   "ratio": round(r["now_ms"] / r["then_ms"], 3)} for r in report["models"]], args.format))
    print(f"{table.id}: now/then median {report['median_ratio']:.3f} [{report['q1']:.3f}, {report['q3']:.3f}] "
          f"over {len(report['models'])} models: "
          + (f"drifted by more than ±{report['tolerance']:.0%} (rebuild, or --recalibrate OUT)" if report["drifted"]
             else f"within ±{report['tolerance']:.0%}")
          + (f"; wrote {args.recalibrate} (fit MAPE {report['recalibrated']['fit_mape']:.1%})"
             if args.recalibrate else ""))
    return 0


def cmd_show(args) -> int:
    from nas.latency.backends import get_backend
    from nas.latency.device import device_info
    from nas.latency.table import load_table

    table = load_table(args.lut)
    try:
        runtime = get_backend(table.runtime.get("name", ""), threads=table.threads).info()
    except Exception:
        runtime = None
    table.check_environment(device=device_info(), runtime=runtime, strict=args.strict)
    if args.format == "json":
        print(json.dumps(table.to_dict(), indent=1))
        return 0
    rows = [{"key": k, "median_ms": e["median_ms"], "iqr_ms": e.get("iqr_ms"), "n": e.get("n"),
             "noisy": e.get("noisy", False)} for k, e in table.entries.items()]
    if args.format == "table":
        from nas.latency.calibration import form_of

        d, r, c = table.device, table.runtime, table.calibration
        print(f"{table.id}  space hash {table.space_hash}  created {table.created}")
        print(f"device {d.get('cpu')} ({d.get('cores')} cores, {','.join(d.get('isa', []))}; {d.get('fingerprint')})")
        print(f"runtime {r.get('name')} {r.get('version')} {r.get('provider')}")
        print(f"phase {table.phase}: " + (f"1 token after {table.context} cached" if table.phase == "decode"
                                          else f"{table.seq} tokens") + f" × batch {table.batch}; int4 accuracy_level "
              + ("unset" if table.accuracy_level is None else str(table.accuracy_level))
              + ("; LM head priced" if table.has_head else ""))
        if c:
            bits = "".join(f" s{b} {v:.4f}" for b, v in (c.get("bit_scale") or {}).items())
            print(f"calibration {form_of(c)}: scale {c.get('scale', 1):.4f}{bits} per_layer {c.get('per_layer_ms', 0):.3f} ms "
                  f"constant {c.get('constant_ms', 0):.3f} ms (fit MAPE {c.get('fit_mape', 0):.1%} over "
                  f"{c.get('samples')} models; raw sum {c.get('raw_mape', 0):.1%})")
    print(render(rows, args.format))
    return 0
