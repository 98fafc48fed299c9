"""Style resampling: a cell map of styles onto each layer's pixel grid.

A latent grid has ``density`` cells per native image side; a layer at resolution ``res`` has
``res`` pixels there. Pixels finer than cells take the nearest cell or interpolate bilinearly
between cell centres; pixels coarser than cells average the cells they cover. Every weight is a
function of *global* pixel coordinates only, so windows and tiles of one canvas stay consistent.

The render samples with small dense weight matrices instead of gathers: a style map is
``A_y @ cells @ A_x^T`` (:func:`axis_weights`, :func:`resample_cells`; two batched matmuls, each
about one pass over the output), and the per-pixel demodulation sum is the same product with
"pair" weights applied to :func:`pair_products`. :func:`sample_cells` is the direct gather, the
reference the matrices are tested against.
"""

from __future__ import annotations

import torch

from ..errors import InputError
from ..latents.window import Span, Window

RESAMPLE_MODES = ("nearest", "bilinear")


def sample_cells(
    cells: torch.Tensor,
    density: int,
    res: int,
    window: Window,
    mode: str = "bilinear",
    origin: tuple[int, int] = (0, 0),
    strict: bool = False,
) -> torch.Tensor:
    """Resample a cell map onto a layer's pixel window.

    ``cells``: ``[B, C, h, w]``, cell ``(i, j)`` at global cell ``(origin[0] + i, origin[1] + j)``;
    one native image side holds ``density`` cells and ``res`` pixels. Returns ``[B, C, *window.size]``.
    Pixels finer than cells use ``mode`` (nearest, or bilinear between cell centres); pixels
    coarser than cells average the cells they cover. Indices outside the array are clamped (a
    finite grid's edge cells repeat); with ``strict`` they are an error instead (a patch cut from
    an unbounded field must cover everything it is sampled at).
    Each output pixel depends only on its global coordinates, never on the window.
    """
    x = _sample_axis(cells, 3, density, res, (window.x0, window.x1), mode, origin[1], strict)
    return _sample_axis(x, 2, density, res, (window.y0, window.y1), mode, origin[0], strict)


def _sample_axis(t: torch.Tensor, dim: int, density: int, res: int, span: Span, mode: str, origin: int, strict: bool) -> torch.Tensor:
    n = t.shape[dim]
    dev = t.device
    p = torch.arange(span[0], span[1], device=dev, dtype=torch.float64)

    def take(idx: torch.Tensor) -> torch.Tensor:
        idx = idx - origin
        if strict and (idx.min() < 0 or idx.max() >= n):
            raise AssertionError(f"latent patch of {n} cells from {origin} does not cover cells {idx.min().item() + origin}..{idx.max().item() + origin}")
        return t.index_select(dim, idx.clamp(0, n - 1))

    if res < density:  # each pixel covers k whole cells
        k = density // res
        if k * res != density:
            raise InputError(f"grid density {density} is not a multiple of layer resolution {res}")
        first = torch.arange(span[0], span[1], device=dev, dtype=torch.int64) * k
        acc = take(first)
        for j in range(1, k):
            acc = acc + take(first + j)
        return acc / k
    u = (p + 0.5) * density / res  # position in cell units
    if mode == "nearest":
        return take(torch.floor(u).to(torch.int64))
    u = u - 0.5
    i0 = torch.floor(u)
    frac = (u - i0).to(t.dtype)
    i0 = i0.to(torch.int64)
    shape = [1] * t.ndim
    shape[dim] = -1
    return torch.lerp(take(i0), take(i0 + 1), frac.reshape(shape))


def _axis_taps(density: int, res: int, pix: torch.Tensor, mode: str, origin: torch.Tensor, n: int, strict: bool) -> tuple[torch.Tensor, torch.Tensor, bool]:
    """Cell taps of pixels ``pix`` (int64 global pixel coordinates at resolution ``res``,
    ``[P, len]``, one row per patch) along one axis of patches of ``n`` cells starting at global
    cells ``origin`` (int64 ``[P]``).

    Returns ``(idx [P, len, k] int64, w [P, len, k] float64, coarse)``: for pixels finer than
    cells ``k = 2`` (bilinear between cell centres) or ``k = 1`` (nearest); for pixels coarser
    than cells ``k = density // res`` taps of weight ``1/k``. Indices are local to each patch and
    clamped to it (edge cells repeat) or, with ``strict``, checked.
    """
    dev = pix.device

    def local(idx: torch.Tensor) -> torch.Tensor:
        idx = idx - origin.view(-1, *[1] * (idx.ndim - 1))
        if strict and (idx.min() < 0 or idx.max() >= n):
            lo, hi = (idx + origin.view(-1, *[1] * (idx.ndim - 1))).aminmax()
            raise AssertionError(f"latent patch of {n} cells from {origin.tolist()} does not cover cells {lo.item()}..{hi.item()}")
        return idx.clamp(0, n - 1)

    if res < density:
        k = density // res
        if k * res != density:
            raise InputError(f"grid density {density} is not a multiple of layer resolution {res}")
        idx = local(pix[..., None] * k + torch.arange(k, device=dev))
        return idx, torch.full(idx.shape, 1.0 / k, dtype=torch.float64, device=dev), True
    u = (pix.to(torch.float64) + 0.5) * density / res  # position in cell units
    if mode == "nearest":
        idx = local(torch.floor(u).to(torch.int64))[..., None]
        return idx, torch.ones(idx.shape, dtype=torch.float64, device=dev), False
    u = u - 0.5
    i0 = torch.floor(u)
    frac = u - i0
    i0 = i0.to(torch.int64)
    return torch.stack([local(i0), local(i0 + 1)], dim=-1), torch.stack([1 - frac, frac], dim=-1), False


def axis_weights(
    density: int,
    res: int,
    pix: torch.Tensor,
    mode: str,
    origin: torch.Tensor,
    n: int,
    strict: bool = False,
    pairs: bool = False,
) -> torch.Tensor | None:
    """Dense resampling weights of one axis for pixels ``pix [P, len]`` of patches whose cell 0
    is global cell ``origin [P]``: ``[P, len, n]`` (linear: ``styles = A_y @ cells @ A_x^T``) or,
    with ``pairs``, ``[P, len, 2n - 1]`` over the cell pairs ``(i, i)`` (column ``2i``) and
    ``(i, i+1)`` (column ``2i + 1``): the weights of the *squared* styles (see
    :func:`pair_products`); None with ``pairs`` for layers coarser than the grid."""
    idx, w, coarse = _axis_taps(density, res, pix, mode, origin, n, strict)
    p, length = pix.shape
    if not pairs:
        out = torch.zeros(p, length, n, dtype=torch.float64, device=pix.device)
        return out.scatter_add_(2, idx, w).to(torch.float32)
    if coarse:
        return None
    out = torch.zeros(p, length, 2 * n - 1, dtype=torch.float64, device=pix.device)
    if idx.shape[-1] == 1:  # nearest: one cell, squared weight 1
        return out.scatter_(2, 2 * idx, 1.0).to(torch.float32)
    i0, i1 = idx[..., 0], idx[..., 1]
    a0, a1 = w[..., 0], w[..., 1]
    cols = torch.stack([2 * i0, 2 * i0 + 1, 2 * i0 + 2], dim=-1).clamp(max=2 * n - 2)
    sq = torch.stack([a0 * a0, 2 * a0 * a1, a1 * a1], dim=-1)
    edge = torch.tensor([1.0, 0.0, 0.0], dtype=torch.float64, device=pix.device)
    sq = torch.where((i0 == i1)[..., None], edge, sq)  # clamped at an edge: one cell, weight 1
    return out.scatter_add_(2, cols, sq).to(torch.float32)


def resample_cells(cells: torch.Tensor, ay: torch.Tensor, ax: torch.Tensor) -> torch.Tensor:
    """``cells [P*B, C, h, w]``, per-patch weights ``ay [P, H, h]``, ``ax [P, W, w]`` ->
    ``[P*B, C, H, W]`` = ``ay @ cells @ ax^T`` for each patch's samples.

    Arranged as two large matrix products per patch (rows = every sample, channel and row),
    never as many tiny ones: first along y at cell width, then a small transpose, then along x
    straight into the output layout."""
    p = ay.shape[0]
    pb, c, h, w = cells.shape
    H, W = ay.shape[1], ax.shape[1]
    t = cells.reshape(p, -1, h, w).transpose(-1, -2).reshape(p, -1, h)  # [P, M*w, h]
    u = torch.matmul(t, ay.transpose(1, 2))  # [P, M*w, H]
    u = u.view(p, -1, w, H).transpose(-1, -2).reshape(p, -1, w)  # [P, M*H, w]
    return torch.matmul(u, ax.transpose(1, 2)).view(pb, c, H, W)


def pair_products(s: torch.Tensor) -> torch.Tensor:
    """Products of neighbouring cell styles: ``s [N, I, h, w] -> [N, I, 2h-1, 2w-1]``.

    With bilinear (or nearest) weights ``a`` a pixel's style is ``sum_c a_c s_c`` over at most
    2x2 neighbouring cells, so its square is ``sum_{c,c'} a_c a_c' s_c s_c'``: a fixed quadratic
    form. Entry ``(2i + di, 2j + dj)`` holds the (symmetrised) product for the row pair
    ``(i, i + di)`` and column pair ``(j, j + dj)``; resampling it with the separable pair weights
    of :func:`axis_weights` gives the squared style map exactly, without forming it per pixel.
    """
    n, c, h, w = s.shape
    out = s.new_zeros(n, c, 2 * h - 1, 2 * w - 1)
    out[..., 0::2, 0::2] = s * s
    if w > 1:
        out[..., 0::2, 1::2] = s[..., :, :-1] * s[..., :, 1:]
    if h > 1:
        out[..., 1::2, 0::2] = s[..., :-1, :] * s[..., 1:, :]
    if h > 1 and w > 1:
        out[..., 1::2, 1::2] = 0.5 * (s[..., :-1, :-1] * s[..., 1:, 1:] + s[..., :-1, 1:] * s[..., 1:, :-1])
    return out
