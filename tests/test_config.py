import argparse
import json

import pytest

from config import Config, add_config_args, build_config, config_from_args, demo, paper


def test_paper_preset_matches_published_recipe():
    cfg = paper()
    assert cfg.model.channels == 20
    assert cfg.model.encoder_blocks == (12, 2, 1)
    assert cfg.train.lr == 5e-4
    assert cfg.data.patch_size == 224
    assert cfg.loss.weights == (1.0, 1.0, 1.0, 0.05, 0.001)
    assert cfg.loss.online_lambda == 8e-5


def test_presets_are_independent_objects():
    a, b = paper(), paper()
    a.train.lr = 1.0
    assert b.train.lr == 5e-4


def test_overrides_are_typed():
    cfg = build_config("demo", ["train.lr=1e-4", "model.encoder_blocks=[2,1,1]",
                                "data.root=/tmp/x", "train.amp=false", "train.iterations=10"])
    assert cfg.train.lr == 1e-4 and isinstance(cfg.train.lr, float)
    assert cfg.model.encoder_blocks == (2, 1, 1)
    assert cfg.data.root == "/tmp/x"
    assert cfg.train.amp is False
    assert cfg.train.iterations == 10
    assert build_config("paper", ["train.lr=1"]).train.lr == 1.0  # int accepted for a float


@pytest.mark.parametrize("bad, message", [
    ("train.lr", "section.field=value"),
    ("nosection.lr=1", "no section"),
    ("train.nofield=1", "has no field"),
    ("train.iterations=abc", "cannot parse"),
    ("train.iterations=1.5", "expected int"),
    ("train.amp=maybe", "boolean"),
])
def test_bad_overrides_name_the_problem(bad, message):
    with pytest.raises(ValueError, match=message):
        build_config("paper", [bad])


def test_unknown_preset():
    with pytest.raises(ValueError, match="unknown preset"):
        build_config("nope")


def test_json_round_trip(tmp_path):
    cfg = build_config("demo", ["train.lr=3e-4", "data.root=/data/rain"])
    path = tmp_path / "config.json"
    cfg.save(path)
    assert json.loads(path.read_text())["train"]["lr"] == 3e-4
    assert Config.load(path) == cfg


def test_from_dict_rejects_unknown_keys():
    data = demo().to_dict()
    data["train"]["typo"] = 1
    with pytest.raises(ValueError, match="typo"):
        Config.from_dict(data)


def test_cli_flags():
    parser = argparse.ArgumentParser()
    add_config_args(parser, default_preset="demo")
    args = parser.parse_args(["--set", "train.lr=2e-4", "--set", "train.batch_size=3"])
    cfg = config_from_args(args)
    assert cfg.train.lr == 2e-4 and cfg.train.batch_size == 3
    assert cfg.model.channels == demo().model.channels
