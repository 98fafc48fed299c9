"""``load_generator`` / ``save_generator``: any supported checkpoint in, a :class:`Generator` out.

Resolution order for ``load_generator(x)``: a built-in name (``tiny``, untrained; ``demo`` and
``faces``, small models trained by this project and shipped in the package), a well-known network
name from :mod:`spatial_latent.checkpoints.hub` (downloaded into the cache, verified on every
load), else a path (never a URL: nothing else is downloaded), whose format is
detected from its bytes: the native safetensors format, NVIDIA ``.pkl`` (PyTorch or
TensorFlow), or a torch file (rosinality, pSp/e4e, NVIDIA-layout state dict).
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import torch

from ..errors import CheckpointError, InputError
from ..networks import Generator, GeneratorConfig

log = logging.getLogger(__name__)

BUILTIN_GENERATORS = {
    # Untrained, seeded; renders noise-like images. For smoke tests and CI, not for looking at.
    "tiny": dict(z_dim=64, w_dim=64, img_resolution=32, channels={4: 32, 8: 32, 16: 32, 32: 16}, mapping_layers=2),
}

WEIGHTS_DIR = Path(__file__).parent / "weights"
# Trained here, shipped inside the package; each has a model card beside it in weights/.
EMBEDDED_MODELS = {
    "demo": "a 32 px padding-free texture model (gravel, grass, stars) for seamless scenes of any size",
    "faces": "a 64 px face model trained on 30k aligned CelebA/UTKFace photos (non-commercial research terms)",
}
DEMO_MODEL = WEIGHTS_DIR / "demo.safetensors"
FACES_MODEL = WEIGHTS_DIR / "faces.safetensors"


def embedded_model_path(name: str) -> Path:
    """Path of an embedded generator (``demo``, ``faces``); a :class:`CheckpointError` when this
    install lacks it."""
    if name not in EMBEDDED_MODELS:
        raise InputError(f"{name!r} is not an embedded model; embedded: {', '.join(EMBEDDED_MODELS)}")
    path = WEIGHTS_DIR / f"{name}.safetensors"
    if not path.is_file():
        raise CheckpointError(f"the embedded {name} model is missing from this install ({path}); reinstall spatial-latent")
    return path


def builtin_networks() -> list[tuple[str, str]]:
    """``(name, description)`` of the networks that need no download: ``tiny`` and the embedded models."""
    return [("tiny", "untrained, seeded: noise-like images for smoke tests")] + list(EMBEDDED_MODELS.items())


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """``'auto'`` -> CUDA when available, else CPU; ``'cuda'`` without a GPU is an :class:`InputError`."""
    if isinstance(device, torch.device):
        device = str(device)
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError):
        raise InputError(f"unknown device {device!r}; use auto, cpu, cuda or cuda:N") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise InputError(f"device {device!r} requested but no CUDA GPU is available; use --device cpu")
    if dev.type not in ("cpu", "cuda"):
        raise InputError(f"device type {dev.type!r} is not supported; use auto, cpu or cuda")
    return dev


def build_generator(config: GeneratorConfig, state_dict: dict[str, torch.Tensor], source: str = "checkpoint") -> Generator:
    """Construct a :class:`Generator` and load ``state_dict`` strictly, with clear errors."""
    from .validate import validate_state_dict

    validate_state_dict(config, state_dict, source=source)
    G = Generator(config)
    G.load_state_dict(state_dict, strict=True)
    return G.eval().requires_grad_(False)


def random_generator(config: GeneratorConfig | dict, seed: int = 0) -> Generator:
    """A freshly initialised generator (seeded), with ``w_avg`` filled in."""
    if isinstance(config, dict):
        config = GeneratorConfig(**config)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        G = Generator(config)
    G.mapping.w_avg.copy_(G.compute_w_avg(num_samples=2000, seed=seed))
    return G.eval().requires_grad_(False)


def load_generator(path_or_name: str | os.PathLike, device: str | torch.device = "cpu") -> Generator:
    """Load a StyleGAN2 generator from any supported checkpoint, a well-known name or a built-in.

    Every hyper-parameter is inferred from the file; a URL is refused (only the networks of
    the built-in registry are ever downloaded). Checkpoints without an average W
    (rosinality training checkpoints) get one computed from 10,000 seeded samples.
    Raises :class:`~spatial_latent.errors.CheckpointError` (or a subclass) on a bad file and
    :class:`~spatial_latent.errors.DownloadError` when a well-known network cannot be fetched.
    """
    from . import hub

    dev = resolve_device(device)
    name = os.fspath(path_or_name)
    if name in BUILTIN_GENERATORS:
        G = random_generator(BUILTIN_GENERATORS[name])
        G.config.source_format = f"builtin:{name}"
        return G.to(dev)
    path = embedded_model_path(name) if name in EMBEDDED_MODELS else Path(name).expanduser()
    if not path.exists():
        hub.refuse_url(name)  # downloads come only from the built-in registry
        if hub.is_known(name):
            path = hub.fetch(name)
    G, w_avg_present = _load_path(path)
    if not w_avg_present:
        log.info("%s has no average W; computing it from 10,000 seeded samples", path)
        G.mapping.w_avg.copy_(G.compute_w_avg())
    return G.to(dev)


def _load_path(path: Path) -> tuple[Generator, bool]:
    from .readers import detect_format, read_checkpoint
    from .native import read_native

    if not path.exists():
        raise CheckpointError(f"checkpoint not found: {path}")
    if path.is_dir():
        raise CheckpointError(f"{path} is a directory, not a checkpoint file")
    fmt = detect_format(path)
    if fmt == "safetensors":
        config, state, meta = read_native(path)
        G = build_generator(config, state, source=str(path))
        if meta.get("align_template"):
            from ..faces.align import AlignTemplate

            try:
                G.align_template = AlignTemplate.from_dict(json.loads(meta["align_template"]))
            except (ValueError, TypeError, InputError) as e:
                raise CheckpointError(f"{path}: bad alignment template in its metadata ({e})") from None
        return G, True
    ckpt = read_checkpoint(path)
    state = dict(ckpt.state_dict)
    if not ckpt.w_avg_present:
        state.setdefault("mapping.w_avg", torch.zeros([ckpt.config.w_dim]))  # computed by the caller
    G = build_generator(ckpt.config, state, source=str(path))
    return G, ckpt.w_avg_present


def save_generator(G: Generator, path: str | os.PathLike, extra_metadata: dict[str, str] | None = None) -> Path:
    """Save ``G`` in the native format (safetensors + JSON config), atomically. Its alignment
    template (faces models) travels in the metadata."""
    from .native import write_native

    meta = {"fingerprint": G.fingerprint()}
    if G.align_template is not None:
        meta["align_template"] = json.dumps(G.align_template.to_dict(), sort_keys=True)
    meta.update(extra_metadata or {})
    return write_native(path, G.config, G.state_dict(), meta)
