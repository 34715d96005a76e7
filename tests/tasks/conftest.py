import pytest

from tests.tasks.fixtures import write_definitions


@pytest.fixture
def definitions_dir(tmp_path, monkeypatch):
    """The hand-made snippet alone, found through ``NAS_WORDNET_DIR``."""
    folder = write_definitions(tmp_path / "wordnet")
    monkeypatch.setenv("NAS_WORDNET_DIR", str(folder))
    return folder
