"""nas.files: whole files or none, the user's permissions, no leftovers beside the target."""

import json
import os
import stat

import pytest

from nas.files import atomic_dir, atomic_file, write_bytes_atomic, write_json_atomic, write_text_atomic


@pytest.fixture
def umask_022():
    old = os.umask(0o022)
    yield
    os.umask(old)


def _mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def test_atomic_file_error_leaves_target_and_no_temp(tmp_path):
    target = tmp_path / "a.txt"
    target.write_text("old")
    with pytest.raises(RuntimeError, match="boom"):
        with atomic_file(target, suffix=".txt") as tmp:
            tmp.write_text("half")
            raise RuntimeError("boom")
    assert target.read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.txt"]


def test_atomic_file_error_on_a_new_target_leaves_nothing(tmp_path):
    with pytest.raises(RuntimeError):
        with atomic_file(tmp_path / "sub" / "new.json"):
            raise RuntimeError
    assert list((tmp_path / "sub").iterdir()) == []


def test_atomic_file_lands_with_the_suffix_and_umask_permissions(tmp_path, umask_022):
    target = tmp_path / "plot.png"
    with atomic_file(target, suffix=".png") as tmp:
        assert tmp.parent == tmp_path and tmp.name.endswith(".png") and tmp != target
        tmp.write_bytes(b"png")
    assert target.read_bytes() == b"png"
    assert _mode(target) == 0o644  # 0666 & ~0o022, not mkstemp's 0600
    assert sorted(p.name for p in tmp_path.iterdir()) == ["plot.png"]


def test_write_bytes_and_text_replace_whole(tmp_path, umask_022):
    target = tmp_path / "f"
    write_bytes_atomic(target, b"\x00\x01")
    assert target.read_bytes() == b"\x00\x01"
    write_text_atomic(target, "é→")
    assert target.read_bytes() == "é→".encode("utf-8")
    assert _mode(target) == 0o644
    assert [p.name for p in tmp_path.iterdir()] == ["f"]


def test_write_json_round_trips(tmp_path):
    obj = {"b": [1, 2.5, None], "a": {"x": "y"}}
    path = tmp_path / "d.json"
    write_json_atomic(path, obj)
    assert path.read_text() == '{\n "b": [\n  1,\n  2.5,\n  null\n ],\n "a": {\n  "x": "y"\n }\n}'
    assert json.loads(path.read_text()) == obj
    write_json_atomic(path, obj, indent=None, sort_keys=True)
    assert path.read_text() == '{"a": {"x": "y"}, "b": [1, 2.5, null]}'


def test_atomic_dir_replaces_an_existing_folder(tmp_path, umask_022):
    out = tmp_path / "out"
    (out / "stale").mkdir(parents=True)
    (out / "old.txt").write_text("old")
    with atomic_dir(out) as tmp:
        assert tmp.parent == tmp_path and tmp != out and not any(tmp.iterdir())
        (tmp / "new.txt").write_text("new")
    assert sorted(p.name for p in out.iterdir()) == ["new.txt"]
    assert _mode(out) == 0o755  # 0777 & ~0o022, not mkdtemp's 0700
    assert [p.name for p in tmp_path.iterdir()] == ["out"]  # no .out.old-* nor temp sibling


def test_atomic_dir_creates_a_new_folder(tmp_path, umask_022):
    out = tmp_path / "a" / "b"
    with atomic_dir(out) as tmp:
        (tmp / "f").write_text("x")
    assert (out / "f").read_text() == "x"
    assert _mode(out) == 0o755
    assert [p.name for p in (tmp_path / "a").iterdir()] == ["b"]


def test_atomic_dir_error_leaves_the_old_folder(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("keep")
    with pytest.raises(RuntimeError):
        with atomic_dir(out) as tmp:
            (tmp / "half.txt").write_text("half")
            raise RuntimeError
    assert sorted(p.name for p in out.iterdir()) == ["keep.txt"]
    assert [p.name for p in tmp_path.iterdir()] == ["out"]
