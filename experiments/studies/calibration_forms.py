"""Does one calibration scale per weight precision predict a benchmark's points better than the table's affine form?

The residuals of the minilm_cpu benchmark track the precision mix of a subnet (on the AVX2
EPYC the prediction error correlates −0.63 with its number of int8 blocks): a block's
isolated entry and its cost inside the whole model differ by precision. This measures
``--count`` calibration models now (``nas.latency.builder.calibration_archs``, exported and
quantized like ``nas export``, interleaved with the table's protocol), fits on the first
n of them

* ``affine``: ``a·raw + c`` (the table's own form), and
* ``per_precision``: ``Σ_b a_b·raw_b + c``, ``raw_b`` the summed entries of the blocks at b bits,

and predicts a benchmark run's in-space points (held out: the fit never sees them)::

    PYTHONPATH=. .venv/bin/python experiments/studies/calibration_forms.py --bench experiments/reports/minilm_cpu.json
        [--count 60] [--seed 1] [--models JSON]   # --models: reuse a previous run's measurements

Run it right after the benchmark, on the same host: the points were measured then. Writes
``experiments/reports/calibration_forms.{json,md}``.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import sys
import time
from pathlib import Path

import numpy as np

from experiments.studies.report_files import write_report
from nas.latency.calibration import relative_lstsq as fit  # the tables' own fit: relative least squares

ROOT = Path(__file__).resolve().parents[2]
TABLE = "minilm-l6.onnxruntime-cpu.t1.b1.s128"
BITS = (32, 16, 8, 4)


def precision_parts(table, space, arch) -> np.ndarray:
    """``[fixed, raw_32, raw_16, raw_8, raw_4]``: the table's entries for ``arch`` summed by weight precision."""
    from nas.latency.predictor import raw_by_bits, raw_latency_ms

    parts = raw_by_bits(table, space, arch)
    return np.array([raw_latency_ms(table, space, arch) - sum(parts.values()), *(parts[b] for b in BITS)])


def design(form: str, parts: np.ndarray) -> np.ndarray:
    """The least-squares design of ``form`` (the fixed part is a constant of the table, so it folds into c)."""
    one = np.ones(len(parts))
    if form == "affine":
        return np.stack([parts.sum(axis=1), one], axis=1)
    return np.column_stack([parts[:, 1:], one])


def loo_mape(d: np.ndarray, y: np.ndarray) -> float:
    errs = [abs(d[i] @ fit(np.delete(d, i, 0), np.delete(y, i)) - y[i]) / y[i] for i in range(len(y))]
    return float(np.mean(errs))


def scores(pred: np.ndarray, y: np.ndarray, front: np.ndarray, within: float) -> dict[str, float]:
    rel = (pred - y) / y
    return {"front_within": float((np.abs(rel[front]) <= within).mean()), "all_within": float((np.abs(rel) <= within).mean()),
            "front_mape": float(np.abs(rel[front]).mean()), "mape": float(np.abs(rel).mean()),
            "mean_signed": float(rel.mean())}


def measure_models(count: int, seed: int, say) -> list[dict]:
    from nas.latency import load_table
    from nas.latency.builder import backend_for, calibration_archs, model_runner
    from nas.latency.protocol import Protocol, measure
    from nas.spaces import load_space
    from nas.spaces.summary import format_arch
    from nas.supernet.supernet import Supernet

    table, space = load_table(TABLE), load_space("minilm-l6")
    archs = calibration_archs(space, count, seed=seed)
    backend = backend_for(table)
    net = Supernet.build(space)
    known = set(Protocol.__dataclass_fields__)
    proto = Protocol(**{**{k: v for k, v in dict(table.protocol or {}).items() if k in known}, "max_noisy_fraction": 1.0})
    runners = {}
    for n, a in enumerate(archs):
        runners[str(n)] = model_runner(net, a, backend, batch=table.batch, seq=table.seq)
        if (n + 1) % 10 == 0:
            say(f"exported {n + 1}/{count} models")
    stats = measure(runners, proto, log=sys.stderr)
    return [{"arch": format_arch(space, a), "measured_ms": stats[str(n)]["median_ms"], "iqr_ms": stats[str(n)]["iqr_ms"]}
            for n, a in enumerate(archs)]


def main(argv: list[str] | None = None) -> int:
    from nas.latency import load_table
    from nas.latency.device import device_info
    from nas.spaces import load_space
    from nas.spaces.summary import parse_arch

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bench", required=True, help="a benchmark_minilm_cpu run's JSON (its points are predicted)")
    ap.add_argument("--table", default=None, help="the table the run searched with (default: the shipped one "
                                                  "for this host)")
    ap.add_argument("--count", type=int, default=60)
    ap.add_argument("--seed", type=int, default=1, help="calibration_archs seed (the shipped tables use 0)")
    ap.add_argument("--models", default=None, help="reuse measured models from a previous report's JSON")
    ap.add_argument("--sizes", default="14,30,45,60", help="fit on the first n models, for each n")
    ap.add_argument("--out", default=str(ROOT / "experiments" / "reports"))
    args = ap.parse_args(argv)
    say = lambda s: print(f"[calibration_forms] {s}", file=sys.stderr, flush=True)  # noqa: E731

    for flag, path in (("--bench", args.bench), ("--models", args.models)):
        if path and not Path(path).is_file():
            raise SystemExit(f"{flag}: no such file: {path}")
    bench = json.loads(Path(args.bench).read_text())
    space = load_space("minilm-l6")
    table = load_table(args.table or TABLE)
    t0 = time.time()
    if args.models:
        reused = json.loads(Path(args.models).read_text())
        models = reused["models"]
        measured = reused.get("measured") or _dt.datetime.fromtimestamp(
            Path(args.models).stat().st_mtime, _dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC (file time)")
    else:
        models = measure_models(args.count, args.seed, say)
        measured = _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    pts = [p for p in bench["points"] if p["method"] in ("dnas", "random", "nsga2") and p.get("predicted_ms")]
    if not pts:
        raise SystemExit(f"{args.bench}: no in-space points")
    x = np.array([precision_parts(table, space, space.validate(p["arch"])) for p in pts])
    y = np.array([p["latency"]["t1"]["median_ms"] for p in pts])
    front = np.array([bool(p.get("on_front")) for p in pts])
    xc = np.array([precision_parts(table, space, parse_arch(space, m["arch"])) for m in models])
    yc = np.array([m["measured_ms"] for m in models])
    within = float(bench["config"]["targets"]["latency_within"])
    rows = []
    for n in [int(s) for s in args.sizes.split(",") if int(s) <= len(models)]:
        for form in ("affine", "per_precision"):
            coef = fit(design(form, xc[:n]), yc[:n])
            rows.append({"models": n, "form": form, "coef": [float(c) for c in coef],
                         "loo_mape": loo_mape(design(form, xc[:n]), yc[:n]),
                         **scores(design(form, x) @ coef, y, front, within)})
            say(f"n={n} {form}: front within ±{within:.0%} {rows[-1]['front_within']:.0%}, "
                f"all {rows[-1]['all_within']:.0%}")
    doc = {"bench": str(args.bench), "bench_finished": bench.get("finished"), "table": table.id,
           "device": device_info(), "measured": measured,
           "seed": args.seed, "points": len(pts), "front_points": int(front.sum()), "within": within,
           "rows": rows, "models": models, "seconds": time.time() - t0}
    out = Path(args.out)
    write_report(out / "calibration_forms", doc, report(doc))
    say(f"wrote {out / 'calibration_forms.md'}")
    return 0


def report(doc: dict) -> str:
    lines = [
        "# Calibration forms: one scale per weight precision against the table's affine form",
        "",
        f"Host {doc['device'].get('cpu')} ({doc['device'].get('fingerprint')}), table `{doc['table']}`; "
        f"calibration models measured {doc['measured']} (`calibration_archs` seed {doc['seed']}); predicted: the "
        f"{doc['points']} in-space points ({doc['front_points']} on the search fronts) of `{doc['bench']}` "
        f"(finished {doc['bench_finished']}), measured by that run, never seen by the fits. `affine`: a·raw + c "
        "(the table's form); `per_precision`: a_32·raw_32 + a_16·raw_16 + a_8·raw_8 + a_4·raw_4 + c, raw_b the "
        "summed entries of the blocks at b bits. LOO: leave-one-out MAPE on the calibration models themselves.",
        "",
        f"| models fitted | form | coefficients (a, c / a_32, a_16, a_8, a_4, c) | LOO MAPE | front within ±{doc['within']:.0%} | all within | "
        "MAPE (all) | mean signed |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in doc["rows"]:
        lines.append(f"| {r['models']} | {r['form']} | {', '.join(f'{c:.3f}' for c in r['coef'])} | "
                     f"{r['loo_mape']:.1%} | {r['front_within']:.0%} | {r['all_within']:.0%} | {r['mape']:.1%} | "
                     f"{r['mean_signed']:+.1%} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
