"""Tests of :mod:`spatial_latent.checkpoints.hub` against a real HTTP server on 127.0.0.1 (no internet)."""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import http.server
import logging
import re
import socket
import threading
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from spatial_latent.checkpoints import hub
from spatial_latent.errors import DownloadError, InputError, SpatialLatentError

PAYLOAD = bytes(range(256)) * 1200 + b"end-of-fake-network"  # ~300 kB
PAYLOAD_SHA256 = hashlib.sha256(PAYLOAD).hexdigest()
WRONG_SHA256 = "0" * 64


class _Handler(http.server.SimpleHTTPRequestHandler):
    """Serves files from a directory, plus two misbehaving paths; counts every request."""

    def do_GET(self) -> None:  # noqa: N802 - http.server naming
        server: Any = self.server
        server.hits.append(self.path)
        if self.path == "/truncated.pkl":
            # Promise 1000 bytes, send 100, then close the connection.
            self.send_response(200)
            self.send_header("Content-Type", "application/octet-stream")
            self.send_header("Content-Length", "1000")
            self.end_headers()
            self.wfile.write(b"x" * 100)
            self.wfile.flush()
            self.close_connection = True
            return
        if self.path == "/stall.pkl":
            # Send a little, then stall until the test is over (the client must time out).
            self.send_response(200)
            self.send_header("Content-Length", "1000")
            self.end_headers()
            self.wfile.write(b"y" * 10)
            self.wfile.flush()
            server.release.wait(10)
            self.close_connection = True
            return
        super().do_GET()

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - base signature
        """Keep test output quiet."""


@dataclasses.dataclass
class Server:
    """A running local HTTP server serving ``root``."""

    root: Path
    base_url: str
    hits: list[str]

    def put(self, name: str, data: bytes) -> str:
        """Write ``data`` as ``root/name`` and return its URL."""
        (self.root / name).write_bytes(data)
        return self.url(name)

    def url(self, name: str) -> str:
        return f"{self.base_url}/{name}"


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    root = tmp_path / "www"
    root.mkdir()
    handler = functools.partial(_Handler, directory=str(root))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    httpd.daemon_threads = True
    hits: list[str] = []
    release = threading.Event()
    httpd.hits = hits  # type: ignore[attr-defined]
    httpd.release = release  # type: ignore[attr-defined]
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05})
    thread.daemon = True
    thread.start()
    try:
        yield Server(root, f"http://127.0.0.1:{httpd.server_address[1]}", hits)
    finally:
        release.set()
        httpd.shutdown()
        httpd.server_close()
        thread.join(5)


@pytest.fixture
def cache(tmp_path: Path) -> Path:
    return tmp_path / "cache"


def _entry(url: str, sha256: str | None = None, name: str = "testnet") -> hub.KnownNetwork:
    return hub.KnownNetwork(name, url, sha256, 64, "nvidia-pkl", "a test network")


def _fetch(entry: hub.KnownNetwork, cache: Path, **kwargs: Any) -> Path:
    kwargs.setdefault("progress", False)
    return hub.fetch(entry.name, cache=cache, registry={entry.name: entry}, **kwargs)


def _cache_files(cache: Path) -> list[str]:
    """The cache's files, verification markers (``.NAME.verified``) aside."""
    return sorted(p.name for p in cache.iterdir() if not p.name.endswith(".verified")) if cache.exists() else []


def _closed_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# --- successful downloads -------------------------------------------------------------------


def test_download_lands_at_cached_path(server: Server, cache: Path) -> None:
    entry = _entry(server.put("net.pkl", PAYLOAD), PAYLOAD_SHA256)
    registry = {entry.name: entry}
    expected = hub.cached_path(entry.name, cache, registry=registry)

    path = hub.fetch(entry.name, cache=cache, registry=registry, progress=True)

    assert path == expected == cache / "net.pkl"
    assert path.read_bytes() == PAYLOAD
    assert _cache_files(cache) == ["net.pkl"]  # no temporary file left behind
    assert server.hits == ["/net.pkl"]


def test_download_creates_nested_cache_dir(server: Server, tmp_path: Path) -> None:
    entry = _entry(server.put("net.pkl", PAYLOAD))
    cache = tmp_path / "a" / "b" / "c"
    assert _fetch(entry, cache).read_bytes() == PAYLOAD


def test_unknown_hash_logs_observed_sha256(
    server: Server, cache: Path, caplog: pytest.LogCaptureFixture
) -> None:
    entry = _entry(server.put("net.pkl", PAYLOAD), sha256=None)
    with caplog.at_level(logging.INFO, logger="spatial_latent.checkpoints.hub"):
        path = _fetch(entry, cache)
    assert path.read_bytes() == PAYLOAD
    assert PAYLOAD_SHA256 in caplog.text


def test_uppercase_published_hash_is_accepted(server: Server, cache: Path) -> None:
    entry = _entry(server.put("net.pkl", PAYLOAD), PAYLOAD_SHA256.upper())
    assert entry.sha256 == PAYLOAD_SHA256
    assert _fetch(entry, cache).read_bytes() == PAYLOAD


def test_fetch_entry_without_registry(server: Server, cache: Path) -> None:
    entry = _entry(server.put("other.pkl", PAYLOAD), PAYLOAD_SHA256, name="not-registered")
    path = hub.fetch_entry(entry, cache=cache, progress=False)
    assert path == cache / "other.pkl"
    assert path.read_bytes() == PAYLOAD


@pytest.mark.parametrize("url", ["https://a.example/x/net.pkl", "http://127.0.0.1:9/net.pkl", "ftp://example.org/net.pkl"])
def test_urls_are_never_fetched(server: Server, cache: Path, url: str) -> None:
    # only the registry's networks are downloaded: a file (or a flag) naming a URL gets an error
    url = url.replace("http://127.0.0.1:9", server.base_url)
    for call in (lambda: hub.fetch(url, cache=cache, progress=False), lambda: hub.cached_path(url, cache)):
        with pytest.raises(InputError, match=r"is a URL: spatial-latent downloads only the networks of its built-in registry"):
            call()
    assert server.hits == [] and _cache_files(cache) == []


# --- cache hits -----------------------------------------------------------------------------


@pytest.mark.parametrize("sha256", [PAYLOAD_SHA256, None], ids=["hash-known", "hash-unknown"])
def test_cached_file_is_returned_without_request(
    server: Server, cache: Path, sha256: str | None
) -> None:
    entry = _entry(server.url("net.pkl"), sha256)  # not even on the server
    cache.mkdir()
    (cache / "net.pkl").write_bytes(PAYLOAD)
    assert _fetch(entry, cache) == cache / "net.pkl"
    assert server.hits == []


def test_cached_file_with_wrong_hash_is_error_and_kept(server: Server, cache: Path) -> None:
    entry = _entry(server.put("net.pkl", PAYLOAD), PAYLOAD_SHA256)
    cache.mkdir()
    bad = cache / "net.pkl"
    bad.write_bytes(b"not the network")
    with pytest.raises(DownloadError, match=r"the cached file for 'testnet' at .* has sha256 [0-9a-f]{64}, expected [0-9a-f]{64}: it is corrupt") as info:
        _fetch(entry, cache)
    message = str(info.value)
    assert str(bad) in message and "elete" in message and PAYLOAD_SHA256 in message
    assert bad.read_bytes() == b"not the network"  # the user's file is untouched
    assert server.hits == []


def test_empty_cached_file_is_error(server: Server, cache: Path) -> None:
    entry = _entry(server.put("net.pkl", PAYLOAD))
    cache.mkdir()
    (cache / "net.pkl").write_bytes(b"")
    with pytest.raises(DownloadError, match="empty"):
        _fetch(entry, cache)
    assert (cache / "net.pkl").exists()


# --- failures -------------------------------------------------------------------------------


def test_sha256_mismatch(server: Server, cache: Path) -> None:
    entry = _entry(server.put("net.pkl", PAYLOAD), WRONG_SHA256)
    with pytest.raises(DownloadError, match=r"could not download 'testnet' from .* \(sha256 mismatch: got [0-9a-f]{64}, expected 0{64}\)") as info:
        _fetch(entry, cache)
    message = str(info.value)
    assert "sha256" in message and PAYLOAD_SHA256 in message and WRONG_SHA256 in message
    assert str(cache / "net.pkl") in message
    assert _cache_files(cache) == []  # neither the final file nor a temporary one


def test_http_404(server: Server, cache: Path) -> None:
    entry = _entry(server.url("missing.pkl"))
    with pytest.raises(DownloadError, match=r"could not download 'testnet' from .*/missing\.pkl \(HTTP 404") as info:
        _fetch(entry, cache)
    message = str(info.value)
    assert entry.url in message
    assert str(hub.cached_path(entry.name, cache, registry={entry.name: entry})) in message
    assert "404" in message and "'testnet'" in message
    assert _cache_files(cache) == []


def test_unreachable_url(cache: Path) -> None:
    entry = _entry(f"http://127.0.0.1:{_closed_port()}/x.pkl")
    expected = hub.cached_path(entry.name, cache, registry={entry.name: entry})
    with pytest.raises(DownloadError, match=r"could not download 'testnet' from .*/x\.pkl \(.+\)\. If this machine is offline") as info:
        _fetch(entry, cache, timeout=5)
    message = str(info.value)
    assert str(expected) in message
    assert entry.url in message
    assert "offline" in message
    assert _cache_files(cache) == []


def test_connection_closed_mid_stream(server: Server, cache: Path) -> None:
    entry = _entry(server.url("truncated.pkl"))
    with pytest.raises(DownloadError, match=r"\(connection closed after 100 of 1000 bytes\)") as info:
        _fetch(entry, cache, progress=True)
    message = str(info.value)
    assert "100 of 1000" in message and str(cache / "truncated.pkl") in message
    assert _cache_files(cache) == []


def test_read_timeout_mid_stream(server: Server, cache: Path) -> None:
    entry = _entry(server.url("stall.pkl"))
    with pytest.raises(DownloadError, match=r"\(timed out after 0\.3 s\)") as info:
        _fetch(entry, cache, timeout=0.3)
    assert "timed out" in str(info.value)
    assert _cache_files(cache) == []


def test_keyboard_interrupt_cleans_up_and_propagates(
    server: Server, cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    entry = _entry(server.put("net.pkl", PAYLOAD))
    real_urlopen = urllib.request.urlopen

    class InterruptingResponse:
        """Delivers one chunk, then behaves as if the user pressed Ctrl-C."""

        def __init__(self, response: Any) -> None:
            self._response = response
            self.headers = response.headers
            self._reads = 0

        def __enter__(self) -> InterruptingResponse:
            return self

        def __exit__(self, *exc: object) -> None:
            self._response.close()

        def read(self, size: int = -1) -> bytes:
            self._reads += 1
            if self._reads > 1:
                raise KeyboardInterrupt
            return self._response.read(min(size, 1000))

    def fake_urlopen(*args: Any, **kwargs: Any) -> InterruptingResponse:
        return InterruptingResponse(real_urlopen(*args, **kwargs))

    monkeypatch.setattr(urllib.request, "urlopen", fake_urlopen)
    with pytest.raises(KeyboardInterrupt):
        _fetch(entry, cache)
    assert _cache_files(cache) == []


def test_unknown_name_lists_known_names() -> None:
    with pytest.raises(InputError, match=r"unknown network 'ffhqq'\. Did you mean 'ffhq'") as info:
        hub.fetch("ffhqq", progress=False)
    message = str(info.value)
    assert "'ffhqq'" in message and "ffhq-config-f" in message and "church-config-f" in message
    with pytest.raises(InputError, match=r"unknown network 'no-such-network'\. Known networks: ffhq, "):
        hub.cached_path("no-such-network")
    with pytest.raises(InputError, match="is a URL"):
        hub.fetch("ftp://example.org/net.pkl", progress=False)


def test_errors_are_toolkit_errors() -> None:
    assert issubclass(DownloadError, SpatialLatentError)
    assert issubclass(InputError, SpatialLatentError)


# --- cache location -------------------------------------------------------------------------


def test_env_var_sets_cache_dir(
    server: Server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    env_cache = tmp_path / "env-cache"
    monkeypatch.setenv("SPATIAL_LATENT_CACHE", str(env_cache))
    assert hub.cache_dir() == env_cache
    assert hub.cached_path("ffhq") == env_cache / "ffhq.pkl"
    entry = _entry(server.put("net.pkl", PAYLOAD))
    path = hub.fetch(entry.name, registry={entry.name: entry}, progress=False)
    assert path == env_cache / "net.pkl"
    assert path.read_bytes() == PAYLOAD


def test_default_cache_dir_is_under_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SPATIAL_LATENT_CACHE", raising=False)
    monkeypatch.setattr(Path, "home", classmethod(lambda cls: tmp_path / "home"))
    assert hub.cache_dir() == tmp_path / "home" / ".cache" / "spatial_latent"
    assert hub.cached_path("ffhq-config-f") == (
        tmp_path / "home" / ".cache" / "spatial_latent" / "stylegan2-ffhq-config-f.pkl"
    )


# --- the registry ---------------------------------------------------------------------------


def test_registry_entries_agree_with_their_urls_and_descriptions() -> None:
    """Each entry's fields are consistent with one another (not a copy of the table): a typo in a
    resolution, format or file name shows up as a disagreement."""
    for name, net in hub.KNOWN_NETWORKS.items():
        assert net.name == name
        assert net.url.startswith("https://") and net.url.endswith(".pkl"), name
        # the size in the description ("1024x1024", "512x384 (512 network)") is the resolution
        w, h = map(int, re.search(r"(\d+)x(\d+)", net.description).groups())
        assert net.resolution == max(w, h), name
        # so is the size in the file name where it has one (stylegan2-ffhq-256x256.pkl)
        size = re.search(r"-(\d+)x(\d+)\.pkl$", net.url)
        if size:
            assert net.resolution == int(size[1]) == int(size[2]), name
        # TensorFlow pickles are the original config-f releases, and only those
        assert (net.format == "tf-pkl") == ("TensorFlow" in net.description) == name.endswith("-config-f"), name
        assert net.description and "\n" not in net.description


def test_registry_resolves_names_to_cache_files_and_is_read_only(tmp_path: Path) -> None:
    paths = {name: hub.cached_path(name, tmp_path) for name in hub.KNOWN_NETWORKS}
    assert len(set(paths.values())) == len(paths)  # no two entries share a cache file
    for name, path in paths.items():
        assert path == tmp_path / hub.KNOWN_NETWORKS[name].url.rsplit("/", 1)[1]
    with pytest.raises(TypeError, match="does not support item assignment"):
        hub.KNOWN_NETWORKS["x"] = hub.KNOWN_NETWORKS["ffhq"]  # type: ignore[index]
    with pytest.raises(dataclasses.FrozenInstanceError, match="cannot assign to field 'url'"):
        hub.KNOWN_NETWORKS["ffhq"].url = "https://evil.example/x.pkl"  # type: ignore[misc]
    assert hub.list_networks() == list(hub.KNOWN_NETWORKS.values())
    assert all(hub.is_known(name) for name in hub.KNOWN_NETWORKS) and not hub.is_known("nope")
    assert not hub.is_known("https://example.org/x.pkl")


def test_registry_refuses_duplicate_names_and_cache_files() -> None:
    a = _entry("https://example.org/a/net.pkl", name="a")
    with pytest.raises(ValueError, match="duplicate network name 'a'"):
        hub._make_registry((a, _entry("https://example.org/b/other.pkl", name="a")))
    with pytest.raises(ValueError, match="network 'b': cache file 'net.pkl' is not unique"):
        hub._make_registry((a, _entry("https://example.org/b/net.pkl", name="b")))
    assert list(hub._make_registry((a, _entry("https://example.org/b/b.pkl", name="b")))) == ["a", "b"]


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"sha256": "abc"}, "network 'n': sha256 must be 64 hex digits, got 'abc'"),
        ({"format": "onnx"}, r"network 'n': format must be one of \('nvidia-pkl', 'tf-pkl'\), got 'onnx'"),
        ({"url": "ftp://example.org/x.pkl"}, r"network 'n': url must be http\(s\), got 'ftp://example\.org/x\.pkl'"),
        ({"resolution": 0}, "network 'n': resolution must be positive"),
        ({"name": ""}, "invalid network name ''"),
    ],
)
def test_known_network_validation(kwargs: dict[str, Any], message: str) -> None:
    fields = {
        "name": "n", "url": "https://example.org/x.pkl", "sha256": None, "resolution": 256,
        "format": "nvidia-pkl", "description": "d",
    }
    fields.update(kwargs)
    with pytest.raises(ValueError, match=message):
        hub.KnownNetwork(**fields)
