"""Our transformer reproduces the Hugging Face implementation of each family."""

import pytest
import torch

from nas.errors import ModelError
from nas.models import TransformerModel, get_family, load_model, source_dims
from tests.conftest import batch


@pytest.mark.parametrize("source", ["tiny-bert", "tiny-llama", "minilm-l6"])
def test_matches_huggingface(source):
    lm = load_model(source)
    ours = TransformerModel(lm.dims)
    ours.load_state_dict(lm.state)
    ours.eval()
    ref = lm.reference()
    ids, mask = batch(lm.dims.vocab_size)
    with torch.no_grad():
        a = ours(ids, mask)
        b = ref(input_ids=ids, attention_mask=mask).last_hidden_state
    assert a.shape == b.shape
    assert float((a - b)[mask.bool()].abs().max()) <= 1e-4


def test_source_dims_read_config_without_weights():
    d = source_dims("minilm-l6")
    assert (d.family, d.num_layers, d.num_heads, d.hidden, d.intermediate) == ("bert", 6, 12, 384, 1536)
    g = source_dims("tiny-llama")
    assert (g.num_heads, g.num_kv_heads, g.group_size) == (4, 2, 2)


def test_unknown_family_and_source():
    with pytest.raises(ModelError, match="gpt_neox"):
        get_family("gpt_neox")
    with pytest.raises(ModelError, match="no-such-model"):
        load_model("no-such-model")


def test_missing_weight_is_named(tmp_path):
    import json

    from safetensors.torch import save_file

    lm = load_model("tiny-bert")
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "bert", **{
        "vocab_size": 128, "hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 4,
        "intermediate_size": 64, "max_position_embeddings": 64, "type_vocab_size": 2,
        "layer_norm_eps": 1e-12}}))
    hf = {k: v for k, v in lm.reference().state_dict().items() if "layer.1.output.dense" not in k}
    save_file({k: v.contiguous() for k, v in hf.items()}, str(tmp_path / "model.safetensors"))
    with pytest.raises(ModelError, match="layers.1.ffn.down"):
        load_model(str(tmp_path))
