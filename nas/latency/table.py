"""The latency table: measured block latencies of one space on one device, runtime, shape and phase.

Stored as JSON, one file per device, runtime, shape and phase, named by :func:`table_filename`
(``latency_luts/<space>.<runtime>.t<threads>.b<batch>.s<P>.json`` for a prefill of ``P`` tokens,
``latency_luts/<space>.<runtime>.t<threads>.b<batch>.c<C>.decode.json`` for one decode step
after ``C`` cached tokens); a machine with its own measurement ships it as
``latency_luts/<device fingerprint>/<same name>``, which :func:`load_table` prefers on that
machine::

    {
      "schema": 2,
      "space": {"name": "minilm-l6", "hash": "6331f5d71759f3b5"},
      "device": {"cpu": "...", "isa": ["avx2", "avx512_vnni"], "cores": 2, "fingerprint": "..."},
      "runtime": {"name": "onnxruntime-cpu", "version": "1.31.1", "provider": "CPUExecutionProvider"},
      "threads": 1, "batch": 1, "seq": 128,
      "phase": "prefill",                      # or "decode"
      "context": 0,                            # cached tokens before the call: 0 (prefill), C (decode)
      "accuracy_level": 4,                     # MatMulNBits accuracy_level of the int4 entries (null: none set)
      "protocol": {...},                       # warm-up, repeats, rounds, noise threshold
      "entries": {"attn:heads=12:bits=8": {"median_ms": 1.9, "iqr_ms": 0.05, "n": 60}, ...},
      "calibration": {"form": "affine", "scale": 1.0, "per_layer_ms": 0.0, "constant_ms": 0.0,
                      "bit_scale": {"8": 1.7, ...},    # per_precision only (nas.latency.calibration)
                      "fit_mape": 0.0, "models": [...], ...},
      "created": "2026-11-22T03:00:00Z"
    }

**Phases.** A ``prefill`` table times one call over ``seq`` new tokens with an empty cache
(``context`` 0): an encoder's forward, or a decoder's time to first token. A ``decode`` table
(decoders only) times one call over one new token (``seq`` 1) after ``context`` cached tokens:
the time per output token. Schema 1 tables (before phases) load as prefill tables, with
``context`` 0 and no recorded accuracy level, and write back exactly as they were read (so their
:func:`table_sha256` stays the one trials pinned).

Entry keys (one per block shape; blocks of every layer share them; the same keys in both phases):

* ``attn:heads=H:bits=B`` – one attention block (q/k/v/o, softmax, residual, norm; a decoder's
  with its past keys/values in and present ones out, as the generation graph runs it);
* ``ffn:width=W:bits=B`` – one FFN block;
* ``embed:bits=B`` – the embeddings;
* ``head:bits=B`` – a decoder's tied LM head at ``embed.bits`` (logits of every new position);
  tables built before it have no head entries, and the predictor then prices no head;
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

from nas.errors import LatencyTableError, LatencyTableMismatchError
from nas.files import read_utf8, sha256_json, write_json_atomic
from nas.latency.calibration import Calibration
from nas.spaces.space import SearchSpace

TABLE_SCHEMA = 2
SCHEMAS = (1, 2)  # 1: before phases (a prefill table without phase, context or accuracy_level)
PHASES = ("prefill", "decode")
PREFILL, DECODE = PHASES
ACCURACY_LEVELS = (0, 1, 2, 3, 4)  # MatMulNBits: 0 unset (fp32 compute), 1 fp32, 2 fp16, 3 bf16, 4 int8


def attn_key(heads: int, bits: int) -> str:
    return f"attn:heads={heads}:bits={bits}"


def ffn_key(width: int, bits: int) -> str:
    return f"ffn:width={width}:bits={bits}"


def embed_key(bits: int) -> str:
    return f"embed:bits={bits}"


def head_key(bits: int) -> str:
    """A decoder's tied LM head at ``bits`` (the label that picks it is ``embed.bits``)."""
    return f"head:bits={bits}"


def is_decoder(space: SearchSpace) -> bool:
    """Whether ``space`` is a decoder's (llama family): it has an LM head and a decode phase."""
    return space.dims.family == "llama"


def shape_tag(phase: str, seq: int, context: int) -> str:
    """``s<P>`` for a prefill of ``P`` tokens, ``c<C>.decode`` for a decode step after ``C`` cached tokens.

    The one rule behind table ids and file names (:attr:`LatencyTable.id`, :func:`table_filename`).
    """
    return f"c{context}.decode" if phase == DECODE else f"s{seq}"


def table_filename(space: str, runtime: str, threads: int, batch: int, seq: int, *, phase: str = PREFILL,
                   context: int = 0) -> str:
    """``<space>.<runtime>.t<threads>.b<batch>.<shape>.json``, ``<shape>`` as :func:`shape_tag`.

    Example:
        >>> table_filename("smollm2-135m", "onnxruntime-cpu", 1, 1, 128)
        'smollm2-135m.onnxruntime-cpu.t1.b1.s128.json'
        >>> table_filename("smollm2-135m", "onnxruntime-cpu", 1, 1, 1, phase="decode", context=256)
        'smollm2-135m.onnxruntime-cpu.t1.b1.c256.decode.json'
    """
    return f"{space}.{runtime}.t{threads}.b{batch}.{shape_tag(phase, seq, context)}.json"


REST, OVERHEAD = "rest", "overhead"


def required_keys(space: SearchSpace, *, head: bool = False) -> list[str]:
    """Every entry the predictor needs to price any architecture of ``space`` (with ``head``: the LM head's too)."""
    keys: set[str] = {REST, OVERHEAD}
    keys.update(embed_key(b) for b in space.options("embed.bits"))
    if head:
        keys.update(head_key(b) for b in space.options("embed.bits"))
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
    """A loaded table (see module docstring for the fields).

    ``seq`` is the new tokens of one call (``P`` for a prefill, 1 for a decode step) and
    ``context`` the tokens cached before it (0 for a prefill, ``C`` for a decode step).

    Raises:
        LatencyTableError: at construction, an unknown phase or a shape that does not fit it.
    """

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
    phase: str = PREFILL
    context: int = 0
    accuracy_level: int | None = None
    schema: int = TABLE_SCHEMA

    def __post_init__(self) -> None:
        where = self.path or "<table>"
        if self.schema not in SCHEMAS:
            raise LatencyTableError(f"{where}: schema: unknown latency-table schema version {self.schema!r}")
        if self.phase not in PHASES:
            raise LatencyTableError(f"{where}: phase: {self.phase!r} is not one of {list(PHASES)}")
        if self.schema == 1 and (self.phase != PREFILL or self.context or self.accuracy_level is not None):
            raise LatencyTableError(f"{where}: schema: a schema 1 table is a prefill table without context or "
                                    "accuracy_level (write schema 2)")
        if self.phase == PREFILL and self.context != 0:
            raise LatencyTableError(f"{where}: context: a prefill table has no cached tokens, got {self.context}")
        if self.phase == DECODE and (self.seq != 1 or self.context < 1):
            raise LatencyTableError(f"{where}: seq/context: a decode table times 1 new token after at least one "
                                    f"cached one, got seq {self.seq}, context {self.context}")
        if self.accuracy_level is not None and self.accuracy_level not in ACCURACY_LEVELS:
            raise LatencyTableError(f"{where}: accuracy_level: {self.accuracy_level!r} is not one of "
                                    f"{list(ACCURACY_LEVELS)}")

    @property
    def id(self) -> str:
        """A short name: ``<space>/<runtime>/t<threads>/b<batch>/s<seq>`` (decode: ``.../c<context>.decode``)."""
        return (f"{self.space_name}/{self.runtime.get('name')}/t{self.threads}/b{self.batch}/"
                f"{shape_tag(self.phase, self.seq, self.context)}")

    @property
    def has_head(self) -> bool:
        """Whether the table prices a decoder's LM head (``head:bits=B`` entries; tables built before it have none)."""
        return any(k.startswith("head:") for k in self.entries)

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
        """Raise unless this table was built for ``space`` and has every entry it needs (the head's, if it has one),
        a decoder's 8-bit layer entries (onnxruntime) timed with the ``MatMulNBits`` kernel its export writes."""
        if self.space_hash != space.hash:
            raise LatencyTableError(
                f"space hash: table {self.id} was built for space hash {self.space_hash}, "
                f"but space {space.name!r} has hash {space.hash}"
            )
        missing = [k for k in required_keys(space, head=self.has_head) if k not in self.entries]
        if missing:
            raise LatencyTableError(f"{missing[0]}: no such entry in latency table {self.id} ({len(missing)} missing)")
        if self.has_head and self.runtime.get("name") == "onnxruntime-cpu":
            stale = [k for k, e in self.entries.items() if k.startswith(("attn:", "ffn:")) and k.endswith(":bits=8")
                     and e.get("kernel") and "MatMulNBits" not in str(e["kernel"])]  # a hand-made row names none
            if stale:
                raise LatencyTableError(
                    f"{stale[0]}: latency table {self.id} timed a decoder's int8 layers with "
                    f"{self.entries[stale[0]].get('kernel')!r}, but they export as 8-bit MatMulNBits "
                    f"(nas.runtime.decoder_onnx.int8_nbits_nodes); rebuild it with nas lut build")

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {
            "schema": self.schema,
            "space": {"name": self.space_name, "hash": self.space_hash},
            "device": self.device,
            "runtime": self.runtime,
            "threads": self.threads,
            "batch": self.batch,
            "seq": self.seq,
        }
        if self.schema >= 2:
            d.update(phase=self.phase, context=self.context, accuracy_level=self.accuracy_level)
        d.update(protocol=self.protocol, entries=self.entries, calibration=self.calibration, created=self.created)
        return d

    @classmethod
    def from_dict(cls, d: Any, *, path: str | None = None) -> "LatencyTable":
        where = path or "<table>"
        if not isinstance(d, dict):
            raise LatencyTableError(f"{where}: not a latency table (expected a JSON object)")
        if d.get("schema") not in SCHEMAS:
            raise LatencyTableError(f"{where}: schema: unknown latency-table schema version {d.get('schema')!r}")
        if d.get("calibration") is not None and not isinstance(d["calibration"], dict):
            raise LatencyTableError(f"{where}: calibration: expected an object, got {d['calibration']!r}")
        try:
            Calibration.from_dict(d.get("calibration"))
        except LatencyTableError as e:
            raise LatencyTableError(f"{where}: {e}") from None
        _check_entries(d.get("entries"), where)
        phased = d["schema"] >= 2
        newer = [k for k in ("phase", "context", "accuracy_level") if k in d]
        if not phased and newer:
            raise LatencyTableError(f"{where}: schema: a schema 1 table is a prefill table without {', '.join(newer)} "
                                    f"(write schema {TABLE_SCHEMA})")
        try:
            entries = d["entries"]
            for k, e in entries.items():
                float(e["median_ms"])
            level = d["accuracy_level"] if phased else None
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
                phase=str(d["phase"]) if phased else PREFILL,
                context=int(d["context"]) if phased else 0,
                accuracy_level=None if level is None else int(level),
                schema=int(d["schema"]),
            )
        except LatencyTableError:
            raise
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


def check_phase(table: LatencyTable, expected: str) -> None:
    """Raise unless ``table`` times the ``expected`` phase (``"prefill"`` or ``"decode"``).

    Raises:
        LatencyTableMismatchError: the table is of the other phase (the message names both).
        LatencyTableError: ``expected`` is not a phase.

    Example:
        >>> check_phase(load_table("tiny-llama.onnxruntime-cpu.t1.b1.c32.decode"), "prefill")  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        nas.errors.LatencyTableMismatchError: phase: expected a prefill table, but ... is a decode table
    """
    if expected not in PHASES:
        raise LatencyTableError(f"phase: {expected!r} is not one of {list(PHASES)}")
    if table.phase != expected:
        raise LatencyTableMismatchError(f"phase: expected a {expected} table, but {table.id} is a {table.phase} table")


def check_lengths(table: LatencyTable, *, prompt: int | None = None, context: int | None = None) -> None:
    """Raise unless ``table`` was measured at the requested prompt length (prefill) or cache length (decode).

    A table prices exactly one shape: a prefill table its ``seq`` new tokens, a decode table one token
    after its ``context`` cached ones; latencies at other lengths are not in it (no extrapolation).

    Args:
        prompt: tokens of a prefill (checked against a prefill table's ``seq``; ``None``: not checked).
        context: cached tokens of a decode step (checked against a decode table's ``context``).

    Raises:
        LatencyTableMismatchError: a length asked of the wrong phase's table, or not the table's.
    """
    asked = (("prompt", prompt, PREFILL, table.seq), ("context", context, DECODE, table.context))
    for name, want, phase, have in asked:
        if want is None:
            continue
        if table.phase != phase:
            raise LatencyTableMismatchError(f"{name}: a {want}-token {name} is priced by a {phase} table, but "
                                            f"{table.id} is a {table.phase} table")
        if want != have:
            flag = "--seq" if phase == PREFILL else "--context"
            raise LatencyTableMismatchError(
                f"{name}: {want} tokens requested, but {table.id} was measured at {have} "
                f"(build one: nas lut build {table.space_name} --phase {phase} {flag} {want})")


def table_accuracy_level(table: LatencyTable) -> int:
    """The ``MatMulNBits`` accuracy_level the table's int4 entries ran with (0: unset, onnxruntime's fp32 compute).

    Tables that record none (schema 1, or built by a backend without ``MatMulNBits``) ran int4 with it
    unset: 0. An export that is to be priced by the table quantizes with this level.
    """
    return 0 if table.accuracy_level is None else int(table.accuracy_level)


def check_accuracy_level(table: LatencyTable, requested: int | None) -> None:
    """Raise unless int4 runs at ``requested`` (``None``: unset, 0) where ``table`` measured it.

    A table without int4 entries prices nothing that depends on the level and passes.

    Raises:
        LatencyTableMismatchError: the table's int4 entries ran at another level (the message names both).
    """
    want = 0 if requested is None else int(requested)
    have = table_accuracy_level(table)
    if want != have and any(k.endswith(":bits=4") for k in table.entries):
        raise LatencyTableMismatchError(
            f"accuracy_level: int4 runs with MatMulNBits accuracy_level {want}, but {table.id} measured its "
            f"int4 entries at accuracy_level {have}")


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
