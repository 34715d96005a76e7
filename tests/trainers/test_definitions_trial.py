"""search_once on tiny-llama with the decoder task (wordnet-definitions) on a hand-made WordNet of four files."""

import json

import pytest
import torch

from nas.errors import ConfigError
from nas.spaces import load_space
from nas.tasks.lm_eval import lm_forward
from nas.tasks.metric import task_metric
from trainers import SearchConfig, dnas, search_once, warm
from trainers.teacher import cache_root

FAST = dict(space="tiny-llama", task="wordnet-definitions", steps=6, warmup_steps=2, batch_size=8, max_length=16,
            weight_lr=3e-3, arch_lr=0.1, finetune_steps=4, finetune_lr=3e-3, max_train=120, max_eval=16,
            log_every=1, checkpoint_every=2)


def test_decoder_trial_distils_and_scores_definitions(tiny_table, definitions, tmp_path):
    lines = []
    cfg = SearchConfig(latency_table=tiny_table("tiny-llama"), target_fraction=0.6, **FAST)
    r = search_once(cfg, progress=lines.append, checkpoint_dir=tmp_path / "ck")
    assert r.feasible and r.latency_ms <= r.target_ms
    assert r.metric == "choice_accuracy" and 0.0 <= r.quality_after <= 1.0 and 0.0 <= r.teacher_quality <= 1.0
    assert {"perplexity_before", "perplexity_after", "teacher_perplexity"} <= set(r.metrics)
    assert all(v > 1.0 for v in r.metrics.values())
    d = r.to_dict()
    json.dumps(d)
    assert d["perplexity_after"] == r.metrics["perplexity_after"]  # flat, next to quality and latency
    assert all(h["weight_loss"] >= 0 for h in r.history) and any("ratio" in h for h in r.history)
    assert any(line.startswith("finetune step") for line in lines)
    assert r.subnet.head is None  # nothing to keep: export recomputes the choice accuracy from WordNet
    # export's metric, given the subnet's logits, is the trial's quality exactly (same items, same scorer)
    name, metric = task_metric(r.subnet, items=cfg.max_eval)
    assert "definition-to-word accuracy" in name and f"test[:{cfg.max_eval}]" in name
    assert metric(lm_forward(r.subnet.model)) == pytest.approx(100 * r.quality_after, abs=1e-9)
    # the teacher's scores are cached under a key of their inputs and reused; the checkpoint resumes
    assert len(list((cache_root() / "teacher").glob("*/scores.json"))) == 1
    warm.clear()  # a fresh process: the teacher's scores come from the disk cache
    again = []
    r2 = search_once(cfg, progress=again.append, checkpoint_dir=tmp_path / "ck")
    assert any("teacher: reusing scores" in line for line in again)
    assert any("resumed from" in line for line in again)
    assert r2.arch == r.arch and r2.teacher_quality == r.teacher_quality


def test_distill_text_items_trains_on_the_answered_items_of_the_same_synsets(tiny_table, definitions):
    from nas.models import load_model
    from nas.tasks.batches import tokenizer_for
    from nas.tasks.definitions import distill_texts
    from trainers.definitions import DefinitionsRecipe

    space, loaded = load_space("tiny-llama"), load_model("tiny-llama")
    recipes = {}
    for text in ("glosses", "items"):
        cfg = SearchConfig(latency_table=tiny_table("tiny-llama"), distill_text=text, **FAST)
        recipes[text] = r = DefinitionsRecipe(cfg, space)
        r.prepare(loaded, lambda _s: None)
        ids, _ = tokenizer_for(loaded, cfg.max_length)(distill_texts(r.train_defs, r.data.pools, text))
        assert torch.equal(r.train.ids, ids)
    g, i = recipes["glosses"], recipes["items"]
    assert g.train_defs == i.train_defs and torch.equal(g.is_arch, i.is_arch)  # same synsets, same split
    assert not torch.equal(g.train.ids, i.train.ids)


def test_next_token_task_shares_the_teacher_when_copied(tiny_table, definitions):
    import copy

    from nas.models import load_model
    from trainers.search import make_task
    from trainers.teacher import backbone

    cfg = SearchConfig(latency_table=tiny_table("tiny-llama"), **FAST)
    teacher = backbone(load_model("tiny-llama"))
    task = make_task(cfg, 32, 0, teacher=teacher)
    assert copy.deepcopy(task).teacher is teacher and list(task.parameters()) == [] and task.state_dict() == {}
    ids = torch.randint(1, 100, (2, 5))
    mask = torch.ones_like(ids)
    batch = {"ids": ids, "mask": mask}
    out = task.out(teacher, teacher(ids, mask), batch)
    assert out.shape == (2, 5, teacher.dims.vocab_size)
    assert float(task.loss(out, batch)) == pytest.approx(0.0, abs=1e-6)  # the teacher distils into itself
    with pytest.raises(ConfigError, match="teacher"):
        make_task(cfg, 32, 0)


def test_definitions_on_an_encoder_space_is_refused_before_compute(tiny_table, definitions):
    cfg = SearchConfig(latency_table=tiny_table("tiny-bert"), **{**FAST, "space": "tiny-bert"})
    with pytest.raises(ConfigError, match="task: wordnet-definitions.*encoder"):
        dnas.check(cfg)
    lines = []
    with pytest.raises(ConfigError, match="task: wordnet-definitions"):
        search_once(cfg, progress=lines.append)
    assert lines == []
    assert load_space("tiny-llama").dims.family == "llama"


@pytest.mark.parametrize("mode", ["mixture", "selected", "constant"])
def test_fast_control_quantizes_the_whole_table_for_the_tied_head(mode):
    from nas.models import load_model
    from nas.supernet import Supernet
    from trainers.search import fast_control

    net = Supernet.build(load_space("tiny-llama"), loaded=load_model("tiny-llama"))
    with torch.no_grad():
        net.logits("embed.bits").copy_(torch.tensor([-5.0, 5.0]))  # int8 embeddings
    ids, mask = torch.randint(1, 50, (2, 6)), torch.ones(2, 6, dtype=torch.long)
    w = net.sample(1.0, hard=True, generator=torch.Generator().manual_seed(0))
    ref = net.model.logits(net(ids, mask, w), net.control(w))
    ctl = fast_control(net, w, ids, mode=mode, lm_head=True)
    assert torch.allclose(net.model.logits(net.model(ids, mask, ctl), ctl), ref, atol=1e-5)
    rows_only = fast_control(net, w, ids, mode=mode)  # the lookup's rows alone: the head would be off the grid
    assert not torch.allclose(net.model.logits(net.model(ids, mask, rows_only), rows_only), ref, atol=1e-5)


def test_calibrated_int4_scales_run_through_the_trial_and_keep_every_weight_on_its_grid(tiny_table, definitions):
    from nas.quant import quantize_dequantize
    from nas.supernet.calibrate import linear_nodes

    lines = []
    cfg = SearchConfig(latency_table=tiny_table("tiny-llama"), target_fraction=0.4, int4_scales="calibrated",
                       **FAST)
    r = search_once(cfg, progress=lines.append)
    assert any(line.startswith("derive: int4 scales calibrated on ") for line in lines)
    sub = r.subnet
    for k, ld in enumerate(sub.model.layer_dims):
        for node, lin in linear_nodes(sub.model).items():
            if node.startswith(f"layers.{k}."):
                b = sub.bits(ld.index, node.split(".")[2])
                assert torch.equal(quantize_dequantize(lin.weight, b), lin.weight)  # export recovers every grid
