"""A plug-in that trains nothing: the service's own cost, and fast end-to-end runs.

:data:`light` (``trial: trainers.light:light``) keeps the DNAS plug-in's config
and task metric; its ``run`` picks a random architecture of the space (seeded by
``config.seed``), derives the real subnet from the supernet, prices it with the
latency table, and scores quality as the cosine similarity of its pooled output
to the full model's (on the trial's device). A trial takes about a second on tiny-bert, so what a search
with it measures is the search service's overhead (``experiments/studies/search_overhead.py``).
"""

from __future__ import annotations

import random

import torch

from trainers.config import SearchConfig
from trainers.plugin import DNASPlugin
from trainers.result import SearchResult

_NETS: dict[str, object] = {}


def light_trial(config: SearchConfig, *, progress=None, checkpoint_dir=None, device: str = "auto") -> SearchResult:
    from nas import Supernet, derive, format_arch, load_space
    from nas.latency import latency_ms, load_table
    from nas.search.devices import trial_device

    device = trial_device(device)
    torch.manual_seed(0)
    space = load_space(config.space)
    table = load_table(config.latency_table)
    if space.name not in _NETS:
        _NETS[space.name] = Supernet.build(space)
    net = _NETS[space.name].to(device)
    arch = space.sample(random.Random(config.seed))
    if progress:
        progress(f"light trial: {format_arch(space, arch)}")
    sub = derive(net, arch)
    g = torch.Generator().manual_seed(1)
    ids = torch.randint(1, min(space.dims.vocab_size, 1000), (4, 16), generator=g).to(device)
    mask = torch.ones_like(ids)
    with torch.no_grad():
        ref, out = net(ids, mask).mean(1), sub.to(device)(ids, mask).mean(1)
    sub.to("cpu")
    quality = float(torch.nn.functional.cosine_similarity(ref, out, dim=-1).mean())
    lat = latency_ms(table, space, arch)
    target = config.target_ms if config.target_ms is not None else config.target_fraction * latency_ms(table, space, space.full())
    size = sub.size()
    return SearchResult(
        arch=arch, arch_summary=format_arch(space, arch), latency_ms=lat, target_ms=target, feasible=lat <= target,
        argmax_latency_ms=lat, size_bytes=size.bytes, params=size.params, metric="cosine", quality_before=quality,
        quality_after=quality, teacher_quality=1.0, history=[{"step": 0, "tau": config.tau0, "lambda": config.lambda0}],
        phase_seconds={}, subnet=sub,
    )


class LightPlugin(DNASPlugin):
    """The DNAS plug-in's config and task metric, with :func:`light_trial` as ``run``."""

    def run(self, config: SearchConfig, *, progress=None, checkpoint_dir=None, device: str = "auto") -> SearchResult:
        return light_trial(config, progress=progress, checkpoint_dir=checkpoint_dir, device=device)


light = LightPlugin()
