"""The study-level shared supernet: trained once, saved with its hash, verified before a trial loads it."""

import json

import pytest
import torch

import nas
from nas.errors import ModelError, SpaceError
from trainers.config import SearchConfig
from trainers.sandwich import SandwichConfig
from trainers.shared import WEIGHTS, load_shared_supernet, read_shared_meta, shared_key, train_shared_supernet
from trainers.tasks import EmbedTask

FAST = dict(space="tiny-bert", task="wordnet-nouns", max_train=64, max_eval=32, teacher_max_train=96,
            teacher_steps=20, batch_size=8, max_length=16)


def test_trained_once_saved_with_its_hash_and_loaded_into_a_fresh_supernet(tiny_table, wordnet_slice, tmp_path):
    cfg = SearchConfig(latency_table=tiny_table(), **FAST)
    sandwich = SandwichConfig(steps=3, random_archs=1, lr=1e-3, autocast="none", log_every=1)
    lines = []
    meta = train_shared_supernet(cfg, sandwich, tmp_path / "shared", progress=lines.append, device="cpu")
    assert meta == read_shared_meta(tmp_path / "shared")
    assert meta["space"]["hash"] == nas.load_space("tiny-bert").hash and meta["steps"] == 3
    assert meta["key"] == shared_key(cfg, sandwich) != shared_key(cfg.replace(max_train=32), sandwich)
    assert any(line.startswith("supernet step 3/3 loss largest") for line in lines)

    from nas.models.sources import load_model
    from trainers.recipes import make_recipe

    space = nas.load_space("tiny-bert")
    fresh = nas.Supernet.build(space)
    recipe = make_recipe(cfg, space)
    recipe.prepare(load_model(space.model), lambda _line: None)
    task = recipe.task()
    pretrained = {k: v.clone() for k, v in fresh.model.state_dict().items()}
    load_shared_supernet(tmp_path / "shared", fresh, task, sha256=meta["sha256"])
    from safetensors.torch import load_file

    saved = load_file(str(tmp_path / "shared" / WEIGHTS))
    assert all(torch.equal(v, saved[f"model.{k}"]) for k, v in fresh.model.state_dict().items())
    assert any(not torch.equal(v, pretrained[k]) for k, v in fresh.model.state_dict().items())  # trained
    assert torch.equal(task.head.weight, saved["task.head.weight"])


def _saved(tmp_path, space_name="tiny-bert"):
    from trainers.shared import save_shared_supernet

    net = nas.Supernet.build(nas.load_space(space_name))
    cfg = SearchConfig(space=space_name, latency_table="x")
    save_shared_supernet(tmp_path / "s", net, EmbedTask(), config=cfg, sandwich=SandwichConfig(steps=1), history=[])
    return tmp_path / "s"


def test_a_corrupt_or_foreign_supernet_is_refused_naming_both_hashes(tmp_path):
    folder = _saved(tmp_path)
    bert = nas.load_space("tiny-bert")
    meta = read_shared_meta(folder)
    with pytest.raises(ModelError, match=f"has sha256 .*, the study recorded {'0' * 64}"):
        load_shared_supernet(folder, nas.Supernet.build(bert), EmbedTask(), sha256="0" * 64)
    data = bytearray((folder / WEIGHTS).read_bytes())
    data[-1] ^= 0xFF
    (folder / WEIGHTS).write_bytes(bytes(data))
    with pytest.raises(ModelError, match=f"has sha256 [0-9a-f]{{64}}, supernet.json records {meta['sha256']}"):
        load_shared_supernet(folder, nas.Supernet.build(bert), EmbedTask())
    llama = nas.load_space("tiny-llama")
    with pytest.raises(SpaceError, match=f"space 'tiny-bert' with hash {bert.hash}, the trial's space 'tiny-llama' "
                                         f"has hash {llama.hash}"):
        load_shared_supernet(folder, nas.Supernet.build(llama), EmbedTask())
    (folder / "supernet.json").write_text(json.dumps({"schema": 99}))
    with pytest.raises(ModelError, match="unknown schema 99"):
        read_shared_meta(folder)
    with pytest.raises(ModelError, match="not found"):
        read_shared_meta(tmp_path / "nope")


def test_trials_in_one_process_read_the_shared_weights_once_and_still_check_the_file(tiny_table, wordnet_slice,
                                                                                       tmp_path, monkeypatch):
    import safetensors.torch

    from trainers import search_once, warm

    cfg = SearchConfig(latency_table=tiny_table(), target_fraction=0.6, freeze_weights=True, steps=3, warmup_steps=0,
                       finetune_steps=2, arch_lr=0.1, **FAST)
    meta = train_shared_supernet(cfg, SandwichConfig(steps=2, random_archs=1, lr=1e-3, autocast="none"),
                                 tmp_path / "shared", progress=None, device="cpu")
    trial = cfg.replace(shared_supernet=meta["sha256"])
    reads = []
    real = safetensors.torch.load_file
    monkeypatch.setattr(safetensors.torch, "load_file", lambda *a, **k: reads.append(a[0]) or real(*a, **k))
    warm.clear()
    first = search_once(trial, progress=None, shared_dir=tmp_path / "shared", device="cpu")
    lines = []
    kept = search_once(trial, progress=lines.append, shared_dir=tmp_path / "shared", device="cpu")
    assert len([r for r in reads if r.endswith(WEIGHTS)]) == 1  # the second trial kept the weights
    assert lines[1] == "setup: kept from this process's last trial: model, data, teacher" and any("starts from shared supernet" in x for x in lines)
    assert kept.arch == first.arch and kept.quality_after == first.quality_after
    assert json.dumps(kept.history) == json.dumps(first.history)  # frozen weights: weight_loss is NaN
    # the file is still checked before every trial: a corrupted one stops the next trial, kept weights or not
    data = bytearray((tmp_path / "shared" / WEIGHTS).read_bytes())
    data[-1] ^= 0xFF
    (tmp_path / "shared" / WEIGHTS).write_bytes(bytes(data))
    with pytest.raises(ModelError, match=f"has sha256 [0-9a-f]{{64}}, supernet.json records {meta['sha256']}"):
        search_once(trial, progress=None, shared_dir=tmp_path / "shared", device="cpu")
