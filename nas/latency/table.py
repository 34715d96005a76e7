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
import math
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nas.errors import LatencyTableError
from nas.files import read_utf8, sha256_json, write_json_atomic
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


def _check_entries(entries: Any, where: str) -> None:
    """Raise unless ``entries`` is a non-empty object of ``{median_ms > 0, iqr_ms >= 0}`` rows (finite numbers).

    A missing ``entries`` or ``median_ms`` is left to :meth:`LatencyTable.from_dict`'s own message.
    """
    if entries is None:
        return
    if not isinstance(entries, dict):
        raise LatencyTableError(f"{where}: entries: expected an object of entries, got {type(entries).__name__}")
    if not entries:
        raise LatencyTableError(f"{where}: entries: no entries (a table must price every block of its space)")

    def number(v: Any) -> bool:
        return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)

    for key, row in entries.items():
        if not isinstance(row, dict):
            raise LatencyTableError(f"{where}: entries.{key}: expected an object with median_ms, got {row!r}")
        if "median_ms" in row and not (number(row["median_ms"]) and row["median_ms"] > 0):
            raise LatencyTableError(f"{where}: entries.{key}.median_ms: {row['median_ms']!r} is not a positive, "
                                    "finite number of milliseconds")
        if "iqr_ms" in row and not (number(row["iqr_ms"]) and row["iqr_ms"] >= 0):
            raise LatencyTableError(f"{where}: entries.{key}.iqr_ms: {row['iqr_ms']!r} is not a finite number >= 0")


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
        _check_entries(d.get("entries"), where)
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
        """Write atomically (:func:`nas.files.write_json_atomic`: temporary file beside it, fsync, rename)."""
        write_json_atomic(path, self.to_dict())
        return Path(path)

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


def load_table(name_or_path: str | Path, *, fingerprint: str | None = None) -> LatencyTable:
    """A table by path, or by file name (with or without ``.json``) among the shipped ones.

    A shipped name resolves per device: ``latency_luts/<fingerprint>/<name>.json`` when the
    machine (``fingerprint``, default this one's, :func:`nas.latency.device.device_info`) has
    its own table, else the default ``latency_luts/<name>.json`` (measured on another machine:
    :meth:`LatencyTable.check_environment` says so).

    Raises:
        LatencyTableError: missing, unreadable (not UTF-8), truncated or corrupt file, unknown schema,
            no entries, or an entry whose ``median_ms`` is not > 0 or ``iqr_ms`` not >= 0 (finite).
    """
    p = Path(name_or_path)
    if not p.is_file():
        res = shipped_table(p.name, fingerprint=fingerprint)
        if res is None:
            raise LatencyTableError(f"{name_or_path}: no such latency table file (nor a shipped table)")
        text, where = res
    else:
        where = str(p)
        text = read_utf8(p, LatencyTableError, "the latency table")
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


def table_sha256(table: LatencyTable) -> str:
    """The content hash a trial pins its table by: :func:`nas.files.sha256_json` of :meth:`LatencyTable.to_dict`.

    The file's path, its formatting and any field the schema does not know play no part, so a copy
    written from ``to_dict()`` has the hash of the table it copies.
    """
    return sha256_json(table.to_dict())


def installed_tables() -> Iterator[LatencyTable]:
    """Every table installed with the package (``latency_luts/*.json`` and ``latency_luts/<fingerprint>/*.json``).

    Each file is parsed only when the iteration reaches it, in sorted order, top level first.

    Raises:
        LatencyTableError: an installed file is not a valid table (raised when the iteration reaches it).
    """
    for load in _installed_loaders():
        yield load()


def _installed_loaders() -> Iterator[Callable[[], LatencyTable]]:
    """One loader per installed table file (see :func:`installed_tables`), so a caller can skip a broken one."""
    from importlib import resources

    def loader(res: Any) -> Callable[[], LatencyTable]:
        def load() -> LatencyTable:
            with resources.as_file(res) as path:
                return load_table(path)

        return load

    root = resources.files("latency_luts")
    folders = [root] + sorted((d for d in root.iterdir() if d.is_dir() and not d.name.startswith(("_", "."))),
                              key=lambda d: d.name)
    for folder in folders:
        for res in sorted((f for f in folder.iterdir() if f.is_file() and f.name.endswith(".json")),
                          key=lambda f: f.name):
            yield loader(res)


def find_table(sha256: str, *, extra_dirs: Sequence[str | Path] = (), hint: str | Path | None = None) -> LatencyTable:
    """The table whose content hash (:func:`table_sha256`) is ``sha256``, wherever it is.

    Searched in order: ``hint`` (a recorded path, or a name :func:`load_table` resolves) when it
    holds the table; the installed tables (:func:`installed_tables`); the ``*.json`` files of each
    of ``extra_dirs`` (e.g. a study's stored copies, ``<sha256>.json`` first). The working
    directory plays no part unless ``hint`` is a relative path. Files that do not parse are skipped.

    Args:
        sha256: the hex digest a trial recorded.
        extra_dirs: further folders of table files.
        hint: where the table was when it was recorded.

    Returns:
        The matching table; its ``path`` says which file it came from.

    Raises:
        LatencyTableError: no table has that hash; the message names the wanted hash, the hash of
            the table ``hint`` resolves to (when it resolves to another one), and where it looked.

    Example:
        >>> t = next(installed_tables())
        >>> find_table(table_sha256(t)).to_dict() == t.to_dict()
        True
    """
    looked: list[str] = []
    hint_note = ""
    if hint is not None and str(hint):
        try:
            candidate = load_table(hint)
        except LatencyTableError as e:
            hint_note = f"; recorded path {str(hint)!r}: {e}"
        else:
            got = table_sha256(candidate)
            if got == sha256:
                return candidate
            hint_note = (f"; recorded path {str(hint)!r} resolves to {candidate.path} with sha256 {got} "
                         "(a different table)")
        looked.append(str(hint))
    n = 0
    skipped: list[str] = []
    for load in _installed_loaders():
        try:
            table = load()
        except LatencyTableError as e:  # a broken installed file does not hide the others
            skipped.append(str(e))
            continue
        n += 1
        if table_sha256(table) == sha256:
            return table
    looked.append(f"{n} installed table(s) in latency_luts/")
    for d in extra_dirs:
        d = Path(d)
        files = sorted(d.glob("*.json")) if d.is_dir() else []
        files.sort(key=lambda p: p.name != f"{sha256}.json")  # a stored copy is named by its hash
        for f in files:
            try:
                table = load_table(f)
            except LatencyTableError as e:
                skipped.append(str(e))
                continue
            if table_sha256(table) == sha256:
                return table
        looked.append(f"{d} ({len(files)} file(s))" if d.is_dir() else f"{d} (no such folder)")
    raise LatencyTableError(
        f"latency_table.sha256: no latency table has sha256 {sha256}{hint_note}; looked in: " + ", ".join(looked)
        + (f"; skipped {len(skipped)} unreadable file(s): " + "; ".join(skipped) if skipped else "")
    )
