"""Unsupervised directions: per-location PCA of latent grids (GANSpace-like) and SeFa.

* :func:`pca_directions`: the principal axes of the latents at every cell (per layer group), with
  signs aligned to the axes of all cells pooled so that one strength means the same thing
  everywhere. Each is scaled to one standard deviation along it.
* :func:`sefa_directions`: closed form (Shen & Zhou's SeFa): the latent directions that the
  style affine maps of the chosen layers amplify most are the top eigenvectors of
  ``A^T A``, ``A`` the stacked affine weights (with their run-time weight gain). One step for
  every cell (a global direction).
"""

from __future__ import annotations

import time
from typing import Any, Sequence

import torch

from spatial_latent.errors import InputError
from spatial_latent.latents.grid import LatentGrid
from spatial_latent.networks import Generator

from .direction import Direction, grid_fingerprint


def pca_directions(
    grids: LatentGrid,
    num_components: int = 5,
    per_location: bool = True,
    layer_groups: Sequence[tuple[int, int]] | None = None,
    prefix: str = "pca",
) -> list[Direction]:
    """Principal directions of ``grids [N, L, C, h, w]``, one :class:`Direction` per component.

    Per location, component ``k`` at cell ``(i, j)`` is the ``k``-th eigenvector of the covariance
    of ``grids[:, g0:g1, :, i, j]`` over the batch (one per layer group); ``held_out`` holds its
    explained-variance ratio there (metric ``'explained_variance'``). Not per location: all cells
    pooled, one global step.
    """
    from .supervised import _check_groups

    t0 = time.perf_counter()
    x = grids.data.detach().to("cpu", torch.float64)
    n, L, C, h, w = x.shape
    groups = _check_groups(layer_groups, L)
    size = max((g1 - g0) * C for g0, g1 in groups)
    if num_components < 1 or num_components > size:
        raise InputError(f"num_components must be in [1, {size}], got {num_components}")
    out_cells = (h, w) if per_location else (1, 1)
    vecs = torch.zeros(num_components, L, C, *out_cells, dtype=torch.float64)
    ratio = torch.zeros(num_components, len(groups), *out_cells, dtype=torch.float64)
    for gi, (g0, g1) in enumerate(groups):
        d = (g1 - g0) * C
        feats = x[:, g0:g1].permute(3, 4, 0, 1, 2).reshape(h * w, n, d)  # [cells, N, D]
        pooled = feats.reshape(1, h * w * n, d)
        ref_val, ref_vec = _principal(pooled, num_components)  # [1, K], [1, D, K]
        if not per_location:
            val, vec = ref_val, ref_vec
        else:
            if n < 2:
                raise InputError("per-location PCA needs at least 2 grids")
            val, vec = _principal(feats, num_components)
            # Eigenvectors have no sign; agree with the pooled axes so that +1 means one thing everywhere.
            sign = torch.sign((vec * ref_vec).sum(dim=1, keepdim=True))
            vec = vec * torch.where(sign == 0, torch.ones_like(sign), sign)
        total = (feats if per_location else pooled).var(dim=1).sum(dim=-1, keepdim=True)  # [cells, 1]
        std = val.clamp_min(0).sqrt()  # [cells, K]
        step = vec * std[:, None, :]  # [cells, D, K]
        step = step.permute(2, 1, 0).reshape(num_components, g1 - g0, C, *out_cells)
        vecs[:, g0:g1] = step
        ratio[:, gi] = (val / total.clamp_min(1e-30)).T.reshape(num_components, *out_cells)
    meta: dict[str, Any] = {
        "method": "pca",
        "fitted": "unsupervised",
        "per_location": per_location,
        "num_samples": n,
        "fit_seconds": round(time.perf_counter() - t0, 3),
    }
    if grid_fingerprint(grids.meta):
        meta["generator"] = grid_fingerprint(grids.meta)
    return [
        Direction(
            name=f"{prefix}{k}",
            vectors=vecs[k].float(),
            space=grids.space,
            density=grids.density,
            layer_groups=groups if L > 1 else None,
            held_out=ratio[k].float(),
            metric="explained_variance",
            meta=dict(meta, component=k),
        )
        for k in range(num_components)
    ]


def _principal(feats: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Top-``k`` eigenpairs of the covariance of ``feats [B, N, D]``: ``([B, k], [B, D, k])``, descending."""
    centered = feats - feats.mean(dim=1, keepdim=True)
    cov = centered.transpose(1, 2) @ centered / max(feats.shape[1] - 1, 1)
    val, vec = torch.linalg.eigh(cov)  # ascending
    return val.flip(-1)[:, :k], vec.flip(-1)[:, :, :k]


def modulated_layers(G: Generator) -> list[tuple[int, str, torch.nn.Module]]:
    """``(ws row, name, layer)`` of every style-modulated layer of ``G.synthesis``, in order
    (a toRGB shares its row with the next block's first conv)."""
    out = []
    row = 0
    for block in G.synthesis.blocks():
        r = block.resolution
        if block.in_channels:
            out.append((row, f"b{r}.conv0", block.conv0))
            out.append((row + 1, f"b{r}.conv1", block.conv1))
        else:
            out.append((row, f"b{r}.conv1", block.conv1))
        if block.num_torgb:
            out.append((row + block.num_conv, f"b{r}.torgb", block.torgb))
        row += block.num_conv
    return out


def sefa_matrix(G: Generator, layers: Sequence[int] | None = None, include_torgb: bool = False) -> torch.Tensor:
    """The stacked style-affine weights ``A [sum of outputs, w_dim]`` (weight gain applied) of
    the modulated layers whose ws row is in ``layers`` (default: every row)."""
    mods = modulated_layers(G)
    rows = sorted({r for r, _, _ in mods})
    if layers is not None:
        bad = [v for v in layers if v not in rows]
        if bad:
            raise InputError(f"layers {bad} do not exist; this generator has ws rows 0..{rows[-1]}")
    chosen = [
        m.affine.weight.detach().to("cpu", torch.float64) * m.affine.weight_gain
        for r, name, m in mods
        if (layers is None or r in layers) and (include_torgb or not name.endswith("torgb"))
    ]
    if not chosen:
        raise InputError("no modulated layer selected (toRGB layers are left out unless include_torgb)")
    return torch.cat(chosen)


@torch.no_grad()
def sefa_directions(
    G: Generator,
    num_components: int = 5,
    layers: Sequence[int] | None = None,
    include_torgb: bool = False,
    scale_samples: int = 2000,
    seed: int = 0,
    prefix: str = "sefa",
) -> list[Direction]:
    """SeFa directions of ``G``: top eigenvectors of ``A^T A`` (see :func:`sefa_matrix`).

    ``layers=None``: every layer, space 'w' (one step for all layers). With ``layers`` the step is
    confined to those ws rows (space 'w+'). Signs are fixed so that the largest entry is positive.
    Each is scaled to the standard deviation of ``scale_samples`` mapped latents along it (unit
    length with ``scale_samples=0``). Global directions (``[L, C, 1, 1]``).
    """
    t0 = time.perf_counter()
    a = sefa_matrix(G, layers, include_torgb)
    if not 1 <= num_components <= G.w_dim:
        raise InputError(f"num_components must be in [1, {G.w_dim}], got {num_components}")
    val, vec = torch.linalg.eigh(a.T @ a)
    val, vec = val.flip(0)[:num_components], vec.flip(1)[:, :num_components].T  # [K], [K, C]
    big = vec.abs().argmax(dim=1)
    vec = vec * torch.sign(vec.gather(1, big[:, None]))
    if scale_samples > 0:
        gen = torch.Generator().manual_seed(seed)
        z = torch.randn(scale_samples, G.z_dim, generator=gen).to(G.device)
        c = None
        if G.c_dim:
            c = torch.nn.functional.one_hot(torch.randint(G.c_dim, (scale_samples,), generator=gen), G.c_dim).float().to(z.device)
        ws = G.mapping(z, c).to("cpu", torch.float64)  # [N, C]
        std = (ws @ vec.T).std(dim=0)
    else:
        std = torch.ones(num_components, dtype=torch.float64)
    fingerprint = G.fingerprint()
    out = []
    for k in range(num_components):
        step = vec[k] * std[k]
        if layers is None:
            vectors, space = step[None, :, None, None], "w"
        else:
            vectors = torch.zeros(G.num_ws, G.w_dim, 1, 1, dtype=torch.float64)
            vectors[list(layers), :, 0, 0] = step
            space = "w+"
        meta = {
            "method": "sefa",
            "fitted": "unsupervised",
            "component": k,
            "eigenvalue": float(val[k]),
            "layers": list(layers) if layers is not None else "all",
            "include_torgb": include_torgb,
            "generator": fingerprint,
            "fit_seconds": round(time.perf_counter() - t0, 3),
        }
        out.append(Direction(name=f"{prefix}{k}", vectors=vectors.float(), space=space, density=1, meta=meta))
    return out
