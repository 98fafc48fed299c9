"""Training images and random crops.

``--data`` takes a folder of images or ``builtin:NAME[,NAME...]``: pictures that ship inside
installed packages and so work offline. scikit-image provides ``hubble_deep_field``, ``grass``,
``gravel``, ``brick``, ``coffee``, ``astronaut`` (needs ``pip install scikit-image``);
scikit-learn provides ``china`` and ``flower``. ``builtin:textures`` is grass, gravel and brick.

Crops are drawn by a ``torch.Generator``, so a training step's batch is a function of the seed
and the step alone: a resumed run sees exactly the batches an uninterrupted one would.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import InputError

log = logging.getLogger(__name__)

SKIMAGE_IMAGES = ("hubble_deep_field", "grass", "gravel", "brick", "coffee", "astronaut")
SKLEARN_IMAGES = ("china", "flower")
ALIASES = {"textures": ("grass", "gravel", "brick")}


def builtin_image(name: str) -> np.ndarray:
    """A packaged picture as uint8 ``[H, W, 3]``."""
    if name in SKLEARN_IMAGES:
        from sklearn.datasets import load_sample_image

        return np.asarray(load_sample_image(f"{name}.jpg"))
    if name in SKIMAGE_IMAGES:
        try:
            import skimage.data
        except ImportError:
            raise InputError(f"builtin:{name} comes with scikit-image: pip install scikit-image") from None
        img = np.asarray(getattr(skimage.data, name)())
        if img.ndim == 2:
            img = np.repeat(img[..., None], 3, axis=2)
        return img[..., :3]
    known = ", ".join(SKIMAGE_IMAGES + SKLEARN_IMAGES + tuple(ALIASES))
    raise InputError(f"unknown built-in image {name!r}; choose from {known}")


def load_images(data: str, scale: float = 1.0, min_side: int = 8) -> tuple[list[torch.Tensor], list[str]]:
    """Read ``data`` (folder or ``builtin:...``) into float tensors ``[3, H, W]`` in [-1, 1],
    resized by ``scale``. Unreadable files in a folder are reported and skipped."""
    if not (0 < scale <= 4):
        raise InputError(f"--data-scale must be in (0, 4], got {scale}")
    pictures: list[tuple[str, np.ndarray]] = []
    if data.startswith("builtin:"):
        names: list[str] = []
        for n in data[len("builtin:") :].split(","):
            names.extend(ALIASES.get(n.strip(), (n.strip(),)))
        pictures = [(n, builtin_image(n)) for n in names]
    else:
        from ..io.pictures import list_images, read_image

        if not os.path.isdir(data):
            raise InputError(f"--data must be a folder of images or builtin:NAME, got {data!r}")
        for path in list_images([data]):
            try:
                pictures.append((path.name, read_image(path).pixels))
            except InputError as e:
                log.warning("skipping %s: %s", path, e)
        if not pictures:
            raise InputError(f"no readable images in {data}")
    tensors = []
    for name, pic in pictures:
        t = torch.from_numpy(np.array(pic, dtype=np.float32)).permute(2, 0, 1) / 127.5 - 1
        if scale != 1.0:
            size = (max(1, round(t.shape[1] * scale)), max(1, round(t.shape[2] * scale)))
            t = F.interpolate(t[None], size=size, mode="area" if scale < 1 else "bilinear", align_corners=None if scale < 1 else False)[0]
        if min(t.shape[1:]) < min_side:
            raise InputError(f"image {name} is {t.shape[1]}x{t.shape[2]} after scaling, smaller than the {min_side} px crops")
        tensors.append(t.contiguous())
    return tensors, [n for n, _ in pictures]


@dataclass
class CropSampler:
    """Random ``size x size`` crops (with random horizontal flips) from a list of ``[3, H, W]`` images;
    every image equally likely."""

    images: list[torch.Tensor]
    size: int

    def __post_init__(self) -> None:
        small = [tuple(t.shape[1:]) for t in self.images if min(t.shape[1:]) < self.size]
        if small:
            raise InputError(f"images {small} are smaller than the {self.size} px training crops; lower --crop or raise --data-scale")

    def sample(self, batch: int, gen: torch.Generator) -> torch.Tensor:
        """``[batch, 3, size, size]`` drawn with ``gen``."""
        out = []
        which = torch.randint(0, len(self.images), (batch,), generator=gen)
        for i in which.tolist():
            img = self.images[i]
            y = int(torch.randint(0, img.shape[1] - self.size + 1, (1,), generator=gen))
            x = int(torch.randint(0, img.shape[2] - self.size + 1, (1,), generator=gen))
            crop = img[:, y : y + self.size, x : x + self.size]
            if bool(torch.rand((), generator=gen) < 0.5):
                crop = crop.flip(-1)
            out.append(crop)
        return torch.stack(out)


@dataclass
class ImageSetSampler:
    """Whole images (with random horizontal flips) from uint8 ``[N, S, S, 3]``; ``size`` = S."""

    images: np.ndarray

    def __post_init__(self) -> None:
        if self.images.ndim != 4 or self.images.shape[3] != 3 or self.images.shape[1] != self.images.shape[2] or self.images.dtype != np.uint8:
            raise InputError(f"an image set must be uint8 [N, S, S, 3], got {self.images.dtype} {tuple(self.images.shape)}")
        if len(self.images) < 2:
            raise InputError("an image set needs at least 2 images")

    @property
    def size(self) -> int:
        return int(self.images.shape[1])

    def tensors(self, index: np.ndarray) -> torch.Tensor:
        """``[len(index), 3, S, S]`` in [-1, 1]."""
        return torch.from_numpy(self.images[index]).permute(0, 3, 1, 2).float() / 127.5 - 1

    def sample(self, batch: int, gen: torch.Generator) -> torch.Tensor:
        """``[batch, 3, S, S]`` drawn with ``gen``."""
        which = torch.randint(0, len(self.images), (batch,), generator=gen).numpy()
        x = self.tensors(which)
        flip = torch.rand(batch, generator=gen) < 0.5
        return torch.where(flip[:, None, None, None], x.flip(-1), x)
