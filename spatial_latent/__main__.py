"""``python -m spatial_latent <command> ...`` and the ``spatial-latent`` console script.

Each command is also a module of its own (``python -m spatial_latent.encode``); this front end
only dispatches, so ``spatial-latent encode face.jpg`` and ``python -m spatial_latent.encode
face.jpg`` are the same call.
"""

from __future__ import annotations

import importlib
import sys
from typing import Sequence

# command name -> module under spatial_latent
COMMANDS = {
    "encode": "encode",
    "edit": "edit",
    "generate": "generate",
    "sample": "sample",
    "convert": "convert",
    "fit": "fit",
    "train": "train",
    "train-encoder": "train_encoder",
    "prepare-faces": "prepare_faces",
    "train-labeler": "train_labeler",
    "demo": "demo",
}


def _summary(module: str) -> str:
    doc = importlib.import_module(f"spatial_latent.{module}").__doc__ or ""
    return doc.strip().splitlines()[0] if doc.strip() else ""


def usage() -> str:
    lines = ["usage: spatial-latent <command> [options]   (or: python -m spatial_latent <command>)", "", "commands:"]
    lines += [f"  {name:<14} {_summary(mod)}" for name, mod in COMMANDS.items()]
    lines += ["", "spatial-latent <command> --help explains each one."]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help", "help"):
        print(usage())
        return 0
    if args[0] in ("-V", "--version"):
        from ._version import __version__

        print(__version__)
        return 0
    name = args[0].replace("_", "-")
    if name not in COMMANDS:
        print(f"error: unknown command {args[0]!r}; choose from {', '.join(COMMANDS)}", file=sys.stderr)
        return 2
    module = importlib.import_module(f"spatial_latent.{COMMANDS[name]}")
    from .cli import run_cli

    return run_cli(module.main, args[1:])


if __name__ == "__main__":
    raise SystemExit(main())
