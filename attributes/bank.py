"""Direction banks: named edit directions saved for one generator, applied to grids later.

File format (``.npz``, read by a restricted reader that checks every declared size against the
file before allocating and refuses object arrays, so it cannot run code or unpack a zip bomb):

* ``__bank__``: a 0-d unicode array holding JSON: ``format`` (``"spatial-latent-direction-bank"``),
  ``format_version``, ``generator`` (``Generator.fingerprint()``, or null), ``space``, ``w_dim``,
  ``num_ws``, ``toolkit_version``, and ``directions``: a list of ``{name, key, space, density,
  cells, layer_groups, metric, meta}``;
* ``<key>.vectors``: float32 ``[L, C, h, w]`` per direction; ``<key>.held_out``: float32
  ``[G, h, w]`` where the direction has held-out scores.

Every bank belongs to one generator fingerprint and one channel count; applying a direction to a
grid checks space, layers and cells (see :meth:`Direction.check_grid`).
"""

from __future__ import annotations

import json
import math
import os
import zipfile
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator

import numpy as np
import torch

from spatial_latent._version import __version__
from spatial_latent.atomic import atomic_write
from spatial_latent.errors import InputError
from spatial_latent.limits import MAX_BANK_BYTES, check_file_size, check_zip_sizes, load_json
from spatial_latent.latents.grid import LatentGrid
from spatial_latent.latents.masks import check_box

from .direction import Direction, grid_fingerprint

if TYPE_CHECKING:
    from spatial_latent.networks import Generator

# Banks fitted here for the embedded generators, shipped beside their cards in weights/.
EMBEDDED_BANKS = {"faces": Path(__file__).parent / "weights" / "faces_directions.npz"}

BANK_FORMAT = "spatial-latent-direction-bank"
BANK_FORMAT_VERSION = "1"
META_KEY = "__bank__"


class DirectionBank:
    """An ordered collection of :class:`Direction` by name, for one generator.

    ``generator``: the generator fingerprint (``Generator.fingerprint()``) or None when unknown;
    ``w_dim`` and ``num_ws`` fix the latent shape every direction must have.
    """

    def __init__(self, generator: str | None, w_dim: int, num_ws: int, meta: dict[str, Any] | None = None) -> None:
        self.generator = generator
        self.w_dim, self.num_ws = int(w_dim), int(num_ws)
        self.meta = dict(meta or {})
        self._directions: dict[str, Direction] = {}

    @classmethod
    def for_generator(cls, G: Generator, meta: dict[str, Any] | None = None) -> "DirectionBank":
        """An empty bank for generator ``G``."""
        return cls(G.fingerprint(), G.w_dim, G.num_ws, meta)

    # -- contents ----------------------------------------------------------------------------------
    def add(self, direction: Direction, replace: bool = False) -> None:
        """Add ``direction``; its shape must fit this bank's generator, its name must be new
        (unless ``replace``)."""
        if direction.channels != self.w_dim:
            raise InputError(f"direction {direction.name!r} has {direction.channels} channels, the bank's generator has w_dim {self.w_dim}")
        if direction.space == "w+" and direction.num_layers != self.num_ws:
            raise InputError(f"direction {direction.name!r} has {direction.num_layers} layers, the bank's generator has {self.num_ws}")
        fp = direction.meta.get("generator")
        if fp and self.generator and fp != self.generator:
            raise InputError(f"direction {direction.name!r} was fitted for generator {fp}, this bank is for {self.generator}")
        if direction.name in self._directions and not replace:
            raise InputError(f"the bank already has a direction named {direction.name!r}")
        self._directions[direction.name] = direction

    def __getitem__(self, name: str) -> Direction:
        if name not in self._directions:
            known = ", ".join(self._directions) or "none"
            raise InputError(f"unknown attribute {name!r}; this bank has: {known}")
        return self._directions[name]

    def __contains__(self, name: object) -> bool:
        return name in self._directions

    def __iter__(self) -> Iterator[Direction]:
        return iter(self._directions.values())

    def __len__(self) -> int:
        return len(self._directions)

    @property
    def names(self) -> list[str]:
        return list(self._directions)

    # -- checks ------------------------------------------------------------------------------------
    def check_generator(self, fingerprint: str | None) -> None:
        """Raise :class:`InputError` when ``fingerprint`` (a generator's) differs from the bank's."""
        if fingerprint and self.generator and fingerprint != self.generator:
            raise InputError(
                f"this bank was made for generator {self.generator}, not {fingerprint}: "
                "directions of one generator mean nothing in another"
            )

    def check_grid(self, grid: LatentGrid, name: str | None = None) -> None:
        """Raise :class:`InputError` unless ``grid`` (and the generator fingerprint its meta
        records, if any) fits the bank, and direction ``name`` (if given) fits the grid."""
        if grid.channels != self.w_dim:
            raise InputError(f"the grid has {grid.channels} channels, this bank's generator has w_dim {self.w_dim}")
        if grid.space == "w+" and grid.num_layers != self.num_ws:
            raise InputError(f"the grid has {grid.num_layers} layers, this bank's generator has {self.num_ws}")
        self.check_generator(grid_fingerprint(grid.meta))
        if name is not None:
            self[name].check_grid(grid)

    # -- files -------------------------------------------------------------------------------------
    def save(self, path: str | os.PathLike) -> Path:
        """Write the bank as ``.npz`` (see the module docstring); atomic."""
        path = Path(path)
        arrays: dict[str, np.ndarray] = {}
        entries = []
        for i, d in enumerate(self._directions.values()):
            key = f"d{i}"
            arrays[f"{key}.vectors"] = d.vectors.detach().to("cpu", torch.float32).contiguous().numpy()
            if d.held_out is not None:
                arrays[f"{key}.held_out"] = d.held_out.detach().to("cpu", torch.float32).contiguous().numpy()
            entries.append(
                dict(
                    name=d.name,
                    key=key,
                    space=d.space,
                    density=d.density,
                    cells=list(d.cells),
                    layer_groups=[list(g) for g in d.layer_groups] if d.layer_groups else None,
                    metric=d.metric,
                    meta=d.meta,
                )
            )
        header = dict(
            format=BANK_FORMAT,
            format_version=BANK_FORMAT_VERSION,
            generator=self.generator,
            w_dim=self.w_dim,
            num_ws=self.num_ws,
            toolkit_version=__version__,
            meta=self.meta,
            directions=entries,
        )
        arrays[META_KEY] = np.array(json.dumps(header, sort_keys=True, default=_json_default))
        with atomic_write(path) as tmp:
            with open(tmp, "wb") as f:  # a file object: numpy would append '.npz' to a name
                np.savez(f, **arrays)
        return path

    @classmethod
    def load(cls, path: str | os.PathLike) -> "DirectionBank":
        """Read a bank written by :meth:`save` (or, by name, an embedded one: ``faces``);
        :class:`InputError` for anything else, including files with pickled objects (refused:
        unpickling can run code)."""
        path = Path(path)
        if str(path) in EMBEDDED_BANKS and not path.exists():
            path = EMBEDDED_BANKS[str(path)]
        if not path.is_file():
            raise InputError(f"direction bank not found: {path}")
        if not zipfile.is_zipfile(path):
            raise InputError(f"{path} is not a direction bank (.npz archive)")
        arrays = _read_npz(path)
        if META_KEY not in arrays:
            raise InputError(f"{path} is an .npz archive but not a direction bank (no {META_KEY})")
        return cls._from_arrays(path, arrays)

    @classmethod
    def _from_arrays(cls, path: Path, arrays: dict[str, np.ndarray]) -> "DirectionBank":
        raw = arrays[META_KEY]
        if raw.dtype.kind != "U" or raw.ndim != 0:
            raise InputError(f"{path}: bank header is not a text record")
        header = load_json(str(raw), str(path), "bank header", InputError)
        if not isinstance(header, dict) or header.get("format") != BANK_FORMAT:
            raise InputError(f"{path} is not a spatial-latent direction bank")
        if header.get("format_version") != BANK_FORMAT_VERSION:
            raise InputError(f"{path}: bank format version {header.get('format_version')!r} is not supported")
        try:
            bank = cls(header.get("generator"), header["w_dim"], header["num_ws"], header.get("meta") or {})
            for e in header["directions"]:
                vec = arrays.get(f"{e['key']}.vectors")
                if vec is None or vec.dtype != np.float32 or vec.ndim != 4:
                    raise InputError(f"{path}: direction {e['name']!r} has no float32 [L, C, h, w] vectors")
                held = arrays.get(f"{e['key']}.held_out")
                if held is not None and held.dtype != np.float32:
                    raise InputError(f"{path}: direction {e['name']!r} has non-float held-out scores")
                if list(vec.shape[2:]) != list(e["cells"]):
                    raise InputError(f"{path}: direction {e['name']!r}: vectors do not match its recorded cells")
                d = Direction(
                    name=e["name"],
                    vectors=torch.from_numpy(vec.copy()),
                    space=e["space"],
                    density=int(e["density"]),
                    layer_groups=[tuple(g) for g in e["layer_groups"]] if e.get("layer_groups") else None,
                    held_out=torch.from_numpy(held.copy()) if held is not None else None,
                    metric=e.get("metric", ""),
                    meta=e.get("meta") or {},
                )
                _check_edit_defaults(d, path)
                bank.add(d)
        except (KeyError, TypeError, ValueError, AttributeError, IndexError) as e:
            raise InputError(f"{path}: malformed direction bank ({type(e).__name__}: {str(e)[:200]})") from None
        return bank

    def summary(self) -> str:
        """Several lines describing the bank (for ``--list``)."""
        head = f"direction bank for generator {self.generator or '?'} (w_dim {self.w_dim}, num_ws {self.num_ws}), {len(self)} directions"
        return "\n".join([head, *("  " + d.summary() for d in self)])


def _check_edit_defaults(d: Direction, path: Path) -> None:
    """The default region (4 finite numbers, ``x0 < x1``, ``y0 < y1``) and strength (a finite
    number) a direction may record for ``python -m spatial_latent.edit``."""
    region, strength = d.meta.get("region"), d.meta.get("default_strength")
    if region is not None:
        try:
            check_box(region)
        except ValueError as e:
            raise InputError(f"{path}: direction {d.name!r} records a bad default region {str(region)[:80]} ({e})") from None
    if strength is not None and (not isinstance(strength, (int, float)) or isinstance(strength, bool) or not math.isfinite(strength)):
        raise InputError(f"{path}: direction {d.name!r} records a bad default strength {str(strength)[:80]}")


def _read_npz(path: Path) -> dict[str, np.ndarray]:
    """Every array of the ``.npz`` at ``path``, each size checked before it is allocated.

    The zip members may declare no more bytes than the file holds (:func:`check_zip_sizes`:
    a zip bomb is refused before anything is decompressed), and each ``.npy`` header's shape
    and dtype must describe exactly the bytes its member holds; object (pickled) arrays are
    refused.
    """
    source = str(path)
    check_file_size(path, MAX_BANK_BYTES, "direction bank", InputError)
    infos = check_zip_sizes(path, source, "direction bank", InputError)
    arrays: dict[str, np.ndarray] = {}
    try:
        with zipfile.ZipFile(path) as zf:
            for info in infos:
                name = info.filename[:-4] if info.filename.endswith(".npy") else info.filename
                with zf.open(info) as f:
                    version = np.lib.format.read_magic(f)
                    if version not in ((1, 0), (2, 0), (3, 0)):
                        raise InputError(f"{path}: member {info.filename!r} has .npy version {version}")
                    reader = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
                    shape, fortran, dtype = reader(f)
                    if dtype.hasobject:
                        raise InputError(f"{path} holds pickled Python objects; refusing to load it (unpickling can run code)")
                    need = math.prod(shape) * dtype.itemsize
                    have = info.file_size - f.tell()
                    if need != have:
                        raise InputError(
                            f"{path}: member {info.filename!r} declares {list(shape)} x {dtype} ({need} bytes) but holds {have} bytes"
                        )
                    raw = f.read(need)
                if len(raw) != need:
                    raise InputError(f"{path}: member {info.filename!r} is truncated")
                arr = np.frombuffer(raw, dtype=dtype)
                arrays[name] = arr.reshape(shape[::-1]).T if fortran else arr.reshape(shape)
    except InputError:
        raise
    except Exception as e:  # BadZipFile, CRC errors, bad .npy headers
        raise InputError(f"{path}: corrupt or unreadable direction bank ({type(e).__name__}: {str(e)[:200]})") from None
    return arrays


def _json_default(v: Any) -> Any:
    if isinstance(v, (np.integer, np.floating)):
        return v.item()
    if isinstance(v, torch.Tensor) and v.numel() == 1:
        return v.item()
    return str(v)
