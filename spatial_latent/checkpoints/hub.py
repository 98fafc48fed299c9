"""Registry of well-known public StyleGAN2 networks and their download into a local cache.

Usage::

    from spatial_latent.checkpoints import hub

    path = hub.fetch("ffhq")          # downloads once, then returns the cached file
    path = hub.cached_path("ffhq")    # where that file lives (or must be placed by hand)

Only the networks of the built-in registry are ever downloaded: a URL is refused (a file such as
a latent must not choose what the program fetches; download other networks yourself and pass
their path). Downloads are capped at :data:`MAX_DOWNLOAD_BYTES`.

The cache directory is ``$SPATIAL_LATENT_CACHE`` when set, else ``~/.cache/spatial_latent``.
Every known network is cached under the basename of its URL (e.g. ``ffhq.pkl``,
``stylegan2-ffhq-config-f.pkl``), so a machine without internet access can be served by
downloading the file elsewhere and copying it to :func:`cached_path`.

Downloads stream into a temporary file in the cache directory, are hashed on the fly and are
moved into place with :func:`os.replace` only when complete (and, where a sha256 is known,
correct), so an interrupted download never leaves a half-written file under the final name.
NVIDIA publishes no checksums for these files, so the built-in entries carry ``sha256=None``;
the observed hash of each download is logged at INFO level so users can pin it.

Every load from the cache is verified: a marker ``.NAME.verified`` beside the file records its
size, modification time and SHA-256 (the registry's, or the one observed at download, or at the
first use of a file placed by hand). While size and time match the marker the file is not
re-hashed; otherwise it is hashed again and must still match (the registry's hash where known,
else the recorded one), or :class:`DownloadError` says it changed.

Nothing here touches the network at import time.
"""

from __future__ import annotations

import dataclasses
import difflib
import hashlib
import http.client
import logging
import os
import re
import secrets
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping
from pathlib import Path
from types import MappingProxyType
from typing import Any, BinaryIO

from spatial_latent.errors import DownloadError, InputError

__all__ = [
    "CACHE_ENV_VAR",
    "FORMATS",
    "KNOWN_NETWORKS",
    "KnownNetwork",
    "cache_dir",
    "cached_path",
    "fetch",
    "fetch_entry",
    "is_known",
    "list_networks",
]

logger = logging.getLogger(__name__)

#: Environment variable that overrides the cache directory.
CACHE_ENV_VAR = "SPATIAL_LATENT_CACHE"

#: Checkpoint formats a registry entry may declare.
#: ``'nvidia-pkl'``: a stylegan2-ada-pytorch / stylegan3 pickle (``G_ema`` is a torch module);
#: ``'tf-pkl'``: an original TensorFlow StyleGAN2 pickle (dnnlib.tflib networks).
FORMATS = ("nvidia-pkl", "tf-pkl")

_CHUNK_SIZE = 1 << 20  # bytes read per iteration while streaming
#: Largest download accepted: the largest registry file (a 1024 px snapshot) is about 380 MB.
MAX_DOWNLOAD_BYTES = 2 << 30
_MARKER_SUFFIX = ".verified"
_HASH_CHUNK_SIZE = 1 << 22  # bytes read per iteration while hashing a cached file
_USER_AGENT = "spatial-latent (python urllib)"
_SHA256_RE = re.compile(r"[0-9a-f]{64}")
_UNSAFE_FILENAME_CHARS = re.compile(r"[^A-Za-z0-9._-]+")


def _url_basename(url: str) -> str:
    """Last path component of ``url``, percent-decoded and made safe as a file name."""
    raw = urllib.parse.unquote(urllib.parse.urlsplit(url).path.rsplit("/", 1)[-1])
    safe = _UNSAFE_FILENAME_CHARS.sub("_", raw).strip("._")
    return safe or "download"


class _Failure(Exception):
    """Internal: a download problem detected by this module (not by urllib)."""


@dataclasses.dataclass(frozen=True)
class KnownNetwork:
    """One public pretrained network that can be fetched by name.

    Attributes:
        name: short registry name, e.g. ``'ffhq'`` or ``'church-config-f'``.
        url: http(s) URL of the file.
        sha256: lowercase hex sha256 of the file, or ``None`` where no hash is published.
        resolution: output resolution of the generator (the larger side, for non-square data).
        format: one of :data:`FORMATS`.
        description: one line for humans.
    """

    name: str
    url: str
    sha256: str | None
    resolution: int
    format: str
    description: str

    def __post_init__(self) -> None:
        if not self.name or self.name != self.name.strip():
            raise ValueError(f"invalid network name {self.name!r}")
        if urllib.parse.urlsplit(self.url).scheme not in ("http", "https"):
            raise ValueError(f"network {self.name!r}: url must be http(s), got {self.url!r}")
        if self.sha256 is not None:
            digest = self.sha256.strip().lower()
            if not _SHA256_RE.fullmatch(digest):
                raise ValueError(
                    f"network {self.name!r}: sha256 must be 64 hex digits, got {self.sha256!r}"
                )
            object.__setattr__(self, "sha256", digest)
        if self.format not in FORMATS:
            raise ValueError(
                f"network {self.name!r}: format must be one of {FORMATS}, got {self.format!r}"
            )
        if self.resolution <= 0:
            raise ValueError(f"network {self.name!r}: resolution must be positive")

    @property
    def filename(self) -> str:
        """Name of the cached file: the basename of :attr:`url`."""
        return _url_basename(self.url)


_ADA = "https://nvlabs-fi-cdn.nvidia.com/stylegan2-ada-pytorch/pretrained"
_TF = "https://nvlabs-fi-cdn.nvidia.com/stylegan2/networks"
_NGC = "https://api.ngc.nvidia.com/v2/models/nvidia/research/stylegan3/versions/1/files"


def _builtin_networks() -> tuple[KnownNetwork, ...]:
    """The built-in registry entries, in display order."""
    ada, tf, ngc = "nvidia-pkl", "tf-pkl", "nvidia-pkl"
    return (
        # stylegan2-ada-pytorch pretrained pickles (Karras et al. 2020).
        KnownNetwork("ffhq", f"{_ADA}/ffhq.pkl", None, 1024, ada,
                     "FFHQ faces 1024x1024, stylegan2-ada-pytorch pretrained"),
        KnownNetwork("metfaces", f"{_ADA}/metfaces.pkl", None, 1024, ada,
                     "MetFaces art portraits 1024x1024, stylegan2-ada-pytorch (FFHQ transfer)"),
        KnownNetwork("afhqcat", f"{_ADA}/afhqcat.pkl", None, 512, ada,
                     "AFHQ cats 512x512, stylegan2-ada-pytorch pretrained"),
        KnownNetwork("afhqdog", f"{_ADA}/afhqdog.pkl", None, 512, ada,
                     "AFHQ dogs 512x512, stylegan2-ada-pytorch pretrained"),
        KnownNetwork("afhqwild", f"{_ADA}/afhqwild.pkl", None, 512, ada,
                     "AFHQ wild animals 512x512, stylegan2-ada-pytorch pretrained"),
        KnownNetwork("brecahad", f"{_ADA}/brecahad.pkl", None, 512, ada,
                     "BreCaHAD histopathology 512x512, stylegan2-ada-pytorch pretrained"),
        KnownNetwork("cifar10", f"{_ADA}/cifar10.pkl", None, 32, ada,
                     "CIFAR-10 32x32, class-conditional, stylegan2-ada-pytorch pretrained"),
        # Original TensorFlow StyleGAN2 config-f pickles (Karras et al. 2019).
        KnownNetwork("ffhq-config-f", f"{_TF}/stylegan2-ffhq-config-f.pkl", None, 1024, tf,
                     "FFHQ faces 1024x1024, original TensorFlow StyleGAN2 config-f"),
        KnownNetwork("car-config-f", f"{_TF}/stylegan2-car-config-f.pkl", None, 512, tf,
                     "LSUN Car 512x384 (512 network), original TensorFlow StyleGAN2 config-f"),
        KnownNetwork("cat-config-f", f"{_TF}/stylegan2-cat-config-f.pkl", None, 256, tf,
                     "LSUN Cat 256x256, original TensorFlow StyleGAN2 config-f"),
        KnownNetwork("church-config-f", f"{_TF}/stylegan2-church-config-f.pkl", None, 256, tf,
                     "LSUN Church 256x256, original TensorFlow StyleGAN2 config-f"),
        KnownNetwork("horse-config-f", f"{_TF}/stylegan2-horse-config-f.pkl", None, 256, tf,
                     "LSUN Horse 256x256, original TensorFlow StyleGAN2 config-f"),
        # StyleGAN2 models released with the stylegan3 repository, hosted on NVIDIA NGC.
        KnownNetwork("ffhq-1024", f"{_NGC}/stylegan2-ffhq-1024x1024.pkl", None, 1024, ngc,
                     "FFHQ faces 1024x1024, StyleGAN2 from the stylegan3 release (NGC)"),
        KnownNetwork("ffhq-512", f"{_NGC}/stylegan2-ffhq-512x512.pkl", None, 512, ngc,
                     "FFHQ faces 512x512, StyleGAN2 from the stylegan3 release (NGC)"),
        KnownNetwork("ffhq-256", f"{_NGC}/stylegan2-ffhq-256x256.pkl", None, 256, ngc,
                     "FFHQ faces 256x256, StyleGAN2 from the stylegan3 release (NGC)"),
        KnownNetwork("metfaces-1024", f"{_NGC}/stylegan2-metfaces-1024x1024.pkl", None, 1024,
                     ngc, "MetFaces 1024x1024, StyleGAN2 from the stylegan3 release (NGC)"),
        KnownNetwork("metfacesu-1024", f"{_NGC}/stylegan2-metfacesu-1024x1024.pkl", None, 1024,
                     ngc, "MetFaces-U (unaligned) 1024x1024, StyleGAN2 from the stylegan3 "
                     "release (NGC)"),
        KnownNetwork("afhqv2-512", f"{_NGC}/stylegan2-afhqv2-512x512.pkl", None, 512, ngc,
                     "AFHQv2 (cats, dogs, wild) 512x512, StyleGAN2 from the stylegan3 release "
                     "(NGC)"),
        KnownNetwork("celebahq-256", f"{_NGC}/stylegan2-celebahq-256x256.pkl", None, 256, ngc,
                     "CelebA-HQ faces 256x256, StyleGAN2 from the stylegan3 release (NGC)"),
        KnownNetwork("lsundog-256", f"{_NGC}/stylegan2-lsundog-256x256.pkl", None, 256, ngc,
                     "LSUN Dog 256x256, StyleGAN2 from the stylegan3 release (NGC)"),
    )


def _make_registry(networks: tuple[KnownNetwork, ...]) -> Mapping[str, KnownNetwork]:
    """Build a read-only name -> entry mapping, refusing duplicate names or cache files."""
    by_name: dict[str, KnownNetwork] = {}
    filenames: set[str] = set()
    for net in networks:
        if net.name in by_name:
            raise ValueError(f"duplicate network name {net.name!r}")
        if net.filename in filenames:
            raise ValueError(f"network {net.name!r}: cache file {net.filename!r} is not unique")
        by_name[net.name] = net
        filenames.add(net.filename)
    return MappingProxyType(by_name)


#: Read-only mapping of registry name -> :class:`KnownNetwork`.
KNOWN_NETWORKS: Mapping[str, KnownNetwork] = _make_registry(_builtin_networks())


def is_known(name: str) -> bool:
    """Whether ``name`` is a network of the built-in registry."""
    return name in KNOWN_NETWORKS


def list_networks() -> list[KnownNetwork]:
    """All built-in registry entries, in registry order."""
    return list(KNOWN_NETWORKS.values())


def cache_dir() -> Path:
    """The download cache directory (not created here).

    ``$SPATIAL_LATENT_CACHE`` when set and non-empty (``~`` is expanded), else
    ``~/.cache/spatial_latent``. Always an absolute path.
    """
    env = os.environ.get(CACHE_ENV_VAR, "").strip()
    path = Path(env).expanduser() if env else Path.home() / ".cache" / "spatial_latent"
    return Path(os.path.abspath(path))


def _unknown_name_error(name: str, registry: Mapping[str, KnownNetwork]) -> InputError:
    known = ", ".join(registry) or "(none)"
    close = difflib.get_close_matches(name, list(registry), n=3)
    hint = f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""
    return InputError(f"unknown network {name!r}.{hint} Known networks: {known}.")


def refuse_url(name: str) -> None:
    """Raise :class:`InputError` when ``name`` is a URL: only registry networks are downloaded."""
    if "://" in name:
        raise InputError(
            f"{name[:200]!r} is a URL: spatial-latent downloads only the networks of its built-in registry "
            "(see --list-networks); download the file yourself and pass its path"
        )


def _resolve(name: str, registry: Mapping[str, KnownNetwork] | None) -> KnownNetwork:
    """The registry entry for ``name`` (URLs are refused: nothing else is ever fetched)."""
    reg = KNOWN_NETWORKS if registry is None else registry
    if not isinstance(name, str):
        raise InputError(f"network name must be a string, got {type(name).__name__}")
    if name in reg:
        return reg[name]
    refuse_url(name)
    raise _unknown_name_error(name, reg)


def cached_path(
    name: str,
    cache: Path | None = None,
    *,
    registry: Mapping[str, KnownNetwork] | None = None,
) -> Path:
    """The exact path where the file of network ``name`` lives, or must be placed by hand.

    Args:
        name: a registry name (see :func:`list_networks`).
        cache: cache directory; default :func:`cache_dir`.
        registry: registry to look ``name`` up in; default :data:`KNOWN_NETWORKS`.

    Raises:
        InputError: ``name`` is not a known network (URLs included).
    """
    target = _resolve(name, registry)
    base = cache_dir() if cache is None else Path(os.path.abspath(Path(cache).expanduser()))
    return base / target.filename


def fetch(
    name: str,
    *,
    cache: Path | None = None,
    progress: bool = True,
    timeout: float = 30.0,
    registry: Mapping[str, KnownNetwork] | None = None,
) -> Path:
    """Return the local path of network ``name``, downloading it into the cache if needed.

    Args:
        name: a registry name (see :func:`list_networks`); URLs are refused.
        cache: cache directory; default :func:`cache_dir`.
        progress: show a tqdm progress bar (on stderr) while downloading.
        timeout: seconds allowed for connecting and for each read.
        registry: registry to look ``name`` up in; default :data:`KNOWN_NETWORKS`.

    Returns:
        The path of the cached file (equal to :func:`cached_path`).

    Raises:
        InputError: ``name`` is not a known network (URLs included).
        DownloadError: the download failed or exceeded :data:`MAX_DOWNLOAD_BYTES`, or the file
            (cached or downloaded) does not match the known sha256 or the one recorded when it
            was verified. The message names the URL and the path where the file can be placed
            by hand.
    """
    target = _resolve(name, registry)
    return fetch_entry(target, cache=cache, progress=progress, timeout=timeout)


def fetch_entry(
    entry: KnownNetwork,
    *,
    cache: Path | None = None,
    progress: bool = True,
    timeout: float = 30.0,
) -> Path:
    """Like :func:`fetch`, for a :class:`KnownNetwork` that need not be in any registry."""
    base = cache_dir() if cache is None else Path(os.path.abspath(Path(cache).expanduser()))
    dest = base / entry.filename
    return _fetch_to(
        entry.url, dest, entry.sha256, label=repr(entry.name), progress=progress, timeout=timeout
    )


def _file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_HASH_CHUNK_SIZE):
            digest.update(chunk)
    return digest.hexdigest()


def _failure_message(label: str, url: str, dest: Path, reason: str) -> str:
    """The one-line message of a failed download: what, from where, why, and the manual fix."""
    what = url if label == url else f"{label} from {url}"
    return (
        f"could not download {what} ({reason}). If this machine is offline, download "
        f"{url} elsewhere and place it at {dest}"
    )


def _fetch_to(
    url: str,
    dest: Path,
    sha256: str | None,
    *,
    label: str,
    progress: bool,
    timeout: float,
) -> Path:
    """Return ``dest`` if it is already there (verified, see :func:`_verify_cached`), else
    download it."""
    if dest.is_file():
        if dest.stat().st_size == 0:
            raise DownloadError(
                f"the cached file for {label} at {dest} is empty. Delete it and run again to "
                f"download it from {url}, or place a good copy there by hand."
            )
        _verify_cached(dest, sha256, label=label, url=url)
        logger.debug("using cached %s at %s", label, dest)
        return dest
    if dest.exists():
        raise DownloadError(f"the cache path for {label}, {dest}, exists but is not a file")
    observed = _download(url, dest, sha256, label=label, progress=progress, timeout=timeout)
    _write_marker(dest, observed)
    return dest


def _marker_path(dest: Path) -> Path:
    return dest.with_name(f".{dest.name}{_MARKER_SUFFIX}")


def _read_marker(dest: Path) -> dict[str, Any]:
    """The verification marker of ``dest`` (``{}`` when absent or unreadable)."""
    import json

    try:
        with open(_marker_path(dest), "rb") as f:
            data = json.loads(f.read(4096))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _write_marker(dest: Path, sha256: str) -> None:
    import json

    from ..atomic import atomic_write

    st = dest.stat()
    try:
        with atomic_write(_marker_path(dest)) as tmp:
            tmp.write_text(json.dumps({"size": st.st_size, "mtime_ns": st.st_mtime_ns, "sha256": sha256}, sort_keys=True))
    except OSError as exc:  # a read-only cache: verified again next time
        logger.debug("could not write the verification marker of %s: %s", dest, exc)


def _verify_cached(dest: Path, sha256: str | None, *, label: str, url: str) -> None:
    """Check the cached file ``dest`` against ``sha256`` (the registry's) or, where the
    registry has none, against the hash recorded when it was downloaded or first used.

    The marker beside the file saves re-hashing while its size and modification time are
    unchanged; otherwise the file is hashed again.
    """
    st = dest.stat()
    marker = _read_marker(dest)
    recorded = marker.get("sha256") if isinstance(marker.get("sha256"), str) else None
    expected = sha256 or recorded
    if marker.get("size") == st.st_size and marker.get("mtime_ns") == st.st_mtime_ns and recorded and recorded == expected:
        return
    observed = _file_sha256(dest)
    if expected is not None and observed != expected:
        why = "expected" if sha256 else "recorded when it was downloaded or first verified:"
        raise DownloadError(
            f"the cached file for {label} at {dest} has sha256 {observed}, {why} "
            f"{expected}: it is corrupt or a different file. Delete it and run again to "
            f"download it from {url}, or place a good copy there by hand."
        )
    if expected is None:
        logger.info("verified %s at %s for the first time: sha256 %s recorded", label, dest, observed)
    _write_marker(dest, observed)


def _describe(exc: BaseException, timeout: float) -> str:
    """A short human reason for a download failure."""
    if isinstance(exc, urllib.error.HTTPError):
        return f"HTTP {exc.code} {exc.reason}".strip()
    if isinstance(exc, urllib.error.URLError):
        reason = exc.reason
        if isinstance(reason, TimeoutError):
            return f"timed out after {timeout:g} s"
        return str(reason) or type(reason).__name__
    if isinstance(exc, TimeoutError):
        return f"timed out after {timeout:g} s"
    if isinstance(exc, http.client.HTTPException):
        return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    return str(exc) or type(exc).__name__


def _open_temp(dest: Path) -> tuple[Path, BinaryIO]:
    """Create and open a fresh temporary file next to ``dest`` (permissions follow the umask)."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)
    while True:
        tmp = dest.with_name(f"{dest.name}.partial-{os.getpid()}-{secrets.token_hex(4)}")
        try:
            fd = os.open(tmp, flags, 0o666)
        except FileExistsError:
            continue
        return tmp, os.fdopen(fd, "wb")


def _make_progress_bar(enabled: bool, total: int | None, desc: str) -> Any:
    """A tqdm bar, or ``None`` when disabled or tqdm is unavailable."""
    if not enabled:
        return None
    try:
        from tqdm.auto import tqdm
    except ImportError:
        logger.info("tqdm is not installed: downloading without a progress bar")
        return None
    return tqdm(total=total, unit="B", unit_scale=True, unit_divisor=1024, desc=desc)


def _download(
    url: str,
    dest: Path,
    sha256: str | None,
    *,
    label: str,
    progress: bool,
    timeout: float,
) -> str:
    """Stream ``url`` into a temporary file next to ``dest`` and atomically move it there;
    returns the download's sha256."""
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DownloadError(
            f"could not create the cache directory {dest.parent} for {label} ({exc}). "
            f"Set ${CACHE_ENV_VAR} to a writable directory, or download {url} elsewhere and "
            f"place it at {dest}"
        ) from exc

    logger.info("downloading %s from %s to %s", label, url, dest)
    tmp: Path | None = None
    try:
        tmp, out = _open_temp(dest)
        digest = hashlib.sha256()
        received = 0
        request = urllib.request.Request(url, headers={"User-Agent": _USER_AGENT})
        with out, urllib.request.urlopen(request, timeout=timeout) as response:
            length_header = response.headers.get("Content-Length")
            expected_size = (
                int(length_header) if length_header and length_header.isdigit() else None
            )
            if expected_size is not None and expected_size > MAX_DOWNLOAD_BYTES:
                raise _Failure(f"the server announces {expected_size} bytes, more than the {MAX_DOWNLOAD_BYTES}-byte limit")
            bar = _make_progress_bar(progress, expected_size, dest.name)
            try:
                while chunk := response.read(_CHUNK_SIZE):
                    out.write(chunk)
                    digest.update(chunk)
                    received += len(chunk)
                    if received > MAX_DOWNLOAD_BYTES:
                        raise _Failure(f"more than the {MAX_DOWNLOAD_BYTES}-byte limit received")
                    if bar is not None:
                        bar.update(len(chunk))
            finally:
                if bar is not None:
                    bar.close()
            if expected_size is not None and received != expected_size:
                raise _Failure(
                    f"connection closed after {received} of {expected_size} bytes"
                )
            if received == 0:
                raise _Failure("the server sent an empty file")
            out.flush()
            os.fsync(out.fileno())

        observed = digest.hexdigest()
        if sha256 is not None and observed != sha256:
            raise _Failure(f"sha256 mismatch: got {observed}, expected {sha256}")
        os.replace(tmp, dest)
        tmp = None
    except _Failure as exc:
        raise DownloadError(_failure_message(label, url, dest, str(exc))) from None
    except (OSError, http.client.HTTPException, ValueError) as exc:
        # URLError, HTTPError, timeouts and socket errors are all OSError subclasses.
        raise DownloadError(
            _failure_message(label, url, dest, _describe(exc, timeout))
        ) from exc
    finally:
        # Runs for every failure, KeyboardInterrupt included (which then propagates as is).
        if tmp is not None:
            try:
                tmp.unlink()
            except FileNotFoundError:
                pass
            except OSError as cleanup_exc:  # pragma: no cover - best effort
                logger.warning("could not remove temporary file %s: %s", tmp, cleanup_exc)

    if sha256 is None:
        logger.info(
            "downloaded %s (%d bytes) to %s; its sha256 is %s (no published hash to check; "
            "pin this value to detect changes)",
            label, received, dest, observed,
        )
    else:
        logger.info("downloaded %s (%d bytes) to %s; sha256 verified", label, received, dest)
    return observed
