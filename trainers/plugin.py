"""The DNAS recipe as the search service's trial plug-in (:mod:`nas.search.plugin`).

An experiment's default ``trial: trainers:dnas`` names :data:`dnas`.
"""

from __future__ import annotations

import dataclasses
import sys
from collections.abc import Callable, Mapping
from typing import Any

from trainers.config import SearchConfig
from trainers.result import SearchResult


def _stderr(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


class DNASPlugin:
    """Gumbel-softmax search, derive, distillation fine-tuning (:func:`trainers.search_once`)."""

    def config_fields(self) -> frozenset[str]:
        return frozenset(f.name for f in dataclasses.fields(SearchConfig))

    def make_config(self, fields: Mapping[str, Any]) -> SearchConfig:
        return SearchConfig.from_dict(dict(fields))

    def check(self, config: SearchConfig) -> None:
        """The task fits the space, the space and every table belong together (each budget's table of its
        phase) and every latency target is reachable (no compute)."""
        from nas.spaces.loader import load_space
        from trainers.pipeline import load_predictors, resolve_targets
        from trainers.recipes import check_task

        space = load_space(config.space)
        check_task(config, space)
        resolve_targets(config, load_predictors(config, space))

    def run(self, config: SearchConfig, *, progress: Callable[[str], None] | None = _stderr,
            checkpoint_dir: str | None = None, device: str = "auto", shared_dir: str | None = None) -> SearchResult:
        from trainers.pipeline import search_once

        return search_once(config, progress=progress, checkpoint_dir=checkpoint_dir, device=device,
                           shared_dir=shared_dir)

    # -- the study-level shared supernet (nas.search.shared) -------------------------------------
    def shared_settings(self, settings: Mapping[str, Any]) -> Any:
        """The sandwich training settings of an experiment's ``supernet:`` (:class:`trainers.sandwich.SandwichConfig`).

        Raises:
            ConfigError: ``<field>: <reason>`` for an unknown field or a bad value.
        """
        from nas.errors import ConfigError
        from trainers.sandwich import SandwichConfig

        fields = {f.name for f in dataclasses.fields(SandwichConfig)}
        unknown = sorted(set(settings) - fields)
        if unknown:
            raise ConfigError(f"{unknown[0]}: unknown field; allowed: {', '.join(sorted(fields))}")
        return SandwichConfig(**dict(settings))

    def shared_key(self, config: SearchConfig, settings: Mapping[str, Any]) -> str:
        """What two trainings must agree on to be one supernet (space, task, data fields, settings)."""
        from trainers.shared import shared_key

        return shared_key(config, self.shared_settings(settings))

    def train_shared(self, config: SearchConfig, settings: Mapping[str, Any], out: str, *,
                     progress: Callable[[str], None] | None = _stderr, device: str = "auto",
                     checkpoint_dir: str | None = None) -> dict[str, Any]:
        """Train the shared supernet into ``out``; returns its ``supernet.json`` (``sha256`` among it)."""
        from trainers.shared import train_shared_supernet

        return train_shared_supernet(config, self.shared_settings(settings), out, progress=progress, device=device,
                                     checkpoint_dir=checkpoint_dir)

    def task_metric(self, subnet: Any) -> tuple[str, Callable[..., float]]:
        from nas.tasks.metric import task_metric

        return task_metric(subnet)


dnas = DNASPlugin()
