"""``nas export``: a study trial → a verified folder (safetensors, HF, ONNX fp32 + quantized, manifest).

    nas export --study NAME [--storage URL] (--trial N | --max-latency MS | --max NAME=VALUE ... | --best-quality)
               --out DIR [--force]
    nas export --check DIR        re-run every check on an exported folder

``--max NAME=VALUE`` (repeatable) bounds each latency of a study priced per phase
(``--max ttft_ms=40 --max tpot_ms=15``) or the size (``size_mb``); see :mod:`nas.search.pareto`.

Exit status 0 when every check passes; 1 with one line naming each failed
check (and by how much), or any bad input.
"""

from __future__ import annotations

import json
import sys

from nas.commands.output import render
from nas.errors import ConfigError, ExportError


def _shape(text: str) -> tuple[int, int]:
    try:
        b, t = text.lower().split("x")
        return int(b), int(t)
    except ValueError:
        raise ConfigError(f"shapes: {text!r} is not BATCHxSEQ (e.g. 2x16)") from None


def register(sub) -> None:
    p = sub.add_parser("export", help="export a trial: safetensors, ONNX fp32 + quantized, verified, with a manifest",
                       description=__doc__.split("\n\n")[0])
    p.add_argument("--study", help="study name")
    p.add_argument("--storage", help="storage URL (default $NAS_STORAGE, else sqlite:///nas_studies.db)")
    rule = p.add_mutually_exclusive_group()
    rule.add_argument("--trial", type=int, help="a COMPLETE trial number")
    rule.add_argument("--max-latency", type=float, metavar="MS",
                      help="the highest-quality Pareto-front point whose predicted latency is <= MS")
    rule.add_argument("--best-quality", action="store_true", help="the highest-quality Pareto-front point")
    p.add_argument("--max", action="append", metavar="NAME=VALUE", dest="max_values",
                   help="the highest-quality Pareto-front point with NAME <= VALUE, NAME a latency objective of the "
                        "study (latency_ms; ttft_ms, tpot_ms, request_ms) or size_mb; repeatable")
    p.add_argument("--out", help="folder to create")
    p.add_argument("--artifacts", metavar="URL", help="artifact store to read the trial from (default: the study's)")
    p.add_argument("--force", action="store_true", help="replace an existing --out folder")
    p.add_argument("--keep-failed", action="store_true",
                   help="when a check fails, keep the folder (manifest ok: false); still exits 1")
    p.add_argument("--check", metavar="DIR", help="re-verify an exported folder instead of exporting")
    p.add_argument("--shapes", nargs="+", default=["1x8", "2x17", "4x32"], metavar="BxT",
                   help="batch×sequence shapes of the parity checks (>= 3; default 1x8 2x17 4x32)")
    p.add_argument("--tolerance", type=float, default=1e-4, help="fp32 parity: max abs diff (default 1e-4)")
    p.add_argument("--min-cosine", type=float, default=0.999, help="quantized cosine floor (default 0.999)")
    p.add_argument("--metric-tolerance", type=float, default=1.0, help="task-metric points the quantized model may differ by (default 1)")
    p.add_argument("--no-latency", action="store_true", help="skip re-measuring latency")
    p.add_argument("--latency-tolerance", type=float, metavar="REL",
                   help="fail when measured latency is off the prediction by more than REL (e.g. 0.1); default: report only")
    p.add_argument("--references", type=int, default=2, metavar="N",
                   help="the latency table's own models measured alongside: the latency error is then "
                        "reference-normalised (drift-free), the raw one beside it (default 2; 0: raw only)")
    p.add_argument("-f", "--format", choices=("table", "json"), default="table")
    p.set_defaults(func=cmd_export)


def _print_checks(checks: dict, fmt: str) -> None:
    rows = [{"check": k, "ok": {True: "ok", False: "FAILED", None: "report"}[c["ok"]], "detail": c["detail"]}
            for k, c in checks.items()]
    print(render(rows, fmt))


def cmd_export(args) -> int:
    from nas.export.export import export_trial, failure_message, reverify
    from nas.export.verify import failures

    shapes = [_shape(s) for s in args.shapes]
    opts = dict(shapes=shapes, tolerance=args.tolerance, min_cosine=args.min_cosine,
                metric_tolerance=args.metric_tolerance, latency_tolerance=args.latency_tolerance)
    if args.check:
        if args.study or args.out:
            raise ConfigError("check: --check DIR takes no --study/--out")
        _, checks = reverify(args.check, log=sys.stderr, **opts)
        if args.format == "json":
            print(json.dumps({c.name: c.to_dict() for c in checks}, indent=1))
        else:
            _print_checks({c.name: c.to_dict() for c in checks}, "table")
        failed = failures(checks)
        if failed:
            raise ExportError(failure_message(failed))
        return 0
    if not args.study:
        raise ConfigError("study: --study NAME is required (or --check DIR)")
    if args.references < 0:
        raise ConfigError(f"references: must be >= 0, got {args.references}")
    if not args.out:
        raise ConfigError("out: --out DIR is required")
    from nas.commands.search import parse_max

    max_values = parse_max(args.max_values)
    manifest = export_trial(
        study=args.study, storage=args.storage, trial=args.trial, max_latency_ms=args.max_latency,
        best_quality=args.best_quality, out=args.out, force=args.force, measure_latency=not args.no_latency,
        keep_failed=args.keep_failed, artifacts=args.artifacts, log=sys.stderr, references=args.references,
        **({"max_values": max_values} if max_values else {}), **opts,
    )
    if args.format == "json":
        print(json.dumps(manifest, indent=1, default=str))
    else:
        print(f"trial {manifest['trial']} of study {manifest['study']!r}: {manifest['arch_summary']} -> {args.out}")
        _print_checks(manifest["checks"], "table")
    return 0
