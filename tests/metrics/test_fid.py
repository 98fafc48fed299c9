"""FID's weights path follows the download cache (checkpoints.hub.cache_dir), and is reported when absent."""

from __future__ import annotations

from pathlib import Path

import pytest

from spatial_latent.checkpoints import hub
from spatial_latent.metrics.fid import WEIGHTS_NAME, FIDUnavailable, default_weights_path, load_inception


def test_weights_live_in_the_download_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("SPATIAL_LATENT_CACHE", "~/models")  # '~' expanded, as the hub does
    assert default_weights_path() == tmp_path / "home" / "models" / WEIGHTS_NAME == hub.cache_dir() / WEIGHTS_NAME
    monkeypatch.setenv("SPATIAL_LATENT_CACHE", "  ")  # blank: the default cache
    assert default_weights_path() == tmp_path / "home" / ".cache" / "spatial_latent" / WEIGHTS_NAME


def test_missing_weights_name_the_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SPATIAL_LATENT_CACHE", str(tmp_path))
    with pytest.raises(FIDUnavailable, match=str(tmp_path / WEIGHTS_NAME)):
        load_inception()
