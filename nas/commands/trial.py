"""``nas trial``: run one search trial (search, derive, fine-tune, evaluate) without Ray or Optuna, through the trial plug-in."""

from __future__ import annotations

import json
from pathlib import Path

from nas.commands.output import add_format, render
from nas.errors import ConfigError
from nas.search.plugin import DEFAULT_PLUGIN


def register(sub) -> None:
    p = sub.add_parser("trial", help="run one search trial through the trial plug-in (default trainers:dnas) and save its subnet")
    p.add_argument("--space", default="minilm-l6")
    p.add_argument("--table", default=None, help="latency table name or path (default: the config's)")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--target-fraction", type=float, default=None, help="T as a fraction of the full model")
    g.add_argument("--target-ms", type=float, default=None, help="T in ms")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="any other field of the plug-in's config (value parsed as JSON), repeatable")
    p.add_argument("--plugin", default=DEFAULT_PLUGIN, help="trial plug-in, module:attribute (default %(default)s)")
    p.add_argument("--out", default=None, help="folder for subnet/ and result.json")
    p.add_argument("--checkpoint-dir", default=None, help="checkpoint the search here and resume from it")
    add_format(p)
    p.set_defaults(func=cmd_trial)


def config_from_args(args, plugin):
    """The plug-in's config named by the options (typed errors for bad keys or values)."""
    fields = plugin.config_fields()
    d: dict = {}
    for item in args.set:
        key, sep, raw = item.partition("=")
        if not sep:
            raise ConfigError(f"--set {item}: expected KEY=VALUE")
        if key not in fields:
            raise ConfigError(f"{key}: unknown field; allowed: {', '.join(sorted(fields))}")
        try:
            d[key] = json.loads(raw)
        except json.JSONDecodeError:
            d[key] = raw
    d.update(space=args.space, seed=args.seed)
    if args.table:
        d["latency_table"] = args.table
    if args.target_ms is not None:
        d["target_ms"] = args.target_ms
    elif args.target_fraction is not None:
        d["target_fraction"] = args.target_fraction
    return plugin.make_config(d)


def cmd_trial(args) -> int:
    from nas.files import write_json_atomic
    from nas.search.plugin import load_plugin

    plugin = load_plugin(args.plugin)
    config = config_from_args(args, plugin)
    result = plugin.run(config, checkpoint_dir=args.checkpoint_dir)
    d = result.to_dict()
    if args.out:
        out = Path(args.out)
        result.subnet.save(out / "subnet")
        write_json_atomic(out / "result.json", {"config": config.to_dict(), "result": d})
    if args.format == "json":
        print(json.dumps(d, indent=1))
    else:
        keys = ("arch_summary", "latency_ms", "target_ms", "feasible", "size_mb", "metric", "quality_before",
                "quality_after", "teacher_quality")
        print(render([{k: d[k] for k in keys}], args.format))
    return 0
