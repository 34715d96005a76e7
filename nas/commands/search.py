"""``nas search``, ``nas pareto``, ``nas studies``: run searches and query their Pareto fronts.

The front shows one column per latency objective of the study (``latency_ms``; ``ttft_ms`` and
``tpot_ms`` for a decoder priced per phase). ``nas pareto --max NAME=VALUE`` (repeatable; NAME a
latency objective of the study or ``size_mb``) and ``--max-latency MS`` keep the front points
within the bounds, as ``nas export`` picks among them (:mod:`nas.search.pareto`)::

    nas pareto --study phases --max ttft_ms=40 --max tpot_ms=15
"""

from __future__ import annotations

import json
import math
import sys
from collections.abc import Sequence

from nas.commands.output import add_format, render
from nas.errors import ConfigError

FRONT_COLUMNS = ("trial", "quality", "latency_ms", "size_mb", "arch")  # a single-latency study's columns
MAX_HELP = ("keep trials with NAME <= VALUE: a latency objective of the study (latency_ms; ttft_ms, tpot_ms, "
            "request_ms) or size_mb; repeatable (--max ttft_ms=40 --max tpot_ms=15)")


def register(sub) -> None:
    s = sub.add_parser("search", help="run (or resume) an architecture search; prints the Pareto front")
    s.add_argument("experiment", help="experiment YAML (experiments/*.yaml)")
    _storage(s)
    s.add_argument("--study", help="study name (default: the experiment's name)")
    s.add_argument("--trials", type=int, help="trials to run (with --resume: complete trials the study should hold)")
    s.add_argument("--concurrency", type=int, help="trials at once (default: the experiment's run.concurrency)")
    s.add_argument("--timeout", type=float, metavar="SECONDS", help="start no trial after SECONDS (running ones "
                   "finish; default: the experiment's run.timeout_s); without a trial count, as many trials as fit")
    s.add_argument("--address", help="join a Ray cluster: auto or ray://host:port (default: start a local Ray)")
    s.add_argument("--resume", action="store_true", help="continue an existing study (e.g. after the driver died)")
    s.add_argument("--runs-dir", help="Ray Tune's records and retried trials' checkpoints (default: runs/ next to "
                   "the SQLite file)")
    s.add_argument("--artifacts", metavar="URL", help="artifact store for trial subnets: a folder every node "
                   "reaches or s3://bucket/prefix (default: $NAS_ARTIFACTS, else <db>.artifacts beside a SQLite file)")
    s.add_argument("--num-cpus", type=int, help="CPUs of the local Ray (default: all)")
    add_format(s)
    s.set_defaults(func=cmd_search)

    p = sub.add_parser("pareto", help="print the Pareto front of a study")
    p.add_argument("--study", required=True, help="study name")
    _storage(p)
    p.add_argument("--max", action="append", metavar="NAME=VALUE", dest="max_values", help=MAX_HELP)
    p.add_argument("--max-latency", type=float, metavar="MS",
                   help="keep trials with latency_ms <= MS (a study with one latency; else use --max)")
    p.add_argument("--plot", metavar="FILE", help="also plot latency vs quality to FILE.png or FILE.html")
    add_format(p)
    p.set_defaults(func=cmd_pareto)

    st = sub.add_parser("studies", help="list the studies in a storage")
    _storage(st)
    add_format(st)
    st.set_defaults(func=cmd_studies)


def _storage(p) -> None:
    p.add_argument("--storage", help="study storage URL (default: $NAS_STORAGE, else sqlite:///nas_studies.db)")


def parse_max(items: Sequence[str] | None) -> dict[str, float]:
    """``["ttft_ms=40", "tpot_ms=15"]`` (the ``--max`` options) to ``{"ttft_ms": 40.0, "tpot_ms": 15.0}``.

    Raises:
        ConfigError: one line naming the malformed item (``max: ...``).

    Example:
        >>> parse_max(["ttft_ms=40", "tpot_ms=1.5"])
        {'ttft_ms': 40.0, 'tpot_ms': 1.5}
    """
    out: dict[str, float] = {}
    for item in items or ():
        name, eq, value = item.partition("=")
        name = name.strip()
        try:
            v = float(value)
        except ValueError:
            v = math.nan
        if not eq or not name or not math.isfinite(v):
            raise ConfigError(f"max: {item!r} is not NAME=VALUE (e.g. --max ttft_ms=40 --max tpot_ms=15)")
        if name in out:
            raise ConfigError(f"max: {name} given twice")
        out[name] = v
    return out


def front_rows(points, latency_names: Sequence[str] = ("latency_ms",)) -> list[dict]:
    from nas.search.pareto import latencies

    rows = []
    for p in points:
        lat = latencies(p)
        rows.append({"trial": p.trial, "values": list(p.values), "quality": p.quality,
                     **{n: lat.get(n, math.nan) for n in latency_names}, "size_mb": p.size_mb,
                     "latencies": lat, "arch": p.arch_summary, "arch_labels": p.arch,
                     "subnet_dir": p.attrs.get("subnet_dir")})
    return rows


def print_front(points, fmt: str, latency_names: Sequence[str] = ("latency_ms",)) -> None:
    rows = front_rows(points, latency_names)
    columns = ("trial", "quality", *latency_names, "size_mb", "arch")
    print(render(rows, fmt, columns=columns) if fmt != "json" else json.dumps(rows, indent=1))


def cmd_search(args) -> int:
    from nas.search import api

    outcome = api.run_search(args.experiment, storage=args.storage, study=args.study, trials=args.trials,
                             concurrency=args.concurrency, address=args.address, resume=args.resume,
                             runs_dir=args.runs_dir, num_cpus=args.num_cpus, artifacts=args.artifacts,
                             timeout_s=args.timeout)
    front = api.load_front(outcome.study, storage=args.storage)
    if args.format == "table":
        print(f"Pareto front of study {outcome.study} ({outcome.complete} complete trials, {outcome.storage}):")
    print_front(front, args.format, api.latency_objectives(outcome.study, storage=args.storage))
    if outcome.timed_out or outcome.requested is None:  # a time budget: done when it is spent
        return 0 if outcome.complete > 0 else 1
    return 0 if outcome.complete >= outcome.requested else 1


def cmd_pareto(args) -> int:
    from nas.search import api
    from nas.search.pareto import fitting

    bounds = parse_max(args.max_values)
    front = api.load_front(args.study, storage=args.storage)
    names = api.latency_objectives(args.study, storage=args.storage)
    if bounds or args.max_latency is not None:
        front = fitting(front, max_values=bounds, max_latency_ms=args.max_latency)
    if args.plot:
        from nas.search.plot import plot_front

        path = plot_front(api.load_points(args.study, storage=args.storage), front, args.plot,
                          title=f"study {args.study}", latency=names[0], latency_columns=names)
        print(f"wrote plot to {path.resolve()}", file=sys.stderr)
    print_front(front, args.format, names)
    print(proxy_line(api.load_points(args.study, storage=args.storage)), file=sys.stderr)
    return 0


def proxy_line(points) -> str:
    """How well quality before fine-tuning (inherited weights) ranks the trials as their fine-tuned quality does."""
    from nas.search.attrs import CONFIG, METRICS
    from nas.search.proxy import MIN_TRIALS, proxy_agreement

    steps = [(p.attrs.get(CONFIG) or {}).get("finetune_steps") for p in points]
    a = proxy_agreement([(float((p.attrs.get(METRICS) or {}).get("quality_before", float("nan"))), p.quality)
                         for p in points], steps)
    if a["trials"] < MIN_TRIALS:
        return (f"proxy: Kendall tau of quality before vs after fine-tuning needs >= {MIN_TRIALS} complete trials "
                f"(have {a['trials']})")
    same = ("" if "kendall_tau_same_budget" not in a else
            f"; {a['kendall_tau_same_budget']:.3f} within fine-tuning-budget halves (<= / > {a['budget_median']:g} steps)")
    return (f"proxy: Kendall tau between quality before fine-tuning (inherited weights) and after: "
            f"{a['kendall_tau']:.3f} over {a['trials']} complete trials{same}")


def cmd_studies(args) -> int:
    from nas.search import api

    print(render(api.list_studies(storage=args.storage), args.format,
                 columns=("study", "objectives", "trials", "complete", "failed", "running", "created")))
    return 0
