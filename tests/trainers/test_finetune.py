"""The fine-tuning learning-rate schedule (:func:`trainers.finetune.lr_factor`)."""

import pytest

from trainers.finetune import lr_factor


@pytest.mark.parametrize("steps", [1, 7, 30, 300])
def test_cosine_warms_up_peaks_once_and_decays_toward_zero(steps):
    f = [lr_factor("cosine", s, steps) for s in range(steps)]
    warm = max(1, steps // 10)
    assert f[:warm] == pytest.approx([(s + 1) / warm for s in range(warm)])  # linear warm-up to the peak
    assert max(f) == pytest.approx(1.0)
    assert all(a >= b for a, b in zip(f[warm - 1:], f[warm:]))  # then never rises
    if steps > 1:
        assert f[-1] <= 0.06  # a short fine-tune ends at a small learning rate
    assert all(0 < x <= 1 for x in f)


def test_constant_is_the_peak_throughout_and_an_unknown_schedule_is_refused():
    assert {lr_factor("constant", s, 50) for s in range(50)} == {1.0}
    with pytest.raises(ValueError, match="finetune_schedule"):
        lr_factor("linear", 0, 10)


def _int4_attention_subnet(space):
    import nas

    arch = dict(space.full())
    for label in arch:
        if label.endswith(".bits") and label != "embed.bits":
            arch[label] = 4 if "attn" in label else 32
    return nas.derive(nas.Supernet.build(space), space.validate(arch))


def test_calibrated_finetune_snaps_int4_linears_onto_clipped_scales_and_leaves_the_rest():
    import torch

    from nas.quant import quantize_dequantize
    from nas.spaces import load_space
    from nas.supernet.calibrate import linear_nodes
    from nas.tasks.batches import Encoded
    from trainers.finetune import snap_to_grid
    from nas.supernet.calibrate import linear_inputs

    space = load_space("tiny-llama")
    sub = _int4_attention_subnet(space)
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():  # latent weights off the grid, as after fine-tuning steps
        for lin in linear_nodes(sub.model).values():
            lin.weight.add_(0.01 * torch.randn(lin.weight.shape, generator=g))
    latent = {n: lin.weight.clone() for n, lin in linear_nodes(sub.model).items()}
    ids = torch.randint(1, space.dims.vocab_size, (16, 12), generator=g)
    data = Encoded(ids, torch.ones_like(ids), torch.zeros(16, dtype=torch.long))
    snap_to_grid(sub, linear_inputs(sub.model, data.ids, data.mask))
    differ = 0
    for node, lin in linear_nodes(sub.model).items():
        if ".attn." in node:
            assert torch.equal(quantize_dequantize(lin.weight, 4), lin.weight)  # on the int4 grid
            differ += not torch.equal(lin.weight, quantize_dequantize(latent[node], 4))
        else:
            assert torch.equal(lin.weight, latent[node])  # fp32 linears untouched
    assert differ > 0  # some blocks found a clipped scale


def _tiny_decoder_distillation():
    import torch

    import nas
    from nas.spaces import load_space
    from nas.tasks.batches import Encoded
    from trainers.tasks import NextTokenTask

    space = load_space("tiny-llama")
    net = nas.Supernet.build(space)
    arch = dict(space.full())
    arch["layer1.keep"] = 0
    teacher = nas.derive(net, space.full()).model.eval()
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(1, space.dims.vocab_size, (16, 10), generator=g)
    data = Encoded(ids, torch.ones_like(ids), torch.zeros(16, dtype=torch.long))
    return (lambda: nas.derive(net, space.validate(arch))), NextTokenTask(teacher), data


def test_checkpoints_see_the_run_of_that_length_and_leave_the_training_unchanged():
    import torch

    from trainers.finetune import finetune

    make, task, data = _tiny_decoder_distillation()
    kw = dict(lr=1e-3, batch_size=4, seed=0, autocast="none")
    seen = {}

    def look(n: int) -> None:
        seen[n] = (sub.model.training, torch.is_grad_enabled(),
                   {k: v.clone() for k, v in sub.model.state_dict().items()})

    sub = make()
    before = {k: v.clone() for k, v in sub.model.state_dict().items()}
    finetune(sub, task, data, steps=4, checkpoints=(0, 2, 4, 9), on_checkpoint=look, **kw)
    assert sorted(seen) == [0, 2, 4]  # a checkpoint past the last step never comes
    assert all(not training and not grad for training, grad, _ in seen.values())  # eval mode, no autograd
    assert all(torch.equal(seen[0][2][k], before[k]) for k in before)

    short = make()  # the 2-step run (constant schedule, same batches) is what the ladder saw after 2 steps
    finetune(short, task, data, steps=2, **kw)
    assert all(torch.equal(seen[2][2][k], v) for k, v in short.model.state_dict().items())
    assert any(not torch.equal(seen[2][2][k], seen[4][2][k]) for k in before)  # and training went on from there

    plain = make()  # watching changes nothing
    finetune(plain, task, data, steps=4, **kw)
    assert all(torch.equal(v, sub.model.state_dict()[k]) for k, v in plain.model.state_dict().items())
