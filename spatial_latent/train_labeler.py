"""Train the face attribute labeler on aligned real photos and report held-out accuracy.

    python -m spatial_latent.prepare_faces ../shared/datasets/faces --out faces64.npz
    python -m spatial_latent.train_labeler --data faces64.npz --labels ../shared/datasets/faces --out face_labeler.safetensors

Trains on the set's training split, evaluates on its validation split (never trained on): each
attribute's accuracy next to its majority-class rate, and the age error in years. Writes the
weights (safetensors, usable as ``--labeler face:NAME`` once placed in attributes/weights/) and
a JSON report beside them.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from pathlib import Path
from typing import Sequence

from .cli import run_cli, with_exit_status
from .errors import InputError


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m spatial_latent.train_labeler", description="Train the face attribute labeler (CelebA's 40 attributes, age from UTKFace) on an aligned photo set and report held-out accuracy per attribute.")
    p.epilog = with_exit_status(p.epilog)
    p.add_argument("--data", type=Path, required=True, help="aligned set .npz from python -m spatial_latent.prepare_faces (64 px)")
    p.add_argument("--labels", type=Path, required=True, help="folder with celeba_attributes.csv and utkface_labels.csv")
    p.add_argument("--out", type=Path, required=True, help="weights to write (.safetensors); the report goes beside it (.json)")
    p.add_argument("--epochs", type=int, default=8, help="passes over the training photos (default 8)")
    p.add_argument("--batch", type=int, default=64, help="photos per step (default 64)")
    p.add_argument("--lr", type=float, default=2e-3, help="peak learning rate, one-cycle schedule (default 2e-3)")
    p.add_argument("--threads", type=int, default=0, help="CPU threads (default: torch's choice)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --out")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    import torch
    from tqdm import tqdm

    from attributes.face_labeler import LabelerTrainConfig, evaluate, read_labels, save_face_labeler, train_face_labeler

    from .faces.dataset import AlignedFaces

    if args.out.exists() and not args.overwrite:
        raise InputError(f"{args.out} exists; pass --overwrite to replace it")
    if args.threads:
        torch.set_num_threads(args.threads)
    faces = AlignedFaces.load(args.data)
    labels = read_labels(args.labels, faces.names)
    tr, va = faces.split(False), faces.split(True)
    cfg = LabelerTrainConfig(epochs=args.epochs, batch=args.batch, lr=args.lr)
    print(f"training on {len(tr)} photos ({faces.template.name} template, {faces.images.shape[1]} px), evaluating on {len(va)} held out")
    bar = tqdm(total=1, unit="step", desc="labeler")
    t0 = time.perf_counter()

    def progress(step: int, total: int, loss: float) -> None:
        bar.total = total
        bar.update(1)
        bar.set_postfix(loss=f"{loss:.3f}", refresh=False)

    sub = lambda idx: dataclasses.replace(labels, attributes=labels.attributes[idx], age=labels.age[idx])  # noqa: E731
    net = train_face_labeler(faces.images[tr], sub(tr), cfg, progress)
    bar.close()
    seconds = time.perf_counter() - t0
    report = evaluate(net, faces.images[va], sub(va))
    info = {"template": faces.template.to_dict(), "train_photos": len(tr), "validation_photos": len(va), "epochs": cfg.epochs,
            "seconds": round(seconds), "threads": torch.get_num_threads(), "validation": report}
    save_face_labeler(net, args.out, info)
    args.out.with_suffix(".json").write_text(json.dumps(info, indent=1, sort_keys=True))
    print(f"{'attribute':22s} {'accuracy':>8s} {'majority':>8s} {'count':>6s}")
    for name, r in report.items():
        if name == "age":
            print(f"{'age (MAE, years)':22s} {r['mae_years']:8.2f} {'':8s} {r['count']:6d}")
        else:
            print(f"{name:22s} {r['accuracy']:8.3f} {r['majority']:8.3f} {r['count']:6d}")
    print(f"wrote {args.out} ({seconds / 60:.1f} min)")
    return 0


if __name__ == "__main__":
    raise SystemExit(run_cli(main))
