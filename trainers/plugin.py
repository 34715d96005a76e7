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
            checkpoint_dir: str | None = None, device: str = "auto") -> SearchResult:
        from trainers.pipeline import search_once

        return search_once(config, progress=progress, checkpoint_dir=checkpoint_dir, device=device)

    def task_metric(self, subnet: Any) -> tuple[str, Callable[..., float]]:
        from nas.tasks.metric import task_metric

        return task_metric(subnet)


dnas = DNASPlugin()
