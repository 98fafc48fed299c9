"""Face alignment, offline: dlib landmarks, the FFHQ crop (or a model's own template), paste back.

FFHQ's crop is defined by three points: the two eye centres and the mouth centre. With
``e2e = eye_right - eye_left`` and ``e2m = mouth - eye_mid``, the crop is a square centred at
``eye_mid + 0.1 * e2m``, with half-side ``max(2 |e2e|, 1.8 |e2m|)``, rotated so that its
horizontal axis is ``e2e`` minus ``e2m`` turned by 90 degrees (both vectors vote for the roll
angle). An :class:`AlignTemplate` holds those three numbers (2.0, 1.8, 0.1 for FFHQ); a model
trained on differently framed faces stores its own template in its metadata. The crop is a
similarity transform, stored as :class:`AlignTransform`, so a reconstruction or an edit can be
put back into the original photo by the inverse transform (:func:`paste_back`).

Landmarks come from dlib's 68-point shape predictor on dlib's HOG face detector (the landmarks
FFHQ was made with: eyes are points 36-41 and 42-47, mouth corners 48 and 54). The model files
ship in the ``face_recognition_models`` package. OpenCV's Haar cascades remain as an explicit
``detector='opencv'`` (rougher: eyes and mouth from cascades, estimated when missed), and
mediapipe's face mesh as ``detector='mediapipe'`` when that package is installed.

Coordinates are continuous pixel coordinates ``(x, y)``: pixel ``(row i, col j)`` covers
``[j, j+1) x [i, i+1)`` and its centre is ``(j + 0.5, i + 0.5)``.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import logging
import math
import os
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from ..errors import InputError

log = logging.getLogger(__name__)

DETECTORS = ("dlib", "opencv", "mediapipe")
MOUTH_TO_EYES = 1.0  # |eye_mid -> mouth| / |eye -> eye| of a typical frontal face
# Eye centres inside an OpenCV frontal-face box (fractions of the box), for faces whose eyes the
# eye cascade misses.
BOX_EYES = ((0.30, 0.37), (0.70, 0.37))
DLIB_MODELS = ("shape_predictor_68_face_landmarks.dat",)
# dlib's HOG detector finds faces of about 80 px and more; smaller photos are upsampled first.
DLIB_MIN_SIDE = 400
DLIB_MAX_DETECT_SIDE = 1600


class NoFaceError(InputError):
    """No face was found where one was expected."""


@dataclasses.dataclass(frozen=True)
class AlignTemplate:
    """Where the face sits in the aligned square, in FFHQ's parametrisation.

    The crop's half-side is ``max(eye_scale |e2e|, mouth_scale |e2m|)`` and its centre
    ``eye_mid + centre_shift * e2m``. :data:`FFHQ` is ``(2.0, 1.8, 0.1)``.
    """

    name: str
    eye_scale: float
    mouth_scale: float
    centre_shift: float

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "AlignTemplate":
        try:
            t = cls(str(d["name"]), float(d["eye_scale"]), float(d["mouth_scale"]), float(d["centre_shift"]))
        except (KeyError, TypeError, ValueError) as e:
            raise InputError(f"bad alignment template record: {e}") from None
        if not all(math.isfinite(v) for v in (t.eye_scale, t.mouth_scale, t.centre_shift)) or min(t.eye_scale, t.mouth_scale) <= 0:
            raise InputError(f"bad alignment template {d!r}: scales must be positive and finite")
        return t


FFHQ = AlignTemplate("ffhq", 2.0, 1.8, 0.1)
# The embedded `faces` model: a tighter square (eyes at 36% of the height, chin near the bottom),
# chosen so that UTKFace's tight 200 px crops need little padding and a 64 px image spends its
# pixels on the face.
FACES = AlignTemplate("faces", 1.4, 1.4, 0.4)
TEMPLATES = {t.name: t for t in (FFHQ, FACES)}


def template_landmarks(template: AlignTemplate | str, mouth_to_eyes: float = MOUTH_TO_EYES) -> dict[str, tuple[float, float]]:
    """Where a typical upright face's eyes and mouth land in the aligned square, as fractions
    ``(x, y)`` of its side (0 = left/top). ``mouth_to_eyes`` is ``|e2m| / |e2e|`` (about 1).

    FFHQ: eyes at (0.375, 0.475) and (0.625, 0.475); ``faces``: (0.32, 0.36) and (0.68, 0.36).
    """
    tpl = get_template(template)
    half = max(tpl.eye_scale, tpl.mouth_scale * mouth_to_eyes)  # in units of |e2e|
    eye_y = 0.5 - tpl.centre_shift * mouth_to_eyes / (2 * half)
    dx = 1 / (4 * half)
    return {"eye_left": (0.5 - dx, eye_y), "eye_right": (0.5 + dx, eye_y), "mouth": (0.5, eye_y + mouth_to_eyes / (2 * half))}


def get_template(template: AlignTemplate | str | dict[str, Any]) -> AlignTemplate:
    """A template by name (``ffhq``, ``faces``), from a metadata record, or as given."""
    if isinstance(template, AlignTemplate):
        return template
    if isinstance(template, dict):
        return AlignTemplate.from_dict(template)
    if template not in TEMPLATES:
        raise InputError(f"unknown alignment template {template!r}; known: {', '.join(TEMPLATES)}")
    return TEMPLATES[template]


@dataclasses.dataclass
class Face:
    """One detected face: its box ``(x, y, w, h)`` and the three FFHQ landmarks ``(x, y)``.

    ``eye_left`` is the eye on the image's left. ``*_estimated`` says which landmarks were
    derived from proportions instead of detected. ``score`` is the detector's confidence (dlib's
    SVM margin; 0 for the cascades) and ``landmarks`` the 68 points ``[68, 2]`` when dlib found them.
    """

    box: tuple[float, float, float, float]
    eye_left: tuple[float, float]
    eye_right: tuple[float, float]
    mouth: tuple[float, float]
    detector: str = "opencv"
    eyes_estimated: bool = False
    mouth_estimated: bool = False
    score: float = 0.0
    landmarks: np.ndarray | None = dataclasses.field(default=None, compare=False, repr=False)

    @property
    def area(self) -> float:
        return self.box[2] * self.box[3]

    def to_dict(self) -> dict[str, Any]:
        d = {k: (list(v) if isinstance(v, tuple) else v) for k, v in dataclasses.asdict(self).items() if k != "landmarks"}
        if self.landmarks is not None:
            d["landmarks"] = np.round(np.asarray(self.landmarks), 2).tolist()
        return d


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

    def quad(self) -> np.ndarray:
        """The crop's corners in the photo ``[4, 2]``: top-left, bottom-left, bottom-right, top-right."""
        s = self.size
        return self.to_source([[0, 0], [0, s], [s, s], [s, 0]])

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
# The crop


def template_transform(
    eye_left: Sequence[float],
    eye_right: Sequence[float],
    mouth: Sequence[float],
    size: int,
    template: AlignTemplate | str = FFHQ,
    source_size: tuple[int, int] = (0, 0),
) -> AlignTransform:
    """The crop of ``template`` for these landmarks (``(x, y)`` each), as a map from a ``size``-px crop."""
    tpl = get_template(template)
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
    half = max(np.hypot(*e2e) * tpl.eye_scale, np.hypot(*e2m) * tpl.mouth_scale)
    x *= half
    y = np.array([-x[1], x[0]])  # x turned by +90 degrees: "down" in the crop
    c = eye_mid + tpl.centre_shift * e2m
    top_left = c - x - y
    # aligned (u, v) in [0, size]^2 -> top_left + (u / size) * 2x + (v / size) * 2y
    m = np.stack([2 * x / size, 2 * y / size, top_left], axis=1)
    return AlignTransform(m, size, source_size)


def ffhq_transform(
    eye_left: Sequence[float],
    eye_right: Sequence[float],
    mouth: Sequence[float],
    size: int,
    source_size: tuple[int, int] = (0, 0),
) -> AlignTransform:
    """The FFHQ crop for these landmarks (``(x, y)`` each), as a map from a ``size``-px crop."""
    return template_transform(eye_left, eye_right, mouth, size, FFHQ, source_size)


def face_transform(face: Face, size: int, source_size: tuple[int, int] = (0, 0), template: AlignTemplate | str = FFHQ) -> AlignTransform:
    return template_transform(face.eye_left, face.eye_right, face.mouth, size, template, source_size)


def _cv_matrix(t: AlignTransform, fx: float = 1.0, fy: float = 1.0, ox: float = 0.0, oy: float = 0.0) -> np.ndarray:
    """``t`` as an OpenCV warp matrix in pixel-index coordinates (centres at integers), for a
    source that was cropped at ``(ox, oy)`` (continuous coordinates) and then resized by ``(fx, fy)``."""
    a = t.matrix[:, :2] * np.array([[fx], [fy]])
    b = (t.matrix[:, 2] - np.array([ox, oy])) * np.array([fx, fy])
    # index coords: p_idx = p - 0.5 on both sides
    b = b + a @ np.array([0.5, 0.5]) - 0.5
    return np.concatenate([a, b[:, None]], axis=1)


def warp_aligned(image: np.ndarray, t: AlignTransform, pad_blur: bool = True) -> np.ndarray:
    """Cut the crop ``t`` out of ``image`` (uint8 ``[H, W, 3]``) -> uint8 ``[size, size, 3]``.

    FFHQ's procedure, in its order: shrink the photo by an integer factor while the crop still
    has more than twice the output's pixels (area filter); cut the crop's bounding box plus a
    border of ``max(round(0.1 qsize), 3)`` px; where the crop leaves the photo, pad by reflection
    and blend the padding towards a blurred copy and the photo's median (``pad_blur``); sample the
    quad bilinearly at 4x the output size (at most FFHQ's 4096 px) and area-resize to the output.
    """
    import cv2

    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise InputError("alignment needs an RGB uint8 image [H, W, 3]")
    size = t.size
    qsize = t.scale * size  # side of the quad in source pixels
    img = image
    h, w = img.shape[:2]
    # 1. Shrink.
    shrink = int(math.floor(qsize / size * 0.5))
    f = 1.0
    if shrink > 1:
        img = cv2.resize(img, (max(1, round(w / shrink)), max(1, round(h / shrink))), interpolation=cv2.INTER_AREA)
        f = img.shape[1] / w
        qsize *= f
    quad = t.quad() * np.array([img.shape[1] / w, img.shape[0] / h])
    ih, iw = img.shape[:2]
    # 2. Crop to the quad's bounding box plus a border.
    border = max(int(round(qsize * 0.1)), 3)
    x0, y0 = np.floor(quad.min(axis=0)).astype(int) - border
    x1, y1 = np.ceil(quad.max(axis=0)).astype(int) + border
    cx0, cy0, cx1, cy1 = max(x0, 0), max(y0, 0), min(x1, iw), min(y1, ih)
    if cx1 <= cx0 or cy1 <= cy0:
        raise InputError("the face crop lies entirely outside the photo")
    img = img[cy0:cy1, cx0:cx1]
    ox, oy = cx0, cy0
    # 3. Pad where the quad leaves the photo.
    pad = [max(cx0 - x0, 0), max(cy0 - y0, 0), max(x1 - cx1, 0), max(y1 - cy1, 0)]  # left, top, right, bottom
    if max(pad) > border - 4:
        pad = [max(v, int(round(qsize * 0.3))) for v in pad]  # as FFHQ: pad every side generously
        mode = cv2.BORDER_REFLECT_101 if min(img.shape[:2]) > 1 else cv2.BORDER_REPLICATE
        padded = cv2.copyMakeBorder(img, pad[1], pad[3], pad[0], pad[2], mode)
        if pad_blur:
            ph, pw = padded.shape[:2]
            yy, xx = np.mgrid[:ph, :pw].astype(np.float32)
            # > 0 in the padding (1 at its outer edge), negative inside the photo
            mask = np.maximum(
                1.0 - np.minimum(xx / pad[0], (pw - 1 - xx) / pad[2]),
                1.0 - np.minimum(yy / pad[1], (ph - 1 - yy) / pad[3]),
            )[:, :, None]
            work = padded.astype(np.float32)
            blurred = cv2.GaussianBlur(work, (0, 0), max(qsize * 0.02, 0.5))
            work += (blurred - work) * np.clip(mask * 3.0 + 1.0, 0.0, 1.0)
            work += (np.median(work, axis=(0, 1)) - work) * np.clip(mask, 0.0, 1.0)
            padded = np.clip(np.rint(work), 0, 255).astype(np.uint8)
        img = padded
        ox -= pad[0]
        oy -= pad[1]
    # 4. Transform (supersampled), then 5. area-resize to the output.
    work_size = max(size, min(4096, 4 * size))
    scale_x, scale_y = iw / w, ih / h
    tw = t.resized(work_size)
    m = _cv_matrix(tw, scale_x, scale_y, ox / scale_x, oy / scale_y)
    out = cv2.warpAffine(img, m, (work_size, work_size), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP, borderMode=cv2.BORDER_REPLICATE)
    if work_size != size:
        out = cv2.resize(out, (size, size), interpolation=cv2.INTER_AREA)
    return out


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


def dlib_model_dir() -> Path:
    """The folder of dlib's model files from the ``face_recognition_models`` package.

    Found without importing the package: its ``__init__`` imports ``pkg_resources``, which current
    setuptools no longer ships.
    """
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or not spec.submodule_search_locations:
        raise InputError("face alignment needs dlib's landmark models: pip install face_recognition_models (or use --detector opencv)")
    folder = Path(list(spec.submodule_search_locations)[0]) / "models"
    missing = [n for n in DLIB_MODELS if not (folder / n).is_file()]
    if missing:
        raise InputError(f"face_recognition_models is installed but lacks {', '.join(missing)} in {folder}")
    return folder


class FaceDetector:
    """Finds faces and their FFHQ landmarks in RGB uint8 ``[H, W, 3]`` pictures.

    ``detector``: ``'dlib'`` (default: HOG detector + 68-point landmarks, as FFHQ was made),
    ``'opencv'`` (Haar cascades shipped with OpenCV) or ``'mediapipe'`` (needs the package).
    Build one and reuse it: loading dlib's predictor takes about a second.
    """

    def __init__(self, detector: str = "dlib", max_detect_side: int = 1024) -> None:
        if detector == "auto":
            detector = "dlib"
        if detector not in DETECTORS:
            raise InputError(f"unknown face detector {detector!r}; expected one of {DETECTORS}")
        self.name = detector
        self.max_detect_side = max_detect_side
        if detector == "dlib":
            try:
                import dlib
            except ImportError:
                raise InputError("face alignment needs dlib: pip install dlib-bin face_recognition_models (or use --detector opencv)") from None
            self._dlib = dlib
            self._hog = dlib.get_frontal_face_detector()
            self._shape = dlib.shape_predictor(str(dlib_model_dir() / "shape_predictor_68_face_landmarks.dat"))
            return
        if detector == "mediapipe":
            self._mesh = _try_mediapipe()
            if self._mesh is None:
                raise InputError("--detector mediapipe needs the mediapipe package (pip install mediapipe)")
            return
        import cv2

        base = getattr(getattr(cv2, "data", None), "haarcascades", None)
        if base is None:
            raise InputError("this OpenCV build has no Haar cascades (cv2.data); install opencv-python-headless<5 or use --detector dlib")
        self._face = _cascade(cv2, base, "haarcascade_frontalface_default.xml")
        self._face_alt = _cascade(cv2, base, "haarcascade_frontalface_alt2.xml")
        self._eyes = [_cascade(cv2, base, n) for n in ("haarcascade_eye.xml", "haarcascade_eye_tree_eyeglasses.xml")]
        self._smile = _cascade(cv2, base, "haarcascade_smile.xml")

    def detect(self, image: np.ndarray) -> list[Face]:
        """All faces in ``image``, best first: for dlib the most confident detection whose
        landmarks form a plausible face; for the cascades the largest."""
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise InputError("face detection needs an RGB uint8 image [H, W, 3]")
        if self.name == "dlib":
            return self._dlib_faces(image)
        if self.name == "mediapipe":
            return sorted(_mediapipe_faces(self._mesh, image), key=lambda f: -f.area)
        return sorted(self._opencv_faces(image), key=lambda f: -f.area)

    def _dlib_faces(self, image: np.ndarray) -> list[Face]:
        import cv2

        h, w = image.shape[:2]
        f = 1.0
        if max(h, w) > DLIB_MAX_DETECT_SIDE:
            f = DLIB_MAX_DETECT_SIDE / max(h, w)
        elif max(h, w) < DLIB_MIN_SIDE:
            f = 2.0 ** math.ceil(math.log2(DLIB_MIN_SIDE / max(h, w)))
        small = image if f == 1.0 else cv2.resize(image, (max(1, round(w * f)), max(1, round(h * f))), interpolation=cv2.INTER_AREA if f < 1 else cv2.INTER_LINEAR)
        fx, fy = small.shape[1] / w, small.shape[0] / h
        rects, scores, _ = self._hog.run(small, 0, 0.0)
        faces = []
        for r, score in zip(rects, scores):
            shape = self._shape(small, r)
            pts = np.array([(p.x + 0.5, p.y + 0.5) for p in shape.parts()], dtype=np.float64) / np.array([fx, fy])
            box = (r.left() / fx, r.top() / fy, r.width() / fx, r.height() / fy)
            face = face_from_landmarks(pts, box, float(score))
            if _plausible(face):
                faces.append(face)
            else:
                log.debug("dropped a detection at %s: its landmarks do not form a face", box)
        return sorted(faces, key=lambda fc: -fc.score)

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


def face_from_landmarks(points: np.ndarray, box: tuple[float, float, float, float] = (0, 0, 0, 0), score: float = 0.0) -> Face:
    """A :class:`Face` from dlib's 68 points ``[68, 2]`` (x, y): eye centres are the means of
    points 36-41 and 42-47, the mouth the midpoint of the corners 48 and 54."""
    p = np.asarray(points, dtype=np.float64)
    if p.shape != (68, 2):
        raise InputError(f"expected 68 landmarks [68, 2], got {p.shape}")
    el, er = p[36:42].mean(axis=0), p[42:48].mean(axis=0)
    mouth = (p[48] + p[54]) / 2
    if tuple(box) == (0, 0, 0, 0):
        lo, hi = p.min(axis=0), p.max(axis=0)
        box = (float(lo[0]), float(lo[1]), float(hi[0] - lo[0]), float(hi[1] - lo[1]))
    return Face(tuple(float(v) for v in box), tuple(el), tuple(er), tuple(mouth), "dlib", score=score, landmarks=p)  # type: ignore[arg-type]


def _plausible(face: Face) -> bool:
    """Do the landmarks look like a face: eyes apart and about level, the mouth below and between them?"""
    el, er, mo = (np.asarray(v) for v in (face.eye_left, face.eye_right, face.mouth))
    e2e = er - el
    d = float(np.hypot(*e2e))
    if d < 2.0:
        return False
    down = np.array([-e2e[1], e2e[0]]) / d
    e2m = mo - (el + er) / 2
    below, across = float(e2m @ down), float(e2m @ (e2e / d))
    bw = max(face.box[2], 1.0)
    return 0.5 * d < below < 2.0 * d and abs(across) < 0.5 * d and 0.2 * bw < d < 0.9 * bw


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


def detect_faces(image: np.ndarray, detector: str = "dlib") -> list[Face]:
    """Faces in RGB uint8 ``[H, W, 3]``, best first (builds a :class:`FaceDetector`; reuse one
    for many pictures)."""
    return FaceDetector(detector).detect(image)


def align_face(
    image: np.ndarray,
    size: int,
    face: Face | int = 0,
    detector: FaceDetector | None = None,
    name: str = "image",
    template: AlignTemplate | str = FFHQ,
) -> tuple[np.ndarray, AlignTransform, Face]:
    """Detect (unless ``face`` is given) and align one face to ``template`` (FFHQ by default).

    ``face``: a :class:`Face`, or the index among detected faces, best first (0 = best).
    Returns the aligned crop uint8 ``[size, size, 3]``, its transform and the face. Raises
    :class:`NoFaceError` (its message suggests ``--no-align``) when no face is found.
    """
    if isinstance(face, int):
        faces = (detector or FaceDetector()).detect(image)
        if not faces:
            raise NoFaceError(f"{name}: no face found; if the picture is already an aligned face crop, use --no-align")
        if not 0 <= face < len(faces):
            raise InputError(f"{name}: face {face} requested but only {len(faces)} found (0 = best)")
        face = faces[face]
    t = face_transform(face, size, image.shape[:2], template)
    return warp_aligned(image, t), t, face
