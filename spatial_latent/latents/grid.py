"""``LatentGrid``: spatial latents ``[B, L, C, h, w]`` for a StyleGAN2 generator.

A grid has ``h x w`` cells; ``density`` cells span one native image side, so a grid renders an
image of ``h / density * R`` by ``w / density * R`` pixels for a generator of resolution R.

Spaces (see ``docs/SPACES.md``):

* ``'w'``  — one W-grid shared by every layer, ``L = 1``. Fewest numbers; the easiest to edit and
  to compose; what random latent fields are drawn in.
* ``'w+'`` — one grid per synthesis layer, ``L = num_ws``. The most expressive; what encoders
  invert into.

Grid density is a free choice (e.g. 4x4, 8x8 or 16x16 cells per 256 px image): coarser grids
are smoother, finer ones encode more detail. Coarse-to-fine parametrizations (fewer cells for
early layers) are built with :meth:`LatentGrid.from_layer_grids`.
"""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

import torch
import torch.nn.functional as F

from .._version import __version__
from ..atomic import atomic_write
from ..errors import InputError

if TYPE_CHECKING:
    from ..networks import Generator

SPACES = ("w", "w+")
LATENT_FORMAT = "spatial-latent-grid"
LATENT_FORMAT_VERSION = "1"


@dataclasses.dataclass
class LatentGrid:
    """Spatial latents ``data [B, L, C, h, w]`` in ``space`` with ``density`` cells per image side.

    ``meta`` carries free-form JSON-able information (generator fingerprint, settings ...);
    ``extras`` carries named tensors saved alongside (e.g. optimized noise maps).
    """

    data: torch.Tensor
    space: str = "w+"
    density: int = 1
    meta: dict[str, Any] = dataclasses.field(default_factory=dict)
    extras: dict[str, torch.Tensor] = dataclasses.field(default_factory=dict)

    def __post_init__(self) -> None:
        if not isinstance(self.data, torch.Tensor) or self.data.ndim != 5:
            shape = tuple(self.data.shape) if isinstance(self.data, torch.Tensor) else type(self.data).__name__
            raise InputError(f"LatentGrid data must be [B, L, C, h, w], got {shape}")
        if self.space not in SPACES:
            raise InputError(f"unknown latent space {self.space!r}; expected one of {SPACES}")
        if self.space == "w" and self.data.shape[1] != 1:
            raise InputError(f"a 'w' grid has L = 1 (shared by all layers), got L = {self.data.shape[1]}")
        if int(self.density) != self.density or self.density < 1:
            raise InputError(f"density must be a positive integer, got {self.density}")
        if min(self.data.shape) < 1:
            raise InputError(f"LatentGrid has an empty dimension: {tuple(self.data.shape)}")

    # -- shape -----------------------------------------------------------------------------------
    batch = property(lambda self: self.data.shape[0])
    num_layers = property(lambda self: self.data.shape[1])
    channels = property(lambda self: self.data.shape[2])
    cells = property(lambda self: (self.data.shape[3], self.data.shape[4]))

    def replace(self, data: torch.Tensor, **changes: Any) -> "LatentGrid":
        """A grid with new ``data`` and the same space, density, meta and extras (unless changed)."""
        kw = dict(space=self.space, density=self.density, meta=dict(self.meta), extras=dict(self.extras))
        kw.update(changes)
        return LatentGrid(data, **kw)

    def to(self, *args: Any, **kwargs: Any) -> "LatentGrid":
        return self.replace(self.data.to(*args, **kwargs), extras={k: v.to(*args, **kwargs) for k, v in self.extras.items()})

    def noise_maps(self) -> list[torch.Tensor] | None:
        """The per-layer noise maps stored with the grid (extras ``noise.0``, ``noise.1``, ...,
        as the encoders save their optimized maps: ``[B, 1, H_i, W_i]`` each, 4x4 layer first),
        ready for ``SpatialGenerator(G)(grid, noise=...)``; None when the grid has none."""
        keys = [k for k in self.extras if k.startswith("noise.")]
        if not keys:
            return None
        try:
            index = sorted(int(k.split(".", 1)[1]) for k in keys)
        except ValueError:
            raise InputError(f"bad noise map names in the grid's extras: {sorted(keys)}") from None
        if index != list(range(len(index))):
            raise InputError(f"noise maps must be numbered noise.0 .. noise.{len(index) - 1}, got {sorted(keys)}")
        return [self.extras[f"noise.{i}"] for i in index]

    def layer_data(self, num_ws: int) -> torch.Tensor:
        """Per-layer latents ``[B, num_ws, C, h, w]`` (a 'w' grid is broadcast, without copying)."""
        if self.space == "w":
            return self.data.expand(-1, num_ws, -1, -1, -1)
        if self.num_layers != num_ws:
            raise InputError(f"this w+ grid has {self.num_layers} layers, the generator needs {num_ws}")
        return self.data

    def to_space(self, space: str, num_ws: int | None = None) -> "LatentGrid":
        """Convert to another space: 'w' -> 'w+' broadcasts (needs ``num_ws``); 'w+' -> 'w' averages layers."""
        if space == self.space:
            return self
        if space == "w+":
            if num_ws is None:
                raise InputError("converting to 'w+' needs num_ws")
            return self.replace(self.layer_data(num_ws).clone(), space="w+")
        return self.replace(self.data.mean(dim=1, keepdim=True), space="w")

    # -- constructors ----------------------------------------------------------------------------
    @classmethod
    def from_w(cls, w: torch.Tensor, cells: tuple[int, int] = (1, 1), density: int = 1, space: str | None = None) -> "LatentGrid":
        """Broadcast ``w [B, C]`` (space 'w') or ``ws [B, L, C]`` (space 'w+') to ``cells``.

        With ``cells == (density, density)`` the grid renders exactly the ordinary image of ``w``.
        """
        if w.ndim == 2:
            w = w[:, None]
            space = space or "w"
        elif w.ndim == 3:
            space = space or "w+"
        else:
            raise InputError(f"w must be [B, C] or [B, L, C], got {tuple(w.shape)}")
        h, wc = _check_cells(cells)
        return cls(w[:, :, :, None, None].expand(-1, -1, -1, h, wc).contiguous(), space=space, density=density)

    @classmethod
    def from_z_grid(
        cls,
        G: Generator,
        z: torch.Tensor,
        c: torch.Tensor | None = None,
        truncation_psi: float = 1.0,
        density: int = 1,
    ) -> "LatentGrid":
        """Map a grid of z ``[B, z_dim, h, w]`` cell by cell through ``G.mapping`` -> a 'w' grid."""
        if z.ndim != 4 or z.shape[1] != G.z_dim:
            raise InputError(f"z grid must be [B, {G.z_dim}, h, w], got {tuple(z.shape)}")
        b, _, h, w = z.shape
        flat = z.permute(0, 2, 3, 1).reshape(b * h * w, G.z_dim)
        cc = c.repeat_interleave(h * w, dim=0) if c is not None else None
        ws = G.mapping(flat, cc, truncation_psi=truncation_psi)  # [B*h*w, C]
        data = ws.reshape(b, h, w, -1).permute(0, 3, 1, 2)[:, None]
        return cls(data.contiguous(), space="w", density=density)

    @classmethod
    def from_layout(cls, labels: torch.Tensor, latents: torch.Tensor, cells: tuple[int, int], density: int = 1) -> "LatentGrid":
        """Build a grid from an image-sized label map and one latent per label.

        ``labels``: int ``[B, H, W]`` (or ``[H, W]``) with values in ``[0, K)``; ``latents``:
        ``[K, C]`` (space 'w') or ``[K, L, C]`` ('w+'). Each cell takes the label that covers most
        of its area.
        """
        if labels.ndim == 2:
            labels = labels[None]
        if labels.ndim != 3 or labels.dtype not in (torch.int64, torch.int32, torch.uint8, torch.int16):
            raise InputError("labels must be an integer [B, H, W] or [H, W] tensor")
        lat = latents[:, None] if latents.ndim == 2 else latents
        k = lat.shape[0]
        if labels.min() < 0 or labels.max() >= k:
            raise InputError(f"labels must be in [0, {k}) for {k} latents")
        h, w = _check_cells(cells)
        onehot = F.one_hot(labels.long(), k).permute(0, 3, 1, 2).float()  # [B, K, H, W]
        votes = F.adaptive_avg_pool2d(onehot, (h, w))
        idx = votes.argmax(dim=1)  # [B, h, w]
        data = lat[idx].permute(0, 3, 4, 1, 2)  # [B, h, w, L, C] -> [B, L, C, h, w]
        return cls(data.contiguous(), space="w" if latents.ndim == 2 else "w+", density=density)

    @classmethod
    def from_layer_grids(cls, grids: Sequence[torch.Tensor], layers_per_grid: Sequence[int], cells: tuple[int, int], density: int = 1) -> "LatentGrid":
        """Coarse-to-fine W+ grid: ``grids[i]`` ``[B, C, h_i, w_i]`` drives ``layers_per_grid[i]``
        consecutive layers, upsampled (nearest) to ``cells``."""
        if len(grids) != len(layers_per_grid):
            raise InputError("one layer count per grid is needed")
        h, w = _check_cells(cells)
        rows = []
        for g, n in zip(grids, layers_per_grid):
            up = F.interpolate(g, size=(h, w), mode="nearest")
            rows.append(up[:, None].expand(-1, n, -1, -1, -1))
        return cls(torch.cat(rows, dim=1).contiguous(), space="w+", density=density)

    # -- editing ---------------------------------------------------------------------------------
    def crop(self, x0: int, y0: int, x1: int, y1: int) -> "LatentGrid":
        """The cells of the box ``(x0, y0, x1, y1)`` (end-exclusive: columns ``[x0, x1)``, rows
        ``[y0, y1)``) -> a grid ``[B, L, C, y1 - y0, x1 - x0]``."""
        h, w = self.cells
        if not (0 <= y0 < y1 <= h and 0 <= x0 < x1 <= w):
            raise InputError(f"crop box (x0={x0}, y0={y0}, x1={x1}, y1={y1}) is outside the {h}x{w} grid")
        return self.replace(self.data[..., y0:y1, x0:x1].clone())

    def paste(self, other: "LatentGrid", row: int, col: int) -> "LatentGrid":
        """Copy ``other``'s cells ``[B, L, C, h', w']`` into this grid with their top-left cell at
        ``(row, col)``; returns a grid of this grid's shape."""
        self._check_compatible(other)
        h, w = self.cells
        oh, ow = other.cells
        if not (0 <= row and 0 <= col and row + oh <= h and col + ow <= w):
            raise InputError(f"a {oh}x{ow} grid does not fit at cell ({row}, {col}) in a {h}x{w} grid")
        data = self.data.clone()
        data[..., row : row + oh, col : col + ow] = other.data.to(data)
        return self.replace(data)

    def blend(self, other: "LatentGrid", mask: torch.Tensor) -> "LatentGrid":
        """``mask * other + (1 - mask) * self`` per cell; ``mask`` ``[h, w]``, ``[B, h, w]`` or
        ``[B, L, 1, h, w]`` in ``[0, 1]`` (soft masks give smooth seams)."""
        self._check_compatible(other)
        if other.cells != self.cells:
            raise InputError(f"blend needs equal grid sizes, got {self.cells} and {other.cells}")
        m = mask.to(self.data)
        if m.ndim == 2:
            m = m[None, None, None]
        elif m.ndim == 3:
            m = m[:, None, None]
        if m.shape[-2:] != self.cells:
            raise InputError(f"mask of shape {tuple(mask.shape)} does not match the {self.cells} grid")
        return self.replace(torch.lerp(self.data, other.data.to(self.data), m))

    @staticmethod
    def concat(grids: Sequence["LatentGrid"], dim: str = "w") -> "LatentGrid":
        """Place grids side by side (``dim='w'``) or stacked (``dim='h'``)."""
        if not grids:
            raise InputError("nothing to concatenate")
        for g in grids[1:]:
            grids[0]._check_compatible(g)
        axis = {"h": 3, "w": 4}.get(dim)
        if axis is None:
            raise InputError("dim must be 'h' or 'w'")
        return grids[0].replace(torch.cat([g.data for g in grids], dim=axis))

    def tile(self, ny: int, nx: int) -> "LatentGrid":
        """Repeat the grid ``ny`` times vertically and ``nx`` times horizontally."""
        if ny < 1 or nx < 1:
            raise InputError("tile counts must be >= 1")
        return self.replace(self.data.repeat(1, 1, 1, ny, nx))

    def _check_compatible(self, other: "LatentGrid") -> None:
        if other.space != self.space or other.density != self.density or other.data.shape[:3] != self.data.shape[:3]:
            raise InputError(
                f"incompatible grids: {self.space}/{self.density}/{tuple(self.data.shape[:3])} vs "
                f"{other.space}/{other.density}/{tuple(other.data.shape[:3])}"
            )

    # -- checks ----------------------------------------------------------------------------------
    def check_for(self, num_ws: int, w_dim: int, finite: bool = True) -> None:
        """Raise :class:`InputError` unless this grid fits a generator with ``num_ws`` x ``w_dim``
        (and, with ``finite``, holds no NaN/inf: that check reads every value)."""
        if self.channels != w_dim:
            raise InputError(f"grid has {self.channels} channels, the generator's w_dim is {w_dim}")
        if self.space == "w+" and self.num_layers != num_ws:
            raise InputError(f"w+ grid has {self.num_layers} layers, the generator needs {num_ws}")
        if finite and not torch.isfinite(self.data).all():
            raise InputError("latent grid contains NaN or inf")

    # -- files -----------------------------------------------------------------------------------
    def save(self, path: str | os.PathLike) -> Path:
        """Write a ``.safetensors`` file (cannot run code) with the grid, extras and metadata; atomic.
        Metadata keys are sorted and the tensors' SHA-256 stored, so equal grids give equal bytes
        and :meth:`load` can tell a damaged file."""
        from ..io.safetensors_io import save_safetensors

        path = Path(path)
        tensors = {"grid": self.data.detach().to("cpu", torch.float32).contiguous()}
        for k, v in self.extras.items():
            tensors[f"extra.{k}"] = v.detach().cpu().contiguous()
        meta = {
            "format": LATENT_FORMAT,
            "format_version": LATENT_FORMAT_VERSION,
            "space": self.space,
            "density": str(self.density),
            "shape": json.dumps(list(self.data.shape)),
            "toolkit_version": __version__,
            "meta": json.dumps(self.meta, sort_keys=True, default=str),
        }
        with atomic_write(path) as tmp:
            save_safetensors(tmp, tensors, meta)
        return path

    @classmethod
    def load(cls, path: str | os.PathLike, device: str | torch.device = "cpu") -> "LatentGrid":
        """Read a file written by :meth:`save`; a clear :class:`InputError` for anything else
        (a file larger than :data:`~spatial_latent.limits.MAX_LATENT_BYTES`, ``meta`` JSON nested
        too deeply, tensors that do not match the SHA-256 the file stores)."""
        from safetensors import safe_open

        from ..io.safetensors_io import verify_tensors_sha256
        from ..limits import MAX_LATENT_BYTES, check_file_size, check_json_object, load_json

        path = Path(path)
        if not path.is_file():
            raise InputError(f"latent file not found: {path}")
        check_file_size(path, MAX_LATENT_BYTES, "latent file", InputError)
        try:
            with safe_open(str(path), framework="pt", device=str(device)) as f:
                meta = dict(f.metadata() or {})
                if meta.get("format") != LATENT_FORMAT:
                    raise InputError(f"{path} is not a spatial-latent grid file")
                if meta.get("format_version") != LATENT_FORMAT_VERSION:
                    raise InputError(f"{path}: latent format version {meta.get('format_version')!r} is not supported")
                data = f.get_tensor("grid")
                extras = {k[len("extra.") :]: f.get_tensor(k) for k in f.keys() if k.startswith("extra.")}
            verify_tensors_sha256({"grid": data, **{f"extra.{k}": v for k, v in extras.items()}}, meta, str(path), InputError)
            notes = check_json_object(load_json(meta.get("meta", "{}"), str(path), "latent meta", InputError), str(path), "latent meta", InputError)
            return cls(data, space=meta["space"], density=int(meta["density"]), meta=notes, extras=extras)
        except InputError:
            raise
        except Exception as e:
            raise InputError(f"{path}: corrupt or unreadable latent file ({type(e).__name__}: {e})") from None


def _check_cells(cells: tuple[int, int]) -> tuple[int, int]:
    try:
        h, w = (int(v) for v in cells)
    except (TypeError, ValueError):
        raise InputError(f"cells must be (h, w), got {cells!r}") from None
    if h < 1 or w < 1:
        raise InputError(f"cells must be positive, got {cells}")
    return h, w
