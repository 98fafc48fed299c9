"""Shared pieces of the command-line tools: error handling, common flags, argument parsers.

CLIs own the terminal: library code logs, CLIs print. A :class:`SpatialLatentError` becomes one
``error: ...`` line on stderr and exit status 2; Ctrl-C exits with 130.
"""

from __future__ import annotations

import argparse
import logging
import sys
from typing import Callable, Sequence

from .errors import InputError, SpatialLatentError
from .modes import NOISE_MODES

MAX_SEEDS = 100_000

#: The exit statuses every command uses, for each command's ``--help`` epilog.
EXIT_STATUS = (
    "Exit status: 0 all done; 1 done, but some inputs were skipped (each reported on a 'skipped' line); "
    "2 nothing done: bad arguments or a bad input file (one 'error:' line); 130 interrupted."
)


def with_exit_status(epilog: str | None = None) -> str:
    """``epilog`` followed by :data:`EXIT_STATUS` (argparse epilogs of every command)."""
    return f"{epilog} {EXIT_STATUS}" if epilog else EXIT_STATUS


def join_dash_values(argv: Sequence[str] | None, flags: Sequence[str]) -> list[str]:
    """``['--size', '-5x512']`` -> ``['--size=-5x512']`` for ``flags``, so that a value starting
    with a dash reaches the command's own check (one error line) instead of argparse's usage dump."""
    args = list(sys.argv[1:] if argv is None else argv)
    out: list[str] = []
    i = 0
    while i < len(args):
        if args[i] in flags and i + 1 < len(args) and args[i + 1].startswith("-") and args[i + 1][1:2].isdigit():
            out.append(f"{args[i]}={args[i + 1]}")
            i += 2
        else:
            out.append(args[i])
            i += 1
    return out


def run_cli(main: Callable[[Sequence[str] | None], int], argv: Sequence[str] | None = None) -> int:
    """Run ``main`` and turn toolkit errors into a one-line message and a non-zero status."""
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        return main(argv)
    except SpatialLatentError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # output piped into e.g. `head`
        sys.stderr.close()
        return 0


def parse_seeds(text: str) -> list[int]:
    """``'0-7'``, ``'1,5,9'`` or ``'0-3,10'`` -> a list of non-negative seeds."""
    seeds: list[int] = []
    try:
        for part in text.split(","):
            part = part.strip()
            if "-" in part:
                a, b = (int(v) for v in part.split("-", 1))
                if b < a:
                    raise ValueError
                if len(seeds) + (b - a + 1) > MAX_SEEDS:  # before building the list, not after
                    raise InputError(f"too many seeds in {text!r} (at most {MAX_SEEDS})")
                seeds.extend(range(a, b + 1))
            else:
                seeds.append(int(part))
            if len(seeds) > MAX_SEEDS:
                raise InputError(f"too many seeds in {text!r} (at most {MAX_SEEDS})")
    except ValueError:
        raise InputError(f"bad seed list {text!r}; use e.g. 0-7 or 1,5,9") from None
    if not seeds or min(seeds) < 0 or max(seeds) >= 2**32:
        raise InputError(f"seeds must be in [0, 2^32), got {text!r}")
    return seeds


def add_network_arg(parser: argparse.ArgumentParser, default: str | None = None, required: bool = True) -> None:
    parser.add_argument(
        "--network",
        default=default,
        required=required and default is None,
        metavar="PATH|NAME",
        help="checkpoint file (NVIDIA .pkl, TF .pkl, rosinality/pSp .pt, native .safetensors), a "
        "well-known name such as 'ffhq' (downloaded into $SPATIAL_LATENT_CACHE), 'demo' (the small "
        "texture model shipped in the package) or 'tiny' (untrained, for smoke tests)"
        + (f" (default: {default})" if default else ""),
    )


def add_noise_mode_arg(parser: argparse.ArgumentParser | argparse._ArgumentGroup, default: str, help: str) -> None:
    """``--noise-mode``, its choices the one list of modes (:data:`spatial_latent.modes.NOISE_MODES`,
    which the networks check)."""
    parser.add_argument("--noise-mode", choices=NOISE_MODES, default=default, help=f"{help} (default: {default})")


def add_device_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--device",
        default="auto",
        metavar="auto|cpu|cuda[:N]",
        help="where to run: 'auto' picks the GPU when one is available (default: auto)",
    )
