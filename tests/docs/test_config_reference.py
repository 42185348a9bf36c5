"""docs/reference/config.md is generated from the schema and configs/ by
scripts/config_reference.py: the committed page must equal a fresh one, so it cannot go stale, and
it must name every key the schema declares and every config of every group."""

from __future__ import annotations

import re
from dataclasses import fields

import pytest

from tests.conftest import ROOT, script
from trainer.config import schema

PAGE = ROOT / "docs" / "reference" / "config.md"


@pytest.fixture(scope="module")
def fresh() -> str:
    return script("config_reference").render()


def test_the_committed_page_is_a_fresh_generation(fresh):
    assert PAGE.read_text() == fresh, (
        "docs/reference/config.md is stale: run `python scripts/config_reference.py` and commit it")


def test_every_declared_key_and_every_group_config_is_on_the_page(fresh):
    rows = set(re.findall(r"^\| `([^`]+)` \|", fresh, flags=re.M))
    keys = [f.name for f in fields(schema.Config) if "check" in f.metadata]
    nested = [f"{node}.{f.name}" for node in ("schedule", "early_stopping", "regularization")
              for f in fields(type(getattr(schema.Config(), node)))]
    assert set(keys + nested) <= rows
    for group in ("data", "model", "optimizer", "scheduler", "averaging", "ensemble"):
        for path in (ROOT / "configs" / group).glob("*.yaml"):
            assert f"### {group}={path.stem}\n" in fresh
    assert "| `optimizer.momentum` | `0.9` |" in fresh  # momentum.yaml's value, over torch's 0
    assert "| `optimizer.dampening` | `0` |" in fresh  # an argument only torch's signature has
    assert "| `model.activation` | `relu` | one of `elu`, `gelu`" in fresh  # models.mlp's names


def test_check_mode_says_stale(tmp_path, monkeypatch, capsys):
    module = script("config_reference")
    monkeypatch.setattr(module, "PAGE", tmp_path / "config.md")
    monkeypatch.setattr(module, "render", lambda: "# Config reference\n")  # the page's text: above
    assert module.main(["--check"]) == 1 and "stale" in capsys.readouterr().out
    assert module.main([]) == 0 and module.main(["--check"]) == 0
    assert (tmp_path / "config.md").read_text() == "# Config reference\n"
