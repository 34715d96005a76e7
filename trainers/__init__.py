"""Training recipes: the DNAS search loop, distillation fine-tuning, tasks and WordNet data.

The entry point is :func:`search_once` (one trial, no Ray or Optuna inside)::

    from trainers import SearchConfig, search_once
    result = search_once(SearchConfig(space="minilm-l6", target_fraction=0.5, seed=0))
"""

from trainers.config import SearchConfig
from trainers.result import SearchResult
from trainers.trial import search_once

__all__ = ["SearchConfig", "SearchResult", "search_once"]
