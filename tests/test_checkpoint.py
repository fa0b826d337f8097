import os

import pytest
import torch

from utils.io.checkpoints import CheckpointError, load_checkpoint, load_weights, save_checkpoint
from utils.io.files import copy_file


def test_atomic_save_and_safe_load(tmp_path):
    path = tmp_path / "ckpt" / "latest.pth"
    state = {"config": {"a": 1}, "model": {"w": torch.ones(2)}, "step": 3}
    save_checkpoint(state, path)
    loaded = load_checkpoint(path)
    assert loaded["step"] == 3 and torch.equal(loaded["model"]["w"], torch.ones(2))
    assert os.listdir(path.parent) == ["latest.pth"]  # no temp file left behind


def test_failed_save_keeps_previous_file(tmp_path):
    path = tmp_path / "latest.pth"
    save_checkpoint({"config": {}, "model": {"w": torch.zeros(1)}}, path)

    class Unpicklable:
        def __reduce__(self):
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        save_checkpoint({"config": {}, "model": {}, "bad": Unpicklable()}, path)
    assert torch.equal(load_checkpoint(path)["model"]["w"], torch.zeros(1))
    assert os.listdir(tmp_path) == ["latest.pth"]


def test_copied_result_is_whole_or_absent(tmp_path):
    round_3, final = tmp_path / "round_003.pth", tmp_path / "final.pth"
    save_checkpoint({"config": {}, "model": {"w": torch.arange(3.0)}}, round_3)
    final.write_bytes(b"previous")
    with pytest.raises(FileNotFoundError):
        copy_file(tmp_path / "round_004.pth", final)
    assert final.read_bytes() == b"previous"
    copy_file(round_3, final)
    assert final.read_bytes() == round_3.read_bytes()
    assert sorted(os.listdir(tmp_path)) == ["final.pth", "round_003.pth"]  # no temp file left


def test_load_errors(tmp_path):
    with pytest.raises(CheckpointError, match="does not exist"):
        load_checkpoint(tmp_path / "nope.pth")
    (tmp_path / "garbage.pth").write_bytes(b"garbage")
    with pytest.raises(CheckpointError, match="garbage.pth cannot be read"):
        load_checkpoint(tmp_path / "garbage.pth")
    torch.save({"weights": 1}, tmp_path / "other.pth")
    with pytest.raises(CheckpointError, match="not an HCN checkpoint"):
        load_checkpoint(tmp_path / "other.pth")


def test_load_weights_explains_mismatch():
    model = torch.nn.Conv2d(3, 4, 3)
    other = torch.nn.Conv2d(3, 8, 3).state_dict()
    with pytest.raises(CheckpointError, match=r"2 with other shapes.*checkpoint \(8,\) vs model \(4,\)"):
        load_weights(model, other, source="x.pth")
    with pytest.raises(CheckpointError, match="missing"):
        load_weights(model, {"weight": model.weight.detach()}, source="x.pth")
    # DDP / compile prefixes are stripped
    load_weights(model, {"module." + k: v for k, v in model.state_dict().items()}, source="x.pth")


def _tiny_checkpoint(path, edit=None):
    """A weights-and-config checkpoint of a tiny model, its stored config changed by `edit`."""
    from utils.config_parse import build_config
    from networks import build_model

    cfg = build_config("demo", ["model.channels=4", "model.encoder_blocks=(1,1,1)"])
    state = {"config": cfg.to_dict(), "model": build_model(cfg.model).state_dict()}
    if edit is not None:
        edit(state)
    save_checkpoint(state, path)
    return path


def _entries(path, tmp_path):
    """Every way a checkpoint enters the project: eval/show, train.init, --resume, real_train --init."""
    import real_train
    import train
    from utils.config_parse import build_config
    from utils.engine.resume import resolve_config
    from utils.io.checkpoints import load_model

    init_cfg = build_config("demo", ["model.channels=4", "model.encoder_blocks=(1,1,1)",
                                     f"train.init={path}"])
    return {
        "eval/show": lambda: load_model(path),
        "train.init": lambda: train.initial_weights(init_cfg, resumed=False),
        "--resume": lambda: resolve_config("demo", [], str(path), "train.name"),
        "real_train --init": lambda: real_train.main(
            ["--init", str(path), "--set", f"train.out_dir={tmp_path / 'runs'}"]),
    }


@pytest.mark.parametrize("edit, message", [
    # Keys of mixed types (a crafted file): once a TypeError traceback from train.init.
    (lambda s: s["config"]["model"].update({1: 2}), "its config is not valid for this code"),
    (lambda s: s["config"]["model"].update(channels=10_000), r"model.channels: 10000 is outside"),
    (lambda s: s.update(model=[1, 2]), "its weights are not a state dict"),
    (lambda s: s["model"].popitem(), "does not fit this model: 1 missing"),
])
def test_every_entry_opens_a_checkpoint_the_same_way(tmp_path, edit, message):
    path = _tiny_checkpoint(tmp_path / "bad.pth", edit)
    for entry, open_it in _entries(path, tmp_path).items():
        with pytest.raises(CheckpointError, match=message):
            open_it()
    assert not (tmp_path / "runs").exists()  # refused before anything is written


def test_open_checkpoint_publishes_the_ema_weights(tmp_path):
    from utils.io.checkpoints import open_checkpoint

    def with_ema(state):
        state["ema"] = {k: v + 1 for k, v in state["model"].items()}
    path = _tiny_checkpoint(tmp_path / "ema.pth", with_ema)
    state, cfg, weights = open_checkpoint(path)
    assert cfg.model.channels == 4 and weights is state["ema"]
    _, _, trained = open_checkpoint(path, use_ema=False)
    assert all(torch.equal(weights[k], trained[k] + 1) for k in trained)
