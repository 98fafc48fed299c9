"""FFHQ-style face alignment, offline: detect faces and eyes, crop an oriented square, paste back.

FFHQ's crop is defined by three points: the two eye centres and the mouth centre. With
``e2e = eye_right - eye_left`` and ``e2m = mouth - eye_mid``, the crop is a square centred at
``eye_mid + 0.1 * e2m``, with half-side ``max(2 |e2e|, 1.8 |e2m|)``, rotated so that its
horizontal axis is ``e2e`` minus ``e2m`` turned by 90 degrees (both vectors vote for the roll
angle). That is a similarity transform, stored as :class:`AlignTransform`, so a reconstruction or
an edit can be put back into the original photo by the inverse transform (:func:`paste_back`).

Landmarks come from OpenCV's Haar cascades (shipped with opencv-python, no download): a face
detector, an eye detector inside the upper face, and a smile detector for the mouth. When the
mouth (or even the eyes) is not found it is estimated from typical face proportions, and the face
records that it was. When ``mediapipe`` is installed its face mesh gives better landmarks and is
used by default (``detector='auto'``).

Coordinates are continuous pixel coordinates ``(x, y)``: pixel ``(row i, col j)`` covers
``[j, j+1) x [i, i+1)`` and its centre is ``(j + 0.5, i + 0.5)``.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import os
from typing import Any, Sequence

import numpy as np

from .errors import InputError

log = logging.getLogger(__name__)

DETECTORS = ("auto", "opencv", "mediapipe")
MOUTH_TO_EYES = 1.0  # |eye_mid -> mouth| / |eye -> eye| of a typical frontal face
# Eye centres inside an OpenCV frontal-face box (fractions of the box), for faces whose eyes the
# eye cascade misses.
BOX_EYES = ((0.30, 0.37), (0.70, 0.37))


class NoFaceError(InputError):
    """No face was found where one was expected."""


@dataclasses.dataclass
class Face:
    """One detected face: its box ``(x, y, w, h)`` and the three FFHQ landmarks ``(x, y)``.

    ``eye_left`` is the eye on the image's left. ``*_estimated`` says which landmarks were
    derived from proportions instead of detected.
    """

    box: tuple[float, float, float, float]
    eye_left: tuple[float, float]
    eye_right: tuple[float, float]
    mouth: tuple[float, float]
    detector: str = "opencv"
    eyes_estimated: bool = False
    mouth_estimated: bool = False

    @property
    def area(self) -> float:
        return self.box[2] * self.box[3]

    def to_dict(self) -> dict[str, Any]:
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in dataclasses.asdict(self).items()}


@dataclasses.dataclass
class AlignTransform:
    """Similarity map from aligned-crop coordinates to source-photo coordinates.

    ``matrix`` ``[2, 3]``: ``source_xy = matrix[:, :2] @ aligned_xy + matrix[:, 2]`` for an aligned
    crop of ``size x size`` pixels; ``source_size`` is the photo's ``(height, width)``.
    """

    matrix: np.ndarray
    size: int
    source_size: tuple[int, int]

    def __post_init__(self) -> None:
        self.matrix = np.asarray(self.matrix, dtype=np.float64).reshape(2, 3)

    def to_source(self, points: np.ndarray | Sequence[Sequence[float]]) -> np.ndarray:
        """Aligned ``[N, 2]`` (x, y) -> source ``[N, 2]``."""
        p = np.asarray(points, dtype=np.float64).reshape(-1, 2)
        return p @ self.matrix[:, :2].T + self.matrix[:, 2]

    def to_aligned(self, points: np.ndarray | Sequence[Sequence[float]]) -> np.ndarray:
        """Source ``[N, 2]`` (x, y) -> aligned ``[N, 2]``."""
        p = np.asarray(points, dtype=np.float64).reshape(-1, 2)
        return (p - self.matrix[:, 2]) @ np.linalg.inv(self.matrix[:, :2]).T

    @property
    def scale(self) -> float:
        """Source pixels per aligned pixel."""
        return float(math.sqrt(abs(np.linalg.det(self.matrix[:, :2]))))

    @property
    def angle(self) -> float:
        """Rotation of the crop in the photo, degrees (positive: clockwise on screen, y down)."""
        return float(math.degrees(math.atan2(self.matrix[1, 0], self.matrix[0, 0])))

    def resized(self, size: int) -> "AlignTransform":
        """The same crop described for an aligned image of ``size`` pixels."""
        m = self.matrix.copy()
        m[:, :2] *= self.size / size
        return AlignTransform(m, size, self.source_size)

    def to_dict(self) -> dict[str, Any]:
        return {"matrix": self.matrix.tolist(), "size": self.size, "source_size": list(self.source_size)}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "AlignTransform":
        try:
            return cls(np.asarray(d["matrix"], dtype=np.float64), int(d["size"]), tuple(int(v) for v in d["source_size"]))  # type: ignore[arg-type]
        except (KeyError, TypeError, ValueError) as e:
            raise InputError(f"bad alignment transform record: {e}") from None


# ----------------------------------------------------------------------------------------------
# The FFHQ crop


def ffhq_transform(
    eye_left: Sequence[float],
    eye_right: Sequence[float],
    mouth: Sequence[float],
    size: int,
    source_size: tuple[int, int] = (0, 0),
) -> AlignTransform:
    """The FFHQ crop for these landmarks (``(x, y)`` each), as a map from a ``size``-px crop."""
    el, er, mo = (np.asarray(p, dtype=np.float64) for p in (eye_left, eye_right, mouth))
    eye_mid = (el + er) / 2
    e2e = er - el
    e2m = mo - eye_mid
    if not (np.isfinite(e2e).all() and np.isfinite(e2m).all()) or np.hypot(*e2e) < 1e-6:
        raise InputError("degenerate face landmarks (the eyes coincide)")
    # Horizontal axis: eye-to-eye, plus eye-to-mouth turned by -90 degrees (it points along +x for
    # an upright face), so both vectors vote for the roll angle.
    x = e2e + np.array([e2m[1], -e2m[0]])
    x /= np.hypot(*x)
    half = max(np.hypot(*e2e) * 2.0, np.hypot(*e2m) * 1.8)
    x *= half
    y = np.array([-x[1], x[0]])  # x turned by +90 degrees: "down" in the crop
    c = eye_mid + 0.1 * e2m
    top_left = c - x - y
    # aligned (u, v) in [0, size]^2 -> top_left + (u / size) * 2x + (v / size) * 2y
    m = np.stack([2 * x / size, 2 * y / size, top_left], axis=1)
    return AlignTransform(m, size, source_size)


def face_transform(face: Face, size: int, source_size: tuple[int, int] = (0, 0)) -> AlignTransform:
    return ffhq_transform(face.eye_left, face.eye_right, face.mouth, size, source_size)


def _cv_matrix(t: AlignTransform, fx: float = 1.0, fy: float = 1.0) -> np.ndarray:
    """``t`` as an OpenCV warp matrix in pixel-index coordinates (centres at integers), for a
    source that was resized by ``(fx, fy)``."""
    a = t.matrix[:, :2] * np.array([[fx], [fy]])
    b = t.matrix[:, 2] * np.array([fx, fy])
    # index coords: p_idx = p - 0.5 on both sides
    b = b + a @ np.array([0.5, 0.5]) - 0.5
    return np.concatenate([a, b[:, None]], axis=1)


def warp_aligned(image: np.ndarray, t: AlignTransform, pad_blur: bool = True) -> np.ndarray:
    """Cut the crop ``t`` out of ``image`` (uint8 ``[H, W, 3]``) -> uint8 ``[size, size, 3]``.

    The source is area-downscaled first when the crop shrinks it more than 2x (no aliasing).
    Parts of the crop outside the photo are filled by reflection, blurred more with distance from
    the photo's edge and pulled toward the photo's median colour, as FFHQ's crops were.
    """
    import cv2

    h, w = image.shape[:2]
    src = image
    fx = fy = 1.0
    shrink = int(math.floor(t.scale / 1.5))
    if shrink >= 2:
        src = cv2.resize(image, (max(1, w // shrink), max(1, h // shrink)), interpolation=cv2.INTER_AREA)
        fx, fy = src.shape[1] / w, src.shape[0] / h
    m = _cv_matrix(t, fx, fy)
    flags = cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP
    out = cv2.warpAffine(src, m, (t.size, t.size), flags=flags, borderMode=cv2.BORDER_REFLECT_101)
    if not pad_blur:
        return out
    inside = cv2.warpAffine(np.full(src.shape[:2], 255, np.uint8), m, (t.size, t.size), flags=flags, borderMode=cv2.BORDER_CONSTANT, borderValue=0)
    if inside.min() == 255:
        return out
    outside = (inside < 128).astype(np.uint8)
    dist = cv2.distanceTransform(outside, cv2.DIST_L2, 5)  # distance to the photo, aligned pixels
    ramp = np.clip(dist / max(1.0, 0.1 * t.size), 0, 1)[:, :, None]
    sigma = max(1.0, 0.04 * t.size)
    blurred = cv2.GaussianBlur(out, (0, 0), sigma).astype(np.float32)
    median = np.median(image.reshape(-1, 3), axis=0).astype(np.float32)
    filled = out.astype(np.float32) * (1 - ramp) + blurred * ramp
    filled = filled + (median - filled) * (0.6 * ramp)  # far from the photo: mostly its median colour
    return np.round(filled).clip(0, 255).astype(np.uint8)


def paste_back(original: np.ndarray, aligned: np.ndarray, t: AlignTransform, feather: float = 0.06) -> np.ndarray:
    """Put ``aligned`` (uint8 ``[S, S, 3]``, e.g. a reconstruction or an edit; any ``S``) back into
    ``original`` (uint8 ``[H, W, 3]``, the photo ``t`` was computed on) through the inverse crop.

    The crop's border is feathered over ``feather`` x its side so no seam shows. Returns a new image.
    """
    import cv2

    if original.ndim != 3 or original.shape[2] != 3 or aligned.ndim != 3 or aligned.shape[2] != 3:
        raise InputError("paste_back needs two RGB images [H, W, 3]")
    if aligned.shape[0] != aligned.shape[1]:
        raise InputError(f"aligned image must be square, got {aligned.shape[1]}x{aligned.shape[0]}")
    h, w = original.shape[:2]
    if t.source_size not in ((0, 0), (h, w)):
        raise InputError(f"the transform was computed on a {t.source_size[1]}x{t.source_size[0]} photo, not {w}x{h}")
    s = aligned.shape[0]
    t = t.resized(s)
    m = _cv_matrix(t)  # aligned index -> source index: forward warp from aligned into the photo
    # Upsampling into the photo wants a smooth kernel; downsampling wants area averaging first.
    src = aligned
    if t.scale < 0.67:
        f = max(1, int(round(1 / t.scale)))
        src = cv2.resize(aligned, (s // f, s // f), interpolation=cv2.INTER_AREA)
        m = _cv_matrix(t.resized(src.shape[0]))
    warped = cv2.warpAffine(src, m, (w, h), flags=cv2.INTER_CUBIC, borderMode=cv2.BORDER_REPLICATE)
    n = src.shape[0]
    mask = np.zeros((n, n), np.float32)
    margin = max(1, int(round(feather * n)))
    mask[margin:-margin, margin:-margin] = 1
    mask = cv2.GaussianBlur(mask, (0, 0), max(0.5, margin / 2))
    mask = cv2.warpAffine(mask, m, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=0)[:, :, None]
    out = original.astype(np.float32) * (1 - mask) + warped.astype(np.float32) * mask
    return np.round(out).clip(0, 255).astype(np.uint8)


# ----------------------------------------------------------------------------------------------
# Detection


class FaceDetector:
    """Finds faces and their FFHQ landmarks in RGB uint8 ``[H, W, 3]`` pictures.

    ``detector``: ``'opencv'`` (Haar cascades shipped with OpenCV), ``'mediapipe'`` (needs the
    package) or ``'auto'`` (mediapipe when installed, else OpenCV). Build one and reuse it.
    """

    def __init__(self, detector: str = "auto", max_detect_side: int = 1024) -> None:
        if detector not in DETECTORS:
            raise InputError(f"unknown face detector {detector!r}; expected one of {DETECTORS}")
        self.max_detect_side = max_detect_side
        self._mesh: Any = None
        if detector in ("auto", "mediapipe"):
            self._mesh = _try_mediapipe()
            if self._mesh is None and detector == "mediapipe":
                raise InputError("--detector mediapipe needs the mediapipe package (pip install mediapipe)")
        self.name = "mediapipe" if self._mesh is not None else "opencv"
        import cv2

        base = getattr(getattr(cv2, "data", None), "haarcascades", None)
        if base is None:
            raise InputError("this OpenCV build has no Haar cascades (cv2.data); install opencv-python-headless<5")
        self._face = _cascade(cv2, base, "haarcascade_frontalface_default.xml")
        self._face_alt = _cascade(cv2, base, "haarcascade_frontalface_alt2.xml")
        self._eyes = [_cascade(cv2, base, n) for n in ("haarcascade_eye.xml", "haarcascade_eye_tree_eyeglasses.xml")]
        self._smile = _cascade(cv2, base, "haarcascade_smile.xml")

    def detect(self, image: np.ndarray) -> list[Face]:
        """All faces in ``image``, largest first."""
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise InputError("face detection needs an RGB uint8 image [H, W, 3]")
        faces: list[Face] = []
        if self._mesh is not None:
            try:
                faces = _mediapipe_faces(self._mesh, image)
            except Exception as e:  # an optional detector must never make a photo fail
                log.warning("mediapipe face mesh failed (%s); using OpenCV", e)
        if not faces:
            faces = self._opencv_faces(image)
        return sorted(faces, key=lambda f: -f.area)

    def _opencv_faces(self, image: np.ndarray) -> list[Face]:
        import cv2

        h, w = image.shape[:2]
        f = min(1.0, self.max_detect_side / max(h, w))
        small = cv2.resize(image, (max(1, round(w * f)), max(1, round(h * f))), interpolation=cv2.INTER_AREA) if f < 1 else image
        gray = cv2.equalizeHist(cv2.cvtColor(small, cv2.COLOR_RGB2GRAY))
        min_face = max(20, int(0.04 * min(gray.shape)))
        boxes = self._face.detectMultiScale(gray, scaleFactor=1.1, minNeighbors=5, minSize=(min_face, min_face))
        if len(boxes) == 0:
            boxes = self._face_alt.detectMultiScale(gray, scaleFactor=1.05, minNeighbors=3, minSize=(min_face, min_face))
        faces = []
        for bx, by, bw, bh in (boxes if len(boxes) else []):
            face = self._landmarks(gray, (float(bx), float(by), float(bw), float(bh)))
            faces.append(_scale_face(face, 1 / f))
        return faces

    def _landmarks(self, gray: np.ndarray, box: tuple[float, float, float, float]) -> Face:
        bx, by, bw, bh = box
        x0, y0 = int(bx), int(by)
        roi = gray[y0 : y0 + int(bh * 0.62), x0 : x0 + int(bw)]
        eyes = None
        lo, hi = max(6, int(bw * 0.08)), max(7, int(bw * 0.4))
        for cascade in self._eyes:
            cands = cascade.detectMultiScale(roi, scaleFactor=1.05, minNeighbors=3, minSize=(lo, lo), maxSize=(hi, hi))
            eyes = _best_eye_pair([(x0 + ex + ew / 2, y0 + ey + eh / 2) for ex, ey, ew, eh in (cands if len(cands) else [])], box)
            if eyes is not None:
                break
        eyes_estimated = eyes is None
        if eyes is None:
            eyes = tuple((bx + fx * bw, by + fy * bh) for fx, fy in BOX_EYES)  # type: ignore[assignment]
        el, er = np.asarray(eyes[0]), np.asarray(eyes[1])
        guess = _mouth_guess(el, er)
        mouth = None
        top = int(by + bh * 0.55)
        roi = gray[top : int(by + bh * 1.05), x0 : x0 + int(bw)]
        if roi.size:
            lo = max(8, int(bw * 0.2))
            cands = self._smile.detectMultiScale(roi, scaleFactor=1.1, minNeighbors=15, minSize=(lo, lo // 2))
            d = np.hypot(*(er - el))
            best = None
            for sx, sy, sw, sh in (cands if len(cands) else []):
                p = np.array([x0 + sx + sw / 2, top + sy + sh / 2])
                dist = np.hypot(*(p - guess))
                if dist < 0.35 * d and (best is None or dist < best[0]):
                    best = (dist, p)
            mouth = None if best is None else best[1]
        mouth_estimated = mouth is None
        if mouth is None:
            mouth = guess
        return Face(box, tuple(el), tuple(er), tuple(np.asarray(mouth, dtype=np.float64)), "opencv", eyes_estimated, mouth_estimated)  # type: ignore[arg-type]


def _cascade(cv2: Any, base: str, name: str) -> Any:
    c = cv2.CascadeClassifier(os.path.join(base, name))
    if c.empty():
        raise InputError(f"OpenCV cascade {name} is missing from {base}")
    return c


def _mouth_guess(el: np.ndarray, er: np.ndarray) -> np.ndarray:
    """Mouth centre from the eyes: below their midpoint (perpendicular to the eye line)."""
    e2e = er - el
    down = np.array([-e2e[1], e2e[0]])  # e2e turned +90 degrees: "down" for an upright face
    return (el + er) / 2 + MOUTH_TO_EYES * down


def _best_eye_pair(centres: list[tuple[float, float]], box: tuple[float, float, float, float]) -> tuple[tuple[float, float], tuple[float, float]] | None:
    """The pair of eye candidates most like two eyes of this face box (or None)."""
    bx, by, bw, bh = box
    expect = [np.array([bx + fx * bw, by + fy * bh]) for fx, fy in BOX_EYES]
    best = None
    for i, a in enumerate(centres):
        for b in centres[i + 1 :]:
            left, right = (a, b) if a[0] < b[0] else (b, a)
            dx, dy = right[0] - left[0], right[1] - left[1]
            if not (0.25 * bw <= dx <= 0.7 * bw and abs(dy) <= 0.3 * dx):
                continue
            if left[0] > bx + 0.55 * bw or right[0] < bx + 0.45 * bw:
                continue
            score = np.hypot(*(np.asarray(left) - expect[0])) + np.hypot(*(np.asarray(right) - expect[1]))
            if best is None or score < best[0]:
                best = (score, (left, right))
    return None if best is None else best[1]


def _scale_face(face: Face, s: float) -> Face:
    if s == 1:
        return face
    sc = lambda p: tuple(float(v) * s for v in p)  # noqa: E731
    return dataclasses.replace(face, box=sc(face.box), eye_left=sc(face.eye_left), eye_right=sc(face.eye_right), mouth=sc(face.mouth))


def _try_mediapipe() -> Any:
    try:
        import mediapipe as mp  # optional: better landmarks when the user has it

        return mp.solutions.face_mesh.FaceMesh(static_image_mode=True, max_num_faces=16, refine_landmarks=False)
    except Exception:
        return None


# Face-mesh indices: contours of the image-left eye, the image-right eye, and the mouth corners.
_MP_EYE_LEFT = (33, 133, 159, 145, 160, 144, 158, 153)
_MP_EYE_RIGHT = (362, 263, 386, 374, 385, 380, 387, 373)
_MP_MOUTH = (61, 291)


def _mediapipe_faces(mesh: Any, image: np.ndarray) -> list[Face]:
    h, w = image.shape[:2]
    result = mesh.process(image)
    faces = []
    for lms in result.multi_face_landmarks or []:
        pts = np.array([(p.x * w, p.y * h) for p in lms.landmark])
        el, er, mo = (pts[list(idx)].mean(axis=0) for idx in (_MP_EYE_LEFT, _MP_EYE_RIGHT, _MP_MOUTH))
        if el[0] > er[0]:
            el, er = er, el
        x0, y0 = pts.min(axis=0)
        x1, y1 = pts.max(axis=0)
        faces.append(Face((float(x0), float(y0), float(x1 - x0), float(y1 - y0)), tuple(el), tuple(er), tuple(mo), "mediapipe"))
    return faces


def detect_faces(image: np.ndarray, detector: str = "auto") -> list[Face]:
    """Faces in RGB uint8 ``[H, W, 3]``, largest first (builds a :class:`FaceDetector`; reuse one
    for many pictures)."""
    return FaceDetector(detector).detect(image)


def align_face(
    image: np.ndarray,
    size: int,
    face: Face | int = 0,
    detector: FaceDetector | None = None,
    name: str = "image",
) -> tuple[np.ndarray, AlignTransform, Face]:
    """Detect (unless ``face`` is given) and FFHQ-align one face.

    ``face``: a :class:`Face`, or the index among detected faces, largest first (0 = largest).
    Returns the aligned crop uint8 ``[size, size, 3]``, its transform and the face. Raises
    :class:`NoFaceError` (its message suggests ``--no-align``) when no face is found.
    """
    if isinstance(face, int):
        faces = (detector or FaceDetector()).detect(image)
        if not faces:
            raise NoFaceError(f"{name}: no face found; if the picture is already an aligned face crop, use --no-align")
        if not 0 <= face < len(faces):
            raise InputError(f"{name}: face {face} requested but only {len(faces)} found (0 = largest)")
        face = faces[face]
    t = face_transform(face, size, image.shape[:2])
    return warp_aligned(image, t), t, face
