"""The face input the face examples share: a photo or a generated face, encoded into a grid.

Copy this file along with the example you copy.
"""

from __future__ import annotations

import argparse

import numpy as np
import torch
from PIL import Image

from encoders import OptimizeConfig, encode
from spatial_latent import Generator, LatentGrid, align_face, read_image


def add_face_args(p: argparse.ArgumentParser, steps: int = 300) -> None:
    """The flags that choose the face and how it is encoded."""
    p.add_argument("--photo", default=None, help="face photo (default: a generated face, see --seed)")
    p.add_argument("--aligned", action="store_true", help="the photo is already an FFHQ-aligned crop")
    p.add_argument("--seed", type=int, default=0, help="seed of the generated face (default: 0)")
    p.add_argument("--steps", type=int, default=steps, help=f"encoding steps (default: {steps})")
    p.add_argument("--loss", default="mse", choices=["lpips+mse", "mse"], help="encoding loss (default: mse, offline; lpips+mse needs its backbone weights)")


def load_photo(path: str, size: int, aligned: bool = False, template: object = None) -> torch.Tensor:
    """A photo as a target ``[1, 3, size, size]`` in [-1, 1], aligned with ``template`` (the
    network's own, e.g. ``faces``; FFHQ's when None) unless it already is."""
    pixels = read_image(path).pixels
    face = np.asarray(Image.fromarray(pixels).resize((size, size), Image.LANCZOS)) if aligned else align_face(pixels, size, template=template or "ffhq")[0]
    return torch.tensor(face).permute(2, 0, 1)[None].float() / 127.5 - 1


def face_target(G: Generator, args: argparse.Namespace) -> torch.Tensor:
    """``--photo`` loaded, or the face of ``--seed`` (as ``python -m spatial_latent.generate``
    draws it, truncation 0.7): ``[1, 3, R, R]`` on G's device."""
    device = G.device
    if args.photo:
        return load_photo(args.photo, G.img_resolution, args.aligned, G.align_template).to(device)
    z = torch.from_numpy(np.random.RandomState(args.seed).randn(1, G.z_dim)).float()
    with torch.no_grad():
        return G(z.to(device), truncation_psi=0.7)


def encode_face(G: Generator, args: argparse.Namespace, density: int) -> LatentGrid:
    """The face of :func:`face_target` encoded into a grid ``[1, num_ws, w_dim, density, density]``.

    The network's stored noise maps are kept (not optimized), so the grid alone reproduces the
    face when rendered.
    """
    cfg = OptimizeConfig(steps=args.steps, space="grid", density=density, loss=args.loss, optimize_noise=False)
    return encode(G, face_target(G, args), cfg).grid.to(G.device)
