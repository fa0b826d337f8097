"""utils/io/video.py: lossless round trip, frame ranges, atomic writing, clear errors, short clips."""
from __future__ import annotations

import numpy as np
import pytest

from utils.io.images import ImageTooLarge, as_saved
from utils.io.video import (VideoReader, VideoReadError, VideoWriteError, VideoWriter, is_video_file,
                            open_writer)


def frames(count: int = 6, height: int = 48, width: int = 64, seed: int = 0) -> list[np.ndarray]:
    """Smooth moving frames (a compressing codec keeps them close)."""
    y, x = np.mgrid[0:height, 0:width] / max(height, width)
    rng = np.random.default_rng(seed)
    base = rng.random(3)
    return [np.clip(np.stack([0.5 + 0.4 * np.sin(6 * (x + 0.05 * t) + base[c] * 6) * np.cos(4 * y)
                              for c in range(3)], axis=2), 0, 1).astype(np.float32) for t in range(count)]


def write(path, images, fps=12.0):
    with VideoWriter(path, fps, (images[0].shape[1], images[0].shape[0])) as writer:
        for image in images:
            writer.write(image)
    return path


def test_mkv_is_lossless_and_keeps_size_rate_and_count(tmp_path):
    images = frames()
    path = write(tmp_path / "clip.mkv", images, fps=7.5)
    with VideoReader(path) as reader:
        assert (reader.info.width, reader.info.height, reader.info.fps, reader.info.frames) == (64, 48, 7.5, 6)
        got = [frame for _, frame in reader.frames()]
        assert reader.shortfall() is None
    assert len(got) == 6
    for a, b in zip(got, images):
        np.testing.assert_array_equal(a, as_saved(b))


def test_frame_ranges(tmp_path):
    path = write(tmp_path / "clip.mkv", frames(count=8))
    with VideoReader(path) as reader:
        assert [i for i, _ in reader.frames(1, 6, 2)] == [1, 3, 5]
    with VideoReader(path) as reader:
        assert [i for i, _ in reader.frames(5)] == [5, 6, 7]
        assert reader.decoded == 8 and reader.ended
    with VideoReader(path) as reader:
        with pytest.raises(ValueError):
            next(reader.frames(3, 2))


def test_mp4_round_trip_is_close(tmp_path):
    images = frames()
    writer = open_writer(tmp_path / "clip.mp4", 12.0, (64, 48))
    with writer:
        for image in images:
            writer.write(image)
    with VideoReader(writer.path) as reader:
        got = [frame for _, frame in reader.frames()]
    assert len(got) == 6 and np.abs(got[3] - images[3]).mean() < 0.03


def test_writer_keeps_the_frames_written_before_an_error(tmp_path):
    path = tmp_path / "out" / "clip.mkv"
    images = frames()
    with pytest.raises(RuntimeError):
        with VideoWriter(path, 12.0, (64, 48)) as writer:
            writer.write(images[0])
            writer.write(images[1])
            assert not path.exists()  # written beside it until closed
            raise RuntimeError("stop")
    assert sorted(p.name for p in path.parent.iterdir()) == ["clip.mkv"]  # no partial file left
    with VideoReader(path) as reader:
        assert reader.info.frames == 2 and len(list(reader.frames())) == 2


def test_writer_without_frames_leaves_nothing_and_checks_sizes(tmp_path):
    with VideoWriter(tmp_path / "empty.mkv", 12.0, (64, 48)) as writer:
        with pytest.raises(ValueError, match="64x48"):
            writer.write(np.zeros((48, 60, 3), np.float32))
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(VideoWriteError, match="choose one of"):
        VideoWriter(tmp_path / "clip.gif", 12.0, (64, 48))


def test_unreadable_files_name_the_file(tmp_path):
    with pytest.raises(VideoReadError, match="missing.mp4: no such file"):
        VideoReader(tmp_path / "missing.mp4")
    garbage = tmp_path / "garbage.mp4"
    garbage.write_bytes(b"not a video" * 100)
    with pytest.raises(VideoReadError, match="garbage.mp4: not a readable video"):
        VideoReader(garbage)
    empty = tmp_path / "empty.avi"
    empty.write_bytes(b"")
    with pytest.raises(VideoReadError, match="empty.avi"):
        VideoReader(empty)


def test_pixel_limit_is_checked(tmp_path):
    path = write(tmp_path / "clip.mkv", frames(count=2))
    with pytest.raises(ImageTooLarge, match="clip.mkv"):
        VideoReader(path, max_pixels=1000)


def test_a_clip_cut_short_is_reported(tmp_path):
    full = write(tmp_path / "full.avi", frames(count=10))  # MJPG: frames stay decodable when cut
    data = full.read_bytes()
    cut = tmp_path / "cut.avi"
    cut.write_bytes(data[: len(data) * 3 // 4])
    with VideoReader(cut) as reader:
        got = list(reader.frames())
        assert 0 < len(got) < 10
        assert reader.shortfall() == (f"{cut}: {len(got)} of the 10 frames its header declares could be "
                                      "decoded (the clip is cut short or has a broken frame)")


def test_video_suffixes():
    assert is_video_file("a/b.MP4") and is_video_file("x.mkv") and not is_video_file("x.png")
