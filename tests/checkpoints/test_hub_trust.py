"""A file must not choose what the program fetches; downloads come only from the registry, are
size-capped, and are verified on every load from the cache (issue 15)."""

from __future__ import annotations

import hashlib
import http.server
import logging
import os
import threading
from pathlib import Path

import pytest
import torch

from spatial_latent.checkpoints import hub
from spatial_latent.checkpoints.loading import load_generator
from spatial_latent.errors import DownloadError, InputError

PAYLOAD = bytes(range(256)) * 40  # 10 KB
SHA = hashlib.sha256(PAYLOAD).hexdigest()


@pytest.fixture
def server():
    """A local HTTP server serving PAYLOAD at every path; ``.hits`` lists the requests."""
    hits: list[str] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802
            hits.append(self.path)
            self.send_response(200)
            self.send_header("Content-Length", str(len(PAYLOAD)))
            self.end_headers()
            self.wfile.write(PAYLOAD)

        def log_message(self, *args):
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    httpd.hits = hits
    httpd.url = f"http://127.0.0.1:{httpd.server_address[1]}"
    try:
        yield httpd
    finally:
        httpd.shutdown()
        httpd.server_close()


def _fetch(entry: hub.KnownNetwork, cache: Path) -> Path:
    return hub.fetch(entry.name, cache=cache, registry={entry.name: entry}, progress=False)


def _count_hashing(monkeypatch) -> list[Path]:
    calls: list[Path] = []
    real = hub._file_sha256

    def counting(path):
        calls.append(path)
        return real(path)

    monkeypatch.setattr(hub, "_file_sha256", counting)
    return calls


@pytest.mark.parametrize("sha256", [SHA, None], ids=["registry-hash", "no-registry-hash"])
def test_cached_download_is_verified_on_every_load(server, tmp_path, monkeypatch, sha256):
    entry = hub.KnownNetwork("net", f"{server.url}/net.pkl", sha256, 64, "nvidia-pkl", "test")
    cache = tmp_path / "cache"
    path = _fetch(entry, cache)
    assert path.read_bytes() == PAYLOAD and server.hits == ["/net.pkl"]
    hashed = _count_hashing(monkeypatch)
    assert _fetch(entry, cache) == path and hashed == []  # unchanged since verified: no re-hash
    os.utime(path, ns=(path.stat().st_atime_ns, path.stat().st_mtime_ns + 10**9))
    assert _fetch(entry, cache) == path and hashed == [path]  # touched: hashed again, still good
    # the same size, one byte changed (as a disk error or a swap would): refused, and kept
    data = bytearray(PAYLOAD)
    data[100] ^= 1
    path.write_bytes(bytes(data))
    why = "expected" if sha256 else "recorded when it was downloaded or first verified:"
    with pytest.raises(DownloadError, match=rf"^the cached file for 'net' at {path} has sha256 [0-9a-f]{{64}}, {why} {SHA}: it is corrupt"):
        _fetch(entry, cache)
    assert path.read_bytes() == bytes(data) and server.hits == ["/net.pkl"]


def test_hand_placed_file_is_recorded_at_first_use(tmp_path, caplog):
    entry = hub.KnownNetwork("net", "https://example.invalid/net.pkl", None, 64, "nvidia-pkl", "test")
    cache = tmp_path / "cache"
    cache.mkdir()
    (cache / "net.pkl").write_bytes(PAYLOAD)
    with caplog.at_level(logging.INFO, logger="spatial_latent.checkpoints.hub"):
        _fetch(entry, cache)
    assert f"verified 'net' at {cache / 'net.pkl'} for the first time: sha256 {SHA} recorded" in caplog.text
    (cache / "net.pkl").write_bytes(PAYLOAD[::-1])
    with pytest.raises(DownloadError, match="recorded when it was downloaded or first verified"):
        _fetch(entry, cache)


def test_download_size_is_capped(server, tmp_path, monkeypatch):
    monkeypatch.setattr(hub, "MAX_DOWNLOAD_BYTES", 4096)
    entry = hub.KnownNetwork("net", f"{server.url}/net.pkl", None, 64, "nvidia-pkl", "test")
    with pytest.raises(DownloadError, match=r"\(the server announces 10240 bytes, more than the 4096-byte limit\)"):
        _fetch(entry, tmp_path / "cache")
    assert [p.name for p in (tmp_path / "cache").iterdir()] == []  # nothing kept


def test_load_generator_never_fetches_a_url(server, monkeypatch, tmp_path):
    monkeypatch.setenv("SPATIAL_LATENT_CACHE", str(tmp_path / "cache"))
    with pytest.raises(InputError, match=r"^'http://127\.0\.0\.1:\d+/x\.pkl' is a URL: spatial-latent downloads only the networks of its built-in registry"):
        load_generator(f"{server.url}/x.pkl")
    assert server.hits == [] and not (tmp_path / "cache").exists()


def test_latent_file_naming_a_url_is_refused_by_edit(server, tmp_path, capsys):
    from attributes.bank import DirectionBank
    from attributes.direction import Direction
    from attributes.sampling import sample_grids
    from spatial_latent.cli import run_cli
    from spatial_latent.edit import main

    G = load_generator("tiny")
    bank = DirectionBank.for_generator(G)
    bank.add(Direction("g", torch.randn(1, G.w_dim, 1, 1)))
    bank.save(tmp_path / "bank.npz")
    argv = ["--bank", str(tmp_path / "bank.npz"), "--attr", "g", "--out", str(tmp_path / "e.png"), "--device", "cpu"]
    for network, message in [
        (f"{server.url}/evil.pkl", "records its network as 'http://127.0.0.1:"),
        (str(tmp_path / "missing.pkl"), "which is neither a well-known network nor an existing file; pass --network"),
    ]:
        latent = sample_grids(G, 1, (4, 4), 4, seed=0)
        latent.meta["network"] = network
        latent.save(tmp_path / "l.safetensors")
        assert run_cli(main, [str(tmp_path / "l.safetensors"), *argv]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and err.startswith("error: ") and message in err, err
    assert server.hits == [] and not (tmp_path / "e.png").exists()
