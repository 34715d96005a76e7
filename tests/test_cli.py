"""The nas CLI, run as users run it: in a subprocess."""

import json
import subprocess
import sys

import pytest


def nas(*args, check=False):
    return subprocess.run([sys.executable, "-m", "nas.cli", *args], capture_output=True, text=True, check=check)


def test_help_lists_subcommands():
    r = nas("--help", check=True)
    assert "space" in r.stdout


def test_space_show_table_and_json():
    r = nas("space", "show", "tiny-llama", check=True)
    assert "layer1.attn.bits" in r.stdout and "32,16,8,4" in r.stdout
    d = json.loads(nas("space", "show", "minilm-l6", "-f", "json", check=True).stdout)
    assert d["choices"]["layer2.heads"] == [12, 10, 8, 6, 4, 2]


def test_space_check_json():
    r = nas("space", "check", "tiny-bert", "--samples", "4", "--seed", "1", "-f", "json", check=True)
    d = json.loads(r.stdout)
    assert d["samples"] == 4 and d["max_abs_diff"] <= 1e-4 and d["ok"]


@pytest.mark.slow
def test_space_check_real_minilm():
    d = json.loads(nas("space", "check", "minilm-l6", "--samples", "3", "-f", "json", check=True).stdout)
    assert d["max_abs_diff"] <= 1e-4


def test_user_errors_are_one_line(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: t\nmodel: tiny-bert\nffn: [65]\n")
    for args in (("space", "show", str(bad)), ("space", "show", "nope"), ("space", "check", str(bad))):
        r = nas(*args)
        assert r.returncode == 1
        lines = r.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("nas: error:"), r.stderr
    assert "layer0.ffn" in nas("space", "show", str(bad)).stderr
