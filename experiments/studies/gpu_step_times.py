"""Step times on CUDA and on the CPU: one smoke search trial through the search service, one decoder distillation step.

    PYTHONPATH=. .venv/bin/python -m experiments.studies.gpu_step_times

1. **Smoke trial**: ``experiments/smoke.yaml`` cut to one trial, run by ``nas search``'s own driver
   (a local Ray, a temporary SQLite study): with ``gpus_per_trial: 1`` when CUDA is there, and with
   ``gpus_per_trial: 0``; prints the search phase's time per step, the trial's compute time and the
   device the trial recorded (its ``device`` attribute).
2. **Decoder distillation step**: one DNAS weight step and one architecture step of the
   ``wordnet-definitions`` task (KL to the full model's next-token logits) on tiny-llama and, when
   its package is installed, SmolLM2-135M, on random tokens (batch 8 x 32, as ``smoke_decoder.yaml``):
   the median of a few steps after a warm-up, on each device (bf16 autocast on CUDA, the default).
   The penalty prices with a flat table of the space (1 ms an entry): timing needs no measured one.

Latency is not measured here: it stays the table's (onnxruntime on the CPU). Without CUDA the
script says so and prints the CPU figures only (exit code 0).
"""

from __future__ import annotations

import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from nas.errors import NASError  # noqa: E402
from nas.latency import LatencyTable, Predictor, required_keys  # noqa: E402
from nas.models import load_model  # noqa: E402
from nas.search import api  # noqa: E402
from nas.search.devices import torch_build  # noqa: E402
from nas.search.experiment import Experiment  # noqa: E402
from nas.spaces import load_space  # noqa: E402
from nas.supernet import Supernet  # noqa: E402
from nas.tasks.batches import Encoded  # noqa: E402
from trainers import SearchConfig  # noqa: E402
from trainers.search import DNASSearch, make_task  # noqa: E402
from trainers.teacher import backbone  # noqa: E402

SMOKE = ROOT / "experiments" / "smoke.yaml"
DECODERS = ("tiny-llama", "smollm2-135m")


def smoke_trial(gpus_per_trial: float) -> dict:
    """One smoke trial through the search service; what its study records."""
    exp = Experiment.from_yaml(SMOKE)
    d = exp.to_dict()
    d["run"].update(trials=1, concurrency=1, gpus_per_trial=gpus_per_trial, device="auto")
    exp = Experiment.from_dict(d, source=str(SMOKE), base=SMOKE.parent)
    with tempfile.TemporaryDirectory(prefix="gpu-step-times-") as tmp:
        url = f"sqlite:///{tmp}/study.db"
        api.run_search(exp, storage=url, study="gpu-step-times", artifacts=f"{tmp}/artifacts", log=lambda _l: None)
        (point,) = api.load_points("gpu-step-times", storage=url)
    a = point.attrs
    c = a["config"]
    steps = c["warmup_steps"] + c["steps"]
    return {"gpus_per_trial": gpus_per_trial, "device": a["device"],
            "search_ms_per_step": 1000 * a["metrics"]["phase_seconds"]["search"] / steps,
            "trial_s": a["compute_s"]}


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def decoder_step(space_name: str, device: str, *, repeats: int = 3, batch: int = 8, length: int = 32) -> dict:
    """Median ms of the weight step and the architecture step of decoder distillation on ``device``."""
    space = load_space(space_name)
    loaded = load_model(space.model)
    config = SearchConfig(space=space_name, task="wordnet-definitions", batch_size=batch, max_length=length,
                          steps=repeats + 1, warmup_steps=0, seed=0)
    flat = LatencyTable(space_name=space.name, space_hash=space.hash, device={"cpu": "flat", "fingerprint": "flat"},
                        runtime={"name": "flat"}, threads=1, batch=1, seq=length,
                        entries={k: {"median_ms": 1.0, "iqr_ms": 0.0, "n": 1} for k in required_keys(space)})
    predictor = Predictor(flat, space)
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(1, space.dims.vocab_size, (4 * batch, length), generator=g)
    data = Encoded(ids, torch.ones_like(ids), torch.zeros(len(ids), dtype=torch.long))
    torch.manual_seed(0)
    net = Supernet.build(space, loaded=loaded)
    task = make_task(config, space.dims.hidden, 0, teacher=backbone(loaded))
    target = config.target_fraction * predictor.latency_ms(space.full())
    search = DNASSearch(net, task, predictor, target, data, data, config, device=device)
    weight_ms, arch_ms = [], []
    for step in range(repeats + 1):  # step 0 warms up (allocator, kernels)
        tau = search.tau_at(step)
        _sync(device)
        t = time.perf_counter()
        search.weight_step(step, tau)
        _sync(device)
        t_w = time.perf_counter()
        search.arch_step(step, tau)
        _sync(device)
        if step:
            weight_ms.append(1000 * (t_w - t))
            arch_ms.append(1000 * (time.perf_counter() - t_w))
    return {"model": space_name, "device": device, "weight_step_ms": statistics.median(weight_ms),
            "arch_step_ms": statistics.median(arch_ms)}


def main() -> int:
    cuda = torch.cuda.is_available()
    if cuda:
        print(f"CUDA: {torch.cuda.get_device_name(0)} ({torch_build()}); bf16 autocast in training steps")
    else:
        print(f"CUDA: not available ({torch_build()}); CPU figures only")
    devices = (["cuda:0"] if cuda else []) + ["cpu"]

    print("\nsmoke search trial (experiments/smoke.yaml, 1 trial through nas search):")
    print(f"  {'gpus_per_trial':>14}  {'recorded device':<15}  {'search ms/step':>14}  {'trial s':>8}")
    for gpus in ([1.0] if cuda else []) + [0.0]:
        r = smoke_trial(gpus)
        print(f"  {r['gpus_per_trial']:>14g}  {r['device']:<15}  {r['search_ms_per_step']:>14.1f}  "
              f"{r['trial_s']:>8.1f}", flush=True)

    print("\ndecoder distillation step (wordnet-definitions, batch 8 x 32 random tokens, median of 3):")
    print(f"  {'model':<13}  {'device':<7}  {'weight step ms':>14}  {'arch step ms':>12}")
    for name in DECODERS:
        for device in devices:
            try:
                r = decoder_step(name, device)
            except NASError as e:  # SmolLM2's package missing: say so, keep going
                print(f"  {name:<13}  not available: {e}")
                break
            print(f"  {r['model']:<13}  {r['device']:<7}  {r['weight_step_ms']:>14.1f}  {r['arch_step_ms']:>12.1f}",
                  flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
