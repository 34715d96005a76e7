"""``nas space show|check``: inspect a search space and check derive() against the supernet."""

from __future__ import annotations

import json
import sys

from nas.commands.output import add_format, render


def register(sub) -> None:
    p = sub.add_parser("space", help="inspect search spaces")
    ss = p.add_subparsers(dest="space_command", metavar="ACTION")
    ss.required = True

    show = ss.add_parser("show", help="print every label of a space with its choices")
    show.add_argument("space", help="a shipped space name (nas space list) or a YAML path")
    add_format(show)
    show.set_defaults(func=cmd_show)

    ls = ss.add_parser("list", help="list the shipped spaces")
    add_format(ls)
    ls.set_defaults(func=cmd_list)

    check = ss.add_parser("check", help="derive random subnets and compare each with the supernet")
    check.add_argument("space")
    check.add_argument("--samples", type=int, default=5, help="random architectures to check (default 5)")
    check.add_argument("--seed", type=int, default=0)
    check.add_argument("--tolerance", type=float, default=1e-4, help="max abs diff allowed (default 1e-4)")
    add_format(check, default="json")
    check.set_defaults(func=cmd_check)


def cmd_list(args) -> int:
    from nas.spaces import list_spaces, load_space

    rows = []
    for name in list_spaces():
        s = load_space(name)
        rows.append({"space": name, "model": s.model, "family": s.dims.family, "labels": len(s), "hash": s.hash})
    print(render(rows, args.format))
    return 0


def cmd_show(args) -> int:
    from nas.spaces import load_space

    space = load_space(args.space)
    if args.format == "json":
        print(json.dumps(space.to_dict(), indent=1))
        return 0
    rows = [{"label": c.label, "choices": list(c.options)} for c in space]
    if args.format == "table":
        d = space.dims
        print(
            f"space {space.name} (hash {space.hash}): model {space.model}, {d.family}, {d.num_layers} layers, "
            f"{d.num_heads} heads ({d.num_kv_heads} KV), hidden {d.hidden}, FFN {d.intermediate}"
        )
    print(render(rows, args.format))
    return 0


def cmd_check(args) -> int:
    from nas.spaces import load_space
    from nas.supernet.check import check_derive

    space = load_space(args.space)
    report = check_derive(space, samples=args.samples, seed=args.seed, tolerance=args.tolerance, log=sys.stderr)
    if args.format == "json":
        print(json.dumps(report, indent=1))
    else:
        print(render(report["subnets"], args.format))
        print(f"max_abs_diff {report['max_abs_diff']:.3g} over {report['samples']} samples (tolerance {args.tolerance:g})")
    return 0 if report["ok"] else 1
