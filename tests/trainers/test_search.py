"""The search loop on tiny-bert / tiny-llama with tiny synthetic batches and hand-made tables."""

import pytest
import torch

from nas.errors import ConfigError
from nas.latency import Predictor, load_table
from nas.models import load_model
from nas.supernet import Supernet
from nas.spaces import load_space
from nas.tasks.batches import Encoded
from trainers.config import SearchConfig
from trainers.feasible import log_probs_of, most_probable_feasible
from trainers.search import DNASSearch, fast_control, make_task


def synthetic(vocab, n=24, t=8, classes=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(1, vocab, (n, t), generator=g)
    mask = torch.ones_like(ids)
    mask[::3, t // 2:] = 0
    labels = torch.randint(0, classes, (n,), generator=g)
    return Encoded(ids, mask, labels, torch.randn(n, classes, generator=g))


_LOADED = {}


def loaded(name):
    """The tiny model's weights, loaded once per test session (building them imports transformers)."""
    if name not in _LOADED:
        _LOADED[name] = load_model(name)
    return _LOADED[name]


def make_search(name, table, **kw):
    space = load_space(name)
    torch.manual_seed(0)
    net = Supernet.build(space, loaded=loaded(name))
    pred = Predictor(load_table(table), space)
    cfg = SearchConfig(space=name, latency_table=table, **{"steps": 6, "warmup_steps": 1, "batch_size": 8,
                                                           "weight_lr": 1e-3, "arch_lr": 0.05, "log_every": 1, **kw})
    task = make_task(cfg, space.dims.hidden, 3)
    target = cfg.target_fraction * pred.latency_ms(space.full())
    data = synthetic(space.dims.vocab_size)
    return DNASSearch(net, task, pred, target, data, synthetic(space.dims.vocab_size, seed=1), cfg), pred


@pytest.mark.parametrize("name", ["tiny-bert", "tiny-llama"])
def test_fast_control_computes_what_the_supernet_computes(name):
    space = load_space(name)
    net = Supernet.build(space, loaded=loaded(name))
    ids, mask = torch.randint(1, space.dims.vocab_size, (2, 6)), torch.ones(2, 6, dtype=torch.long)
    g = torch.Generator().manual_seed(3)
    for hard, modes in ((True, ("mixture", "selected", "constant")), (False, ("mixture",))):
        w = net.sample(1.0, hard=hard, generator=g)
        ref = net(ids, mask, w)
        for mode in modes:
            got = net.model(ids, mask, fast_control(net, w, ids, mode=mode))
            assert torch.allclose(ref, got, atol=1e-5), mode


def test_selected_mode_sends_gradient_to_bit_logits(tiny_table):
    net = Supernet.build(load_space("tiny-bert"), loaded=loaded("tiny-bert"))
    ids, mask = torch.randint(1, 128, (2, 6)), torch.ones(2, 6, dtype=torch.long)
    with torch.no_grad():
        for i in (0, 1):
            net.logits(f"layer{i}.keep").copy_(torch.tensor([20.0, -20.0]))  # keep both layers
    w = net.sample(1.0, hard=True, generator=torch.Generator().manual_seed(0))
    net.model(ids, mask, fast_control(net, w, ids, mode="selected")).pow(2).mean().backward()
    for label in ("layer0.attn.bits", "layer1.ffn.bits", "embed.bits"):
        assert net.logits(label).grad is not None and net.logits(label).grad.abs().sum() > 0, label


@pytest.mark.parametrize("name", ["tiny-bert", "tiny-llama"])
def test_dual_ascent_raises_lambda_while_the_budget_is_violated(name, tiny_table):
    search, _ = make_search(name, tiny_table(name), target_fraction=0.1, lambda0=0.1, dual_lr=1.0)
    lams = [search.state.lmbda]
    for step in range(1, 4):
        d = search.arch_step(step, 1.0)
        assert d["violation"] > 0  # uniform logits: E[LAT] ≈ 3.7 ms, far above T = 1.8 ms
        lams.append(search.state.lmbda)
        assert lams[-1] == pytest.approx(lams[-2] + d["violation"])
    assert lams == sorted(lams) and lams[-1] > lams[0]


def test_arch_prior_starts_the_search_at_the_full_model(tiny_table):
    plain, pred = make_search("tiny-llama", tiny_table("tiny-llama"), target_fraction=0.5)
    near, _ = make_search("tiny-llama", tiny_table("tiny-llama"), target_fraction=0.5, arch_prior=3.0)
    full_ms = pred.latency_ms(near.net.space.full())
    assert near.net.export() == near.net.space.full()
    e_plain, e_near = (float(s.predictor.expected_latency(s.net.probs())) for s in (plain, near))
    assert e_plain < e_near < full_ms and e_near > 0.8 * full_ms  # uniform logits start far below the full model
    with pytest.raises(ConfigError, match="arch_prior"):
        SearchConfig(target_fraction=0.5, arch_prior=-1.0)


def test_band_penalises_the_latency_of_the_architecture_derive_would_take(tiny_table):
    """``band``: the violation (and λ's step) follows the argmax architecture, above T or below band_low·T."""
    from trainers.losses import band_violation

    for frac in (0.1, 0.95):
        search, _ = make_search("tiny-bert", tiny_table("tiny-bert"), target_fraction=frac, loss="band",
                                band_low=0.9, lambda0=0.5, dual_lr=1.0)
        lam = search.state.lmbda
        d = search.arch_step(1, 1.0)
        assert d["violation"] == pytest.approx(band_violation(d["argmax_ms"], search.target, 0.9))
        assert search.state.lmbda == pytest.approx(max(0.0, lam + d["violation"]))


@pytest.mark.parametrize("name", ["tiny-bert", "tiny-llama"])
def test_search_lowers_expected_latency_and_final_architecture_meets_target(name, tiny_table):
    search, pred = make_search(name, tiny_table(name), target_fraction=0.3, steps=12, arch_lr=0.2)
    state = search.run()
    ratios = [h["ratio"] for h in state.history if "ratio" in h]
    assert ratios[-1] < ratios[0]
    net = search.net
    arch, _ = most_probable_feasible(net.space, pred.latency_ms, log_probs_of(net.probs(), net.space),
                                     net.export(), search.target)
    assert pred.latency_ms(arch) <= search.target


def interrupted_then_resumed(table, ck, **kw):
    """``(uninterrupted run, run resumed from ck after a first one stopped at step 4)`` of one config."""

    class Stop(Exception):
        pass

    def stop_after_3(line):
        if line.startswith("search step 4/"):
            raise Stop

    full, _ = make_search("tiny-bert", table, **kw)
    full.run()
    first, _ = make_search("tiny-bert", table, **kw)
    with pytest.raises(Stop):
        first.run(progress=stop_after_3, checkpoint_dir=ck)
    lines = []
    resumed, _ = make_search("tiny-bert", table, **kw)
    resumed.run(progress=lines.append, checkpoint_dir=ck)
    assert lines[0].startswith("search: resumed") and "step 3" in lines[0]
    return full, resumed


def test_checkpoint_resume_continues_like_an_uninterrupted_run(tiny_table, tmp_path):
    table = tiny_table()
    full, resumed = interrupted_then_resumed(table, tmp_path / "ck", checkpoint_every=3)
    for a, b in zip(full.net.arch_parameters(), resumed.net.arch_parameters()):
        assert torch.allclose(a, b, atol=1e-5)
    for a, b in zip(full.net.weight_parameters(), resumed.net.weight_parameters()):
        assert torch.allclose(a, b, atol=1e-5)
    assert resumed.state.lmbda == pytest.approx(full.state.lmbda)
    other, _ = make_search("tiny-bert", table, checkpoint_every=3, seed=1)
    with pytest.raises(ConfigError, match="seed"):
        other.run(checkpoint_dir=tmp_path / "ck")


def test_progress_line_says_weights_frozen_instead_of_a_nan_loss():
    from trainers.search import _line

    frozen = _line({"tau": 1.0, "weight_loss": float("nan")}, 3, 12, 4.0)
    assert "weights frozen" in frozen and "nan" not in frozen
    assert "weight_loss 0.5000" in _line({"tau": 1.0, "weight_loss": 0.5}, 3, 12, 4.0)


def test_a_frozen_search_checkpoints_its_architecture_alone_and_resumes_like_an_uninterrupted_run(tiny_table, tmp_path):
    from safetensors import safe_open

    table = tiny_table()
    kw = dict(checkpoint_every=3, freeze_weights=True, warmup_steps=0)
    full, resumed = interrupted_then_resumed(table, tmp_path / "ck", **kw)
    with safe_open(str(tmp_path / "ck" / "search.safetensors"), "pt") as f:
        nets = [k for k in f.keys() if k.startswith("net.")]
    assert nets and all(k.startswith("net.arch_logits.") for k in nets)  # no model weight written
    for a, b in zip(full.net.arch_parameters(), resumed.net.arch_parameters()):
        assert torch.allclose(a, b, atol=1e-5)
    assert [h["argmax_ms"] for h in resumed.state.history] == pytest.approx([h["argmax_ms"] for h in full.state.history])
    # a checkpoint that lost its architecture logits is refused, naming one
    from safetensors.torch import load_file, save_file

    s = load_file(str(tmp_path / "ck" / "search.safetensors"))
    save_file({k: v for k, v in s.items() if not k.startswith("net.arch_logits.")}, str(tmp_path / "ck" / "search.safetensors"))
    again, _ = make_search("tiny-bert", table, **kw)
    with pytest.raises(ConfigError, match=r"lacks \d+ of the search's tensors \(e\.g\. net\.arch_logits\."):
        again.run(checkpoint_dir=tmp_path / "ck")
