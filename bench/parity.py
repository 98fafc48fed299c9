"""Observed parity with the original reference code, for every fixture set and output.

    python bench/parity.py [--fixtures ../shared/fixtures/stylegan2] [--out bench/results/parity.json]

Prints the max abs difference of each output against the stored reference (W latents, images at
psi 1 and 0.7, const and no noise, synthesis from given ws, and a constant LatentGrid through
SpatialGenerator). The tests assert <= 1e-4 on images and <= 1e-5 on W; this records the values.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import machine, print_table, write_json  # noqa: E402

from spatial_latent.latents.grid import LatentGrid  # noqa: E402
from spatial_latent.checkpoints.loading import load_generator  # noqa: E402
from spatial_latent.render.generator import SpatialGenerator  # noqa: E402

SETS = {
    "rosinality_64": "checkpoint.pt",
    "rosinality_32_cm1": "checkpoint.pt",
    "nvidia_ada_64": "network-snapshot.pkl",
    "nvidia_ada_cond_32": "network-snapshot.pkl",
    "nvidia_tf_64": "network-tf.pkl",
}


@torch.no_grad()
def measure(d: Path, ckpt: str) -> dict[str, float]:
    G = load_generator(d / ckpt)
    L = lambda s: torch.from_numpy(np.load(d / f"{s}.npy"))  # noqa: E731
    c = L("c") if (d / "c.npy").exists() else None
    diff = lambda a, b: (a.double() - b.double()).abs().max().item()  # noqa: E731
    out = {"ws": diff(G.map(L("z"), c), L("ws")), "img_psi1": diff(G(L("z"), c), L("img_psi1"))}
    if (d / "mean_latent.npy").exists():  # rosinality truncates toward its stored mean latent
        G.mapping.w_avg.copy_(L("mean_latent")[0])
    out["ws_psi07"] = diff(G.map(L("z"), c, truncation_psi=0.7), L("ws_psi07"))
    out["img_psi07"] = diff(G(L("z"), c, truncation_psi=0.7), L("img_psi07"))
    if (d / "img_nonoise.npy").exists():
        out["img_nonoise"] = diff(G(L("z"), c, noise_mode="none"), L("img_nonoise"))
    out["img_from_ws"] = diff(G.synthesis(L("ws")), L("img_from_ws"))
    out["img_from_ws_mixed"] = diff(G.synthesis(L("ws_mixed")), L("img_from_ws_mixed"))
    grid = LatentGrid.from_w(L("ws_mixed"), cells=(4, 4), density=4)
    out["spatial_const_grid"] = diff(SpatialGenerator(G)(grid), L("img_from_ws_mixed"))
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--fixtures", type=Path, default=Path(__file__).resolve().parents[2] / "shared/fixtures/stylegan2")
    p.add_argument("--out", default="bench/results/parity.json")
    args = p.parse_args()
    if not args.fixtures.is_dir():
        raise SystemExit(f"fixtures not found at {args.fixtures}")
    rows = []
    for name, ckpt in SETS.items():
        rows.append({"set": name, **measure(args.fixtures / name, ckpt)})
    cols = ["set", "ws", "ws_psi07", "img_psi1", "img_psi07", "img_nonoise", "img_from_ws", "img_from_ws_mixed", "spatial_const_grid"]
    print_table(rows, cols)
    worst_img = max(v for r in rows for k, v in r.items() if k.startswith(("img", "spatial")))
    worst_ws = max(v for r in rows for k, v in r.items() if k.startswith("ws"))
    print(f"worst image difference {worst_img:.3g} (bar 1e-4); worst W difference {worst_ws:.3g} (bar 1e-5)")
    print(f"wrote {write_json(args.out, {'benchmark': 'parity', 'machine': machine(), 'rows': rows})}")


if __name__ == "__main__":
    main()
