"""Printing rows as a table, JSON or CSV (the ``-f`` option of every listing command)."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Mapping, Sequence
from typing import Any

FORMATS = ("table", "json", "csv")


def add_format(parser, default: str = "table") -> None:
    parser.add_argument("-f", "--format", choices=FORMATS, default=default, help=f"output format (default {default})")


def render(rows: Sequence[Mapping[str, Any]], fmt: str, *, columns: Sequence[str] | None = None) -> str:
    """Rows as an aligned text table, a JSON list, or CSV with a header."""
    if fmt == "json":
        return json.dumps(list(rows), indent=1, default=str)
    columns = list(columns or (rows[0].keys() if rows else []))
    if fmt == "csv":
        buf = io.StringIO()
        w = csv.DictWriter(buf, fieldnames=columns, extrasaction="ignore", lineterminator="\n")
        w.writeheader()
        for r in rows:
            w.writerow({k: _cell(r.get(k)) for k in columns})
        return buf.getvalue().rstrip("\n")
    cells = [[str(c) for c in columns]] + [[_cell(r.get(c)) for c in columns] for r in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(columns))]
    lines = ["  ".join(v.ljust(w) for v, w in zip(row, widths)).rstrip() for row in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def _cell(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    if isinstance(v, (list, tuple)):
        return ",".join(map(str, v))
    return "" if v is None else str(v)
