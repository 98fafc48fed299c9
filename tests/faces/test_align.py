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
    with pytest.raises(InputError, match="bad alignment transform record"):
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


# ----------------------------------------------------------------------------------------------
# dlib landmarks (the default detector), templates, re-alignment, the aligned photo sets

from spatial_latent.faces.align import FACES, FFHQ, AlignTemplate, face_from_landmarks, get_template, template_transform  # noqa: E402


@pytest.fixture(scope="module")
def dlib_detector() -> FaceDetector:
    pytest.importorskip("dlib", reason="dlib-bin is a dependency; install it to run the landmark tests")
    return FaceDetector("dlib")


def test_dlib_finds_the_astronaut_and_her_68_landmarks(dlib_detector: FaceDetector) -> None:
    faces = dlib_detector.detect(skimage_data.astronaut())
    f = faces[0]
    assert f.detector == "dlib" and f.landmarks.shape == (68, 2) and f.score > 0.5
    # hand-measured on the picture: eyes (202, 101), (246, 101), mouth (224, 144)
    assert np.hypot(*(np.array(f.eye_left) - (202, 101))) < 4
    assert np.hypot(*(np.array(f.eye_right) - (246, 101))) < 4
    assert np.hypot(*(np.array(f.mouth) - (224, 144))) < 5
    # the eye centres are the means of points 36-41 and 42-47, the mouth the corners' midpoint
    np.testing.assert_allclose(f.eye_left, f.landmarks[36:42].mean(0))
    np.testing.assert_allclose(f.mouth, (f.landmarks[48] + f.landmarks[54]) / 2)


def test_sixteen_bit_grayscale_astronaut_picks_her_face_not_the_suit(dlib_detector: FaceDetector, tmp_path) -> None:
    from PIL import Image

    from spatial_latent.io.pictures import read_image

    gray16 = (skimage_data.astronaut().astype(np.float64).mean(axis=2) * 257).astype(np.uint16)
    path = tmp_path / "astronaut16.png"
    Image.fromarray(gray16).save(path)
    photo = read_image(path).pixels
    crop, t, face = align_face(photo, 64, detector=dlib_detector)
    eye_mid = (np.array(face.eye_left) + np.array(face.eye_right)) / 2
    assert np.hypot(*(eye_mid - (224, 101))) < 6, f"chose the face at {eye_mid}, not the astronaut's"
    # when other candidates exist they rank below it by the detector's score
    scores = [f.score for f in dlib_detector.detect(photo)]
    assert scores == sorted(scores, reverse=True)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_a_moved_photo_realigns_to_the_same_crop_within_2_percent(dlib_detector: FaceDetector, seed: int) -> None:
    import cv2

    photo = skimage_data.astronaut()[:300, 100:380]
    rng = np.random.default_rng(seed)
    angle, scale = rng.uniform(-20, 20), rng.uniform(0.7, 1.4)
    h, w = photo.shape[:2]
    a = math.radians(angle)
    rot = scale * np.array([[math.cos(a), -math.sin(a)], [math.sin(a), math.cos(a)]])
    shift = np.array([w, h]) + rng.uniform(-30, 30, 2)  # centre of a 2x canvas, moved
    m = np.concatenate([rot, (shift - rot @ np.array([w / 2, h / 2]))[:, None]], axis=1)
    m_idx = m.copy()
    m_idx[:, 2] += rot @ np.array([0.5, 0.5]) - 0.5
    canvas = cv2.warpAffine(photo, m_idx, (2 * w, 2 * h), flags=cv2.INTER_LINEAR, borderValue=(128, 128, 128))
    _, t0, _ = align_face(photo, 256, detector=dlib_detector)
    _, t1, _ = align_face(canvas, 256, detector=dlib_detector)
    carried = t0.quad() @ m[:, :2].T + m[:, 2]
    side = np.hypot(*(carried[1] - carried[0]))
    assert np.max(np.hypot(*(t1.quad() - carried).T)) / side < 0.02


def test_faces_template_by_hand() -> None:
    # e2e = (60, 0), e2m = (0, 60): half side max(1.4 * 60, 1.4 * 60) = 84; centre = eye_mid +
    # 0.4 * e2m = (130, 144); the 168-px square starts at (46, 60).
    t = template_transform(EYE_L, EYE_R, MOUTH, 64, FACES)
    np.testing.assert_allclose(t.matrix, [[168 / 64, 0, 46], [0, 168 / 64, 60]], atol=1e-12)
    assert get_template("faces") is FACES and get_template(FFHQ.to_dict()) == FFHQ
    assert AlignTemplate.from_dict(FACES.to_dict()) == FACES


def test_bad_templates_are_refused() -> None:
    with pytest.raises(InputError, match="unknown alignment template 'celeb'"):
        get_template("celeb")
    with pytest.raises(InputError, match="scales must be positive"):
        AlignTemplate.from_dict({"name": "x", "eye_scale": -1, "mouth_scale": 1, "centre_shift": 0})
    with pytest.raises(InputError, match="bad alignment template record"):
        AlignTemplate.from_dict({"name": "x"})


def test_landmarks_to_face() -> None:
    pts = np.zeros((68, 2))
    pts[36:42] = (10, 20)
    pts[42:48] = (30, 20)
    pts[48], pts[54] = (14, 40), (26, 42)
    f = face_from_landmarks(pts)
    assert f.eye_left == (10, 20) and f.eye_right == (30, 20) and f.mouth == (20, 41)
    with pytest.raises(InputError, match="68 landmarks"):
        face_from_landmarks(np.zeros((5, 2)))


def test_no_face_with_dlib_is_one_clear_error(dlib_detector: FaceDetector) -> None:
    with pytest.raises(NoFaceError, match="no face found.*--no-align"):
        align_face(skimage_data.coffee(), 64, detector=dlib_detector)
    with pytest.raises(InputError, match="RGB uint8"):
        dlib_detector.detect(np.zeros((10, 10), np.uint8))


def test_missing_dlib_names_the_packages(monkeypatch) -> None:
    import sys

    monkeypatch.setitem(sys.modules, "dlib", None)  # import dlib -> ImportError
    with pytest.raises(InputError, match="pip install dlib-bin face_recognition_models"):
        FaceDetector("dlib")


def test_padding_outside_the_photo_fades_to_the_median_colour() -> None:
    # a face near the photo's top-left corner: the FFHQ crop leaves the photo, the padding is
    # reflected, blurred and pulled toward the photo's median, not a hard mirror image
    rng = np.random.default_rng(0)
    photo = rng.integers(0, 256, (200, 200, 3), dtype=np.uint8)
    photo[:, :, 1] = 200  # a strong median in the green channel
    t = ffhq_transform((30, 30), (60, 30), (45, 60), 128, (200, 200))
    out = warp_aligned(photo, t)
    corner = out[:12, :12].reshape(-1, 3).astype(float)
    assert np.abs(corner - np.median(photo.reshape(-1, 3), axis=0)).mean() < 12
    assert corner.std(axis=0).max() < 10  # blurred, not the noisy photo mirrored


def test_aligned_photo_set_round_trip(tmp_path, dlib_detector: FaceDetector) -> None:
    from PIL import Image

    from spatial_latent.faces.dataset import AlignedFaces, is_validation, prepare_aligned

    folder = tmp_path / "photos"
    (folder / "sub").mkdir(parents=True)
    Image.fromarray(skimage_data.astronaut()).save(folder / "sub" / "astronaut.jpg")
    Image.fromarray(skimage_data.coffee()).save(folder / "coffee.png")
    (folder / "broken.jpg").write_bytes(b"not a jpeg")
    faces = prepare_aligned(folder, size=32, template="faces", workers=1)
    assert faces.images.shape == (1, 32, 32, 3) and list(faces.names) == ["sub/astronaut.jpg"] and faces.skipped == 2
    # eyes land where the template puts them: 36% down, 0.5 +- 0.25 of the side across
    el_x, el_y, er_x, er_y = faces.eyes[0]
    assert abs(el_y - 0.357 * 32) < 1.5 and abs(er_y - el_y) < 1 and abs((er_x - el_x) - 32 / 2.8) < 1.5
    back = AlignedFaces.load(faces.save(tmp_path / "set.npz"))
    assert np.array_equal(back.images, faces.images) and back.template == FACES
    assert bool(back.validation[0]) == is_validation("sub/astronaut.jpg")
    with pytest.raises(InputError, match="not found"):
        AlignedFaces.load(tmp_path / "missing.npz")
