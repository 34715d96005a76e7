"""``nas search``, ``nas pareto``, ``nas studies``: run searches and query their Pareto fronts."""

from __future__ import annotations

import json
import sys

from nas.commands.output import add_format, render

FRONT_COLUMNS = ("trial", "quality", "latency_ms", "size_mb", "arch")


def register(sub) -> None:
    s = sub.add_parser("search", help="run (or resume) an architecture search; prints the Pareto front")
    s.add_argument("experiment", help="experiment YAML (experiments/*.yaml)")
    _storage(s)
    s.add_argument("--study", help="study name (default: the experiment's name)")
    s.add_argument("--trials", type=int, help="trials to run (with --resume: complete trials the study should hold)")
    s.add_argument("--concurrency", type=int, help="trials at once (default: the experiment's run.concurrency)")
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
    p.add_argument("--plot", metavar="FILE", help="also plot latency vs quality to FILE.png or FILE.html")
    add_format(p)
    p.set_defaults(func=cmd_pareto)

    st = sub.add_parser("studies", help="list the studies in a storage")
    _storage(st)
    add_format(st)
    st.set_defaults(func=cmd_studies)


def _storage(p) -> None:
    p.add_argument("--storage", help="study storage URL (default: $NAS_STORAGE, else sqlite:///nas_studies.db)")


def front_rows(points) -> list[dict]:
    return [{"trial": p.trial, "values": list(p.values), "quality": p.quality, "latency_ms": p.latency_ms,
             "size_mb": p.size_mb, "arch": p.arch_summary, "arch_labels": p.arch,
             "subnet_dir": p.attrs.get("subnet_dir")} for p in points]


def print_front(points, fmt: str) -> None:
    rows = front_rows(points)
    print(render(rows, fmt, columns=FRONT_COLUMNS) if fmt != "json" else json.dumps(rows, indent=1))


def cmd_search(args) -> int:
    from nas.search import api

    outcome = api.run_search(args.experiment, storage=args.storage, study=args.study, trials=args.trials,
                             concurrency=args.concurrency, address=args.address, resume=args.resume,
                             runs_dir=args.runs_dir, num_cpus=args.num_cpus, artifacts=args.artifacts)
    front = api.load_front(outcome.study, storage=args.storage)
    if args.format == "table":
        print(f"Pareto front of study {outcome.study} ({outcome.complete} complete trials, {outcome.storage}):")
    print_front(front, args.format)
    return 0 if outcome.complete >= outcome.requested else 1


def cmd_pareto(args) -> int:
    from nas.search import api

    front = api.load_front(args.study, storage=args.storage)
    if args.plot:
        from nas.search.plot import plot_front

        path = plot_front(api.load_points(args.study, storage=args.storage), front, args.plot,
                          title=f"study {args.study}")
        print(f"wrote plot to {path.resolve()}", file=sys.stderr)
    print_front(front, args.format)
    return 0


def cmd_studies(args) -> int:
    from nas.search import api

    print(render(api.list_studies(storage=args.storage), args.format,
                 columns=("study", "objectives", "trials", "complete", "failed", "running", "created")))
    return 0
