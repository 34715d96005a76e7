"""``export_trial``: a study trial → a verified folder (safetensors, HF, ONNX fp32 + quantized, manifest).

Steps: pick the trial (:mod:`nas.export.select`), load its subnet after checking
the weights' sha256, write every artifact into a temporary sibling folder,
verify it from the written files (:func:`verify_export`), write
``manifest.json``, and rename the folder into place. A failed check removes
the temporary folder and raises :class:`~nas.errors.ExportError` naming every
failed check and by how much; an existing ``out`` is replaced only with
``force=True``.

Folder layout::

    model.safetensors  subnet.json    the subnet (nas.load_subnet(DIR))
    arch.json                         {space, arch, arch_summary, layers}
    hf/config.json  hf/model.safetensors   transformers' AutoModel (when expressible)
    model.onnx                        fp32 graph, weight nodes named layers.{k}.attn.q ... (nas.runtime.onnx)
    model.quant.onnx                  per-node int8 / int4 (MatMulNBits) / fp16 / fp32
    manifest.json                     see nas.export.manifest

A decoder (llama family) gets generation graphs with past keys/values in and
out instead, plus ``generation.json`` and ``tokenizer/`` (:mod:`nas.export.generation`),
and its own checks (:mod:`nas.export.verify_decoder`).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, TextIO

from nas.errors import ConfigError, ExportError
from nas.export.artifacts import ARCH_JSON, FP32, HF_DIR, QUANT, write_artifacts
from nas.export.manifest import MANIFEST, MANIFEST_SCHEMA, file_hashes, now, read_manifest, versions, write_manifest
from nas.export.verify import DEFAULT_SHAPES, Check, failures
from nas.files import atomic_dir



def _log(log: TextIO | None, msg: str) -> None:
    if log is not None:
        print(f"export: {msg}", file=log, flush=True)


def _check_options(shapes: Sequence[tuple[int, int]], tolerance: float, min_cosine: float, metric_tolerance: float,
                   latency_tolerance: float | None) -> list[tuple[int, int]]:
    shapes = [tuple(int(x) for x in s) for s in shapes]
    if len(set(shapes)) < 3:
        raise ConfigError(f"shapes: need at least 3 distinct batch×sequence shapes, got {len(set(shapes))}")
    for b, t in shapes:
        if b < 1 or t < 1:
            raise ConfigError(f"shapes: {b}x{t} is not a positive batch×sequence shape")
    if not tolerance > 0:
        raise ConfigError(f"tolerance: must be > 0, got {tolerance}")
    if not 0 < min_cosine <= 1:
        raise ConfigError(f"min_cosine: must be in (0, 1], got {min_cosine}")
    if metric_tolerance < 0:
        raise ConfigError(f"metric_tolerance: must be >= 0, got {metric_tolerance}")
    if latency_tolerance is not None and not latency_tolerance > 0:
        raise ConfigError(f"latency_tolerance: must be > 0, got {latency_tolerance}")
    return shapes  # type: ignore[return-value]


def verify_export(
    directory: str | Path,
    *,
    shapes: Sequence[tuple[int, int]] = DEFAULT_SHAPES,
    tolerance: float = 1e-4,
    min_cosine: float = 0.999,
    metric_tolerance: float = 1.0,
    latency_table: Any = None,
    latency_tolerance: float | None = None,
    task_metric: tuple[str, Callable[..., float]] | None = None,
    log: TextIO | None = None,
    latency_tables: Mapping[str, Any] | None = None,
    references: int = 0,
) -> list[Check]:
    """Run every check on an exported folder, from its files alone.

    Args:
        directory: an exported folder (or one being written).
        shapes: batch×sequence shapes for the parity and cosine checks (≥ 3).
        tolerance: max abs diff allowed between fp32 ONNX (and HF) and the PyTorch subnet.
        min_cosine: min cosine between the quantized ONNX and the subnet at its deployed precision (on real text).
        metric_tolerance: points the quantized ONNX's task metric may differ from the subnet's.
        latency_table: a :class:`~nas.latency.LatencyTable` to re-measure against (None: skip).
        latency_tables: ``{budget: table}`` instead, one check per budget (:mod:`nas.export.latency`).
        references: each table's calibration models measured alongside (0: none): the latency checks'
            value is then the reference-normalised error, the raw one beside it.
        latency_tolerance: relative bound on measured vs predicted latency (None: report only).
        task_metric: ``(name, metric)`` of the trial's task, from its plug-in's ``task_metric``
            (None: :func:`nas.tasks.metric.task_metric`, head accuracy or fidelity to the full model).

    Returns:
        The checks, in order; see :func:`nas.export.verify.failures`.
    """
    from nas.export import verify as V
    from nas.quant import fake_quantized
    from nas.runtime.session import cpu_session
    from nas.supernet.derive import load_subnet
    from nas.tasks.metric import eval_inputs
    from nas.tasks.metric import task_metric as default_task_metric

    from nas.export.latency import latency_checks

    directory = Path(directory)
    shapes = _check_options(shapes, tolerance, min_cosine, metric_tolerance, latency_tolerance)
    if latency_table is not None and latency_tables:
        raise ConfigError("latency_tables: give latency_table or latency_tables, not both")
    tables = dict(latency_tables or ({"latency_ms": latency_table} if latency_table is not None else {}))
    subnet = load_subnet(directory)
    dims = subnet.space.dims
    too_long = [t for _, t in shapes if t > dims.max_positions]
    if too_long:
        raise ConfigError(f"shapes: sequence length {too_long[0]} exceeds the model's {dims.max_positions} positions")
    vocab = dims.vocab_size
    checks = [V.check_onnx(directory / FP32, directory / QUANT)]
    if checks[0].ok is False:
        return checks
    if dims.family == "llama":  # a generation graph: parity with a cache, greedy identity, metric on logits
        from nas.export.verify_decoder import decoder_checks

        checks += decoder_checks(directory, subnet, shapes=shapes, tolerance=tolerance,
                                 metric_tolerance=metric_tolerance, task_metric=task_metric, log=log)
        checks += latency_checks(directory, subnet, tables, tolerance=latency_tolerance, references=references,
                                 log=log)
        return checks + _hf_checks(directory, subnet, shapes, tolerance, log) + _file_hash_checks(directory)
    checks.append(V.check_parity(subnet, cpu_session(directory / FP32), vocab, shapes=shapes, tolerance=tolerance))
    _log(log, f"check {checks[-1].name}: {checks[-1].detail}")
    checks += _hf_checks(directory, subnet, shapes, tolerance, log)
    fq = fake_quantized(subnet)
    quant = cpu_session(directory / QUANT)
    source, ids, mask = eval_inputs(subnet.space)
    shaped = {f"{b}x{t}": V.inputs(vocab, b, t) for b, t in shapes}
    checks.append(V.check_cosine(fq, quant, {source: (ids, mask)}, min_cosine=min_cosine, report_only=shaped,
                                 weight_only=fake_quantized(subnet, activations=False)))
    _log(log, f"check {checks[-1].name}: {checks[-1].detail}")
    name, metric = task_metric if task_metric is not None else default_task_metric(subnet)
    checks.append(V.check_metric(metric, name, subnet, quant, tolerance_points=metric_tolerance))
    _log(log, f"check {checks[-1].name}: {checks[-1].detail}")
    checks += latency_checks(directory, subnet, tables, tolerance=latency_tolerance, references=references, log=log)
    return checks + _file_hash_checks(directory)


def _hf_checks(directory: Path, subnet: Any, shapes: Sequence[tuple[int, int]], tolerance: float,
               log: TextIO | None) -> list[Check]:
    """``parity_hf``: the ``hf/`` folder (when written) against the subnet's last hidden state."""
    from nas.export import verify as V

    if not (directory / HF_DIR / "config.json").is_file():
        return []
    from nas.export.hf import load_hf

    c = V.check_parity(subnet, _HFSession(load_hf(directory / HF_DIR)), subnet.space.dims.vocab_size,
                       shapes=shapes, tolerance=tolerance)
    _log(log, f"check parity_hf: {c.detail}")
    return [Check("parity_hf", c.ok, c.value, c.limit, c.detail, c.data)]


def _file_hash_checks(directory: Path) -> list[Check]:
    """``file_hashes``: every file against the manifest's sha256s (when the folder has a manifest)."""
    if not (directory / MANIFEST).is_file():
        return []
    recorded = read_manifest(directory).get("files", {})
    actual = file_hashes(directory)
    bad = sorted(k for k in set(recorded) | set(actual) if recorded.get(k) != actual.get(k))
    return [Check("file_hashes", not bad, float(len(bad)), 0.0,
                  f"{len(bad)} file(s) differ from the manifest" + (f": {', '.join(bad)}" if bad else ""))]


class _HFSession:
    """Adapts a transformers model to the ``sess.run`` interface of the parity check."""

    def __init__(self, model: Any) -> None:
        self.model = model

    def run(self, _outputs: Any, feeds: dict[str, Any]) -> list[Any]:
        import torch

        with torch.no_grad():
            out = self.model(input_ids=torch.from_numpy(feeds["input_ids"]),
                             attention_mask=torch.from_numpy(feeds["attention_mask"])).last_hidden_state
        return [out.numpy()]


def failure_message(failed: Sequence[Check]) -> str:
    return "check failed: " + "; ".join(f"{c.name}: {c.detail}" for c in failed)


def export_trial(
    *,
    study: str,
    out: str | Path,
    storage: str | None = None,
    trial: int | None = None,
    max_latency_ms: float | None = None,
    best_quality: bool = False,
    max_values: Mapping[str, float] | None = None,
    force: bool = False,
    shapes: Sequence[tuple[int, int]] = DEFAULT_SHAPES,
    tolerance: float = 1e-4,
    min_cosine: float = 0.999,
    metric_tolerance: float = 1.0,
    measure_latency: bool = True,
    latency_tolerance: float | None = None,
    references: int = 2,
    keep_failed: bool = False,
    artifacts: str | None = None,
    log: TextIO | None = None,
) -> dict[str, Any]:
    """Export one trial of a study into ``out``, verified, with a manifest.

    Exactly one of ``trial``, ``max_latency_ms``, ``max_values``, ``best_quality`` picks the
    trial (rule: :mod:`nas.export.select`).

    Args:
        study: the Optuna study name.
        out: the folder to create.
        storage: storage URL (default ``$NAS_STORAGE``, else ``./nas_studies.db``).
        trial: a COMPLETE trial number.
        max_latency_ms: the highest-quality front point whose predicted latency fits.
        best_quality: the highest-quality front point.
        max_values: ``{objective: bound}`` (``ttft_ms``, ``tpot_ms``, ``size_mb``, ...): the highest-quality
            front point within every bound (a study priced per phase: ``{"ttft_ms": 40, "tpot_ms": 15}``).
        force: replace an existing ``out``.
        shapes, tolerance, min_cosine, metric_tolerance, latency_tolerance: see :func:`verify_export`.
        measure_latency: re-measure ``model.quant.onnx`` with the trial's latency table.
        references: each table's calibration models measured in the same rounds (the latency checks'
            primary figure is then the reference-normalised error; 0: raw only).
        keep_failed: when a check fails, still put the folder (manifest ``ok: false``) in place, then raise.
        artifacts: the artifact store to download the trial's files from (default: the one the study recorded).
        log: a stream for progress lines (e.g. ``sys.stderr``).

    Returns:
        The manifest (also written to ``out/manifest.json``).

    Raises:
        ConfigError: bad options, ``out`` exists without ``force``, no front point fits the bound.
        StorageError: unknown storage, study or trial; a trial that is not COMPLETE.
        ModelError: missing or corrupted subnet weights.
        SpaceError: the subnet's space hash differs from the trial's recorded one.
        LatencyTableError: no latency table has the trial's recorded sha256 (the message names it and
            the hash found at the recorded path); a trial recorded before tables were pinned by
            hash is loaded by path, with a warning.
        ExportError: a verification check failed (the message names each one and by how much);
            no folder is left unless ``keep_failed``.

    Example:
        >>> import nas.export
        >>> m = nas.export.export_trial(study="s", storage="sqlite:///s.db", best_quality=True, out="out")  # doctest: +SKIP
        >>> m["ok"]  # doctest: +SKIP
        True
    """
    from nas.export.latency import accuracy_level, measured_latencies, recorded_tables, trial_tables
    from nas.export.select import choose_trial, load_trial_subnet
    from nas.latency.budgets import LATENCY, LATENCY_OBJECTIVES
    from nas.search import attrs as A

    shapes = _check_options(shapes, tolerance, min_cosine, metric_tolerance, latency_tolerance)
    if isinstance(references, bool) or not isinstance(references, int) or references < 0:
        raise ConfigError(f"references: must be an integer >= 0, got {references!r}")
    out = Path(out).expanduser().absolute()
    if out.exists() and not force:
        raise ConfigError(f"out: {out} exists; pass --force (force=True) to replace it")
    ref = choose_trial(study=study, storage=storage, trial=trial, max_latency_ms=max_latency_ms, artifacts=artifacts,
                       best_quality=best_quality, max_values=max_values)
    subnet = load_trial_subnet(ref)
    trial_metrics = dict(ref.attrs.get(A.METRICS) or {})
    metric = None
    if ref.plugin:
        from nas.search.plugin import load_plugin

        metric = load_plugin(ref.plugin).task_metric(subnet)  # the trial's own task, scored by its plug-in
    tables: dict[str, Any] = {}
    recorded = recorded_tables(ref.attrs)
    table_info: dict[str, Any] = dict(ref.attrs.get(A.LATENCY_TABLE) or {})
    if measure_latency:
        tables = trial_tables(ref, log)
        for budget, table in tables.items():
            recorded[budget].update(_resolved_by(table, recorded[budget]))
            _log(log, f"latency{'' if budget == 'latency_ms' else ' ' + budget}: measured as the table {table.id} "
                      f"was, with {table.runtime.get('name', '?')} on this machine's CPU ({table.threads} thread(s)), "
                      "never on a GPU the trials trained on")
        table_info = dict(next(iter(recorded.values())))
    _log(log, f"trial {ref.number} of study {ref.study!r}: {ref.point.arch_summary or subnet.arch}")
    with atomic_dir(out) as tmp:  # lands only when the block ends without an error
        written = write_artifacts(subnet, tmp, accuracy_level=accuracy_level(tables), log=log)
        checks = verify_export(tmp, shapes=shapes, tolerance=tolerance, min_cosine=min_cosine,
                               metric_tolerance=metric_tolerance, latency_tables=tables,
                               latency_tolerance=latency_tolerance, references=references, task_metric=metric,
                               log=log)
        rule = ({"trial": trial} if trial is not None else
                {"max_latency_ms": max_latency_ms} if max_latency_ms is not None else
                {"max_values": dict(max_values)} if max_values else {"best_quality": True})
        manifest = {
            "schema": MANIFEST_SCHEMA,
            "nas_version": versions()["nas"],
            "created": now(),
            "study": ref.study,
            "storage": ref.storage,
            "trial": ref.number,
            "on_front": ref.on_front,
            "rule": rule,
            "objectives": {"quality": ref.point.quality, "latency_ms": ref.point.latency_ms,
                           **{k: v for k, v in trial_metrics.items() if k in LATENCY_OBJECTIVES},
                           "size_mb": ref.point.size_mb},
            "trial_metrics": trial_metrics or None,
            "space": {"name": subnet.space.name, "hash": subnet.space.hash},
            "arch": subnet.arch,
            "arch_summary": json.loads((tmp / ARCH_JSON).read_text())["arch_summary"],
            "layers": [[ld.index, ld.num_heads, ld.intermediate] for ld in subnet.model.layer_dims],
            "size": subnet.size().to_dict(),
            "subnet_sha256": ref.attrs.get(A.SUBNET_SHA256),
            "hf": written["hf"],
            "nodes": written["nodes"],
            "checks": {c.name: c.to_dict() for c in checks},
            "latency_table": table_info,
            **({"latency_tables": recorded} if len(recorded) > 1 or LATENCY not in recorded else {}),
            "latency": measured_latencies(checks, output_tokens=int((ref.attrs.get(A.CONFIG) or {})
                                                                    .get("output_tokens") or 0)),
            "versions": versions(),
            "files": file_hashes(tmp),
            "ok": not failures(checks),
        }
        for budget, table in tables.items():
            entry = manifest["latency_table"] if budget == LATENCY else manifest["latency_tables"][budget]
            entry["environment_mismatches"] = _env_mismatches(table)
        write_manifest(tmp, manifest)
        failed = failures(checks)
        if failed and not keep_failed:
            raise ExportError(failure_message(failed))
    if failed:
        raise ExportError(failure_message(failed) + f" (folder kept: {out})")
    _log(log, f"wrote {out}")
    return manifest


def _resolved_by(table: Any, info: dict[str, Any]) -> dict[str, Any]:
    """What the manifest records about the table the latency check used: its sha256 and how it was found."""
    from nas.latency.table import table_sha256

    return {"sha256": table_sha256(table), "resolved_path": table.path,
            "resolved_by": "sha256" if info.get("sha256") else "path (the trial recorded no sha256)"}


def _env_mismatches(table: Any) -> list[str]:
    import warnings

    from nas.latency.builder import backend_for
    from nas.latency.device import device_info

    backend = backend_for(table)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return table.check_environment(device=device_info(), runtime=backend.info())


def reverify(directory: str | Path, **options: Any) -> tuple[dict[str, Any], list[Check]]:
    """Re-run the checks of an exported folder against its manifest (``nas export --check DIR``)."""
    manifest = read_manifest(directory)
    return manifest, verify_export(directory, **options)


if __name__ == "__main__":  # pragma: no cover
    sys.exit("use: nas export")
