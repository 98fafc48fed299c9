"""FFHQ-style alignment: the exact transform on known landmarks, detection on a real face, paste-back."""

from __future__ import annotations

import math

import numpy as np
import pytest

from spatial_latent.faces.align import AlignTransform, Face, FaceDetector, NoFaceError, align_face, ffhq_transform, paste_back, warp_aligned
from spatial_latent.errors import InputError

skimage_data = pytest.importorskip("skimage.data")

EYE_L, EYE_R, MOUTH = (100.0, 120.0), (160.0, 120.0), (130.0, 180.0)


def rotate(points: list[tuple[float, float]], deg: float, centre: tuple[float, float], shift: tuple[float, float] = (0, 0)) -> list[np.ndarray]:
    a = math.radians(deg)
    rot = np.array([[math.cos(a), -math.sin(a)], [math.sin(a), math.cos(a)]])
    c = np.asarray(centre)
    return [rot @ (np.asarray(p) - c) + c + np.asarray(shift) for p in points]


def test_transform_of_an_upright_face_by_hand() -> None:
    # e2e = (60, 0), e2m = (0, 60): x axis (60 + 60, 0) scaled to max(2 * 60, 1.8 * 60) = 120;
    # centre = eye_mid + 0.1 * e2m = (130, 126); the 240-px square starts at (10, 6).
    t = ffhq_transform(EYE_L, EYE_R, MOUTH, 256)
    np.testing.assert_allclose(t.matrix, [[240 / 256, 0, 10], [0, 240 / 256, 6]], atol=1e-12)
    np.testing.assert_allclose(t.to_aligned([EYE_L, EYE_R, MOUTH]), np.array([[90, 114], [150, 114], [120, 174]]) * 256 / 240, atol=1e-9)
    np.testing.assert_allclose(t.to_source(t.to_aligned([[3.0, 7.0]])), [[3.0, 7.0]], atol=1e-9)
    assert t.angle == pytest.approx(0) and t.scale == pytest.approx(240 / 256)


@pytest.mark.parametrize("deg", [-35.0, 12.0, 90.0])
def test_rotated_and_moved_face_lands_on_the_same_crop(deg: float) -> None:
    upright = ffhq_transform(EYE_L, EYE_R, MOUTH, 128)
    moved = rotate([EYE_L, EYE_R, MOUTH], deg, centre=(140, 150), shift=(25, -10))
    t = ffhq_transform(*moved, 128)
    assert t.angle == pytest.approx(deg, abs=1e-9) and t.scale == pytest.approx(upright.scale)
    np.testing.assert_allclose(t.to_aligned(moved), upright.to_aligned([EYE_L, EYE_R, MOUTH]), atol=1e-9)


def test_mouth_far_below_sets_the_scale() -> None:
    t = ffhq_transform((100, 100), (120, 100), (110, 200), 100)  # |e2m| = 100 > |e2e| = 20
    assert t.scale == pytest.approx(2 * 1.8 * 100 / 100)


def test_warp_puts_marked_landmarks_where_the_transform_says() -> None:
    img = np.full((300, 320, 3), 40, np.uint8)
    pts = rotate([EYE_L, EYE_R, MOUTH], 25, centre=(150, 150), shift=(20, 10))
    colours = [(255, 0, 0), (0, 255, 0), (0, 0, 255)]
    for (x, y), col in zip(pts, colours):
        img[int(y) - 3 : int(y) + 4, int(x) - 3 : int(x) + 4] = col
    t = ffhq_transform(*pts, 256)
    out = warp_aligned(img, t)
    expected = t.to_aligned(pts)
    for c, (ex, ey) in enumerate(expected):
        mask = out[:, :, c] > 128
        for other in range(3):
            if other != c:
                mask &= out[:, :, other] < 100
        ys, xs = np.nonzero(mask)
        assert len(xs) > 10
        # the blob's centroid (in pixel-centre coordinates) is the mapped landmark
        assert abs(xs.mean() + 0.5 - ex) < 1.0 and abs(ys.mean() + 0.5 - ey) < 1.0


def test_paste_back_inverts_the_crop() -> None:
    rng = np.random.default_rng(0)
    smooth = rng.integers(0, 256, (30, 32, 3)).astype(np.uint8)
    import cv2

    photo = cv2.resize(smooth, (320, 300), interpolation=cv2.INTER_CUBIC)
    t = ffhq_transform(*rotate([EYE_L, EYE_R, MOUTH], 10, centre=(150, 150)), 256, photo.shape[:2])
    crop = warp_aligned(photo, t)
    back = paste_back(photo, crop, t)
    centre = t.to_source([[128, 128]])[0].astype(int)
    region = (slice(centre[1] - 60, centre[1] + 60), slice(centre[0] - 60, centre[0] + 60))
    assert np.abs(back[region].astype(int) - photo[region].astype(int)).mean() < 2.0
    # a flat grey "edit" replaces the inside and leaves the outside of the crop untouched
    grey = paste_back(photo, np.full((64, 64, 3), 128, np.uint8), t)
    assert np.abs(grey[region].astype(int) - 128).max() <= 1
    far = t.to_source([[-40, -40]])[0].astype(int)
    assert np.array_equal(grey[far[1], far[0]], photo[far[1], far[0]])
    with pytest.raises(InputError, match="computed on"):
        paste_back(photo[:100], crop, t)


def test_transform_record_round_trip() -> None:
    t = ffhq_transform(EYE_L, EYE_R, MOUTH, 64, (300, 320))
    u = AlignTransform.from_dict(t.to_dict())
    np.testing.assert_array_equal(u.matrix, t.matrix)
    assert (u.size, u.source_size) == (64, (300, 320))
    np.testing.assert_allclose(t.resized(256).to_aligned([EYE_L]), t.to_aligned([EYE_L]) * 4)
    with pytest.raises(InputError):
        AlignTransform.from_dict({"matrix": [1, 2]})


@pytest.fixture(scope="module")
def detector() -> FaceDetector:
    return FaceDetector("opencv")


def test_astronaut_face_and_eyes_are_found(detector: FaceDetector) -> None:
    img = skimage_data.astronaut()
    faces = detector.detect(img)
    assert len(faces) == 1
    f = faces[0]
    assert not f.eyes_estimated
    # landmarks measured by hand on the picture: eyes (202, 101), (246, 101), mouth (224, 144)
    assert np.hypot(*(np.array(f.eye_left) - (202, 101))) < 6
    assert np.hypot(*(np.array(f.eye_right) - (246, 101))) < 6
    assert np.hypot(*(np.array(f.mouth) - (224, 144))) < 9
    crop, t, face = align_face(img, 256, detector=detector)
    assert crop.shape == (256, 256, 3) and face == f
    el, er, mo = t.to_aligned([f.eye_left, f.eye_right, f.mouth])
    # FFHQ geometry: eyes about level (the roll also follows the mouth), a quarter of the crop apart, centred; mouth below their midpoint
    assert abs(el[1] - er[1]) < 3 and er[0] - el[0] == pytest.approx(64, abs=8)
    assert (el[0] + er[0]) / 2 == pytest.approx(128, abs=8) and abs(mo[0] - 128) < 10 and mo[1] > el[1] + 40


def test_largest_face_first_and_face_index(detector: FaceDetector) -> None:
    import cv2

    big = skimage_data.astronaut()[20:260, 120:330]
    small = cv2.resize(big, (105, 120), interpolation=cv2.INTER_AREA)
    canvas = np.full((300, 420, 3), 200, np.uint8)
    canvas[20:260, 10:220] = big
    canvas[60:180, 280:385] = small
    faces = detector.detect(canvas)
    assert len(faces) == 2 and faces[0].area > faces[1].area and faces[0].box[0] < 220 < faces[1].box[0]
    _, t1, f1 = align_face(canvas, 64, face=1, detector=detector)
    assert f1.box[0] > 220
    with pytest.raises(InputError, match="only 2"):
        align_face(canvas, 64, face=2, detector=detector)


def test_no_face_suggests_no_align(detector: FaceDetector) -> None:
    with pytest.raises(NoFaceError, match="--no-align"):
        align_face(skimage_data.coffee(), 64, detector=detector)


def test_estimated_landmarks_are_flagged() -> None:
    face = Face((0, 0, 100, 100), (30, 37), (70, 37), (50, 77), mouth_estimated=True)
    assert face.to_dict()["mouth_estimated"] is True and face.area == 10000
    with pytest.raises(InputError, match="degenerate"):
        ffhq_transform((5, 5), (5, 5), (5, 50), 64)
