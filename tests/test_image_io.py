import cv2
import numpy as np
import pytest

from utils.io.images import ImageReadError, read_image, to_image, to_tensor, write_image


def test_colour_order_is_rgb(tmp_path):
    bgr = np.zeros((4, 5, 3), np.uint8)
    bgr[..., 2] = 255  # red in OpenCV's BGR order
    cv2.imwrite(str(tmp_path / "red.png"), bgr)
    rgb = read_image(tmp_path / "red.png")
    assert rgb.dtype == np.float32 and rgb.shape == (4, 5, 3)
    assert np.allclose(rgb[..., 0], 1.0) and np.allclose(rgb[..., 1:], 0.0)


def test_gray_rgba_and_16bit_are_converted(tmp_path):
    gray = np.full((3, 3), 128, np.uint8)
    cv2.imwrite(str(tmp_path / "gray.png"), gray)
    assert np.allclose(read_image(tmp_path / "gray.png"), 128 / 255)
    rgba = np.zeros((3, 3, 4), np.uint8)
    rgba[..., 0] = 255  # blue in BGRA
    rgba[..., 3] = 7
    cv2.imwrite(str(tmp_path / "rgba.png"), rgba)
    img = read_image(tmp_path / "rgba.png")
    assert img.shape == (3, 3, 3) and np.allclose(img[..., 2], 1.0) and np.allclose(img[..., :2], 0)
    deep = np.full((3, 3, 3), 65535, np.uint16)
    cv2.imwrite(str(tmp_path / "deep.png"), deep)
    assert np.allclose(read_image(tmp_path / "deep.png"), 1.0)


def test_errors_name_the_file(tmp_path):
    with pytest.raises(ImageReadError, match="missing.png"):
        read_image(tmp_path / "missing.png")
    (tmp_path / "broken.jpg").write_bytes(b"not an image")
    with pytest.raises(ImageReadError, match="broken.jpg"):
        read_image(tmp_path / "broken.jpg")


def test_write_read_round_trip_8_and_16_bit(tmp_path):
    rng = np.random.default_rng(0)
    img = rng.random((6, 7, 3), dtype=np.float32)
    write_image(tmp_path / "a/b/eight.png", img)
    assert np.abs(read_image(tmp_path / "a/b/eight.png") - img).max() <= 0.5 / 255 + 1e-6
    write_image(tmp_path / "sixteen.png", img, bits=16)
    assert np.abs(read_image(tmp_path / "sixteen.png") - img).max() <= 0.5 / 65535 + 1e-6


def test_tensor_conversions():
    img = np.arange(24, dtype=np.float32).reshape(2, 4, 3)
    t = to_tensor(img)
    assert t.shape == (3, 2, 4)
    assert np.array_equal(to_image(t[None]), img)
