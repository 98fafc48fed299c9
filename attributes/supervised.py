"""``AttributeModel``: supervised edit directions, one per grid location (and layer group).

A scikit-learn linear model is fitted from latents to the attribute label; the normal of its
decision boundary, mapped back to latent coordinates, is the edit direction (InterFaceGAN's
recipe). Where the model looks (``locations``):

* ``'joint'``: one model on the whole grid flattened (every cell's latent side by side, as
  StyleMapGAN does with its spatial style maps); its normal, reshaped to the grid, is a step per
  cell, large where the attribute lives. The natural choice for per-image labels.
* ``'independent'``: one model per cell, from that cell's latent to that cell's label. The
  natural choice for per-location labels (score maps); held-out scores per cell.
* ``'shared'``: one step for every cell (a global direction), fitted on the cell mean (per-image
  labels) or on every cell as a sample (per-location labels).
* ``'auto'``: joint for per-image labels, independent for per-location labels.

* Classifiers (``'logistic'``, ``'svm'``): binary labels are used as they are; continuous scores
  are turned into classes InterFaceGAN's way, keeping only the most confident samples (the
  ``select_ratio`` highest as positives, as many lowest as negatives).
* Regression (``'ridge'``): scores are regressed directly, on every sample.
* A held-out part (``val_fraction``) of the samples is kept out of the fit and scored:
  accuracy for classifiers, R^2 for ridge; per location in ``Direction.held_out``.
* ``condition_on``: other directions are projected out of the fitted normal at every location
  (conditional editing: moving along the result leaves their linear scores unchanged).

Features are standardized for the fit; the direction is the gradient of the decision function
in latent space (``coef / std``). Its length is set to one standard deviation of the training
latents along it, so strength 1 is a typical variation.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import time
from typing import TYPE_CHECKING, Any, Callable, Sequence

import numpy as np
import torch

from spatial_latent.errors import InputError
from spatial_latent.latents.grid import LatentGrid

from .direction import Direction, grid_fingerprint
from .sampling import pool_labels, sample_labeled

if TYPE_CHECKING:
    from spatial_latent.networks import Generator

log = logging.getLogger(__name__)

METHODS = ("logistic", "svm", "ridge")
LOCATIONS = ("auto", "joint", "independent", "shared")


class _OneClass(Exception):
    """Labels of one fit hold a single class (or a constant score)."""


@dataclasses.dataclass
class AttributeModel:
    """Settings of a supervised fit (see the module docstring).

    ``method``: ``'logistic'``, ``'svm'`` (linear SVM) or ``'ridge'``.
    ``locations``: ``'auto'``, ``'joint'``, ``'independent'`` or ``'shared'`` (module docstring).
    ``layer_groups``: ``[start, stop)`` layer ranges of a w+ grid fitted separately (default: all
    layers together); a 'w' grid has one layer.
    ``select_ratio``: fraction of samples kept at each end of continuous scores for classifiers
    (``None``: split at the median, keep all).
    ``val_fraction``: held-out fraction; ``regularization``: C for classifiers, alpha for ridge.
    """

    method: str = "logistic"
    locations: str = "auto"
    layer_groups: Sequence[tuple[int, int]] | None = None
    select_ratio: float | None = 0.2
    val_fraction: float = 0.3
    regularization: float = 1.0
    seed: int = 0
    max_iter: int = 1000

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise InputError(f"unknown method {self.method!r}; choose from {METHODS}")
        if self.select_ratio is not None and not 0 < self.select_ratio <= 0.5:
            raise InputError(f"select_ratio must be in (0, 0.5], got {self.select_ratio}")
        if not 0 <= self.val_fraction < 1:
            raise InputError(f"val_fraction must be in [0, 1), got {self.val_fraction}")
        if self.locations not in LOCATIONS:
            raise InputError(f"unknown locations mode {self.locations!r}; choose from {LOCATIONS}")
        if not self.regularization > 0:
            raise InputError("regularization must be > 0")

    # -- public ------------------------------------------------------------------------------------
    def fit(
        self,
        grids: LatentGrid | torch.Tensor,
        labels: torch.Tensor | np.ndarray | Sequence[float],
        name: str = "attribute",
        condition_on: Sequence[Direction] = (),
        progress: bool = False,
    ) -> Direction:
        """Fit a direction from latent grids and labels.

        ``grids``: a :class:`LatentGrid` (or its data ``[N, L, C, h, w]``; L = 1 is space 'w').
        ``labels``: per image ``[N]`` (binary or scores) or per location ``[N, h, w]`` (or image-
        sized score maps ``[N, H, W]``, area-averaged onto the cells).
        Returns a :class:`Direction` ``[L, C, h, w]`` (``[L, C, 1, 1]`` for ``'shared'``).
        """
        t0 = time.perf_counter()
        grid = grids if isinstance(grids, LatentGrid) else LatentGrid(grids, space="w" if grids.shape[1] == 1 else "w+")
        x = grid.data.detach().to("cpu", torch.float32)
        if not torch.isfinite(x).all():
            raise InputError("latent grids contain NaN or inf")
        n, L, C, h, w = x.shape
        y = _labels_tensor(labels)
        if y.shape[0] != n:
            raise InputError(f"{y.shape[0]} labels for {n} latent grids")
        if y.ndim == 3:
            y = pool_labels(y, (h, w)).double()
        elif y.ndim != 1:
            raise InputError(f"labels must be [N] (per image) or [N, h, w] (per location), got {tuple(y.shape)}")
        per_image = y.ndim == 1
        if per_image and _is_one_class(y.numpy()):
            raise InputError(f"labels for {name!r} are all one class ({y[0].item():g}): nothing to separate")
        groups = _check_groups(self.layer_groups, L)
        mode = self.locations if self.locations != "auto" else ("joint" if per_image else "independent")
        if mode == "joint" and not per_image:
            raise InputError("locations='joint' needs per-image labels; per-location labels fit 'independent' or 'shared'")
        cells: list[Any] = {"independent": [(i, j) for i in range(h) for j in range(w)], "joint": ["joint"], "shared": [None]}[mode]
        out_cells = (1, 1) if mode == "shared" else (h, w)
        vectors = torch.zeros(L, C, *out_cells)
        held = torch.full((len(groups), *out_cells), math.nan)
        tasks = [(gi, g, cell) for gi, g in enumerate(groups) for cell in cells]
        bar = None
        if progress:
            from tqdm import tqdm

            bar = tqdm(total=len(tasks), desc=f"fitting {name}", unit="fit")
        from threadpoolctl import threadpool_limits

        # Many small fits: multi-threaded BLAS/OpenMP only adds overhead (10x slower on a busy machine).
        limits = threadpool_limits(limits=1)
        try:
            skipped = self._run_tasks(tasks, x, y, condition_on, vectors, held, per_image, name, bar)
        finally:
            limits.restore_original_limits()
        if bar is not None:
            bar.close()
        if skipped == len(tasks):
            raise InputError(f"labels for {name!r} are all one class at every cell: nothing to separate")
        space = grid.space
        metric = "r2" if self.method == "ridge" else "accuracy"
        finite = held[torch.isfinite(held)]
        meta: dict[str, Any] = {
            "method": self.method,
            "fitted": "supervised",
            "labels": "per-image" if per_image else "per-location",
            "locations": mode,
            "select_ratio": self.select_ratio if self.method != "ridge" else None,
            "val_fraction": self.val_fraction,
            "regularization": self.regularization,
            "num_samples": n,
            "seed": self.seed,
            "fit_seconds": round(time.perf_counter() - t0, 3),
            f"held_out_{metric}": float(finite.mean()) if finite.numel() else None,
            "cells_without_direction": skipped,
        }
        if grid_fingerprint(grid.meta):
            meta["generator"] = grid_fingerprint(grid.meta)
        if condition_on:
            meta["conditioned_on"] = [d.name for d in condition_on]
        log.info("fitted %s: %d fits on %d samples in %.1f s, held-out %s %.3f", name, len(tasks), n, meta["fit_seconds"], metric, meta[f"held_out_{metric}"] or math.nan)
        return Direction(
            name=name,
            vectors=vectors,
            space=space,
            density=grid.density,
            layer_groups=groups if L > 1 else None,
            held_out=held,
            metric=metric,
            meta=meta,
        )

    def fit_generated(
        self,
        G: Generator,
        labeler: Callable[[torch.Tensor], torch.Tensor],
        num_samples: int = 2000,
        cells: tuple[int, int] = (8, 8),
        density: int = 8,
        name: str | None = None,
        condition_on: Sequence[Direction] = (),
        progress: bool = False,
        **sampling: Any,
    ) -> Direction:
        """Draw ``num_samples`` grids from ``G`` (see :func:`~attributes.sampling.sample_labeled`;
        ``sampling`` passes ``cell_mix``, ``truncation_psi``, ``seed``, ``batch_size``,
        ``padding`` ...), label their images and :meth:`fit`."""
        grids, labels = sample_labeled(G, labeler, num_samples, cells, density, progress=progress, **sampling)
        name = name or getattr(labeler, "name", "attribute")
        d = self.fit(grids, labels, name=name, condition_on=condition_on, progress=progress)
        d.meta.update(
            labeler=repr(labeler),
            sampling={k: v for k, v in grids.meta.items() if k != "generator_fingerprint"},
        )
        return d

    # -- internals ---------------------------------------------------------------------------------
    def _run_tasks(self, tasks: list, x: torch.Tensor, y: torch.Tensor, condition_on: Sequence[Direction], vectors: torch.Tensor, held: torch.Tensor, per_image: bool, name: str, bar: Any) -> int:
        """Run every (layer group, cell) fit, filling ``vectors`` and ``held``; returns how many
        cells had constant labels (no direction there)."""
        L, C, h, w = x.shape[1:]
        skipped = 0
        for gi, (g0, g1), cell in tasks:
            feats, target = self._task_data(x, y, g0, g1, cell)
            others = _other_rows(condition_on, g0, g1, L, C, cell, (h, w))
            try:
                step, score = self._fit_one(feats, target, others)
            except _OneClass:
                if per_image or cell is None:
                    raise InputError(f"labels for {name!r} are all one class: nothing to separate") from None
                skipped += 1  # a cell whose score map never changes: no direction there
                step, score = np.zeros(feats.shape[1]), math.nan
            if cell == "joint":
                vectors[g0:g1] = torch.from_numpy(step.reshape(g1 - g0, C, h, w)).float()
                held[gi] = score
            else:
                oi, oj = cell if cell is not None else (0, 0)
                vectors[g0:g1, :, oi, oj] = torch.from_numpy(step.reshape(g1 - g0, C)).float()
                held[gi, oi, oj] = score
            if bar is not None:
                bar.update(1)
        return skipped

    def _task_data(self, x: torch.Tensor, y: torch.Tensor, g0: int, g1: int, cell: Any) -> tuple[np.ndarray, np.ndarray]:
        """Features ``[samples, D]`` and targets ``[samples]`` of one fit."""
        n = x.shape[0]
        if cell == "joint":
            feats = x[:, g0:g1].reshape(n, -1)  # [N, Lg * C * h * w]: the whole grid at once
            target = y
        elif cell is not None:
            feats = x[:, g0:g1, :, cell[0], cell[1]].reshape(n, -1)
            target = y if y.ndim == 1 else y[:, cell[0], cell[1]]
        elif y.ndim == 1:
            feats = x[:, g0:g1].mean(dim=(-2, -1)).reshape(n, -1)  # a shared step moves the cell mean
            target = y
        else:
            feats = x[:, g0:g1].permute(0, 3, 4, 1, 2).reshape(-1, (g1 - g0) * x.shape[2])  # every cell a sample
            target = y.reshape(-1)
        return feats.double().numpy(), target.double().numpy()

    def _fit_one(self, feats: np.ndarray, target: np.ndarray, others: np.ndarray | None) -> tuple[np.ndarray, float]:
        """One linear fit -> (step in latent coordinates [D], held-out score)."""
        from sklearn.model_selection import train_test_split

        if _is_one_class(target):
            raise _OneClass()
        if self.method == "ridge":
            idx = np.arange(len(target))
            t = (target - target.mean()) / target.std()
            strat = None
        else:
            idx, t = _select(target, self.select_ratio)
            strat = t
        if self.val_fraction > 0:
            if strat is not None and np.bincount(strat.astype(np.int64)).min() < 2:
                raise InputError("too few samples in one class to hold some out; draw more samples or raise select_ratio")
            tr, va = train_test_split(np.arange(len(idx)), test_size=self.val_fraction, random_state=self.seed, stratify=strat)
        else:
            tr, va = np.arange(len(idx)), np.arange(0)
        xs = feats[idx]
        mu, sd = xs[tr].mean(axis=0), xs[tr].std(axis=0)
        sd = np.where(sd > 1e-12, sd, 1.0)
        model = self._estimator(xs.shape[1])
        model.fit((xs[tr] - mu) / sd, t[tr])
        score = float(model.score((xs[va] - mu) / sd, t[va])) if len(va) else math.nan
        normal = np.asarray(model.coef_, dtype=np.float64).reshape(-1) / sd  # gradient in latent coordinates
        if others is not None:
            normal = _project_out(normal, others)
        norm = np.linalg.norm(normal)
        if not np.isfinite(norm) or norm < 1e-12:
            return np.zeros_like(normal), score
        unit = normal / norm
        return unit * float((feats @ unit).std()), score

    def _estimator(self, features: int) -> Any:
        if self.method == "logistic":
            from sklearn.linear_model import LogisticRegression

            # Newton steps converge in a few iterations on few features (per-cell fits, 5-10x
            # faster than L-BFGS here); their D^3 cost rules them out for whole-grid fits.
            solver = "newton-cholesky" if features <= 256 else "lbfgs"
            return LogisticRegression(C=self.regularization, max_iter=self.max_iter, solver=solver)
        if self.method == "svm":
            from sklearn.svm import LinearSVC

            return LinearSVC(C=self.regularization, max_iter=self.max_iter, random_state=self.seed)
        from sklearn.linear_model import Ridge

        return Ridge(alpha=self.regularization)


def _labels_tensor(labels: Any) -> torch.Tensor:
    try:
        y = torch.as_tensor(np.asarray(labels.detach().cpu() if isinstance(labels, torch.Tensor) else labels, dtype=np.float64))
    except (TypeError, ValueError):
        raise InputError("labels must be numbers") from None
    if not torch.isfinite(y).all():
        raise InputError("labels contain NaN or inf")
    return y


def _is_one_class(y: np.ndarray) -> bool:
    return y.size == 0 or bool(np.all(y == y.flat[0]))


def _select(y: np.ndarray, ratio: float | None) -> tuple[np.ndarray, np.ndarray]:
    """Classes for a classifier: binary labels as they are, else the ``ratio`` highest scores as
    positives and as many lowest as negatives (median split for ``None``). Returns
    ``(sample indices, 0/1 classes)``."""
    values = np.unique(y)
    if len(values) == 2:
        return np.arange(len(y)), (y == values[1]).astype(np.int64)
    order = np.argsort(y, kind="stable")
    k = len(y) // 2 if ratio is None else max(1, int(round(ratio * len(y))))
    k = min(k, len(y) // 2)
    neg, pos = order[:k], order[len(y) - k :]
    if k == 0 or y[pos].min() <= y[neg].max():
        raise _OneClass()
    idx = np.concatenate([neg, pos])
    return idx, np.concatenate([np.zeros(k, np.int64), np.ones(k, np.int64)])


def _check_groups(groups: Sequence[tuple[int, int]] | None, L: int) -> list[tuple[int, int]]:
    if groups is None:
        return [(0, L)]
    out = sorted((int(a), int(b)) for a, b in groups)
    if not out:
        raise InputError("layer_groups is empty")
    prev = 0
    for a, b in out:
        if not (0 <= a < b <= L) or a < prev:
            raise InputError(f"layer groups must be non-overlapping [start, stop) ranges within 0..{L}, got {list(groups)}")
        prev = b
    return out


def _other_rows(others: Sequence[Direction], g0: int, g1: int, L: int, C: int, cell: Any, cells: tuple[int, int]) -> np.ndarray | None:
    """The other directions' steps in one fit's feature layout, ``[K, D]``."""
    if not others:
        return None
    rows = []
    for o in others:
        if o.channels != C:
            raise InputError(f"cannot condition on {o.name!r}: {o.channels} channels, the grids have {C}")
        if not o.is_global and (cell is None or o.cells != cells):
            raise InputError(f"cannot condition on {o.name!r}: it is per location on {o.cells} cells")
        v = o.vectors  # [L_o, C, h|1, w|1]
        if cell == "joint":
            v = v.expand(-1, -1, *cells)
        elif o.is_global:
            v = v[..., 0, 0]
        else:
            v = v[..., cell[0], cell[1]]
        if o.num_layers == L:
            v = v[g0:g1]
        elif o.num_layers == 1:
            v = v.expand(g1 - g0, *v.shape[1:])
        elif L == 1:
            v = v.mean(dim=0, keepdim=True)  # a 'w' step changes a w+ score through the layer sum
        else:
            raise InputError(f"cannot condition on {o.name!r}: {o.num_layers} layers, the grids have {L}")
        rows.append(v.reshape(-1).double().numpy())
    return np.stack(rows)


def _project_out(v: np.ndarray, others: np.ndarray) -> np.ndarray:
    coef = np.linalg.pinv(others @ others.T) @ (others @ v)
    return v - others.T @ coef
