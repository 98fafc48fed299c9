"""Quality of the embedded `faces` model: SWD against held-out real faces, and a sample sheet.

    python bench/faces_model.py [--network faces] [--data faces64.npz] [--out bench/results/faces_model.json]

``--data`` is the aligned set the model was trained from (``python -m spatial_latent.prepare_faces
../shared/datasets/faces --out faces64.npz``); only its validation split (never trained on) is
used. Prints SWD x1e3 (ProGAN's sliced Wasserstein distance, mean over the Laplacian levels) of
generated faces against the real validation faces, next to SWD between two halves of the real
validation set at the same count: the bar is generated-to-real within 4x real-to-real. Writes
a sheet of 64 faces (truncation 1 and 0.7) into ``docs/img/``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import machine, print_table, write_json  # noqa: E402

from spatial_latent.checkpoints.loading import load_generator  # noqa: E402
from spatial_latent.faces.dataset import AlignedFaces  # noqa: E402
from spatial_latent.io.pictures import image_grid, save_picture, to_uint8  # noqa: E402
from spatial_latent.metrics.swd import sliced_wasserstein  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


@torch.no_grad()
def generate(G, count: int, seed: int, psi: float = 1.0, batch: int = 100) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    out = []
    for i in range(0, count, batch):
        z = torch.randn(min(batch, count - i), G.z_dim, generator=gen)
        out.append(G(z, truncation_psi=psi, noise_mode="const").clamp(-1, 1))
    return torch.cat(out)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--network", default="faces")
    p.add_argument("--data", type=Path, default=Path("/work/facedata/faces64.npz"))
    p.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "faces_model.json")
    p.add_argument("--sheet", type=Path, default=REPO / "docs" / "img" / "faces_samples.png")
    p.add_argument("--seeds", type=int, default=3, help="SWD estimates averaged (different descriptor seeds)")
    args = p.parse_args()
    G = load_generator(args.network)
    faces = AlignedFaces.load(args.data)
    val = faces.images[faces.split(True)]
    real = torch.from_numpy(val).permute(0, 3, 1, 2).float() / 127.5 - 1
    n = len(real)
    half = n // 2
    fake = generate(G, n, seed=1)
    rows = []
    for label, a, b in (
        (f"generated vs real ({n} each)", fake, real),
        (f"generated vs real half ({half} each)", fake[:half], real[:half]),
        (f"real half vs real half ({half} each)", real[half : 2 * half], real[:half]),
    ):
        vals = [float(sliced_wasserstein(a, b, seed=s)["mean"]) for s in range(args.seeds)]
        rows.append({"comparison": label, "SWD x1e3": float(np.mean(vals)), "spread": float(np.std(vals))})
    ratio = rows[1]["SWD x1e3"] / rows[2]["SWD x1e3"]
    rows.append({"comparison": "ratio generated / real-to-real (same count)", "SWD x1e3": ratio})
    print_table(rows, ["comparison", "SWD x1e3", "spread"])
    print(f"bar: ratio <= 4: {'met' if ratio <= 4 else 'NOT met'}")
    sheet = torch.cat([generate(G, 32, seed=7), generate(G, 32, seed=7, psi=0.7)])
    save_picture(image_grid(to_uint8(sheet), cols=8), args.sheet)
    write_json(args.out, {"machine": machine(), "network": args.network, "fingerprint": G.fingerprint(), "validation_faces": n, "rows": rows, "ratio": ratio})
    print(f"wrote {args.out} and {args.sheet}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
