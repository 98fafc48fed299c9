"""Face alignment: landmark accuracy, re-alignment stability and throughput (dlib).

    python bench/align.py [--faces ../shared/datasets/faces] [--photos 200] [--out bench/results/align.json]

1. Eye centres on CelebA: CelebA's own alignment put both eyes at (nearly) fixed places in every
   ``img_align_celeba`` picture. The dlib eye centres (means of points 36-41 and 42-47) are
   compared with their median over the set: the spread is the landmark noise plus CelebA's own.
2. Re-alignment: each photo is rotated (up to 20 degrees), scaled (0.7-1.4) and shifted onto a
   larger grey canvas; aligning both must give the same crop. The error is the largest distance
   between the crop's corners (the original crop carried through the known transform vs the
   crop found in the moved photo), as a fraction of the crop's side.
3. Throughput: detection + landmarks + FFHQ warp, one thread, photos of 200 px and 1024 px.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import machine, print_table, write_json  # noqa: E402

from spatial_latent.faces.align import FaceDetector, align_face, face_transform  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


def read(path: Path) -> np.ndarray:
    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"))


def moved_photo(photo: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """The photo rotated, scaled and shifted onto a canvas 2x its size; returns it and the
    ``[2, 3]`` map from photo to canvas coordinates (continuous, x/y)."""
    h, w = photo.shape[:2]
    angle, scale = rng.uniform(-20, 20), rng.uniform(0.7, 1.4)
    H, W = 2 * h, 2 * w
    shift = rng.uniform(-0.15, 0.15, 2) * (W, H)
    a = math.radians(angle)
    rot = scale * np.array([[math.cos(a), -math.sin(a)], [math.sin(a), math.cos(a)]])
    centre_src, centre_dst = np.array([w / 2, h / 2]), np.array([W / 2, H / 2]) + shift
    m = np.concatenate([rot, (centre_dst - rot @ centre_src)[:, None]], axis=1)
    # OpenCV index coordinates: p_idx = p - 0.5 on both sides
    m_idx = m.copy()
    m_idx[:, 2] += rot @ np.array([0.5, 0.5]) - 0.5
    canvas = cv2.warpAffine(photo, m_idx, (W, H), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=(128, 128, 128))
    return canvas, m


def realign_error(det: FaceDetector, photo: np.ndarray, rng: np.random.Generator, size: int = 256) -> float | None:
    faces = det.detect(photo)
    if not faces:
        return None
    t0 = face_transform(faces[0], size, photo.shape[:2])
    canvas, m = moved_photo(photo, rng)
    moved = det.detect(canvas)
    if not moved:
        return None
    # the moved photo's best face must be the same face: the one nearest the carried eye centre
    target = m[:, :2] @ np.asarray(faces[0].eye_left) + m[:, 2]
    face = min(moved, key=lambda f: np.hypot(*(np.asarray(f.eye_left) - target)))
    t1 = face_transform(face, size, canvas.shape[:2])
    carried = t0.quad() @ m[:, :2].T + m[:, 2]
    side = np.hypot(*(carried[1] - carried[0]))
    return float(np.max(np.hypot(*(t1.quad() - carried).T)) / side)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--faces", type=Path, default=REPO.parent / "shared" / "datasets" / "faces")
    p.add_argument("--photos", type=int, default=200, help="photos per measurement (default 200)")
    p.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "align.json")
    args = p.parse_args()
    cv2.setNumThreads(1)
    det = FaceDetector("dlib")
    rng = np.random.default_rng(0)
    celeba = sorted((args.faces / "celeba").glob("*.jpg"))
    utk = sorted((args.faces / "utkface").glob("*.jpg"))
    if not celeba or not utk:
        print(f"error: face photos not found under {args.faces}", file=sys.stderr)
        return 2
    pick = lambda files: [files[i] for i in rng.choice(len(files), min(args.photos, len(files)), replace=False)]  # noqa: E731

    # 1. CelebA eye centres
    eyes, missed = [], 0
    for f in pick(celeba):
        faces = det.detect(read(f))
        if not faces:
            missed += 1
            continue
        eyes.append(np.r_[faces[0].eye_left, faces[0].eye_right])
    eyes = np.array(eyes)
    ref = np.median(eyes, axis=0)
    dist = np.concatenate([np.hypot(*(eyes[:, :2] - ref[:2]).T), np.hypot(*(eyes[:, 2:] - ref[2:]).T)])
    e2e = float(np.hypot(*(ref[2:] - ref[:2])))
    rows = [{
        "measure": "CelebA eye centre - fixed place", "photos": len(eyes), "no face": missed,
        "median px": float(np.median(dist)), "p95 px": float(np.percentile(dist, 95)),
        "p95 / eye distance": float(np.percentile(dist, 95) / e2e),
    }]
    print(f"CelebA (89x109): median eye places {ref.round(2).tolist()}, eye distance {e2e:.1f} px")

    # 2. Re-alignment after rotation, scale and shift
    results = {}
    for name, files in (("UTKFace", utk), ("CelebA x2", celeba)):
        errs, failed = [], 0
        for f in pick(files)[: args.photos // 2]:
            photo = read(f)
            if name.startswith("CelebA"):
                photo = cv2.resize(photo, (photo.shape[1] * 2, photo.shape[0] * 2), interpolation=cv2.INTER_CUBIC)
            e = realign_error(det, photo, rng)
            if e is None:
                failed += 1
            else:
                errs.append(e)
        errs = np.array(errs)
        results[name] = errs
        rows.append({"measure": f"re-alignment {name}", "photos": len(errs), "no face": failed,
                     "median % side": 100 * float(np.median(errs)), "p95 % side": 100 * float(np.percentile(errs, 95)),
                     "within 2%": float((errs <= 0.02).mean())})

    # 3. Throughput
    small = [read(f) for f in pick(utk)[:40]]
    big = [cv2.resize(x, (1024, 1024), interpolation=cv2.INTER_CUBIC) for x in small[:10]]
    speed = {}
    for label, photos, size in (("200 px photo -> 64 px", small, 64), ("1024 px photo -> 256 px", big, 256)):
        t = time.perf_counter()
        done = 0
        for x in photos:
            try:
                align_face(x, size, detector=det, template="faces" if size == 64 else "ffhq")
                done += 1
            except Exception:
                pass
        speed[label] = done / (time.perf_counter() - t)
        rows.append({"measure": f"throughput {label}", "photos": done, "faces/s (1 thread)": speed[label]})

    cols = ["measure", "photos", "no face", "median px", "p95 px", "p95 / eye distance", "median % side", "p95 % side", "within 2%", "faces/s (1 thread)"]
    print_table(rows, cols)
    write_json(args.out, {"machine": machine(), "rows": rows, "celeba_eye_reference": ref.tolist()})
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
