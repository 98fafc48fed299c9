"""Bounds on what a file may make the toolkit do: sizes, nesting, shared structure.

Every reader checks a file against these limits *before* it allocates memory in proportion to
something the file declares (a length, a count, a shape, a zip member's size), so that memory
and time stay bounded by the file's real content. The numbers are stated in ``docs/FORMATS.md``
("Hostile and broken files"); a refusal is one :class:`~spatial_latent.errors.SpatialLatentError`
line naming the file, the limit and the number found.
"""

from __future__ import annotations

import json
import math
import os
import zipfile
from collections.abc import Mapping
import re
from typing import Any

from .errors import CheckpointError, SpatialLatentError

GiB = 1 << 30
MiB = 1 << 20

#: Largest generator checkpoint read (NVIDIA / TF pickles, torch files, native safetensors). The
#: largest public StyleGAN2 file (a 1024 px snapshot holding G, D and G_ema) is about 380 MB.
MAX_CHECKPOINT_BYTES = 4 * GiB
#: Largest latent grid file (a batch of 64 w+ grids of 18 x 512 x 32 x 32 cells is 2.4 GB).
MAX_LATENT_BYTES = 4 * GiB
#: Largest direction bank (a 1024 px w+ direction on 16 x 16 cells is 19 MB; 50 of them ~1 GB).
MAX_BANK_BYTES = 2 * GiB
#: Largest learned encoder file (the default encoder of a 1024 px generator is about 100 MB).
MAX_ENCODER_BYTES = 2 * GiB
#: Largest training checkpoint (G, G_ema, D and two Adam states of a 1024 px model: ~1.5 GB).
MAX_TRAINING_CHECKPOINT_BYTES = 8 * GiB

#: Zip members (torch files, direction banks) may declare at most this many bytes in all,
#: beyond their stored size: real files are stored uncompressed, so more means a zip bomb.
ZIP_SLACK_BYTES = 1 * MiB

#: Plain configuration data (constructor kwargs, training-set kwargs, ``args``) read from a
#: checkpoint: at most this many containers and scalars once expanded, nested at most this deep.
MAX_PLAIN_NODES = 100_000
MAX_PLAIN_DEPTH = 32

#: JSON text stored in a file's metadata (generator config, latent meta, bank header).
MAX_JSON_CHARS = 16 * MiB
MAX_JSON_DEPTH = 32
_JSON_TOKENS = re.compile(r'"(?:[^"\\]|\\.)*"|[\[\]{}]')


def _gb(n: int) -> str:
    return f"{n / 1e9:.1f} GB" if n >= 10**8 else f"{n} bytes"


def check_file_size(path: str | os.PathLike, limit: int, what: str, error: type[SpatialLatentError] = CheckpointError) -> int:
    """The size of ``path`` in bytes; ``error`` when it is larger than any real ``what`` can be."""
    size = os.path.getsize(path)
    if size > limit:
        raise error(
            f"{path}: the file is {_gb(size)} ({size} bytes); a {what} is at most {_gb(limit)} ({limit} bytes), "
            "so this cannot be one (refusing to read it)"
        )
    return size


def check_zip_sizes(
    path: str | os.PathLike, source: str, what: str, error: type[SpatialLatentError] = CheckpointError
) -> list[zipfile.ZipInfo]:
    """The members of the zip file ``path`` after checking that their declared sizes fit the file.

    Each member's declared (uncompressed) size plus all others' must stay within the file's size
    plus :data:`ZIP_SLACK_BYTES`, and each member's stored bytes must lie inside the file, so a
    reader that trusts the declared sizes allocates no more than the file holds.
    """
    size = os.path.getsize(path)
    try:
        with zipfile.ZipFile(path) as zf:
            infos = zf.infolist()
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, ValueError, EOFError) as exc:
        raise error(f"{source}: truncated or corrupt {what} (zip: {exc})") from None
    declared = 0
    for info in infos:
        declared += info.file_size
        if info.header_offset + info.compress_size > size:
            raise error(f"{source}: zip member {info.filename!r} runs past the end of the file; truncated or corrupt {what}")
    if declared > size + ZIP_SLACK_BYTES:
        raise error(
            f"{source}: its zip members declare {declared} bytes for a {size}-byte file (a zip bomb, or not a {what}); "
            "refusing to unpack"
        )
    return infos


def _kind(x: Any) -> str:
    if isinstance(x, Mapping):
        return "map"
    if isinstance(x, (list, tuple)):
        return "seq"
    return "leaf"


def expanded_size(obj: Any, source: str, what: str, *, max_nodes: int = MAX_PLAIN_NODES, max_depth: int = MAX_PLAIN_DEPTH,
                  error: type[SpatialLatentError] = CheckpointError) -> int:
    """Number of containers and scalars ``obj`` holds once shared references are expanded.

    Computed once per distinct container (memoised by identity), so a web of shared dicts costs
    time proportional to the number of distinct containers, not to its expansion. Raises
    ``error`` when that number exceeds ``max_nodes``, when nesting exceeds ``max_depth`` or on a
    cycle.
    """
    sizes: dict[int, int] = {}
    depths: dict[int, int] = {}  # longest chain below each container
    visiting: set[int] = set()
    keep: list[Any] = []  # keep objects alive so ids stay unique during the walk
    # iterative post-order walk: (object, children iterator or None)
    stack: list[tuple[Any, Any]] = [(obj, None)]
    seen_nodes = 0
    while stack:
        node, it = stack[-1]
        kind = _kind(node)
        if kind == "leaf":
            stack.pop()
            continue
        key = id(node)
        if it is None:
            if key in sizes:
                stack.pop()
                continue
            if key in visiting:
                raise error(f"{source}: {what} contains a reference cycle; refusing it")
            visiting.add(key)
            keep.append(node)
            seen_nodes += 1
            if seen_nodes > max_nodes:
                raise error(f"{source}: {what} holds more than {max_nodes} containers; refusing it")
            children = list(node.keys()) + list(node.values()) if kind == "map" else list(node)
            it = iter(children)
            stack[-1] = (node, it)
            if len(stack) > max_depth + 1:
                raise error(f"{source}: {what} is nested more than {max_depth} levels deep; refusing it")
        child = next(it, _END)
        if child is _END:
            stack.pop()
            visiting.discard(key)
            children = list(node.keys()) + list(node.values()) if kind == "map" else list(node)
            total, deepest = 1, 0
            for c in children:
                if _kind(c) == "leaf":
                    total += 1
                else:
                    total += sizes[id(c)]
                    deepest = max(deepest, depths[id(c)] + 1)
                if total > max_nodes:
                    raise error(
                        f"{source}: {what} expands to more than {max_nodes} entries (shared or repeated containers); refusing it"
                    )
            if deepest > max_depth:
                raise error(f"{source}: {what} is nested more than {max_depth} levels deep; refusing it")
            sizes[key], depths[key] = total, deepest
            continue
        if _kind(child) != "leaf" and id(child) not in sizes:
            stack.append((child, None))
    return sizes.get(id(obj), 1)


_END = object()


def plain_data(obj: Any, source: str, what: str, *, max_nodes: int = MAX_PLAIN_NODES, max_depth: int = MAX_PLAIN_DEPTH,
               error: type[SpatialLatentError] = CheckpointError) -> Any:
    """A JSON-friendly copy of configuration data read from a file (dicts, lists, scalars).

    First bounds the expanded size (:func:`expanded_size`), then copies: mapping keys become
    strings, tuples lists, non-finite floats and other objects their short ``repr``.
    """
    expanded_size(obj, source, what, max_nodes=max_nodes, max_depth=max_depth, error=error)

    def copy(x: Any) -> Any:
        if x is None or isinstance(x, (bool, int, str)):
            return x
        if isinstance(x, float):
            return x if math.isfinite(x) else repr(x)
        if isinstance(x, Mapping):
            return {str(k): copy(v) for k, v in x.items()}
        if isinstance(x, (list, tuple)):
            return [copy(v) for v in x]
        return repr(x)[:80]

    return copy(obj)


def load_json(text: str | bytes, source: str, what: str, error: type[SpatialLatentError] = CheckpointError,
              *, max_chars: int = MAX_JSON_CHARS, max_depth: int = MAX_JSON_DEPTH) -> Any:
    """``json.loads`` with bounds: at most ``max_chars`` characters, nested at most ``max_depth``
    levels (checked before parsing), and every error one ``error`` line."""
    if isinstance(text, bytes):
        try:
            text = text.decode("utf-8")
        except UnicodeDecodeError:
            raise error(f"{source}: {what} is not UTF-8 text") from None
    if not isinstance(text, str):
        raise error(f"{source}: {what} is not text")
    if len(text) > max_chars:
        raise error(f"{source}: {what} is {len(text)} characters long (at most {max_chars})")
    depth = 0
    for m in _JSON_TOKENS.finditer(text):  # bracket depth outside strings, before json.loads recurses
        ch = m.group()
        if ch in "[{":
            depth += 1
            if depth > max_depth:
                raise error(f"{source}: {what} is nested more than {max_depth} levels deep; refusing it")
        elif ch in "]}":
            depth -= 1
    try:
        return json.loads(text)
    except (ValueError, RecursionError) as exc:
        raise error(f"{source}: {what} is not valid JSON ({exc})") from None


def check_json_object(value: Any, source: str, what: str, error: type[SpatialLatentError] = CheckpointError) -> dict:
    """``value`` when it is a JSON object (dict), else one ``error`` line."""
    if not isinstance(value, dict):
        raise error(f"{source}: {what} is a JSON {type(value).__name__}, expected an object")
    return value
