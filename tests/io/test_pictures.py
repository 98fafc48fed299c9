"""Robust image reading: formats, EXIF rotation, modes, 16-bit, sizes, decode bombs, bad files."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, features

from spatial_latent.errors import InputError
from spatial_latent.io.pictures import list_images, read_image


def halves(h: int = 40, w: int = 60) -> np.ndarray:
    """Left half red, right half blue: any rotation or flip is visible."""
    a = np.zeros((h, w, 3), np.uint8)
    a[:, : w // 2] = (255, 0, 0)
    a[:, w // 2 :] = (0, 0, 255)
    return a


def test_plain_rgb_png_round_trips(tmp_path: Path) -> None:
    a = np.random.default_rng(0).integers(0, 256, (33, 47, 3), dtype=np.uint8)
    Image.fromarray(a).save(tmp_path / "a.png")
    img = read_image(tmp_path / "a.png")
    assert img.pixels.dtype == np.uint8 and np.array_equal(img.pixels, a)
    assert img.scale == 1.0 and img.original_size == (33, 47) and not img.exif_rotated


def test_exif_rotation_is_applied(tmp_path: Path) -> None:
    im = Image.fromarray(halves())
    exif = Image.Exif()
    exif[0x0112] = 6  # the camera was turned: display rotated 90 degrees clockwise
    im.save(tmp_path / "r.jpg", exif=exif.tobytes(), quality=95)
    img = read_image(tmp_path / "r.jpg")
    assert img.exif_rotated and img.pixels.shape == (60, 40, 3) and img.original_size == (60, 40)
    top, bottom = img.pixels[:20].mean(axis=(0, 1)), img.pixels[-20:].mean(axis=(0, 1))
    assert top[0] > 200 and top[2] < 60  # clockwise turn puts the left (red) half on top
    assert bottom[2] > 200 and bottom[0] < 60


def test_grayscale_palette_and_alpha(tmp_path: Path) -> None:
    g = np.tile(np.arange(0, 250, 5, dtype=np.uint8), (20, 1))
    Image.fromarray(g, "L").save(tmp_path / "g.png")
    img = read_image(tmp_path / "g.png").pixels
    assert img.shape == (20, 50, 3) and np.array_equal(img[:, :, 0], g) and np.array_equal(img[:, :, 2], g)

    rgba = np.zeros((16, 16, 4), np.uint8)
    rgba[:, :8] = (10, 20, 30, 255)  # opaque
    rgba[:, 8:] = (10, 20, 30, 0)  # transparent: shows the white background
    Image.fromarray(rgba, "RGBA").save(tmp_path / "a.png")
    img = read_image(tmp_path / "a.png").pixels
    assert tuple(img[0, 0]) == (10, 20, 30) and tuple(img[0, 15]) == (255, 255, 255)
    img = read_image(tmp_path / "a.png", background=(0, 0, 0)).pixels
    assert tuple(img[0, 15]) == (0, 0, 0)

    p = Image.fromarray(halves()).convert("P", palette=Image.Palette.ADAPTIVE, colors=4)
    p.info["transparency"] = p.getpixel((0, 0))  # the red half becomes transparent
    p.save(tmp_path / "p.png", transparency=p.getpixel((0, 0)))
    img = read_image(tmp_path / "p.png").pixels
    assert tuple(img[0, 0]) == (255, 255, 255) and img[0, -1, 2] > 200


def test_cmyk_jpeg(tmp_path: Path) -> None:
    Image.fromarray(halves()).convert("CMYK").save(tmp_path / "c.jpg", quality=95)
    img = read_image(tmp_path / "c.jpg").pixels
    assert img.shape == (40, 60, 3)
    assert img[:, :20, 0].mean() > 200 and img[:, :20, 2].mean() < 60
    assert img[:, -20:, 2].mean() > 200 and img[:, -20:, 0].mean() < 60


def test_16_bit_png_is_rescaled_not_truncated(tmp_path: Path) -> None:
    a = np.array([[0, 257 * 128, 65535, 1000]], dtype=np.uint16).repeat(12, axis=0).repeat(3, axis=1)
    Image.fromarray(a).save(tmp_path / "d.png")  # mode I;16
    img = read_image(tmp_path / "d.png").pixels
    assert list(img[0, ::3, 0]) == [0, 128, 255, 4]


@pytest.mark.skipif(not features.check("webp"), reason="this Pillow has no WebP support")
def test_webp(tmp_path: Path) -> None:
    Image.fromarray(halves()).save(tmp_path / "w.webp", lossless=True)
    assert np.array_equal(read_image(tmp_path / "w.webp").pixels, halves())


def test_animated_gif_gives_first_frame(tmp_path: Path) -> None:
    frames = [Image.fromarray(np.full((16, 16, 3), v, np.uint8)) for v in (0, 255)]
    frames[0].save(tmp_path / "a.gif", save_all=True, append_images=frames[1:])
    assert read_image(tmp_path / "a.gif").pixels.max() == 0


def test_huge_jpeg_is_downscaled_on_reading(tmp_path: Path) -> None:
    Image.fromarray(halves(1200, 1800)).save(tmp_path / "big.jpg", quality=90)
    img = read_image(tmp_path / "big.jpg", max_side=400)
    assert max(img.pixels.shape[:2]) == 400 and img.pixels.shape[:2] == (267, 400)
    assert img.original_size == (1200, 1800) and abs(img.scale - 267 / 1200) < 1e-9
    assert img.pixels[:, :150, 0].mean() > 200 and img.pixels[:, -150:, 2].mean() > 200


def _png_header_only(width: int, height: int) -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")


def test_decompression_bomb_is_refused_before_decoding(tmp_path: Path) -> None:
    (tmp_path / "bomb.png").write_bytes(_png_header_only(100_000, 100_000))  # claims 10^10 pixels in 100 bytes
    with pytest.raises(InputError, match="bomb"):
        read_image(tmp_path / "bomb.png")
    (tmp_path / "big.png").write_bytes(_png_header_only(12_000, 12_000))  # under PIL's own limit, over ours
    with pytest.raises(InputError, match="megapixels"):
        read_image(tmp_path / "big.png", max_pixels=100_000_000)


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda p: p.write_text("not a picture"), "not an image"),
        (lambda p: p.write_bytes(b""), "not an image"),
        (lambda p: Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(p, format="PNG"), "too small"),
    ],
)
def test_bad_files_are_one_clear_error(tmp_path: Path, make, message: str) -> None:  # type: ignore[no-untyped-def]
    path = tmp_path / "x.png"
    make(path)
    with pytest.raises(InputError, match=message) as e:
        read_image(path)
    assert str(path) in str(e.value)


def test_truncated_jpeg(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    Image.fromarray(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(tmp_path / "t.jpg", quality=95)
    data = (tmp_path / "t.jpg").read_bytes()
    (tmp_path / "t.jpg").write_bytes(data[: len(data) // 2])
    with pytest.raises(InputError, match="truncated"):
        read_image(tmp_path / "t.jpg")


def test_missing_and_folder(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="no such file"):
        read_image(tmp_path / "nope.jpg")
    with pytest.raises(InputError, match="not a file"):
        read_image(tmp_path)


def test_list_images(tmp_path: Path) -> None:
    for name in ("b.png", "a.JPG", "notes.txt", ".hidden.png"):
        (tmp_path / name).write_bytes(b"x")
    (tmp_path / "sub").mkdir()
    extra = tmp_path / "sub" / "odd.dat"
    extra.write_bytes(b"x")
    assert [p.name for p in list_images([tmp_path, extra])] == ["a.JPG", "b.png", "odd.dat"]
    with pytest.raises(InputError, match="no such file"):
        list_images([tmp_path / "missing"])
