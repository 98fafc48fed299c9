"""Built-in labelers measure what they say; user callables and CSV scores become labels."""

from __future__ import annotations

import sys
import types
from pathlib import Path

import numpy as np
import pytest
import torch

from attributes.labelers import FunctionLabeler, MapLabeler, RegionLabeler, get_labeler, load_csv_dataset, parse_region, read_score_csv
from spatial_latent.errors import InputError
from spatial_latent.io.pictures import to_uint8
from spatial_latent.latents.grid import LatentGrid


def halves(left: tuple[float, float, float], right: tuple[float, float, float], size: int = 8) -> torch.Tensor:
    """One image [1, 3, size, size] in [-1, 1] with RGB (in [0, 1]) ``left`` | ``right``."""
    img = torch.empty(1, 3, size, size)
    img[0, :, :, : size // 2] = torch.tensor(left)[:, None, None] * 2 - 1
    img[0, :, :, size // 2 :] = torch.tensor(right)[:, None, None] * 2 - 1
    return img


def test_region_brightness_colour_and_saturation() -> None:
    img = halves((1.0, 0.0, 0.0), (0.25, 0.25, 0.25))  # pure red | dark grey
    assert get_labeler("brightness:left")(img).item() == pytest.approx(1 / 3)
    assert get_labeler("brightness:right")(img).item() == pytest.approx(0.25)
    assert get_labeler("brightness")(img).item() == pytest.approx((1 / 3 + 0.25) / 2)
    assert get_labeler("red:left")(img).item() == pytest.approx(1.0)
    assert get_labeler("red:right")(img).item() == pytest.approx(0.0)
    assert get_labeler("saturation:left")(img).item() == pytest.approx(1.0)
    assert get_labeler("saturation:right")(img).item() == pytest.approx(0.0)
    assert get_labeler("brightness:0,0,0.25,1")(img).item() == pytest.approx(1 / 3)
    assert get_labeler("contrast")(img).item() == pytest.approx(np.std([1 / 3] * 32 + [0.25] * 32, ddof=1), rel=1e-4)


def test_values_are_clamped_like_a_saved_picture() -> None:
    img = torch.full((2, 3, 4, 4), 3.0)
    img[1] = -5
    assert RegionLabeler("brightness")(img).tolist() == [1.0, 0.0]


def test_map_labeler_gives_a_score_per_pixel() -> None:
    img = halves((1, 1, 1), (0, 0, 0), size=6)
    m = get_labeler("brightness-map")(img)
    assert isinstance(get_labeler("brightness-map"), MapLabeler) and m.shape == (1, 6, 6)
    assert m[0, :, :3].min() == 1 and m[0, :, 3:].max() == 0


def test_function_labelers_batched_and_per_picture(monkeypatch: pytest.MonkeyPatch) -> None:
    img = torch.rand(3, 3, 8, 8) * 2 - 1
    per_pic = FunctionLabeler(lambda pic: float(pic[..., 1].mean()), name="green_mean", batched=False)
    expected = to_uint8(img)[..., 1].reshape(3, -1).mean(axis=1)
    assert np.allclose(per_pic(img).numpy(), expected)
    mod = types.ModuleType("my_labels")
    mod.darkness = lambda images: -images.mean(dim=(1, 2, 3))
    monkeypatch.setitem(sys.modules, "my_labels", mod)
    lab = get_labeler("my_labels:darkness")
    assert torch.allclose(lab(img), -img.mean(dim=(1, 2, 3))) and lab.name == "darkness"


@pytest.mark.parametrize(
    "fn, message",
    [
        (lambda images: torch.zeros(images.shape[0] + 1), "must return"),
        (lambda images: torch.full((images.shape[0],), float("nan")), "NaN"),
        (lambda images: "high", "not numbers"),
    ],
)
def test_function_labeler_bad_output(fn, message: str) -> None:
    with pytest.raises(InputError, match=message):
        FunctionLabeler(fn)(torch.zeros(2, 3, 4, 4))


@pytest.mark.parametrize("spec, message", [("loudness", "unknown labeler"), ("brightness:middle", "bad region"), ("brightness:0,0,2,1", "bad region"), ("nosuchmodule_xyz:fn", "cannot import")])
def test_bad_labeler_specs(spec: str, message: str) -> None:
    with pytest.raises(InputError, match=message):
        get_labeler(spec)


def test_parse_region_names_and_boxes() -> None:
    assert parse_region("left") == (0.0, 0.0, 0.5, 1.0)
    assert parse_region("0.1,0.2,0.3,0.4") == (0.1, 0.2, 0.3, 0.4)


def write_samples(folder: Path, n: int, cells: tuple[int, int] = (2, 2), fingerprint: str = "abc") -> torch.Tensor:
    data = torch.randn(n, 1, 4, *cells)
    for i in range(n):
        LatentGrid(data[i : i + 1], space="w", density=2, meta={"fingerprint": fingerprint}).save(folder / f"img{i}.safetensors")
    return data


def test_csv_scores_with_latents_beside_the_images(tmp_path: Path) -> None:
    data = write_samples(tmp_path, 3)
    (tmp_path / "scores.csv").write_text("file,score\nimg2.png,0.5\nimg0.png,-1\nimg1.safetensors,2\n")
    grids, scores, files = load_csv_dataset(tmp_path / "scores.csv")
    assert scores.tolist() == [0.5, -1.0, 2.0] and [f.name for f in files] == ["img2.png", "img0.png", "img1.safetensors"]
    assert torch.equal(grids.data, data[[2, 0, 1]]) and grids.meta["generator_fingerprint"] == "abc"


@pytest.mark.parametrize(
    "text, message",
    [
        ("file,score\nimg0.png,high\n", "line 2: score 'high' is not a number"),
        ("name,score\nimg0.png,1\n", "no file column"),
        ("file,smile,age\nimg0.png,1,2\n", "several score columns"),
        ("file,score\nimg9.png,1\n", "no latent for img9.png"),
        ("file,score\n", "at least one score row"),
        ("file,score\nimg0.png,1,3\n", "3 fields"),
    ],
)
def test_bad_csv(tmp_path: Path, text: str, message: str) -> None:
    write_samples(tmp_path, 1)
    (tmp_path / "s.csv").write_text(text)
    with pytest.raises(InputError, match=message):
        load_csv_dataset(tmp_path / "s.csv")


def test_csv_column_choice_and_mixed_generators(tmp_path: Path) -> None:
    write_samples(tmp_path, 2)
    (tmp_path / "s.csv").write_text("file,smile,age\nimg0.png,1,30\nimg1.png,0,40\n")
    files, scores, name = read_score_csv(tmp_path / "s.csv", column="age")
    assert name == "age" and scores.tolist() == [30, 40]
    LatentGrid(torch.randn(1, 1, 4, 2, 2), space="w", density=2, meta={"fingerprint": "other"}).save(tmp_path / "img1.safetensors")
    with pytest.raises(InputError, match="generator other"):
        load_csv_dataset(tmp_path / "s.csv", column="age")
