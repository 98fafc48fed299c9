"""The StyleGAN2 network itself: architectures, W+ bookkeeping, noise modes, bad input."""

from __future__ import annotations

import pytest
import torch

from spatial_latent.errors import InputError
from spatial_latent.checkpoints.loading import random_generator
from spatial_latent.networks import Generator, GeneratorConfig
from support import TINY_CONFIGS, set_noise_strength


@pytest.fixture(scope="module", params=sorted(TINY_CONFIGS))
def G(request: pytest.FixtureRequest) -> Generator:
    return random_generator(TINY_CONFIGS[request.param], seed=1)


def labels(G: Generator, n: int) -> torch.Tensor | None:
    return torch.eye(G.c_dim)[torch.arange(n) % G.c_dim] if G.c_dim else None


@torch.no_grad()
def test_output_shape_and_num_ws(G: Generator) -> None:
    z = torch.randn(3, G.z_dim)
    ws = G.map(z, labels(G, 3))
    assert ws.shape == (3, G.num_ws, G.w_dim)
    assert G.num_ws == 2 * len(G.config.block_resolutions)
    img = G.synthesis(ws)
    assert img.shape == (3, 3, G.img_resolution, G.img_resolution)
    assert torch.isfinite(img).all()


@torch.no_grad()
def test_every_ws_row_drives_the_image(G: Generator) -> None:
    # Changing any single W+ row must change the image: no row is silently ignored.
    ws = G.map(torch.randn(1, G.z_dim), labels(G, 1))
    base = G.synthesis(ws)
    for row in range(G.num_ws):
        ws2 = ws.clone()
        ws2[:, row] += 1.0
        assert (G.synthesis(ws2) - base).abs().max() > 1e-4, f"row {row} has no effect"


@torch.no_grad()
def test_noise_modes(G: Generator) -> None:
    ws = G.map(torch.randn(2, G.z_dim), labels(G, 2))
    set_noise_strength(G, 0.5)
    const_a, const_b = G.synthesis(ws, noise_mode="const"), G.synthesis(ws, noise_mode="const")
    assert torch.equal(const_a, const_b)
    torch.manual_seed(0)
    rnd = G.synthesis(ws, noise_mode="random")
    none = G.synthesis(ws, noise_mode="none")
    assert (rnd - const_a).abs().max() > 1e-3 and (none - const_a).abs().max() > 1e-3
    set_noise_strength(G, 0.0)
    assert (G.synthesis(ws, noise_mode="const") - G.synthesis(ws, noise_mode="none")).abs().max() == 0


@torch.no_grad()
def test_truncation_interpolates_toward_w_avg(G: Generator) -> None:
    z, c = torch.randn(2, G.z_dim), labels(G, 2)
    w1, w0 = G.map(z, c), G.map(z, c, truncation_psi=0.0)
    assert torch.allclose(w0, G.mapping.w_avg.expand_as(w0))
    w05 = G.map(z, c, truncation_psi=0.5)
    assert torch.allclose(w05, 0.5 * (w1 + w0), atol=1e-6)
    cut = G.map(z, c, truncation_psi=0.0, truncation_cutoff=2)
    assert torch.allclose(cut[:, :2], w0[:, :2]) and torch.equal(cut[:, 2:], w1[:, 2:])


def test_conditional_and_unconditional_inputs_are_checked() -> None:
    cond = random_generator(TINY_CONFIGS["cond"])
    with pytest.raises(InputError, match="conditional"):
        cond.map(torch.randn(2, cond.z_dim))
    plain = random_generator(TINY_CONFIGS["skip"])
    with pytest.raises(InputError, match="not conditional"):
        plain.map(torch.randn(2, plain.z_dim), torch.ones(2, 3))


@pytest.mark.parametrize(
    "bad, message",
    [
        (torch.randn(2, 7), r"z must have shape \[N, 32\], got \(2, 7\)"),
        (torch.randn(2), r"z must have shape \[N, 32\], got \(2,\)"),
        (torch.full((2, 32), float("nan")), "z contains NaN or inf"),
    ],
    ids=["wrong-width", "wrong-rank", "nan"],
)
def test_bad_z_is_a_clear_error(bad: torch.Tensor, message: str) -> None:
    G = random_generator(TINY_CONFIGS["skip"])
    with pytest.raises(InputError, match=message):
        G.map(bad)


def test_bad_ws_is_a_clear_error() -> None:
    G = random_generator(TINY_CONFIGS["skip"])
    with pytest.raises(InputError, match=r"\[N, 8, 32\]"):
        G.synthesis(torch.randn(1, 7, 32))
    ws = torch.zeros(1, 8, 32)
    ws[0, 3, 5] = float("inf")
    with pytest.raises(InputError, match="NaN or inf"):
        G.synthesis(ws)
    with pytest.raises(InputError, match="noise_mode"):
        G.synthesis(torch.zeros(1, 8, 32), noise_mode="loud")


def test_config_validation() -> None:
    with pytest.raises(ValueError, match="power of two"):
        GeneratorConfig(z_dim=8, w_dim=8, img_resolution=48, channels={})
    with pytest.raises(ValueError, match="channels missing"):
        GeneratorConfig(z_dim=8, w_dim=8, img_resolution=16, channels={4: 8, 8: 8})
    with pytest.raises(ValueError, match="architecture"):
        GeneratorConfig(z_dim=8, w_dim=8, img_resolution=8, channels={4: 8, 8: 8}, architecture="unet")
    cfg = GeneratorConfig(**TINY_CONFIGS["cond"])
    assert GeneratorConfig.from_dict(cfg.to_dict()) == cfg


def test_fingerprint_tracks_weights_not_source() -> None:
    a, b = random_generator(TINY_CONFIGS["skip"], seed=3), random_generator(TINY_CONFIGS["skip"], seed=3)
    b.config.source_format = "somewhere-else"
    assert a.fingerprint() == b.fingerprint()
    with torch.no_grad():
        b.synthesis.b8.conv1.bias[0] += 1e-3
    assert a.fingerprint() != b.fingerprint()


def test_gradients_flow_to_ws() -> None:
    G = random_generator(TINY_CONFIGS["resnet"])
    ws = G.map(torch.randn(1, G.z_dim)).detach().requires_grad_(True)
    G.synthesis(ws).square().mean().backward()
    assert ws.grad is not None and (ws.grad.abs().sum(dim=2) > 0).all()


@pytest.mark.parametrize("name", sorted(TINY_CONFIGS))
def test_noise_layers_are_the_layers_that_take_noise_in_run_order(name: str) -> None:
    G = random_generator(TINY_CONFIGS[name])
    ran: list[torch.nn.Module] = []
    takes_noise = [m for m in G.modules() if hasattr(m, "noise_const")]
    hooks = [m.register_forward_hook(lambda m, *_: ran.append(m)) for m in takes_noise]
    G.synthesis(G.map(torch.randn(1, G.z_dim), torch.eye(G.c_dim)[:1] if G.c_dim else None))
    for h in hooks:
        h.remove()
    layers = G.synthesis.noise_layers()
    assert len(layers) == G.num_ws - 1 == len(takes_noise)
    assert [id(m) for m in layers] == [id(m) for m in ran]


def test_device_is_where_the_weights_are() -> None:
    G = random_generator(TINY_CONFIGS["skip"])
    assert G.device == torch.device("cpu")
    assert G.to("meta").device.type == "meta"
