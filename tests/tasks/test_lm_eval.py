"""The batched multiple-choice scorer and perplexity equal unbatched references (tiny-llama; SmolLM2 when slow)."""

import math

import pytest
import torch
import torch.nn.functional as F

from nas.errors import ModelError
from nas.models import TransformerModel, load_model
from nas.tasks.batches import HashTokenizer, tokenizer_for
from nas.tasks.definitions import ChoiceItem, load_definitions
from nas.tasks.lm_eval import choice_accuracy, choice_scores, encode_choices, lm_forward, perplexity

ITEMS = (
    ChoiceItem("a", "Definition: a member of the genus Canis.\nWord:", ("cat", "dog", "horse", "cow"), 1),
    ChoiceItem("b", "Definition: be asleep.\nWord:", ("sleep", "breathe", "yawn", "sneeze"), 0),
    ChoiceItem("c", "Definition: pie containing sliced apples and sugar.\nWord:",
               ("bread", "soup", "cheese", "apple pie"), 3),
)


def model_of(name):
    lm = load_model(name)
    m = TransformerModel(lm.dims)
    m.load_state_dict(lm.state)
    return lm, m.eval()


def tokens(tok, text):
    ids, mask = tok([text])
    return ids[0, : int(mask[0].sum())].tolist()


@torch.no_grad()
def reference_scores(model, tok, items):
    """One unpadded row per candidate: mean log p(candidate tokens | prompt)."""
    out = []
    for it in items:
        prompt = tokens(tok, it.prompt)
        row = []
        for w in it.choices:
            cont = tokens(tok, f" {w}")
            ids = torch.tensor([prompt + cont])
            logp = F.log_softmax(model.logits(model(ids)), -1)[0]
            row.append(float(sum(logp[len(prompt) - 1 + k, t] for k, t in enumerate(cont)) / len(cont)))
        out.append(row)
    return torch.tensor(out)


def test_batched_choice_scores_equal_the_unbatched_reference():
    _, model = model_of("tiny-llama")
    tok = HashTokenizer(model.dims.vocab_size, 64)
    enc = encode_choices(tok, ITEMS)
    ref = reference_scores(model, tok, ITEMS)
    for bs in (1, 5, 32):  # rows of different lengths share batches (right padding)
        assert torch.allclose(choice_scores(lm_forward(model), enc, batch_size=bs), ref, atol=1e-5), bs
    assert choice_accuracy(lm_forward(model), enc) == pytest.approx(
        float((ref.argmax(1) == torch.tensor([1, 0, 3])).float().mean()))
    # a forward returning NumPy (an onnxruntime session) scores the same
    np_forward = lambda ids, mask: lm_forward(model)(ids, mask).numpy()  # noqa: E731
    assert torch.allclose(choice_scores(np_forward, enc), ref, atol=1e-5)


def test_cached_choice_scores_of_an_exported_graph_equal_the_reference(tmp_path):
    """Each prompt once, then its candidates as one batch after the cached prompt: the same scores."""
    from nas.runtime.decoder_onnx import export_decoder_onnx
    from nas.runtime.decoder_session import DecoderSession
    from nas.tasks.lm_eval import choice_scores_cached, correct_of

    _, model = model_of("tiny-llama")
    tok = HashTokenizer(model.dims.vocab_size, 64)
    items = (*ITEMS, ChoiceItem("d", "Definition: a long word.\nWord:", ("x", "antidisestablishment", "y z", "w"), 1))
    enc = encode_choices(tok, items)
    assert len({len(r) - s for r, s in zip(enc.rows, enc.starts)}) > 1  # candidates of different lengths
    session = DecoderSession(export_decoder_onnx(model, tmp_path / "model.onnx"), threads=1)
    ref = reference_scores(model, tok, items)
    cached = choice_scores_cached(session, enc)
    assert torch.allclose(cached, ref, atol=1e-4)
    assert torch.allclose(cached, choice_scores(session.forward, enc), atol=1e-4)
    assert correct_of(cached, enc).tolist() == (ref.argmax(1) == torch.tensor([1, 0, 3, 1])).tolist()


def test_cached_choice_scores_of_a_pytorch_decoder_equal_the_reference():
    from nas.tasks.lm_eval import TorchCachedDecoder, choice_scores_cached

    _, model = model_of("tiny-llama")
    tok = HashTokenizer(model.dims.vocab_size, 64)
    items = (*ITEMS, ChoiceItem("d", "Definition: a long word.\nWord:", ("x", "antidisestablishment", "y z", "w"), 1))
    enc = encode_choices(tok, items)
    cached = choice_scores_cached(TorchCachedDecoder(model), enc)
    assert torch.allclose(cached, reference_scores(model, tok, items), atol=1e-5)
    with pytest.raises(ModelError):  # an encoder has no cache to extend
        choice_scores_cached(TorchCachedDecoder(model_of("tiny-bert")[1]), enc)


def test_long_prompts_keep_their_end():
    tok = HashTokenizer(128, 512)
    long = ChoiceItem("x", "Definition: " + "very " * 300 + "long.\nWord:", ("a", "b", "c", "d"), 0)
    enc = encode_choices(tok, [long], max_prompt=16)
    assert enc.starts[0] == 16 and enc.rows[0][:16] == tuple(tokens(tok, long.prompt)[-16:])


def test_perplexity_equals_the_per_text_reference():
    _, model = model_of("tiny-llama")
    tok = HashTokenizer(model.dims.vocab_size, 16)
    texts = ["draw air into and expel out of the lungs", "be asleep", "with rapid movements of the hands", "x"]
    ids, mask = tok(texts)
    nll, n = 0.0, 0
    with torch.no_grad():
        for t in texts:
            row = torch.tensor([tokens(tok, t)])
            if row.shape[1] < 2:
                continue
            logp = F.log_softmax(model.logits(model(row)), -1)[0, :-1]
            nll -= float(logp.gather(-1, row[0, 1:, None]).sum())
            n += row.shape[1] - 1
    assert perplexity(lm_forward(model), ids, mask, batch_size=3) == pytest.approx(math.exp(nll / n), rel=1e-5)


@pytest.fixture
def one_thread():
    """Small single-row forwards stall on a busy machine with two threads; one is steadier."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.mark.slow
def test_smollm2_answers_definitions_well_above_chance(one_thread):
    """SmolLM2-135M-Instruct on the first 16 test items of the real WordNet (about 15 s on one core)."""
    lm, model = model_of("smollm2-135m")
    items = load_definitions().choice_items("test", 16)
    tok = tokenizer_for(lm, 256)
    enc = encode_choices(tok, items)
    scores = choice_scores(lm_forward(model), enc)
    assert torch.allclose(scores[:3], reference_scores(model, tok, items[:3]), atol=1e-4)
    correct = int((scores.argmax(1) == torch.tensor(enc.answers)).sum())
    assert correct >= 8, correct  # chance is 4 of 16
