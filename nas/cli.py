"""The ``nas`` command line: a table of subcommands.

Each entry maps a command name to the module that defines it; the module
exposes ``register(subparsers)`` and sets ``func`` on its parsers. Modules are
imported only to build the parser, and heavy libraries (Ray, ONNX,
onnxruntime) only inside the handlers. Every :class:`~nas.errors.NASError`
becomes one line on stderr and exit code 1; a search stopped by a signal
(:class:`~nas.errors.SearchInterrupted`) exits 128 + the signal (130 SIGINT, 143 SIGTERM).
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from nas.version import __version__
from nas.errors import NASError, SearchInterrupted

COMMANDS: tuple[tuple[str, str], ...] = (
    ("space", "nas.commands.space"),
    ("trial", "nas.commands.trial"),
    ("lut", "nas.commands.lut"),
    ("search", "nas.commands.search"),
    ("supernet", "nas.commands.supernet"),
    ("export", "nas.commands.export"),
    ("generate", "nas.commands.generate"),
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="nas",
        description="Neural architecture search for compressing pretrained transformers to a latency budget.",
    )
    parser.add_argument("--version", action="version", version=f"nas {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for _name, module in COMMANDS:
        importlib.import_module(module).register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        rc = args.func(args)
    except SearchInterrupted as e:
        print(f"nas: {e}", file=sys.stderr)
        return 128 + e.signum
    except NASError as e:
        message = " ".join(line.strip() for line in str(e).splitlines() if line.strip())
        print(f"nas: error: {message or type(e).__name__}", file=sys.stderr)  # one line, whatever the message
        return 1
    except KeyboardInterrupt:
        print("nas: interrupted", file=sys.stderr)
        return 130
    return int(rc or 0)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
