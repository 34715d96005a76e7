"""The sandwich rule's shared-supernet training (:mod:`trainers.sandwich`) on tiny models."""

import pytest
import torch

import nas
from nas.errors import ConfigError
from nas.models.transformer import mean_pool
from nas.spaces.choice import layer_label
from nas.tasks.batches import Encoded
from trainers.sandwich import SandwichConfig, SandwichTrainer, sandwich_archs, shrunk_space_options
from trainers.tasks import EmbedTask


def _data(net, n=24, t=10, seed=0):
    """Random token rows with the full model's pooled embeddings as the teacher targets."""
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(1, net.space.dims.vocab_size, (n, t), generator=g)
    mask = torch.ones_like(ids)
    with torch.no_grad():
        teacher = mean_pool(net.model(ids, mask), mask)
    return Encoded(ids, mask, torch.zeros(n, dtype=torch.long), teacher)


def _trainer(space, config, seed=0):
    torch.manual_seed(seed)
    net = nas.Supernet.build(space)
    return SandwichTrainer(net, EmbedTask(), _data(net), config)


def test_archs_bound_the_space_and_cover_every_bit_width():
    space = nas.load_space("tiny-bert")
    step = sandwich_archs(space, 3, seed=1, random_archs=2)
    assert [n for n, _ in step] == ["largest", "smallest", "random0", "random1"]
    assert step[0][1] == space.full() and step[1][1] == space.smallest()
    for c in space:
        if c.kind == "bits":
            assert {a[c.label] for _, a in step} == set(c.options), c.label  # every bit-width in one step
    assert step == sandwich_archs(space, 3, seed=1, random_archs=2)  # a function of (seed, step)
    assert step != sandwich_archs(space, 4, seed=1, random_archs=2)
    with pytest.raises(ConfigError, match="random_archs: must be >= 0"):
        SandwichConfig(random_archs=-1)


@pytest.mark.parametrize("name", ["tiny-bert", "smollm2-135m"])
def test_progressive_shrinking_opens_the_space_from_the_largest_options_down(name):
    space = nas.load_space(name)
    first = sandwich_archs(space, 0, seed=1, random_archs=2, shrink_steps=8)
    assert all(arch == space.full() for _, arch in first)  # step 0 of 8: the largest options alone
    seen = []
    for step in range(8):
        opened = shrunk_space_options(space, step, 8)
        archs = dict(sandwich_archs(space, step, seed=1, random_archs=2, shrink_steps=8))
        if opened is None:  # the last step: the whole space, exactly as without shrinking
            assert step == 7 and list(archs.items()) == sandwich_archs(space, step, seed=1, random_archs=2)
            break
        for c in space:
            o = opened[c.label]
            assert o == tuple(c.options[:len(o)])  # a prefix, largest first
            assert archs["smallest"][c.label] == o[-1] or (c.kind == "keep" and archs["smallest"][c.label] == 1)
            assert all(a[c.label] in o for a in archs.values())
        assert space.kept_layers(archs["smallest"]) and all(space.kept_layers(a) for a in archs.values())
        seen.append(sum(len(o) for o in opened.values()))
    assert seen == sorted(seen) and seen[0] < seen[-1]  # never closes, and does open
    assert sandwich_archs(space, 20, seed=1, random_archs=2, shrink_steps=8) == \
        sandwich_archs(space, 20, seed=1, random_archs=2)


def test_shrink_steps_is_checked_and_keeps_older_supernets_keys():
    assert "shrink_steps" not in SandwichConfig().to_dict()  # keys of supernets trained before it are unchanged
    assert SandwichConfig(shrink_steps=50).to_dict()["shrink_steps"] == 50
    for bad in (-1, 2.5, True):
        with pytest.raises(ConfigError, match="shrink_steps: must be an integer >= 0"):
            SandwichConfig(shrink_steps=bad)


def test_one_step_sends_gradients_through_both_the_largest_and_the_smallest():
    """With no random architectures a step's gradient is largest + smallest: FFN rows beyond the smallest
    width get the largest's gradient only; rows within it get both (they differ from the largest's alone)."""
    space = nas.load_space("tiny-bert")
    tr = _trainer(space, SandwichConfig(steps=1, random_archs=0, autocast="none"))
    small = space.smallest()
    layer = next(i for i in space.kept_layers(small))
    width = small[layer_label(layer, "ffn")] if layer_label(layer, "ffn") in small else space.dims.intermediate
    up = tr.net.model.layers[layer].ffn.up.weight  # (intermediate, hidden): row j feeds neuron j
    from trainers import sandwich as S

    idx = S.batch_indices(len(tr.data), tr.config.batch_size, seed=tr.config.seed, step=0, salt=S._SALT)
    tr.opt.zero_grad(set_to_none=True)
    tr.arch_loss(space.full(), tr.data.batch(idx)).backward()  # the batch step 0 takes
    largest_only = up.grad.clone()
    before = {k: v.clone() for k, v in tr.net.model.state_dict().items()}
    rec = tr.step()
    both = up.grad
    assert width < space.dims.intermediate
    assert torch.allclose(both[width:], largest_only[width:], atol=1e-7)  # only the largest reaches these neurons
    assert largest_only[width:].abs().sum() > 0
    assert (both[:width] - largest_only[:width]).abs().sum() > 1e-6  # the smallest's gradient added here
    assert set(rec) == {"step", "loss.largest", "loss.smallest", "loss"} and rec["loss.smallest"] > rec["loss.largest"]
    after = tr.net.model.state_dict()
    assert torch.equal(after["embed.word.weight"], before["embed.word.weight"])  # frozen
    assert not torch.equal(after[f"layers.{layer}.ffn.up.weight"], before[f"layers.{layer}.ffn.up.weight"])


def test_resumed_training_takes_the_same_next_step(tmp_path):
    space = nas.load_space("tiny-bert")
    cfg = dict(random_archs=1, batch_size=8, log_every=1, checkpoint_every=1, autocast="none", lr=1e-3)
    whole = _trainer(space, SandwichConfig(steps=3, **cfg)).run()
    _trainer(space, SandwichConfig(steps=2, **cfg)).run(checkpoint_dir=tmp_path / "ck")
    lines = []
    resumed = _trainer(space, SandwichConfig(steps=3, **cfg))
    state = resumed.run(checkpoint_dir=tmp_path / "ck", progress=lines.append)
    assert lines[0] == f"supernet: resumed from {tmp_path / 'ck'} at step 2"
    assert [h["step"] for h in state.history] == [0.0, 1.0, 2.0]
    assert state.history[2]["loss"] == pytest.approx(whole.history[2]["loss"], rel=1e-6, abs=1e-7)
    assert state.history[1]["loss"] == whole.history[1]["loss"]  # restored, not recomputed
    other = _trainer(space, SandwichConfig(steps=3, **{**cfg, "random_archs": 2}))
    with pytest.raises(ConfigError, match="another config \\(differs in random_archs\\)"):
        other.run(checkpoint_dir=tmp_path / "ck")


def test_a_checkpoint_of_another_space_is_refused_naming_both_hashes(tmp_path):
    bert, llama = nas.load_space("tiny-bert"), nas.load_space("tiny-llama")
    _trainer(bert, SandwichConfig(steps=1, autocast="none")).run(checkpoint_dir=tmp_path / "ck")
    torch.manual_seed(0)
    net = nas.Supernet.build(llama)
    tr = SandwichTrainer(net, EmbedTask(), _data(net), SandwichConfig(steps=1, autocast="none"))
    with pytest.raises(ConfigError, match=f"space 'tiny-bert' with hash {bert.hash}, not 'tiny-llama' with hash "
                                          f"{llama.hash}"):
        tr.run(checkpoint_dir=tmp_path / "ck")


def test_a_decoder_trains_by_the_sandwich_rule_distilling_from_the_full_model():
    """tiny-llama with the next-token task: every architecture's loss is the KL to the frozen full model's logits,
    so the largest starts at zero and the smaller ones above it."""
    import copy

    from trainers.tasks import NextTokenTask

    space = nas.load_space("tiny-llama")
    torch.manual_seed(0)
    net = nas.Supernet.build(space)
    teacher = copy.deepcopy(net.model).eval()
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(1, space.dims.vocab_size, (16, 12), generator=g)
    data = Encoded(ids, torch.ones_like(ids), torch.zeros(16, dtype=torch.long))
    tr = SandwichTrainer(net, NextTokenTask(teacher), data, SandwichConfig(steps=2, random_archs=1, batch_size=8,
                                                                           autocast="none", lr=1e-3, log_every=1))
    state = tr.run()
    first = state.history[0]
    assert first["loss.largest"] < 1e-3 < first["loss.smallest"]  # the full architecture is the teacher itself
    assert len(state.history) == 2 and state.history[1]["loss.largest"] > 0  # the shared weights moved
