"""A face attribute labeler trained on real photos: CelebA's 40 attributes, plus age (UTKFace).

The network reads 64 px faces aligned with the ``faces`` template (the framing of the embedded
``faces`` generator's training photos, so it reads generated faces as it reads real ones). It is
a plain 4-stage CNN whose heads are 1x1 convolutions before a global average, so every output
also exists as a map over the image (a class activation map): ``face:Smiling`` scores whole
images, ``face:Smiling-map`` scores each place, which per-location direction fitting uses.

Outputs: one logit per CelebA attribute (``Smiling``, ``Eyeglasses``, ``Male``, ``Young``,
``Bangs``, ``Mouth_Slightly_Open``, ...; UTKFace's gender labels train ``Male`` too) and ``age``
in years (UTKFace only). Weights ship in ``attributes/weights/face_labeler.safetensors`` with a
card beside them; they inherit the photos' non-commercial research terms.
"""

from __future__ import annotations

import csv
import json
import logging
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from spatial_latent.errors import CheckpointError, InputError

log = logging.getLogger(__name__)

WEIGHTS = Path(__file__).parent / "weights" / "face_labeler.safetensors"
FORMAT = "spatial-latent-face-labeler"
CELEBA_ATTRIBUTES = (
    "5_o_Clock_Shadow", "Arched_Eyebrows", "Attractive", "Bags_Under_Eyes", "Bald", "Bangs", "Big_Lips", "Big_Nose",
    "Black_Hair", "Blond_Hair", "Blurry", "Brown_Hair", "Bushy_Eyebrows", "Chubby", "Double_Chin", "Eyeglasses",
    "Goatee", "Gray_Hair", "Heavy_Makeup", "High_Cheekbones", "Male", "Mouth_Slightly_Open", "Mustache", "Narrow_Eyes",
    "No_Beard", "Oval_Face", "Pale_Skin", "Pointy_Nose", "Receding_Hairline", "Rosy_Cheeks", "Sideburns", "Smiling",
    "Straight_Hair", "Wavy_Hair", "Wearing_Earrings", "Wearing_Hat", "Wearing_Lipstick", "Wearing_Necklace",
    "Wearing_Necktie", "Young",
)
AGE_SCALE = 50.0  # the age head predicts years / AGE_SCALE


class FaceAttributeNet(nn.Module):
    """``[B, 3, 64, 64]`` in [-1, 1] -> maps ``[B, A + 1, 8, 8]``: A attribute logits and age
    (years / 50) per place; their spatial mean is the per-image output."""

    def __init__(self, widths: tuple[int, ...] = (16, 32, 64, 128), num_attributes: int = len(CELEBA_ATTRIBUTES)) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        cin = 3
        for i, w in enumerate(widths):
            layers += [nn.Conv2d(cin, w, 3, padding=1, bias=False), nn.BatchNorm2d(w), nn.ReLU(inplace=True)]
            if i >= len(widths) // 2:  # a second conv where it is cheap (coarse stages)
                layers += [nn.Conv2d(w, w, 3, padding=1, bias=False), nn.BatchNorm2d(w), nn.ReLU(inplace=True)]
            if i < len(widths) - 1:
                layers.append(nn.MaxPool2d(2))
            cin = w
        self.features = nn.Sequential(*layers)
        self.dropout = nn.Dropout2d(0.2)
        self.head = nn.Conv2d(cin, num_attributes + 1, 1)
        self.widths = widths
        self.num_attributes = num_attributes

    def maps(self, x: torch.Tensor) -> torch.Tensor:
        """``[B, 3, 64, 64]`` -> ``[B, A + 1, 8, 8]``."""
        return self.head(self.dropout(self.features(x)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``[B, 3, 64, 64]`` -> ``[B, A + 1]`` (logits, then age / 50)."""
        return self.maps(x).mean(dim=(2, 3))


@dataclass
class LabeledFaces:
    """Targets for an aligned set: ``attributes`` float ``[N, A]`` (NaN where unknown) and
    ``age`` ``[N]`` (NaN where unknown)."""

    attributes: np.ndarray
    age: np.ndarray
    names: tuple[str, ...] = CELEBA_ATTRIBUTES


def read_labels(root: str | Path, names: np.ndarray) -> LabeledFaces:
    """Join the shared data set's CSVs to an aligned set's ``names`` (``celeba/000001.jpg``, ...)."""
    root = Path(root)
    celeba: dict[str, list[float]] = {}
    with open(root / "celeba_attributes.csv", newline="") as f:
        rows = csv.reader(f)
        header = next(rows)
        idx = [header.index(a) for a in CELEBA_ATTRIBUTES]
        for r in rows:
            celeba[r[0]] = [float(r[i]) for i in idx]
    utk: dict[str, tuple[float, float]] = {}
    with open(root / "utkface_labels.csv", newline="") as f:
        for r in csv.DictReader(f):
            utk[r["file"]] = (float(r["age"]), float(r["gender"]))
    attrs = np.full((len(names), len(CELEBA_ATTRIBUTES)), np.nan, np.float32)
    age = np.full(len(names), np.nan, np.float32)
    male = CELEBA_ATTRIBUTES.index("Male")
    for i, n in enumerate(names):
        folder, _, file = str(n).partition("/")
        if folder == "celeba" and file in celeba:
            attrs[i] = celeba[file]
        elif folder == "utkface" and file in utk:
            age[i], gender = utk[file]
            attrs[i, male] = 1.0 - gender  # UTKFace: 0 male, 1 female
    return LabeledFaces(attrs, age)


@dataclass
class LabelerTrainConfig:
    epochs: int = 8
    batch: int = 64
    lr: float = 2e-3
    weight_decay: float = 1e-4
    seed: int = 0
    widths: tuple[int, ...] = (16, 32, 64, 128)


def _augment(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Flip, shift by up to 4 px (reflect), small scale and colour jitter: ``[B, 3, 64, 64]``."""
    b = x.shape[0]
    flip = torch.rand(b, generator=gen) < 0.5
    x = torch.where(flip[:, None, None, None], x.flip(-1), x)
    theta = torch.zeros(b, 2, 3)
    s = 1 + (torch.rand(b, generator=gen) - 0.5) * 0.16
    theta[:, 0, 0] = s
    theta[:, 1, 1] = s
    theta[:, :, 2] = (torch.rand(b, 2, generator=gen) - 0.5) * 0.25
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    x = F.grid_sample(x, grid, padding_mode="reflection", align_corners=False)
    bright = (torch.rand(b, 1, 1, 1, generator=gen) - 0.5) * 0.4
    contrast = 1 + (torch.rand(b, 1, 1, 1, generator=gen) - 0.5) * 0.4
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    return ((x - mean) * contrast + mean + bright).clamp(-1, 1)


def _loss(out: torch.Tensor, attrs: torch.Tensor, age: torch.Tensor) -> torch.Tensor:
    logits, age_pred = out[:, :-1], out[:, -1]
    known = ~torch.isnan(attrs)
    loss = F.binary_cross_entropy_with_logits(logits[known], attrs[known]) if known.any() else out.sum() * 0
    has_age = ~torch.isnan(age)
    if has_age.any():
        loss = loss + F.smooth_l1_loss(age_pred[has_age], age[has_age] / AGE_SCALE)
    return loss


def train_face_labeler(
    images: np.ndarray,
    labels: LabeledFaces,
    cfg: LabelerTrainConfig,
    progress: Callable[[int, int, float], None] | None = None,
) -> FaceAttributeNet:
    """Train on uint8 ``[N, 64, 64, 3]`` photos and their labels (NaN = unknown)."""
    if images.ndim != 4 or images.shape[1:] != (64, 64, 3):
        raise InputError(f"the face labeler trains on 64 px aligned faces [N, 64, 64, 3], got {images.shape}")
    torch.manual_seed(cfg.seed)
    net = FaceAttributeNet(cfg.widths)
    steps_per_epoch = max(1, len(images) // cfg.batch)
    total = cfg.epochs * steps_per_epoch
    opt = torch.optim.AdamW(net.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=cfg.lr, total_steps=total, pct_start=0.15)
    gen = torch.Generator().manual_seed(cfg.seed)
    attrs_all, age_all = torch.from_numpy(labels.attributes), torch.from_numpy(labels.age)
    step = 0
    net.train()
    for _ in range(cfg.epochs):
        order = torch.randperm(len(images), generator=gen)
        for k in range(steps_per_epoch):
            idx = order[k * cfg.batch : (k + 1) * cfg.batch]
            x = torch.from_numpy(images[idx.numpy()]).permute(0, 3, 1, 2).float() / 127.5 - 1
            loss = _loss(net(_augment(x, gen)), attrs_all[idx], age_all[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            step += 1
            if progress is not None:
                progress(step, total, float(loss))
    return net.eval()


@torch.no_grad()
def predict(net: FaceAttributeNet, images: np.ndarray | torch.Tensor, batch: int = 256) -> torch.Tensor:
    """``[N, A + 1]``: attribute probabilities and age in years, for uint8 ``[N, 64, 64, 3]`` or
    float ``[N, 3, 64, 64]`` in [-1, 1]."""
    out = []
    for i in range(0, len(images), batch):
        x = images[i : i + batch]
        if isinstance(x, np.ndarray):
            x = torch.from_numpy(x).permute(0, 3, 1, 2).float() / 127.5 - 1
        o = net(x.float())
        out.append(torch.cat([torch.sigmoid(o[:, :-1]), (o[:, -1:] * AGE_SCALE)], dim=1))
    return torch.cat(out)


def evaluate(net: FaceAttributeNet, images: np.ndarray, labels: LabeledFaces) -> dict[str, dict[str, float]]:
    """Held-out accuracy per attribute (threshold 0.5) next to the majority-class rate, and the
    age error in years: ``{name: {accuracy, majority, count}}``, ``{'age': {mae_years, count}}``."""
    pred = predict(net, images).numpy()
    report: dict[str, dict[str, float]] = {}
    for j, name in enumerate(labels.names):
        known = ~np.isnan(labels.attributes[:, j])
        if not known.any():
            continue
        y = labels.attributes[known, j]
        acc = float(((pred[known, j] > 0.5) == (y > 0.5)).mean())
        report[name] = {"accuracy": acc, "majority": float(max(y.mean(), 1 - y.mean())), "count": int(known.sum())}
    has_age = ~np.isnan(labels.age)
    if has_age.any():
        report["age"] = {"mae_years": float(np.abs(pred[has_age, -1] - labels.age[has_age]).mean()), "count": int(has_age.sum())}
    return report


def save_face_labeler(net: FaceAttributeNet, path: str | Path, info: dict[str, Any]) -> Path:
    from safetensors.torch import save_file

    from spatial_latent.atomic import atomic_write

    path = Path(path)
    meta = {"format": FORMAT, "widths": json.dumps(list(net.widths)), "attributes": json.dumps(list(CELEBA_ATTRIBUTES)),
            "info": json.dumps(info, sort_keys=True)}
    tensors = {k: v.detach().cpu().float().contiguous() for k, v in net.state_dict().items() if v.dtype.is_floating_point}
    with atomic_write(path) as tmp:
        save_file(tensors, str(tmp), metadata=meta)
    return path


def load_face_labeler(path: str | Path = WEIGHTS) -> tuple[FaceAttributeNet, dict[str, Any]]:
    """The network (eval mode) and its recorded info (accuracy, template, data)."""
    from safetensors import safe_open

    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"the face labeler weights are missing ({path}); reinstall spatial-latent")
    try:
        with safe_open(str(path), framework="pt", device="cpu") as f:
            meta = dict(f.metadata() or {})
            if meta.get("format") != FORMAT:
                raise CheckpointError(f"{path} is not a face labeler file")
            state = {k: f.get_tensor(k) for k in f.keys()}
        widths = tuple(int(w) for w in json.loads(meta["widths"]))
        names = json.loads(meta["attributes"])
        info = json.loads(meta.get("info", "{}"))
    except CheckpointError:
        raise
    except Exception as e:
        raise CheckpointError(f"{path}: unreadable face labeler ({type(e).__name__}: {e})") from None
    net = FaceAttributeNet(widths, len(names))
    missing, unexpected = net.load_state_dict(state, strict=False)
    if unexpected or any(not k.endswith("num_batches_tracked") for k in missing):
        raise CheckpointError(f"{path}: face labeler tensors do not match its widths")
    return net.eval(), info


@dataclass
class FaceLabeler:
    """A labeler (see :mod:`attributes.labelers`): images ``[B, 3, H, W]`` in [-1, 1], aligned
    with the ``faces`` template, -> ``[B]`` probability of ``attribute`` (or age in years), or
    with ``spatial`` a map ``[B, 8, 8]`` of logits (per-location fitting)."""

    attribute: str
    spatial: bool = False
    path: Path = WEIGHTS
    _net: FaceAttributeNet | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if self.attribute != "age" and self.attribute not in CELEBA_ATTRIBUTES:
            raise InputError(f"unknown face attribute {self.attribute!r}; known: age, {', '.join(CELEBA_ATTRIBUTES)}")
        self.name = f"face:{self.attribute}" + ("-map" if self.spatial else "")

    @property
    def index(self) -> int:
        return len(CELEBA_ATTRIBUTES) if self.attribute == "age" else CELEBA_ATTRIBUTES.index(self.attribute)

    @torch.no_grad()
    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        if self.spatial:
            return self._maps(images) * (AGE_SCALE if self.attribute == "age" else 1.0)
        out = self.score(images)
        return out if self.attribute == "age" else torch.sigmoid(out)

    def score(self, images: torch.Tensor) -> torch.Tensor:
        """Differentiable ``[B]`` score for gradient directions: the attribute's logit (age: years)."""
        out = self._maps(images).mean(dim=(1, 2))
        return out * AGE_SCALE if self.attribute == "age" else out

    def _maps(self, images: torch.Tensor) -> torch.Tensor:
        if self._net is None:
            self._net = load_face_labeler(self.path)[0].requires_grad_(False)
        net = self._net.to(images.device)
        x = images.float()
        if x.shape[-1] != 64 or x.shape[-2] != 64:
            x = F.interpolate(x, size=(64, 64), mode="area" if x.shape[-1] > 64 else "bilinear", align_corners=None if x.shape[-1] > 64 else False)
        return net.maps(x)[:, self.index]


def face_labeler_names() -> dict[str, str]:
    """``face:...`` labeler specs -> one-line descriptions."""
    out = {f"face:{a}": f"probability of CelebA's {a} (face labeler; face:{a}-map per place)" for a in CELEBA_ATTRIBUTES}
    out["face:age"] = "age in years (face labeler trained on UTKFace; face:age-map per place)"
    return out


def majority_rate(y: np.ndarray) -> float:
    y = y[~np.isnan(y)]
    return float(max(y.mean(), 1 - y.mean())) if len(y) else math.nan
