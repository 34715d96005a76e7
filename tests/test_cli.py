"""The nas CLI, run as users run it: in a subprocess."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


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


def test_unreadable_files_are_one_line_errors(tmp_path):
    """Non-UTF-8 space, experiment and latency-table files, a bad space field, a control character in YAML."""
    space = tmp_path / "latin1.yaml"
    space.write_bytes("name: t\nmodel: tiny-bert\ndescription: café\n".encode("latin-1"))
    exp = tmp_path / "exp.yaml"
    exp.write_bytes("name: café\nspace: tiny-bert\n".encode("latin-1"))
    table = tmp_path / "t.json"
    table.write_bytes('{"schema": 1, "device": {"cpu": "Tést"}}'.encode("latin-1"))
    bits = tmp_path / "bits.yaml"
    bits.write_text("name: t\nmodel: tiny-bert\nbits: x\n")
    bell = tmp_path / "bell.yaml"
    bell.write_text("name: x\x07\nspace: tiny-bert\n")
    for args, needle in (
        (("space", "show", str(space)), f"{space}: not UTF-8 text (byte 41: invalid continuation byte)"),
        (("search", str(exp), "--storage", f"sqlite:///{tmp_path}/s.db"), f"{exp}: not UTF-8 text (byte 9:"),
        (("lut", "show", str(table)), f"{table}: not UTF-8 text (byte 34:"),
        (("space", "show", str(bits)), f"nas: error: {bits}: bits: expected a list, got str"),
        (("search", str(bell), "--storage", f"sqlite:///{tmp_path}/s.db"), f"{bell}: (yaml): malformed YAML"),
    ):
        r = nas(*args)
        lines = r.stderr.strip().splitlines()
        assert r.returncode == 1 and len(lines) == 1 and lines[0].startswith("nas: error:"), r.stderr
        assert needle in lines[0], lines[0]


def test_every_nas_error_is_one_line_even_a_multi_line_message(monkeypatch, capsys):
    from nas.cli import main
    from nas.commands import space
    from nas.errors import NASError

    def boom(args):
        raise NASError("first line\n  second line")

    monkeypatch.setattr(space, "cmd_list", boom)
    assert main(["space", "list"]) == 1
    assert capsys.readouterr().err == "nas: error: first line second line\n"


def test_inspection_commands_write_nothing_but_the_plot(tmp_path):
    """In an empty folder (no ``NAS_STORAGE``): `nas space`, `nas lut show|validate` leave only the ``--plot`` file,
    with the user's permissions (0644 under umask 022) and named on stderr; `nas studies` creates no database."""
    here = tmp_path.resolve()
    env = {"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin", "HF_HUB_OFFLINE": "1"}

    def run(*args):
        return subprocess.run([sys.executable, "-m", "nas.cli", *args], capture_output=True, text=True, cwd=here,
                              env=env, preexec_fn=lambda: os.umask(0o022))

    lut = "tiny-bert.onnxruntime-cpu.t1.b1.s32"
    for args in (("space", "list"), ("space", "show", "tiny-bert"), ("lut", "show", lut)):
        assert run(*args).returncode == 0
    r = run("studies")
    assert r.returncode == 1 and "storage: no study database at" in r.stderr
    assert list(here.iterdir()) == []
    r = run("lut", "validate", lut, "--samples", "2", "--rounds", "1", "--plot", "p.png")
    assert r.returncode == 0, r.stderr[-2000:]
    assert f"wrote plot to {here / 'p.png'}" in r.stderr.splitlines()
    assert [p.name for p in here.iterdir()] == ["p.png"] and (here / "p.png").stat().st_mode & 0o777 == 0o644
