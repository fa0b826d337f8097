"""real_train.py: read-only input, lossless pseudo-labels, exact resume, clear errors (CPU, tiny)."""
from __future__ import annotations

import hashlib
import json
import os
import signal
from pathlib import Path

import numpy as np
import pytest
import torch

import real_train
from config import Config, ConfigError
from dataset import open_rainy
from networks import build_model
from utils.cli import run_main
from utils.config_parse import build_config, config_from_dict
from utils.engine.rng import seed_everything
from utils.engine.trainer import Trainer
from utils.inference import derain
from utils.io.checkpoints import load_checkpoint, load_model, save_checkpoint
from utils.io.images import read_image, to_tensor, write_image
from utils.metrics.tone import tone_change
from utils.online import OnlineCrops, keep_tone, replays_clean, rotate_flip, training_input
from utils.online_report import round_stats, tone_drift


def make_init(path: Path, *sets: str) -> Path:
    """A tiny 'synthetic' checkpoint with an Adam state, as train.py would write it."""
    cfg = build_config("demo", ["model.channels=4", "model.encoder_blocks=(1,1,1)", *sets])
    seed_everything(0)
    model = build_model(cfg.model)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    model(torch.rand(1, 3, 32, 32)).bottom.mean().backward()
    optimizer.step()
    save_checkpoint({"config": cfg.to_dict(), "model": model.state_dict(),
                     "optimizer": optimizer.state_dict()}, path)
    return path


def online_args(tmp_path: Path, init: Path, *extra: str) -> list[str]:
    sets = ["online.rounds=2", "online.epochs_per_round=1", "online.batch_size=1",
            "online.patch_size=32", "online.lr=1e-3", f"train.out_dir={tmp_path / 'runs'}",
            "online.name=rt", "train.log_every=1", "train.ckpt_every=1000", "online.method=paper",
            "online.loss=paper", "online.replay=0", "online.compare=()", "online.target_size=40",
            "online.target_count=4",
            # Labels are compared with fp32 forwards; `auto` is bf16 on a CPU with native bf16.
            "online.refresh_precision=fp32"]
    argv = ["--init", str(init)]
    for item in sets + list(extra):
        argv += ["--set", item]
    return argv


def folder_digest(folder: Path) -> dict:
    return {p.name: (hashlib.sha256(p.read_bytes()).hexdigest(), p.stat().st_mtime_ns)
            for p in sorted(folder.iterdir())}


@pytest.fixture
def real_folder(tmp_path):
    folder = tmp_path / "real"
    rng = np.random.default_rng(0)
    write_image(folder / "a.png", rng.random((40, 52, 3)))
    write_image(folder / "b.jpg", rng.random((70, 60, 3)))  # larger than the tile below
    write_image(folder / "c.png", rng.random((24, 30, 3)))  # smaller than the crop: padded
    (folder / "notes.txt").write_text("not an image\n")
    os.chmod(folder, 0o555)  # read-only, like a shared data set
    yield folder
    os.chmod(folder, 0o755)


def test_real_folder_is_never_written_and_labels_are_lossless(tmp_path, real_folder):
    init = make_init(tmp_path / "init.pth")
    before = folder_digest(real_folder)
    assert real_train.main(online_args(tmp_path, init, "online.tile=48") + ["--data", str(real_folder)]) == 0
    assert folder_digest(real_folder) == before
    run = tmp_path / "runs" / "rt"
    labels = sorted((run / "pseudo_labels" / "round_002").glob("*.npy"))
    assert [p.name for p in labels] == ["a.npy", "b.npy", "c.npy"]
    label = np.load(labels[1])
    assert label.dtype == np.float32 and label.shape == (3, 70, 60)
    # Lossless: not on the 8-bit grid.
    assert not np.allclose(label * 255, np.round(label * 255), atol=1e-3)
    # Only the current round's float labels are kept; every round has 8-bit previews.
    assert not (run / "pseudo_labels" / "round_000").exists()
    for k in range(3):
        assert len(list((run / "rounds" / f"round_{k:03d}").glob("*.png"))) == 3
    assert len((run / "rounds.jsonl").read_text().splitlines()) == 3
    load_model(run / "latest.pth")
    load_model(run / "round_002.pth")


def test_missing_init_tells_the_command(tmp_path, capsys):
    code = run_main(real_train.main, ["--set", f"train.out_dir={tmp_path}", "--init", str(tmp_path / "nope.pth")])
    assert code == 2
    assert "nope.pth not found" in capsys.readouterr().err


def test_online_crops_partner_is_another_image_and_deterministic():
    rainy = [torch.full((3, 20, 20), float(i)) for i in range(3)]
    labels = [torch.zeros(3, 20, 20) for _ in range(3)]
    crops = OnlineCrops(rainy, labels, patch_size=8, seed=1)
    crops.set_epoch(4)
    for i in range(3):
        item = crops[i]
        assert item["rainy"].shape == (3, 8, 8)
        assert float(item["partner_rain"][0, 0, 0]) != float(i)  # j != i
        assert torch.equal(item["partner_rain"], crops[i]["partner_rain"])


def test_transfer_turns_the_partner_rain_and_keeps_the_other_crops():
    gen = torch.Generator().manual_seed(0)
    rainy = [torch.rand(3, 24, 24, generator=gen) for _ in range(3)]
    labels = [r * 0.5 for r in rainy]
    plain, turned = (OnlineCrops(rainy, labels, patch_size=16, seed=3, rotate=rotate) for rotate in (0.0, 40.0))
    for i in range(3):
        a, b = plain[i], turned[i]
        assert torch.equal(a["rainy"], b["rainy"]) and torch.equal(a["pseudo"], b["pseudo"])
        assert not torch.equal(a["partner_rain"], b["partner_rain"])
        assert torch.equal(b["partner_rain"], turned[i]["partner_rain"])  # deterministic
    image = torch.rand(3, 9, 11, generator=gen)
    assert torch.allclose(rotate_flip(image, 0.0, False), image, atol=1e-6)
    assert torch.allclose(rotate_flip(image, 0.0, True), image.flip(-1), atol=1e-6)
    square = torch.rand(3, 9, 9, generator=gen)  # a quarter turn moves pixels exactly
    assert torch.allclose(rotate_flip(square, 90.0, False), torch.rot90(square, 1, (1, 2)), atol=1e-5)
    batch = {"rainy": torch.zeros(1, 3, 2, 2), "pseudo": torch.full((1, 3, 2, 2), 0.7),
             "partner_rain": torch.tensor([0.5, -0.2, 0.1]).view(1, 3, 1, 1).expand(1, 3, 2, 2)}
    assert torch.equal(training_input("paper", batch), batch["rainy"])
    assert torch.allclose(training_input("transfer", batch)[0, :, 0, 0], torch.tensor([1.0, 0.5, 0.8]))


def _stop_after(monkeypatch, step: int) -> None:
    original = Trainer.train_step

    def patched(self, compute_loss):
        result = original(self, compute_loss)
        if self.step == step:
            os.kill(os.getpid(), signal.SIGTERM)  # a real signal, handled by the script
        return result

    monkeypatch.setattr(Trainer, "train_step", patched)


def test_embedded_default_resumes_bit_identically_and_reports(tmp_path, monkeypatch, capsys):
    init = make_init(tmp_path / "init.pth")
    # Embedded shifted-rain set (ground truth hidden), 4 images, batch 2: 2 steps per round.
    extra = ("online.target_size=40", "online.target_count=4", "online.batch_size=2")
    assert real_train.main(online_args(tmp_path / "a", init, *extra)) == 0
    out = capsys.readouterr().out
    assert "before the online update" in out and "after 2 rounds" in out
    reference = load_checkpoint(tmp_path / "a" / "runs" / "rt" / "latest.pth")

    with monkeypatch.context() as patch:
        _stop_after(patch, 3)  # inside round 2
        assert real_train.main(online_args(tmp_path / "b", init, *extra)) == 128 + signal.SIGTERM
    assert load_checkpoint(tmp_path / "b" / "runs" / "rt" / "latest.pth")["step"] == 3
    assert real_train.main(online_args(tmp_path / "b", init, *extra) + ["--resume", "auto"]) == 0
    resumed = load_checkpoint(tmp_path / "b" / "runs" / "rt" / "latest.pth")
    assert resumed["step"] == reference["step"] == 4
    for name, tensor in reference["model"].items():
        assert torch.equal(tensor, resumed["model"][name]), name
    labels_a = sorted((tmp_path / "a" / "runs" / "rt" / "pseudo_labels" / "round_002").glob("*.npy"))
    labels_b = sorted((tmp_path / "b" / "runs" / "rt" / "pseudo_labels" / "round_002").glob("*.npy"))
    assert len(labels_a) == 4 and [p.name for p in labels_a] == [p.name for p in labels_b]
    assert all(np.array_equal(np.load(x), np.load(y)) for x, y in zip(labels_a, labels_b))


def _labels_of(run: Path, k: int) -> dict:
    return {p.stem: np.load(p) for p in sorted((run / "pseudo_labels" / f"round_{k:03d}").glob("*.npy"))}


def test_direct_keeps_round_0_labels_chain_reapplies_the_model_transfer_refreshes(tmp_path, real_folder):
    from dataset import open_rainy
    from utils.inference import derain

    init = make_init(tmp_path / "init.pth")
    images = open_rainy(real_folder)
    init_model, _ = load_model(init)
    for method in ("direct", "chain", "transfer"):
        argv = online_args(tmp_path / method, init, f"online.method={method}", "online.guard_db=0")
        assert real_train.main(argv + ["--data", str(real_folder)]) == 0
        run = tmp_path / method / "runs" / "rt"
        labels = _labels_of(run, 2)
        model_1, _ = load_model(run / "round_001.pth")
        model_2, _ = load_model(run / "round_002.pth")
        for i in range(len(images)):
            x = images[i]["rainy"][None]
            key = real_train.label_key(str(images[i]["name"]))
            b0 = derain(init_model, x).clamp(0, 1)
            if method == "direct":
                expected = b0  # never refreshed
            elif method == "transfer":  # B^2 = f_2(O), as the paper's
                expected = derain(model_2, x).clamp(0, 1)
            else:  # B^2 = f_2(f_1(B^0))
                expected = derain(model_2, derain(model_1, b0).clamp(0, 1)).clamp(0, 1)
            assert torch.allclose(torch.from_numpy(labels[key]), expected[0], atol=1e-5), (method, key)
        # Every round has its panels (input | round 0 | round k after round 0) and statistics.
        panels = sorted((run / "rounds" / "round_002" / "panels").glob("*.png"))
        assert len(panels) == 3
        first = read_image(run / "rounds" / "round_000" / "panels" / panels[0].name)
        assert read_image(panels[0]).shape[1] > first.shape[1] * 1.4  # three cells, not two
        assert (run / "final.pth").is_file()


def test_guard_stops_at_the_round_that_forgets(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    lines = [{"round": 0, "guard_psnr": 20.0}, {"round": 1, "guard_psnr": 19.95},
             {"round": 2, "guard_psnr": 19.85}]
    (run / "rounds.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))
    assert not real_train.guard_failed(run, 0, 0.1)
    assert not real_train.guard_failed(run, 1, 0.1)
    assert real_train.guard_failed(run, 2, 0.1)
    assert not real_train.guard_failed(run, 2, 0.0)  # 0: never stop


def test_demonstration_compares_methods_and_resumes_across_them(tmp_path, monkeypatch, capsys):
    init = make_init(tmp_path / "init.pth")
    extra = ("online.target_size=40", "online.target_count=4", "online.batch_size=2",
             "online.method=chain", "online.loss=l1", "online.replay=1.0", "online.compare=('direct',)")
    assert real_train.main(online_args(tmp_path / "a", init, *extra)) == 0
    out = capsys.readouterr().out
    assert "(b) synthetic model alone" in out and "(c) direct fine-tuning" in out and "verdict:" in out
    summary = json.loads((tmp_path / "a" / "runs" / "rt" / "comparison.json").read_text())
    assert [r["row"][:3] for r in summary["rows"]] == ["no ", "(b)", "cha", "(c)"]
    # Every row says how bright its outputs are (the input row: the rainy images themselves).
    assert all(0 < r["brightness"] < 1 for r in summary["rows"])
    assert "brightness" in out

    original = Trainer.train_step

    def stop_in_comparison(self, compute_loss):
        result = original(self, compute_loss)
        if self.cfg.online.method == "direct" and self.step == 3:
            os.kill(os.getpid(), signal.SIGTERM)  # inside the comparison run, after the main one
        return result

    calls = []
    update = real_train.online_update
    with monkeypatch.context() as patch:
        patch.setattr(Trainer, "train_step", stop_in_comparison)
        patch.setattr(real_train, "online_update", lambda cfg, *a, **kw: calls.append(cfg.online.method) or update(cfg, *a, **kw))
        code = real_train.main(online_args(tmp_path / "b", init, *extra))
    assert code == 128 + signal.SIGTERM and calls == ["chain", "direct"]
    assert real_train.main(online_args(tmp_path / "b", init, *extra) + ["--resume", "auto"]) == 0
    resumed = json.loads((tmp_path / "b" / "runs" / "rt" / "comparison.json").read_text())
    assert resumed["rows"] == summary["rows"]


def test_one_photo_adapts_with_a_batch_of_its_crops(tmp_path):
    """Single-photo test-time adaptation: fewer photos than a batch is not an error; the batch
    holds several crops of the one photo, and the input file is left alone."""
    photo = tmp_path / "photos" / "photo.png"
    write_image(photo, np.random.default_rng(0).random((40, 48, 3)).astype(np.float32))
    digest = hashlib.sha256(photo.read_bytes()).hexdigest()
    init = make_init(tmp_path / "init.pth")
    argv = online_args(tmp_path / "one", init, "online.batch_size=3", "online.method=transfer",
                       "online.loss=l1", "online.guard_db=0") + ["--data", str(photo)]
    assert real_train.main(argv) == 0
    state = load_checkpoint(tmp_path / "one" / "runs" / "rt" / "latest.pth")
    assert state["step"] == 2  # 2 rounds x 1 epoch x 1 batch of 3 crops
    assert hashlib.sha256(photo.read_bytes()).hexdigest() == digest
    crops = OnlineCrops([torch.rand(3, 20, 20)], [torch.rand(3, 20, 20)], patch_size=8, seed=0, length=3)
    assert len(crops) == 3
    assert not torch.equal(crops[0]["rainy"], crops[1]["rainy"])  # new crops of the same photo


def test_keep_tone_moves_brightness_back_and_keeps_thin_streaks():
    gen = torch.Generator().manual_seed(0)
    reference = 0.2 + 0.6 * torch.rand(3, 48, 64, generator=gen)
    assert torch.allclose(keep_tone(reference, reference), reference, atol=1e-6)
    # A brighter, bluer label goes back to the reference's tone exactly...
    shifted = reference + torch.tensor([0.05, 0.05, 0.12]).view(3, 1, 1)
    assert torch.allclose(keep_tone(shifted, reference), reference, atol=1e-5)
    # ...while a 1-px streak in the label (not in the reference) keeps most of its height.
    streaked = reference.clone()
    streaked[:, :, 30] += 0.15
    kept = keep_tone(streaked, reference) - reference
    assert float(kept[:, 10:38, 30].mean()) > 0.15 * 0.9
    assert float(kept[:, 10:38, 20].abs().max()) < 0.01  # 10 px away: untouched
    out = keep_tone(torch.ones(3, 20, 20), torch.zeros(3, 20, 20))
    assert out.min() >= 0 and out.max() <= 1


def test_chain_with_keep_tone_keeps_round_0_labels_and_resumes_exactly(tmp_path, real_folder, monkeypatch):
    init = make_init(tmp_path / "init.pth")
    extra = ("online.method=chain", "online.loss=l1", "online.keep_tone=true", "online.guard_db=0")
    assert real_train.main(online_args(tmp_path / "a", init, *extra) + ["--data", str(real_folder)]) == 0
    run = tmp_path / "a" / "runs" / "rt"
    assert sorted(p.name for p in (run / "pseudo_labels").iterdir()) == ["round_000", "round_002"]
    assert "labels keep B^0's tone" in (run / "real_train.log").read_text()
    images = open_rainy(real_folder)
    init_model, _ = load_model(init)
    model_1, _ = load_model(run / "round_001.pth")
    model_2, _ = load_model(run / "round_002.pth")
    labels = _labels_of(run, 2)
    for i in range(len(images)):
        key = real_train.label_key(str(images[i]["name"]))
        b0 = derain(init_model, images[i]["rainy"][None]).clamp(0, 1)[0]
        b1 = keep_tone(derain(model_1, b0[None]).clamp(0, 1)[0], b0)
        b2 = keep_tone(derain(model_2, b1[None]).clamp(0, 1)[0], b0)
        assert torch.allclose(torch.from_numpy(labels[key]), b2, atol=1e-4), key
    with monkeypatch.context() as patch:
        _stop_after(patch, 4)  # inside round 2 (3 steps per round)
        code = real_train.main(online_args(tmp_path / "b", init, *extra) + ["--data", str(real_folder)])
    assert code == 128 + signal.SIGTERM
    assert real_train.main(online_args(tmp_path / "b", init, *extra)
                           + ["--data", str(real_folder), "--resume", "auto"]) == 0
    a = load_checkpoint(run / "latest.pth")["model"]
    b = load_checkpoint(tmp_path / "b" / "runs" / "rt" / "latest.pth")["model"]
    for name, tensor in a.items():
        assert torch.equal(tensor, b[name]), name


def test_online_crops_never_exceed_the_largest_image():
    """A label is the model's output with the whole image in view: a crop larger than every
    image would only add padding, so the crop shrinks to the largest image side."""
    rainy = [torch.rand(3, 30, 40), torch.rand(3, 36, 20)]
    crops = OnlineCrops(rainy, [r * 0.5 for r in rainy], patch_size=256, seed=0)
    item = crops[0]
    assert item["rainy"].shape == (3, 40, 40)  # 30 rows padded to 40, all 40 columns kept
    assert torch.equal(item["rainy"][:, :30], rainy[0])
    assert crops[1]["rainy"].shape == (3, 40, 40)


@pytest.mark.parametrize("share", [0.5, 0.0])
def test_replay_clean_share_of_the_items(tmp_path, real_folder, monkeypatch, share):
    """Replay batches hold synthetic rainy -> clean pairs, and a share online.replay_clean of
    clean -> clean pairs (0.5: every odd item)."""
    import dataset

    seen = []
    build = real_train.build_model

    def recording_model(cfg):
        model = build(cfg)
        model.register_forward_pre_hook(lambda _, args: seen.append(args[0].detach().clone()))
        return model

    monkeypatch.setattr(real_train, "build_model", recording_model)
    monkeypatch.setattr(dataset.SyntheticRainStream, "__getitem__",
                        lambda self, i: {"rainy": torch.ones(3, 24, 24), "clean": torch.zeros(3, 24, 24)})
    init = make_init(tmp_path / "init.pth")
    extra = ("online.method=direct", "online.loss=l1", "online.replay=1.0", "online.batch_size=2",
             f"online.replay_clean={share}", "online.guard_db=0", "online.rounds=1")
    assert real_train.main(online_args(tmp_path, init, *extra) + ["--data", str(real_folder)]) == 0
    replayed = [x for x in seen if x.shape[-1] == 24 and x.shape[0] == 2]
    assert replayed
    for batch in replayed:
        assert float(batch[0].min()) == 1.0  # rainy
        assert float(batch[1].max()) == (0.0 if share == 0.5 else 1.0)


def test_clean_replay_items_are_evenly_spaced():
    for share, every in ((0.5, 2), (0.25, 4), (1 / 3, 3)):
        clean = [i for i in range(24) if replays_clean(i, share)]
        assert clean == list(range(every - 1, 24, every))
    assert not any(replays_clean(i, 0.0) for i in range(50))
    assert all(replays_clean(i, 1.0) for i in range(50))


def test_replay_clean_is_a_share_not_a_switch():
    data = Config().to_dict()
    data["online"]["replay_clean"] = True
    with pytest.raises(ConfigError, match=r"config.online.replay_clean: expected a number \(e.g. 1e-4\), got True"):
        config_from_dict(data)


@pytest.mark.parametrize("patch_size, warned", [(32, True), (70, False)])
def test_crops_smaller_than_the_labels_view_are_warned_about(tmp_path, real_folder, patch_size, warned):
    init = make_init(tmp_path / "init.pth")
    argv = online_args(tmp_path, init, f"online.patch_size={patch_size}", "online.rounds=1")
    assert real_train.main(argv + ["--data", str(real_folder)]) == 0
    text = (tmp_path / "runs" / "rt" / "real_train.log").read_text()
    assert ("smaller than the labels' field of view (70 px" in text) == warned


def test_report_without_ground_truth_compares_brisque_with_round_0(tmp_path, real_folder, capsys):
    pytest.importorskip("brisque")
    init = make_init(tmp_path / "init.pth")
    argv = online_args(tmp_path, init, "online.rounds=1")
    assert real_train.main(argv + ["--data", str(real_folder)]) == 0
    out = capsys.readouterr().out
    stats = round_stats(tmp_path / "runs" / "rt")
    before, after = stats[0]["brisque"], stats[1]["brisque"]
    assert f"(synthetic model, round 0): {before:.2f}; after 1 round (final.pth): {after:.2f}" in out
    assert ("the no-reference score did not improve" in out) == (after >= before)
    assert "hidden ground truth" not in out


def test_tone_change_tells_darkening_from_a_tint():
    gen = torch.Generator().manual_seed(0)
    reference = 0.2 + 0.6 * torch.rand(3, 30, 40, generator=gen)
    assert tone_change(reference, reference) == {"brightness_change": 0.0, "colour_shift": 0.0}
    darker = tone_change(reference - 0.05, reference)
    assert darker["brightness_change"] == pytest.approx(-0.05, abs=1e-6)
    assert darker["colour_shift"] == pytest.approx(0.0, abs=1e-6)
    # Red up, blue down by as much: the mean stays, the channels part.
    tinted = tone_change(reference + torch.tensor([0.04, 0.0, -0.04]).view(3, 1, 1), reference)
    assert tinted["brightness_change"] == pytest.approx(0.0, abs=1e-6)
    assert tinted["colour_shift"] == pytest.approx(0.04, abs=1e-6)
    # Moving streaks around without a change of mean is no drift.
    moved = reference.roll(7, dims=-1)
    assert abs(tone_change(moved, reference)["brightness_change"]) < 1e-6


def test_tone_drift_warns_past_the_threshold_only():
    assert tone_drift({}) == ""
    assert tone_drift({"brightness_change": -0.015, "colour_shift": 0.01}) == ""
    assert "0.030 darker than round 0's" in tone_drift({"brightness_change": -0.03, "colour_shift": 0.0})
    assert "brighter" in tone_drift({"brightness_change": 0.025, "colour_shift": 0.0})
    tint = tone_drift({"brightness_change": 0.0, "colour_shift": 0.05})
    assert "tinted" in tint and "darker" not in tint and "brighter" not in tint


def test_rounds_record_brightness_and_tone_change_against_round_0(tmp_path, real_folder, capsys):
    init = make_init(tmp_path / "init.pth")
    argv = online_args(tmp_path, init, "online.rounds=1", "online.nr_score=false")
    assert real_train.main(argv + ["--data", str(real_folder)]) == 0
    run = tmp_path / "runs" / "rt"
    stats = round_stats(run)
    assert "brightness_change" not in stats[0] and "brightness" in stats[0]
    # The record agrees with the 8-bit previews the run wrote (to their rounding).
    previews = {k: [to_tensor(read_image(p)) for p in sorted((run / "rounds" / f"round_{k:03d}").glob("*.png"))]
                for k in (0, 1)}
    expected = np.mean([tone_change(a, b)["brightness_change"] for a, b in zip(previews[1], previews[0])])
    assert stats[1]["brightness_change"] == pytest.approx(expected, abs=2 / 255)
    assert stats[0]["brightness"] == pytest.approx(np.mean([float(p.mean()) for p in previews[0]]), abs=2 / 255)
    out = capsys.readouterr().out
    assert f"mean brightness {stats[1]['brightness_change']:+.3f}, colour shift {stats[1]['colour_shift']:.3f} vs round 0" in out
    drifted = abs(stats[1]["brightness_change"]) > 0.02 or stats[1]["colour_shift"] > 0.02
    assert ("than round 0's" in out or "tinted" in out) == drifted


def test_per_round_plot_needs_something_to_plot(tmp_path, capsys):
    pytest.importorskip("matplotlib")
    from utils.online_report import main as report_main, plot

    run = tmp_path / "run"
    run.mkdir()
    (run / "rounds.jsonl").write_text(json.dumps({"round": 0, "step": 0}) + "\n")
    assert not plot([run], "x", tmp_path / "empty.png") and not (tmp_path / "empty.png").exists()
    # Real photos without BRISQUE still have their outputs' brightness per round.
    (run / "rounds.jsonl").write_text("".join(json.dumps(e) + "\n" for e in (
        {"round": 0, "step": 0, "brightness": 0.48, "input_brightness": 0.55},
        {"round": 1, "step": 4, "brightness": 0.46, "brightness_change": -0.02, "colour_shift": 0.0})))
    assert plot([run], "x", tmp_path / "curve.png")
    assert read_image(tmp_path / "curve.png").shape[-1] == 3
    capsys.readouterr()
    assert report_main([str(run), "--label", "x", "--plot", str(tmp_path / "again.png")]) == 0
    row = [line for line in capsys.readouterr().out.splitlines() if line.startswith("| x |")][0]
    assert "| -0.020 ± 0.000 | [1] |" in row  # the result's brightness change; no ground truth: "-"
