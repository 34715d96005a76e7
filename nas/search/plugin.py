"""The trial plug-in: the contract between the search service and a training recipe.

The service (Ray runner, study, export) never imports a recipe; an experiment
names one as ``trial: module:attribute`` (default ``trainers:dnas``, the DNAS
recipe of the top-level ``trainers`` folder), and :func:`load_plugin` imports
that object at run time and checks it keeps this contract.

A plug-in object has these methods:

* ``config_fields()`` – the names of its configuration fields: what an
  experiment may fix under ``trainer:`` or sample under ``sample:``
  (``space``, ``task``, ``latency_table`` and ``latency_tables`` are set by the experiment itself);
* ``make_config(fields)`` – a frozen, validated config from a plain dict, or
  :class:`~nas.errors.ConfigError` ``"<field>: <reason>"``; the config has
  ``to_dict()``, ``space``, ``task`` and ``latency_table``; a plug-in that prices a decoder
  per phase also takes ``latency_tables`` (``{budget: table}``, :mod:`nas.latency.budgets`),
  which an experiment with ``latency_tables:`` passes (with ``latency_table`` one of them),
  and its config has it as an attribute;
* ``check(config)`` – raise :class:`~nas.errors.NASError` when the config
  cannot run with its space and latency table (e.g. a latency target below the
  smallest architecture), cheaply, before any compute: the experiment calls it
  at both ends of every sampled range before Ray starts;
* ``run(config, *, progress, checkpoint_dir, device)`` – one trial, no Ray and no
  Optuna inside: returns a result with ``subnet`` (a :class:`~nas.supernet.Subnet`
  on the CPU, to save), ``arch``, ``arch_summary``, ``quality_after``, ``history`` and
  ``to_dict()`` (its metrics: at least ``latency_ms`` and ``size_mb``, and every latency
  objective the experiment names, e.g. ``ttft_ms`` and ``tpot_ms``); a
  checkpoint written under ``checkpoint_dir`` lets a retried trial resume;
  ``device`` is where it trains: the service passes the one it resolved
  (``cpu``, ``cuda:0``, :mod:`nas.search.devices`); called alone, ``auto``;
* optionally, a study-level shared supernet (an experiment's ``supernet:`` section,
  :mod:`nas.search.shared`): ``shared_settings(settings)`` validates the section,
  ``shared_key(config, settings)`` is the identity two trainings must share (a study
  reuses its stored supernet when the key matches), ``train_shared(config, settings,
  out, *, progress, device, checkpoint_dir)`` trains it into the folder ``out`` and
  returns its metadata with ``sha256``; trials then get the config field
  ``shared_supernet`` (that sha256) and ``run(..., shared_dir=folder)``;
* ``task_metric(subnet)`` – ``(name, metric)`` that scores an exported model on
  the trial's task, ``metric(forward) -> points`` (export compares the quantized
  ONNX graph with the PyTorch subnet with it).

Example:
    >>> plugin = load_plugin("trainers:dnas")
    >>> plugin.make_config({"space": "tiny-bert", "latency_table": "tiny-bert.onnxruntime-cpu.t1.b1.s32"}).space
    'tiny-bert'
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Callable, Mapping
from typing import Any, Protocol, runtime_checkable

from nas.errors import ConfigError

DEFAULT_PLUGIN = "trainers:dnas"
RENAMED = {"trainers:search_once": DEFAULT_PLUGIN}  # what studies made before the plug-in contract recorded
FIXED_BY_EXPERIMENT = ("space", "task", "latency_table", "latency_tables", "shared_supernet", "version")


@runtime_checkable
class TrialPlugin(Protocol):
    """See the module docstring for the contract of each method."""

    def config_fields(self) -> frozenset[str]: ...

    def make_config(self, fields: Mapping[str, Any]) -> Any: ...

    def check(self, config: Any) -> None: ...

    def run(self, config: Any, *, progress: Callable[[str], None] | None = ...,
            checkpoint_dir: str | None = ..., device: str = ...) -> Any: ...

    def task_metric(self, subnet: Any) -> tuple[str, Callable[..., float]]: ...


def load_plugin(spec: str) -> TrialPlugin:
    """``module:attribute`` to the plug-in object it names.

    Raises:
        ConfigError: ``trial: ...`` naming what could not be imported or what the object lacks.
    """
    if not isinstance(spec, str) or spec.count(":") != 1 or not all(spec.split(":")):
        raise ConfigError(f"trial: expected 'module:attribute', got {spec!r}")
    mod_name, _, attr = RENAMED.get(spec, spec).partition(":")
    try:
        obj = getattr(importlib.import_module(mod_name), attr)
    except (ImportError, AttributeError) as e:
        raise ConfigError(f"trial: cannot import {spec!r}: {e}") from None
    if not isinstance(obj, TrialPlugin):
        missing = [m for m in ("config_fields", "make_config", "check", "run", "task_metric") if not callable(getattr(obj, m, None))]
        raise ConfigError(f"trial: {spec!r} is not a trial plug-in (missing {', '.join(missing)}; "
                          "see nas.search.plugin)")
    params = inspect.signature(obj.run).parameters
    if "device" not in params and not any(p.kind is p.VAR_KEYWORD for p in params.values()):
        raise ConfigError(f"trial: {spec!r}'s run() takes no device= (see nas.search.plugin)")
    return obj
