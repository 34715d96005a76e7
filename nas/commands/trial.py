"""``nas trial``: run one search trial (search, derive, fine-tune, evaluate) without Ray or Optuna."""

from __future__ import annotations

import json
import os
import sys
import tempfile
from pathlib import Path

from nas.commands.output import add_format, render
from nas.errors import ConfigError


def register(sub) -> None:
    p = sub.add_parser("trial", help="run one DNAS search trial (trainers.search_once) and save its subnet")
    p.add_argument("--space", default="minilm-l6")
    p.add_argument("--table", default=None, help="latency table name or path (default: the config's)")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--target-fraction", type=float, default=None, help="T as a fraction of the full model")
    g.add_argument("--target-ms", type=float, default=None, help="T in ms")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="any other SearchConfig field (value parsed as JSON), repeatable")
    p.add_argument("--out", default=None, help="folder for subnet/ and result.json")
    p.add_argument("--checkpoint-dir", default=None, help="checkpoint the search here and resume from it")
    add_format(p)
    p.set_defaults(func=cmd_trial)


def config_from_args(args):
    """The :class:`trainers.SearchConfig` named by the options (typed errors for bad keys or values)."""
    from trainers.config import SearchConfig

    d = SearchConfig().to_dict()
    for item in args.set:
        key, sep, raw = item.partition("=")
        if not sep:
            raise ConfigError(f"--set {item}: expected KEY=VALUE")
        if key not in d:
            raise ConfigError(f"{key}: unknown field; allowed: {', '.join(sorted(d))}")
        try:
            d[key] = json.loads(raw)
        except json.JSONDecodeError:
            d[key] = raw
    d.update(space=args.space, seed=args.seed)
    if args.table:
        d["latency_table"] = args.table
    if args.target_ms is not None:
        d.update(target_ms=args.target_ms, target_fraction=None)
    elif args.target_fraction is not None:
        d.update(target_fraction=args.target_fraction, target_ms=None)
    return SearchConfig.from_dict(d)


def cmd_trial(args) -> int:
    from trainers import search_once

    config = config_from_args(args)
    result = search_once(config, checkpoint_dir=args.checkpoint_dir)
    d = result.to_dict()
    if args.out:
        out = Path(args.out)
        result.subnet.save(out / "subnet")
        fd, tmp = tempfile.mkstemp(dir=out, prefix=".result.")
        with os.fdopen(fd, "w") as f:
            json.dump({"config": config.to_dict(), "result": d}, f, indent=1)
        os.replace(tmp, out / "result.json")
    if args.format == "json":
        print(json.dumps(d, indent=1))
    else:
        keys = ("arch_summary", "latency_ms", "target_ms", "feasible", "size_mb", "metric", "quality_before",
                "quality_after", "teacher_quality")
        print(render([{k: d[k] for k in keys}], args.format))
    return 0
