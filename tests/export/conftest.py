"""A real smoke study: tiny-bert subnets derived, saved and recorded in SQLite by the trial-attribute contract."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

from nas.search import attrs as A

# One latency-table entry per block shape, by hand: attention 0.1 ms per head at 32 bits,
# FFN 0.001 ms per neuron at 32 bits, both scaled by bits/32; embeddings 0.05; rest 0.02; overhead 0.03.
PROTOCOL = {"warmup": 1, "repeats": 3, "rounds": 2}


def tiny_table(space, path: Path):
    from nas.latency import LatencyTable
    from nas.latency.table import OVERHEAD, REST, attn_key, embed_key, ffn_key

    entries = {REST: 0.02, OVERHEAD: 0.03}
    for b in space.options("embed.bits"):
        entries[embed_key(b)] = 0.05
    for b in (32, 16, 8, 4):
        for h in space.options("layer0.heads"):
            entries[attn_key(h, b)] = 0.1 * h * b / 32
        for w in space.options("layer0.ffn"):
            entries[ffn_key(w, b)] = 0.001 * w * b / 32
    table = LatencyTable(
        space_name=space.name, space_hash=space.hash, device={"cpu": "test", "fingerprint": "test"},
        runtime={"name": "onnxruntime-cpu"}, threads=1, batch=1, seq=16,
        entries={k: {"median_ms": v, "iqr_ms": 0.0, "n": 1} for k, v in entries.items()}, protocol=PROTOCOL,
    )
    table.save(path)
    return table


# Architectures of the smoke study (tiny-bert: 2 layers, heads 4/2/1, FFN 64/32/16, bits 32/16/8/4, embed 32/8).
FULL_UNIFORM = {"embed.bits": 32, "layer0.keep": 1, "layer0.heads": 4, "layer0.attn.bits": 32, "layer0.ffn": 32,
                "layer0.ffn.bits": 32, "layer1.keep": 1, "layer1.heads": 4, "layer1.attn.bits": 32, "layer1.ffn": 32,
                "layer1.ffn.bits": 32}
MIXED = {"embed.bits": 8, "layer0.keep": 1, "layer0.heads": 4, "layer0.attn.bits": 8, "layer0.ffn": 64,
         "layer0.ffn.bits": 4, "layer1.keep": 1, "layer1.heads": 2, "layer1.attn.bits": 16, "layer1.ffn": 32,
         "layer1.ffn.bits": 8}
SMALL = {"embed.bits": 8, "layer0.keep": 0, "layer0.heads": 4, "layer0.attn.bits": 32, "layer0.ffn": 64,
         "layer0.ffn.bits": 32, "layer1.keep": 1, "layer1.heads": 1, "layer1.attn.bits": 8, "layer1.ffn": 16,
         "layer1.ffn.bits": 8}
# Hand-computed table latencies (overhead .03 + rest .02 + embed .05 = .10, plus blocks):
#   FULL_UNIFORM: 2 × (0.4 + 0.032) + 0.10 = 0.964 ms
#   MIXED: layer0 0.4·8/32 + 0.064·4/32 = 0.108; layer1 0.2·16/32 + 0.032·8/32 = 0.108; total 0.316 ms
#   SMALL: layer1 0.1·8/32 + 0.016·8/32 = 0.029; total 0.129 ms
LATENCY = {"full_uniform": 0.964, "mixed": 0.316, "small": 0.129}


@dataclass
class Study:
    url: str
    name: str
    numbers: dict[str, int]  # arch name -> trial number
    table: object
    root: Path


def centroid_head(sub, n: int = 200, n_eval: int = 300):
    """A nearest-class-mean head on ``sub``'s pooled embeddings of WordNet train glosses (a real, better-than-chance head)."""
    import torch

    from nas.models.sources import load_model
    from nas.models.transformer import mean_pool
    from nas.supernet.head import TaskHead
    from nas.tasks.batches import tokenizer_for
    from nas.tasks.wordnet import CLASSES, load_wordnet_nouns

    train = load_wordnet_nouns().train[:n]
    ids, mask = tokenizer_for(load_model(sub.space.model), 32)([e.text for e in train])
    with torch.no_grad():
        pooled = mean_pool(sub(ids, mask), mask)
    labels = torch.tensor([e.label for e in train])
    means = torch.zeros(len(CLASSES), pooled.shape[1])
    for c in labels.unique():
        means[c] = pooled[labels == c].mean(0)
    weight = torch.nn.functional.normalize(means, dim=-1)
    return TaskHead(task="wordnet-nouns", labels=CLASSES, weight=weight, bias=torch.zeros(len(CLASSES)),
                    max_length=32, n_eval=n_eval)


def make_study(root: Path, name: str, archs: dict[str, dict[str, int]], *, extra_states: bool = True,
               after_save=None, heads: bool = False, pin_table: bool = True, edit_attrs=None) -> Study:
    """A study of ``archs`` with the trial-attribute contract of nas.search.worker.trial_attrs.

    ``pin_table``: record the table's sha256 and store its copy with the study (False: a trial recorded
    before tables were pinned, path only). ``edit_attrs(attrs)`` may change a trial's attributes before
    they are recorded.
    """
    import optuna

    import nas
    from nas.tasks.metric import teacher_fidelity
    from nas.files import sha256_file
    from nas.latency import latency_ms

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    root.mkdir(parents=True, exist_ok=True)
    space = nas.load_space("tiny-bert")
    table_path = root / "tiny-bert.table.json"
    table = tiny_table(space, table_path)
    table_attr = {"id": table.id, "path": str(table_path), "space_hash": space.hash, "device_fingerprint": "test"}
    if pin_table:
        from nas.latency.table import table_sha256
        from nas.search.tables import store_table_copy

        copy = store_table_copy(table, root, name)  # subnets live in root/name/<key>, as trials in runs/study/trial-N
        table_attr.update(sha256=table_sha256(table), copy=str(copy))
    net = nas.Supernet.build(space)
    _, metric = teacher_fidelity(space)
    url = f"sqlite:///{root / 'study.db'}"
    from nas.search.storage import get_storage
    from nas.search.study import create_or_load_study

    study = create_or_load_study(get_storage(url), name, objectives=A.OBJECTIVES, directions=A.DIRECTIONS)
    numbers = {}
    for key, arch in archs.items():
        sub = nas.derive(net, arch)
        if heads:  # a classification trial: its head travels with the subnet, quality is test accuracy
            sub.head = centroid_head(sub)
        subnet_dir = sub.save(root / name / key)
        if after_save is not None:  # lets a test damage the files before their sha256 is recorded
            after_save(subnet_dir)
        if heads:
            from nas.tasks.metric import head_accuracy

            quality = head_accuracy(sub)[1](lambda ids, mask: sub(ids, mask))
        else:
            quality = metric(lambda ids, mask: sub(ids, mask))
        lat = latency_ms(table, space, sub.arch)
        t = study.ask()
        attrs = {
            A.ARCH: sub.arch, A.ARCH_SUMMARY: nas.format_arch(space, sub.arch), A.CONFIG: {"space": "tiny-bert"},
            A.METRICS: {"metric": "teacher_fidelity", "quality_after": quality, "latency_ms": lat,
                        "size_bytes": sub.size().bytes, "size_mb": sub.size().mb, "params": sub.size().params},
            A.SUBNET_DIR: str(subnet_dir), A.SUBNET_SHA256: sha256_file(subnet_dir / "model.safetensors"),
            A.SPACE: {"name": space.name, "hash": space.hash},
            A.LATENCY_TABLE: dict(table_attr),
            A.NAS_VERSION: nas.__version__,
            **({A.HEAD_SHA256: sha256_file(subnet_dir / "head.safetensors")} if heads else {}),
        }
        if edit_attrs is not None:
            edit_attrs(attrs)
        for k, v in attrs.items():
            t.set_user_attr(k, v)
        study.tell(t, [quality, lat, sub.size().mb])
        numbers[key] = t.number
    if extra_states:
        numbers["running"] = study.ask().number
        failed = study.ask()
        study.tell(failed, state=optuna.trial.TrialState.FAIL)
        numbers["failed"] = failed.number
    return Study(url=url, name=name, numbers=numbers, table=table, root=root)


@pytest.fixture(scope="session")
def smoke_study(tmp_path_factory) -> Study:
    return make_study(tmp_path_factory.mktemp("smoke"), "smoke",
                      {"full_uniform": FULL_UNIFORM, "mixed": MIXED, "small": SMALL})
