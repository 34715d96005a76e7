"""Plot a study: every complete trial and its Pareto front, latency against quality (PNG or HTML).

The x axis is one latency objective (``latency``: the study's first, e.g. ``ttft_ms`` for a decoder
priced per phase); the HTML table lists every latency of ``latency_columns``.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from pathlib import Path

from nas.errors import ConfigError
from nas.files import write_bytes_atomic
from nas.search.pareto import Point, latencies


def plot_front(points: Sequence[Point], front: Sequence[Point], path: str | Path, *, title: str = "",
               latency: str = "latency_ms", latency_columns: Sequence[str] | None = None) -> Path:
    """Write a scatter of ``points`` with ``front`` highlighted to ``.png`` or ``.html`` (atomically).

    Args:
        points, front: every complete trial, and the front among them.
        path: a ``.png`` or ``.html`` file.
        title: the plot's title.
        latency: the latency objective on the x axis.
        latency_columns: the latencies the HTML table lists (default: ``latency`` alone).
    """
    def x(p: Point) -> float:
        return latencies(p).get(latency, float("nan"))

    columns = tuple(latency_columns or (latency,))
    path = Path(path)
    if path.suffix not in (".png", ".html"):
        raise ConfigError(f"plot: {path.name}: use a .png or .html file")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.4))
    ax.scatter([x(p) for p in points], [p.quality for p in points], c="0.7", s=18, label="complete trials")
    fr = sorted(front, key=lambda p: (x(p), p.trial))
    ax.plot([x(p) for p in fr], [p.quality for p in fr], "o-", c="C3", label="Pareto front")
    for p in fr:
        ax.annotate(str(p.trial), (x(p), p.quality), textcoords="offset points", xytext=(4, 4), fontsize=8)
    ax.set_xlabel("predicted latency (ms)" if latency == "latency_ms" else f"predicted {latency} (ms)")
    ax.set_ylabel("quality")
    ax.set_title(title)
    ax.legend(loc="lower right")
    fig.tight_layout()
    buf = io.BytesIO() if path.suffix == ".png" else io.StringIO()
    fig.savefig(buf, format="png" if path.suffix == ".png" else "svg", dpi=120)
    plt.close(fig)
    if path.suffix == ".html":
        heads = "".join(f"<th>{'latency ms' if c == 'latency_ms' else c}</th>" for c in columns)
        rows = "".join(f"<tr><td>{p.trial}</td><td>{p.quality:.4g}</td>"
                       + "".join(f"<td>{latencies(p).get(c, float('nan')):.4g}</td>" for c in columns)
                       + f"<td>{p.size_mb:.4g}</td><td><code>{p.arch_summary}</code></td></tr>" for p in fr)
        data = (f"<!doctype html><meta charset='utf-8'><title>{title}</title><h1>{title}</h1>{buf.getvalue()}"
                f"<table border=1 cellpadding=4><tr><th>trial</th><th>quality</th>{heads}"
                f"<th>size MB</th><th>arch</th></tr>{rows}</table>").encode()
    else:
        data = buf.getvalue()
    write_bytes_atomic(path, data)
    return path
