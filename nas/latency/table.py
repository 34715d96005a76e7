"""The latency table: measured block latencies of one space on one device, runtime and shape.

Stored as JSON (``latency_luts/<space>.<runtime>.t<threads>.b<batch>.s<seq>.json``; a machine
with its own measurement ships it as ``latency_luts/<device fingerprint>/<same name>``, which
:func:`load_table` prefers on that machine)::

    {
      "schema": 1,
      "space": {"name": "minilm-l6", "hash": "6331f5d71759f3b5"},
      "device": {"cpu": "...", "isa": ["avx2", "avx512_vnni"], "cores": 2, "fingerprint": "..."},
      "runtime": {"name": "onnxruntime-cpu", "version": "1.31.1", "provider": "CPUExecutionProvider"},
      "threads": 1, "batch": 1, "seq": 128,
      "protocol": {...},                       # warm-up, repeats, rounds, noise threshold
      "entries": {"attn:heads=12:bits=8": {"median_ms": 1.9, "iqr_ms": 0.05, "n": 60}, ...},
      "calibration": {"form": "affine", "scale": 1.0, "per_layer_ms": 0.0, "constant_ms": 0.0,
                      "bit_scale": {"8": 1.7, ...},    # per_precision only (nas.latency.calibration)
                      "fit_mape": 0.0, "models": [...], ...},
      "created": "2026-11-22T03:00:00Z"
    }

Entry keys (one per block shape; blocks of every layer share them):

* ``attn:heads=H:bits=B`` – one attention block (q/k/v/o, softmax, residual, norm);
* ``ffn:width=W:bits=B`` – one FFN block;
* ``embed:bits=B`` – the embeddings;
* ``rest`` – what follows the last layer (final norm, pooling);
* ``overhead`` – a fixed per-inference cost (session call, input copies).
"""

from __future__ import annotations

import json
import os
import tempfile
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nas.errors import LatencyTableError
from nas.latency.calibration import Calibration
from nas.spaces.space import SearchSpace

TABLE_SCHEMA = 1


def attn_key(heads: int, bits: int) -> str:
    return f"attn:heads={heads}:bits={bits}"


def ffn_key(width: int, bits: int) -> str:
    return f"ffn:width={width}:bits={bits}"


def embed_key(bits: int) -> str:
    return f"embed:bits={bits}"


REST, OVERHEAD = "rest", "overhead"


def required_keys(space: SearchSpace) -> list[str]:
    """Every entry the predictor needs to price any architecture of ``space``."""
    keys: set[str] = {REST, OVERHEAD}
    keys.update(embed_key(b) for b in space.options("embed.bits"))
    for i in range(space.dims.num_layers):
        for h in space.options(f"layer{i}.heads"):
            keys.update(attn_key(h, b) for b in space.options(f"layer{i}.attn.bits"))
        for w in space.options(f"layer{i}.ffn"):
            keys.update(ffn_key(w, b) for b in space.options(f"layer{i}.ffn.bits"))
    return sorted(keys)


@dataclass(frozen=True)
class LatencyTable:
    """A loaded table (see module docstring for the fields)."""

    space_name: str
    space_hash: str
    device: dict[str, Any]
    runtime: dict[str, Any]
    threads: int
    batch: int
    seq: int
    entries: dict[str, dict[str, float]]
    calibration: dict[str, float] = field(default_factory=dict)
    protocol: dict[str, Any] = field(default_factory=dict)
    created: str = ""
    path: str | None = None

    @property
    def id(self) -> str:
        """A short name: ``<space>/<runtime>/t<threads>/b<batch>/s<seq>``."""
        return f"{self.space_name}/{self.runtime.get('name')}/t{self.threads}/b{self.batch}/s{self.seq}"

    def ms(self, key: str) -> float:
        """Median latency of one entry.

        Raises:
            LatencyTableError: the entry is missing (no extrapolation).
        """
        try:
            return float(self.entries[key]["median_ms"])
        except KeyError:
            raise LatencyTableError(f"{key}: no such entry in latency table {self.id}") from None

    def check_space(self, space: SearchSpace) -> None:
        """Raise unless this table was built for ``space`` and has every entry it needs."""
        if self.space_hash != space.hash:
            raise LatencyTableError(
                f"space hash: table {self.id} was built for space hash {self.space_hash}, "
                f"but space {space.name!r} has hash {space.hash}"
            )
        missing = [k for k in required_keys(space) if k not in self.entries]
        if missing:
            raise LatencyTableError(f"{missing[0]}: no such entry in latency table {self.id} ({len(missing)} missing)")

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema": TABLE_SCHEMA,
            "space": {"name": self.space_name, "hash": self.space_hash},
            "device": self.device,
            "runtime": self.runtime,
            "threads": self.threads,
            "batch": self.batch,
            "seq": self.seq,
            "protocol": self.protocol,
            "entries": self.entries,
            "calibration": self.calibration,
            "created": self.created,
        }

    @classmethod
    def from_dict(cls, d: Any, *, path: str | None = None) -> "LatencyTable":
        where = path or "<table>"
        if not isinstance(d, dict):
            raise LatencyTableError(f"{where}: not a latency table (expected a JSON object)")
        if d.get("schema") != TABLE_SCHEMA:
            raise LatencyTableError(f"{where}: schema: unknown latency-table schema version {d.get('schema')!r}")
        if d.get("calibration") is not None and not isinstance(d["calibration"], dict):
            raise LatencyTableError(f"{where}: calibration: expected an object, got {d['calibration']!r}")
        try:
            Calibration.from_dict(d.get("calibration"))
        except LatencyTableError as e:
            raise LatencyTableError(f"{where}: {e}") from None
        try:
            entries = d["entries"]
            for k, e in entries.items():
                float(e["median_ms"])
            return cls(
                space_name=d["space"]["name"],
                space_hash=d["space"]["hash"],
                device=dict(d["device"]),
                runtime=dict(d["runtime"]),
                threads=int(d["threads"]),
                batch=int(d["batch"]),
                seq=int(d["seq"]),
                entries={k: dict(v) for k, v in entries.items()},
                calibration=dict(d.get("calibration") or {}),
                protocol=dict(d.get("protocol") or {}),
                created=str(d.get("created", "")),
                path=path,
            )
        except (KeyError, TypeError, ValueError, AttributeError) as e:
            raise LatencyTableError(f"{where}: malformed latency table: missing or bad field {e}") from None

    def save(self, path: str | Path) -> Path:
        """Write atomically (temporary file in the same folder, then rename)."""
        return write_json_atomic(self.to_dict(), path)

    def check_environment(self, *, device: dict[str, Any] | None = None, runtime: dict[str, Any] | None = None,
                          strict: bool = False) -> list[str]:
        """Compare with the current device/runtime; warn (or raise when ``strict``) on mismatch.

        Returns:
            The mismatches found, one line each.
        """
        problems = []
        if device is not None and device.get("fingerprint") != self.device.get("fingerprint"):
            problems.append(
                f"device: table measured on {self.device.get('cpu')!r} ({self.device.get('fingerprint')}), "
                f"this is {device.get('cpu')!r} ({device.get('fingerprint')})"
            )
        if runtime is not None:
            for k in ("name", "version", "provider"):
                if runtime.get(k) != self.runtime.get(k):
                    problems.append(f"runtime.{k}: table has {self.runtime.get(k)!r}, this is {runtime.get(k)!r}")
        if problems and strict:
            raise LatencyTableError(f"{self.id}: " + "; ".join(problems))
        for p in problems:
            warnings.warn(f"latency table {self.id}: {p}", stacklevel=2)
        return problems


def write_json_atomic(data: Any, path: str | Path) -> Path:
    """Write ``data`` as JSON to ``path`` atomically: temporary file in the same folder, fsync, rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(data, f, indent=1, sort_keys=False)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def load_table(name_or_path: str | Path, *, fingerprint: str | None = None) -> LatencyTable:
    """A table by path, or by file name (with or without ``.json``) among the shipped ones.

    A shipped name resolves per device: ``latency_luts/<fingerprint>/<name>.json`` when the
    machine (``fingerprint``, default this one's, :func:`nas.latency.device.device_info`) has
    its own table, else the default ``latency_luts/<name>.json`` (measured on another machine:
    :meth:`LatencyTable.check_environment` says so).

    Raises:
        LatencyTableError: missing, truncated or corrupt file, unknown schema.
    """
    p = Path(name_or_path)
    if not p.is_file():
        res = shipped_table(p.name, fingerprint=fingerprint)
        if res is None:
            raise LatencyTableError(f"{name_or_path}: no such latency table file (nor a shipped table)")
        text, where = res
    else:
        text, where = p.read_text(), str(p)
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise LatencyTableError(f"{where}: corrupt or truncated JSON ({e.msg} at line {e.lineno})") from None
    return LatencyTable.from_dict(data, path=where)


def shipped_table(name: str, *, fingerprint: str | None = None) -> tuple[str, str] | None:
    """``(JSON text, "latency_luts/...")`` of the shipped table ``name`` for a device, or None.

    The device's own ``latency_luts/<fingerprint>/<name>.json`` wins over the default ``latency_luts/<name>.json``.
    """
    from importlib import resources

    from nas.latency.device import device_info

    stem = name if name.endswith(".json") else f"{name}.json"
    root = resources.files("latency_luts")
    fp = fingerprint if fingerprint is not None else device_info()["fingerprint"]
    for parts in ((fp, stem), (stem,)):
        res = root.joinpath(*parts)
        if res.is_file():
            return res.read_text(), "latency_luts/" + "/".join(parts)
    return None
