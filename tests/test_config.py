import argparse
import json
from pathlib import Path

import pytest

import torch

from config import ConfigError, demo, paper
from utils.config_parse import (RETIRED, add_config_args, build_config, config_from_args,
                                 config_from_dict, load_config_file)


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
                                "data.root=/tmp/x", "train.precision=fp32", "train.iterations=10"])
    assert cfg.train.lr == 1e-4 and isinstance(cfg.train.lr, float)
    assert cfg.model.encoder_blocks == (2, 1, 1)
    assert cfg.data.root == "/tmp/x"
    assert cfg.train.precision == "fp32"
    assert cfg.train.iterations == 10
    assert build_config("paper", ["train.lr=1"]).train.lr == 1.0  # int accepted for a float


@pytest.mark.parametrize("bad, message", [
    ("train.lr", "section.field=value"),
    ("nosection.lr=1", "no section"),
    ("train.nofield=1", "has no field"),
    ("train.iterations=abc", "train.iterations expects an integer"),
    ("train.iterations=1.5", "expects an integer"),
    ("train.amp=false", "section 'train' has no field 'amp'"),
    ("data.augment=maybe", "data.augment expects true or false"),
    ("train.precision=fp16", "train.precision: 'fp16' is not one of fp32, bf16, auto"),
    ("online.refresh_precision=half", "online.refresh_precision"),
    ("train.lr=abc", "train.lr expects a number"),
    ("model.encoder_blocks=(1,1)", "tuple of 3 integers"),
    ("data.flat_scenes=1.5", r"data.flat_scenes: 1.5 is outside \[0, 1\]"),
    ("data.dry_share=-0.1", r"data.dry_share: -0.1 is outside \[0, 1\]"),
    ("online.replay=-1", "online.replay: -1.0 is negative"),
    ("online.replay_clean=2", r"online.replay_clean: 2.0 is outside \[0, 1\]"),
    ("loss.psnr_weight=-0.01", r"loss.psnr_weight: -0.01 must be finite and >= 0"),
    ("loss.l1_weight=nan", "loss.l1_weight: nan must be finite"),
    ("train.accumulate=0", "train.accumulate: 0 micro-batches per step; at least 1"),
    ("online.method=paperr", "online.method: 'paperr' is not one of paper, direct, chain, transfer"),
    ("online.loss=l2", "online.loss: 'l2' is not one of paper, l1"),
    ("online.compare=('direct','bogus')", "online.compare: 'bogus' not among"),
])
def test_bad_overrides_name_the_problem(bad, message):
    with pytest.raises(ConfigError, match=message):  # a UserError (exit 2) and a ValueError
        build_config("paper", [bad])


def test_stream_shares_may_not_add_up_to_more_than_one():
    fresh = "data.synthetic_fresh=true"
    assert build_config("paper", [fresh, "data.dry_share=0.4", "data.streak_share=0.6"]).data.dry_share == 0.4
    with pytest.raises(ConfigError, match=r"data.dry_share \+ data.streak_share: 1.1 is more than 1"):
        build_config("paper", [fresh, "data.dry_share=0.5", "data.streak_share=0.6"])
    with pytest.raises(ConfigError, match="need data.synthetic_fresh=true and no data.root"):
        build_config("paper", ["data.dry_share=0.2"])


def test_overrides_parse_by_the_field_type_not_the_look_of_the_value():
    cfg = build_config("demo", ["data.root=2024", "train.name=1e3", "online.init=none",
                                "train.milestones=0.5", "online.lr_steps=((2, 1e-5),)",
                                "loss.weights=1,1,1,0.1,0"])
    assert cfg.data.root == "2024" and cfg.train.name == "1e3" and cfg.online.init is None
    assert cfg.train.milestones == (0.5,) and cfg.online.lr_steps == ((2, 1e-5),)
    assert cfg.loss.weights == (1.0, 1.0, 1.0, 0.1, 0.0) and isinstance(cfg.loss.weights[4], float)


def test_config_file_round_trip_with_set_on_top(tmp_path):
    saved = build_config("standard", ["train.lr=3e-4"])
    saved.save(tmp_path / "config.json")
    parser = argparse.ArgumentParser()
    add_config_args(parser, default_preset="demo")
    args = parser.parse_args(["--config", str(tmp_path), "--set", "train.iterations=7"])
    cfg = config_from_args(args)
    assert cfg.train.iterations == 7 and cfg.train.lr == 3e-4
    cfg.train.iterations = saved.train.iterations
    assert cfg == saved
    with pytest.raises(ConfigError, match="not both"):
        config_from_args(parser.parse_args(["--config", str(tmp_path), "--preset", "demo"]))
    (tmp_path / "bad.json").write_text('{"train": {"lr": "fast"}}')
    with pytest.raises(ConfigError, match=r"bad.json: config.train.lr: expected a number"):
        build_config(config_file=tmp_path / "bad.json")


def test_unknown_preset():
    with pytest.raises(ValueError, match="unknown preset"):
        build_config("nope")


def test_json_round_trip(tmp_path):
    cfg = build_config("demo", ["train.lr=3e-4", "data.root=/data/rain"])
    path = tmp_path / "config.json"
    cfg.save(path)
    assert json.loads(path.read_text())["train"]["lr"] == 3e-4
    assert load_config_file(path) == cfg


def test_from_dict_rejects_unknown_keys():
    data = demo().to_dict()
    data["train"]["typo"] = 1
    with pytest.raises(ValueError, match="typo"):
        config_from_dict(data)


def test_cli_flags():
    parser = argparse.ArgumentParser()
    add_config_args(parser, default_preset="demo")
    args = parser.parse_args(["--set", "train.lr=2e-4", "--set", "train.batch_size=3"])
    cfg = config_from_args(args)
    assert cfg.train.lr == 2e-4 and cfg.train.batch_size == 3
    assert cfg.model.channels == demo().model.channels


def test_the_shipped_weights_config_loads_as_stored():
    """Configs load as written, with no renaming of old fields: the shipped weights (their file
    and their record) hold a config of today's fields only."""
    root = Path(__file__).resolve().parents[1]
    stored = json.loads((root / "weights/standard.json").read_text())["config"]
    inside = torch.load(root / "weights/standard.pth", weights_only=True)["config"]
    assert json.loads(json.dumps(inside)) == stored
    loaded = json.loads(json.dumps(config_from_dict(stored).to_dict()))
    assert all(loaded[section][key] == value for section, fields in stored.items()
               for key, value in fields.items() if f"{section}.{key}" not in RETIRED)
    assert all(stored[key.split(".")[0]][key.split(".")[1]] == off for key, (off, _) in RETIRED.items())


def test_fields_of_older_configs_are_refused_by_name():
    data = paper().to_dict()
    data["train"]["amp"] = True
    with pytest.raises(ConfigError, match=r"config.train: unknown keys \['amp'\]"):
        config_from_dict(data)


def test_a_removed_option_loads_when_it_was_off_and_is_refused_when_on():
    data = paper().to_dict()
    data["online"]["ensemble_labels"] = False  # as runs saved before its removal hold it
    assert config_from_dict(data) == paper()
    data["online"]["ensemble_labels"] = True
    with pytest.raises(ConfigError, match=r"config.online.ensemble_labels: True, but the option was "
                                          r"removed \(docs/online_update.md#"):
        config_from_dict(data)
    with pytest.raises(ConfigError, match="has no field 'ensemble_labels'"):
        build_config("paper", ["online.ensemble_labels=false"])
