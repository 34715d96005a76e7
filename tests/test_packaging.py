"""What users read at run time (spaces, latency tables) ships inside the wheel."""

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_wheel_contains_package_data(tmp_path):
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(tmp_path), str(ROOT)],
        check=True, capture_output=True,
    )
    wheel = next(tmp_path.glob("*.whl"))
    names = zipfile.ZipFile(wheel).namelist()
    for space in ("minilm-l6", "tiny-bert", "tiny-llama"):
        assert f"search_spaces/{space}.yaml" in names
    assert "nas/cli.py" in names and "trainers/__init__.py" in names
    shipped = {str(f.relative_to(ROOT)) for f in (ROOT / "latency_luts").rglob("*.json")}
    assert shipped and any(n.count("/") == 2 for n in shipped)  # device folders too
    assert shipped <= set(names)
