"""Training recipes: the DNAS search loop and distillation fine-tuning, as the service's trial plug-in.

The search service runs :data:`dnas` (:class:`trainers.plugin.DNASPlugin`, the
contract of :mod:`nas.search.plugin`); without the service, one trial is::

    from trainers import SearchConfig, search_once
    result = search_once(SearchConfig(space="minilm-l6", target_fraction=0.5, seed=0))

``trainers`` imports ``nas``; ``nas`` never imports ``trainers``.
"""

from trainers.config import SearchConfig
from trainers.pipeline import search_once
from trainers.plugin import DNASPlugin, dnas
from trainers.result import SearchResult

__all__ = ["DNASPlugin", "SearchConfig", "SearchResult", "dnas", "search_once"]
