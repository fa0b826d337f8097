"""The shipped model's recipe (docs/shipped_model.md#how-it-was-trained) rebuilds, stage by
stage, the configs its weights were trained with.

Stage 1 is `--preset standard`; each later line is `--config runs/<the stage before>` plus
`--set` overrides. The lines go through train.py's own argument and config handling, each
stage's config.json is written where its run writes it, and every field is compared with
tests/shipped_stages.json (what the four presets the recipe replaced produced) and the last
of the four with the config stored in weights/standard.pth."""
from __future__ import annotations

import json
import re
from pathlib import Path

import torch

import train
from config import Config
from test_readme_commands import commands
from utils.config_parse import RETIRED

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "shipped_model.md"


def without_retired(config: dict) -> dict:
    """A stored config without the fields the schema has since dropped (each at its off value)."""
    config = json.loads(json.dumps(config))
    for key, (off, _) in RETIRED.items():
        section, name = key.split(".")
        assert config[section].pop(name) == off, key
    return config


EXPECTED = {name: without_retired(config) for name, config in json.loads(
    (ROOT / "tests" / "shipped_stages.json").read_text())["stages"].items()}


def recipe() -> list[list[str]]:
    """The train.py arguments of each line of the doc's "How it was trained" block, in order."""
    section = DOC.read_text().split("\n## How it was trained\n", 1)[1].split("\n## ", 1)[0]
    block = re.search(r"```bash\n(.*?)```", section, flags=re.S).group(1)
    return [argv[2:] for argv in commands(block) if argv[:2] == ["python", "train.py"]]


def build_stages(lines: list[list[str]], tmp_path: Path, monkeypatch) -> list[Config]:
    monkeypatch.chdir(tmp_path)
    stages = []
    for argv in lines:
        cfg, state, _ = train.resolve_config(train.parse_args(argv))
        assert state is None
        cfg.save(Path(cfg.train.out_dir) / cfg.train.name / "config.json")  # as its run writes it
        stages.append(cfg)
    return stages


def as_json(cfg: Config) -> dict:
    return json.loads(json.dumps(cfg.to_dict()))


def differences(built: dict, expected: dict) -> list[str]:
    """'section.field: built != expected' for every field either side has and the other lacks
    or holds another value. A field added to the config after the record was written is
    expected at its default (a new option is off unless a stage sets it)."""
    missing = object()
    defaults = as_json(Config())
    found = []
    for section in sorted(set(built) | set(expected)):
        ours, theirs = built.get(section, {}), expected.get(section, {})
        for key in sorted(set(ours) | set(theirs)):
            want = theirs.get(key, defaults.get(section, {}).get(key, missing))
            if ours.get(key, missing) != want:
                found.append(f"{section}.{key}: {ours.get(key, 'absent')!r} != {theirs.get(key, 'absent')!r}")
    return found


def test_the_recipe_rebuilds_the_four_stages_field_by_field(tmp_path, monkeypatch):
    stages = build_stages(recipe(), tmp_path, monkeypatch)
    assert [cfg.train.name for cfg in stages[:4]] == list(EXPECTED)
    for cfg in stages[:4]:
        assert differences(as_json(cfg), EXPECTED[cfg.train.name]) == [], cfg.train.name


def test_each_stage_starts_from_the_weights_of_the_stage_before(tmp_path, monkeypatch):
    stages = build_stages(recipe(), tmp_path, monkeypatch)
    assert stages[0].train.init is None and len({cfg.train.name for cfg in stages}) == len(stages)
    for before, stage in zip(stages, stages[1:]):
        assert Path(stage.train.init).parent == Path(before.train.out_dir) / before.train.name


def test_the_last_of_the_four_stages_is_the_shipped_weights_config(tmp_path, monkeypatch):
    built = as_json(build_stages(recipe()[:4], tmp_path, monkeypatch)[3])
    stored = without_retired(torch.load(ROOT / "weights" / "standard.pth", weights_only=True)["config"])
    # The stored config names its run's own path, and predates data.side_order's `auto`
    # default (the embedded data have no sides to order); fields added since are at the
    # defaults, which is how the weights were trained.
    assert stored["train"].pop("init").endswith(built["train"].pop("init"))
    assert (stored["data"].pop("side_order"), built["data"].pop("side_order")) == ("clean-rainy", "auto")
    defaults = as_json(Config())
    for section, fields in built.items():
        for key in set(fields) - set(stored[section]):
            stored[section][key] = defaults[section][key]
    assert differences(built, stored) == []


def test_a_changed_line_is_caught(tmp_path, monkeypatch):
    lines = recipe()[:4]
    lines[3] = [word.replace("train.seed=70", "train.seed=71") for word in lines[3]]
    assert lines[3] != recipe()[3]
    built = as_json(build_stages(lines, tmp_path, monkeypatch)[3])
    assert differences(built, EXPECTED["standard_p160"]) == ["train.seed: 71 != 70"]
