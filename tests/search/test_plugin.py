"""The trial plug-in contract (nas.search.plugin): what load_plugin accepts and what it refuses, naming why."""

from __future__ import annotations

import sys
import types

import pytest

from nas.errors import ConfigError
from nas.search.plugin import TrialPlugin, load_plugin


class _Base:
    def config_fields(self):
        return frozenset()

    def make_config(self, fields):
        return fields

    def check(self, config):
        pass

    def task_metric(self, subnet):
        return "m", lambda forward: 0.0


class _NoDevice(_Base):
    def run(self, config, *, progress=None, checkpoint_dir=None):
        return None


class _Kwargs(_Base):
    def run(self, config, **kw):
        return kw


@pytest.fixture
def module(monkeypatch):
    mod = types.ModuleType("fake_plugins")
    mod.no_device, mod.kwargs, mod.nothing = _NoDevice(), _Kwargs(), object()
    monkeypatch.setitem(sys.modules, "fake_plugins", mod)
    return mod


def test_shipped_plugins_take_a_device():
    for spec in ("trainers:dnas", "trainers.light:light", "tests.search.trials:light"):
        assert isinstance(load_plugin(spec), TrialPlugin)


def test_run_without_device_is_refused(module):
    with pytest.raises(ConfigError, match=r"^trial: 'fake_plugins:no_device''s run\(\) takes no device="):
        load_plugin("fake_plugins:no_device")
    assert load_plugin("fake_plugins:kwargs") is module.kwargs  # **kwargs takes device= too


def test_not_a_plugin_names_what_is_missing(module):
    with pytest.raises(ConfigError, match="is not a trial plug-in .missing config_fields, make_config, check, run"):
        load_plugin("fake_plugins:nothing")
