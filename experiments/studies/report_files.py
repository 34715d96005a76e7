"""A study's report files, each written whole or not at all: the one copy of that rule for the studies.

A study writes its results as ``STEM.json`` (the data, JSON indented by one, keys
in insertion order) and ``STEM.md`` (the rendered report) side by side; both go
through :mod:`nas.files`, so a study cut off mid-write never leaves half a file
in ``experiments/reports``::

    from experiments.studies.report_files import write_report
    write_report(REPORTS / "int8_kernels", report, markdown(report))
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

from nas.files import write_text_atomic


def md_table(header: Sequence[str], rows: Iterable[Sequence[Any]], *, compact: bool = False) -> list[str]:
    """The lines of a Markdown table: ``| a | b |``, the rule (``| --- | --- |``, or ``|---|---|`` when
    ``compact``), then one line per row of already formatted cells.

    Example:
        >>> md_table(["T", "seed"], [["50%", 0]], compact=True)
        ['| T | seed |', '|---|---|', '| 50% | 0 |']
    """
    rule = "|" + "---|" * len(header) if compact else "| " + " | ".join("---" for _ in header) + " |"
    return [f"| {' | '.join(header)} |", rule, *(f"| {' | '.join(str(c) for c in row)} |" for row in rows)]


def write_json(path: str | Path, doc: Any, *, default: Callable[[Any], Any] | None = None) -> Path:
    """Write ``doc`` as JSON (``indent=1``; ``default`` as in :func:`json.dumps`) to ``path`` atomically."""
    path = Path(path)
    write_text_atomic(path, json.dumps(doc, indent=1, default=default))
    return path


def write_report(stem: str | Path, doc: Any, markdown: str, *,
                 default: Callable[[Any], Any] | None = None) -> tuple[Path, Path]:
    """Write ``{stem}.json`` (:func:`write_json`) and then ``{stem}.md`` (``markdown``), each atomically.

    Returns:
        The two paths, JSON first.
    """
    js = write_json(f"{stem}.json", doc, default=default)
    md = Path(f"{stem}.md")
    write_text_atomic(md, markdown)
    return js, md


def run_record(script: str, loadavg_before: list[float]) -> dict[str, Any]:
    """What every study report states about its run: the command, the host, the date and the load around it."""
    import datetime as dt
    import os
    import platform
    import sys

    import torch

    from nas.latency.device import device_info

    info = device_info()
    return {"command": f"PYTHONPATH=. .venv/bin/python experiments/studies/{script} " + " ".join(sys.argv[1:]),
            "host": f"{info['cpu']} ({info['fingerprint']}), {info['cores']} cores, torch {torch.__version__}, "
                    f"{platform.python_version()}",
            "date": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"), "loadavg_before": loadavg_before,
            "loadavg_after": [round(x, 2) for x in os.getloadavg()]}
