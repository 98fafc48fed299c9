"""Aligned face photo sets: every photo of a folder brought to one framing, cached as one array.

The embedded ``faces`` model, its attribute labeler and the encoding benchmarks all read the same
aligned set, so that the labeler sees real photos exactly as the generator was shown them:

    python -m spatial_latent.prepare_faces ../shared/datasets/faces --out faces64.npz --size 64

The cache (``.npz``) holds ``images`` uint8 ``[N, S, S, 3]``, ``names`` (paths relative to the
folder), ``validation`` bool ``[N]`` (a fixed split by a hash of the name, so it never depends
on the order files are listed in), ``eyes`` float32 ``[N, 4]`` (the landmark eye centres in the
aligned crop, x/y left then right) and the template as JSON. Photos without a detectable face
are counted and left out.
"""

from __future__ import annotations

import json
import logging
import multiprocessing
import zlib
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np

from ..io.pictures import IMAGE_EXTENSIONS
from .align import AlignTemplate, FaceDetector, face_transform, get_template, warp_aligned
from ..errors import InputError

log = logging.getLogger(__name__)


def is_validation(name: str, fraction_denominator: int = 32) -> bool:
    """The fixed validation split: about 1 photo in ``fraction_denominator``, by a hash of its name."""
    return zlib.crc32(name.encode()) % fraction_denominator == 0


@dataclass
class AlignedFaces:
    """An aligned set in memory (see the module docstring for the fields)."""

    images: np.ndarray
    names: np.ndarray
    validation: np.ndarray
    eyes: np.ndarray
    template: AlignTemplate
    skipped: int = 0

    def split(self, validation: bool) -> np.ndarray:
        """Indices of the training (``False``) or validation (``True``) photos."""
        return np.flatnonzero(self.validation == validation)

    def save(self, path: str | Path) -> Path:
        from ..atomic import atomic_write

        path = Path(path)
        with atomic_write(path) as tmp:
            with open(tmp, "wb") as f:
                np.savez(f, images=self.images, names=self.names, validation=self.validation, eyes=self.eyes,
                         template=np.array(json.dumps(self.template.to_dict())), skipped=np.array(self.skipped))
        return path

    @classmethod
    def load(cls, path: str | Path) -> "AlignedFaces":
        path = Path(path)
        if not path.is_file():
            raise InputError(f"aligned face set not found: {path} (make it with python -m spatial_latent.prepare_faces)")
        try:
            with np.load(path, allow_pickle=False) as z:
                return cls(z["images"], z["names"], z["validation"], z["eyes"], AlignTemplate.from_dict(json.loads(str(z["template"]))), int(z["skipped"]))
        except (KeyError, ValueError, OSError) as e:
            raise InputError(f"{path} is not an aligned face set ({e})") from None


def list_photos(root: Path) -> list[str]:
    """Image files under ``root`` (recursively), as sorted relative paths."""
    if not root.is_dir():
        raise InputError(f"not a folder of photos: {root}")
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file())


_WORKER: dict[str, Any] = {}


def _init_worker(template: dict[str, Any], size: int) -> None:
    import cv2

    cv2.setNumThreads(1)
    _WORKER.update(detector=FaceDetector("dlib"), template=get_template(template), size=size)


def _align_one(path: str) -> tuple[np.ndarray, np.ndarray] | None:
    from PIL import Image

    try:
        with Image.open(path) as im:
            photo = np.asarray(im.convert("RGB"))
    except Exception:  # unreadable photo: counted as skipped
        return None
    faces = _WORKER["detector"].detect(photo)
    if not faces:
        return None
    t = face_transform(faces[0], _WORKER["size"], photo.shape[:2], _WORKER["template"])
    eyes = t.to_aligned([faces[0].eye_left, faces[0].eye_right]).reshape(-1).astype(np.float32)
    return warp_aligned(photo, t), eyes


def prepare_aligned(
    root: str | Path,
    size: int = 64,
    template: AlignTemplate | str = "faces",
    workers: int = 2,
    limit: int | None = None,
    progress: Callable[[Iterator[Any], int], Iterator[Any]] | None = None,
) -> AlignedFaces:
    """Align every photo under ``root`` to ``template`` at ``size`` px (dlib landmarks).

    ``progress`` wraps the result iterator (e.g. ``lambda it, n: tqdm(it, total=n)``).
    """
    root = Path(root)
    tpl = get_template(template)
    names = list_photos(root)[:limit]
    if not names:
        raise InputError(f"no photos under {root}")
    images, kept, eyes = [], [], []
    paths = [str(root / n) for n in names]
    pool = None
    if workers > 1:
        # spawn, not fork: a forked child of a process with torch/OpenMP threads can deadlock
        pool = ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("spawn"),
                                   initializer=_init_worker, initargs=(tpl.to_dict(), size))
        results: Iterator[Any] = pool.map(_align_one, paths, chunksize=64)
    else:
        _init_worker(tpl.to_dict(), size)
        results = map(_align_one, paths)
    try:
        if progress is not None:
            results = progress(results, len(names))
        for name, r in zip(names, results):
            if r is None:
                continue
            images.append(r[0])
            eyes.append(r[1])
            kept.append(name)
    finally:
        if pool is not None:
            pool.shutdown()
    if not kept:
        raise InputError(f"no face found in any of the {len(names)} photos under {root}")
    return AlignedFaces(
        images=np.stack(images), names=np.array(kept), validation=np.array([is_validation(n) for n in kept]),
        eyes=np.stack(eyes), template=tpl, skipped=len(names) - len(kept),
    )
