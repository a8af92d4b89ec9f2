"""Presets load and validate; wrong keys, types and values are refused with one line naming them."""

import pytest

from dainr.config import available_presets, load_config, parse_override
from dainr.errors import ConfigError


def test_presets_exist_and_load():
    assert {"paper", "fast", "cpu-test"} <= set(available_presets())
    paper = load_config("paper")
    assert paper.dainr.steps == 1001 and paper.dainr.frames_per_step == 1 and paper.dainr.lr == 1e-3
    assert paper.dainr.grid.levels == 16 and paper.dainr.grid.log2_table_size == 19
    assert load_config("fast").method == "dainr"


def test_overrides_typed():
    cfg = load_config("fast", overrides=["dainr.steps=7", "dainr.grid.gridtype=hash", "prep.prewhiten=false",
                                         "dainr.lr=2e-3"])
    assert cfg.dainr.steps == 7 and cfg.dainr.grid.gridtype == "hash" and cfg.prep.prewhiten is False
    assert cfg.dainr.lr == pytest.approx(2e-3)
    assert parse_override("a.b.c=x") == {"a": {"b": {"c": "x"}}}


@pytest.mark.parametrize("override, words", [
    ("dainr.stepz=3", "unknown config key 'dainr.stepz'"),
    ("dainr.steps=abc", "'dainr.steps' must be int"),
    ("dainr.steps=0", "must be > 0"),
    ("method=magic", "'method' is 'magic'"),
    ("dainr=3", "is a section"),
    ("noequals", "not KEY=VALUE"),
    ("device=tpu", "device 'tpu'"),
    ("dainr.tv_spatial=-0.1", "'dainr.tv_spatial' must be >= 0"),
    ("dainr.ema=1.0", "'dainr.ema' must be in [0, 1)"),
    ("dainr.grid_lr_scale=0", "'dainr.grid_lr_scale' must be > 0"),
])
def test_bad_overrides(override, words):
    with pytest.raises(ConfigError) as e:
        load_config("fast", overrides=[override])
    assert words in str(e.value) and "\n" not in str(e.value)


def test_unknown_preset_and_yaml(tmp_path):
    with pytest.raises(ConfigError, match="unknown preset 'nope'"):
        load_config("nope")
    bad = tmp_path / "bad.yaml"
    bad.write_text("dainr: [1, 2\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config("fast", yaml_file=bad)
    good = tmp_path / "good.yaml"
    good.write_text("dainr:\n  steps: 11\n")
    assert load_config("fast", yaml_file=good).dainr.steps == 11
    assert load_config(str(good)).dainr.steps == 11
