"""Light trial functions for the search tests: real subnets, no training.

``light_trial`` does what a search trial does minus the training: it picks a
random architecture of the space (seeded by ``config.seed``), derives the real
subnet from the tiny supernet, prices it with the latency table, and measures
quality as the cosine similarity of its pooled output to the full model's.

Faults for the fault-tolerance tests come from files in ``$NAS_TEST_FAULTS``:

* ``kill_first``: the first trial process that finds it SIGKILLs itself;
* ``raise_first``: the first trial that finds it raises;
* ``raise_always``: every trial raises;
* ``sleep_s``: every trial first sleeps that many seconds (so a driver can be killed mid-run).
"""

from __future__ import annotations

import os
import random
import signal
import time
from pathlib import Path

import torch

from trainers.config import SearchConfig
from trainers.result import SearchResult

_NETS: dict[str, object] = {}


def _claim(d: Path, name: str) -> bool:
    """True exactly once per fault file across processes (atomic rename)."""
    try:
        os.rename(d / name, d / f"{name}.done")
        return True
    except FileNotFoundError:
        return False


def _faults() -> None:
    d = os.environ.get("NAS_TEST_FAULTS")
    if not d:
        return
    d = Path(d)
    if (d / "sleep_s").is_file():
        time.sleep(float((d / "sleep_s").read_text()))
    if (d / "raise_always").is_file():
        raise RuntimeError("injected failure (raise_always)")
    if _claim(d, "raise_first"):
        raise RuntimeError("injected failure (raise_first)")
    if _claim(d, "kill_first"):
        os.kill(os.getpid(), signal.SIGKILL)


def light_trial(config: SearchConfig, *, progress=None, checkpoint_dir=None) -> SearchResult:
    from nas import Supernet, derive, format_arch, load_space
    from nas.latency import latency_ms, load_table

    _faults()
    torch.manual_seed(0)
    space = load_space(config.space)
    table = load_table(config.latency_table)
    if space.name not in _NETS:
        _NETS[space.name] = Supernet.build(space)
    net = _NETS[space.name]
    arch = space.sample(random.Random(config.seed))
    if progress:
        progress(f"light trial: {format_arch(space, arch)}")
    sub = derive(net, arch)
    g = torch.Generator().manual_seed(1)
    ids = torch.randint(1, min(space.dims.vocab_size, 1000), (4, 16), generator=g)
    mask = torch.ones_like(ids)
    with torch.no_grad():
        ref, out = net(ids, mask).mean(1), sub(ids, mask).mean(1)
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
