"""CUDA kernels vs reference PyTorch ops: upfirdn2d, bias_act and a 256 px synthesis forward.

    python bench/ops_cuda.py [--batch 4] [--repeats 20] [--out bench/results/ops_cuda.json]

Each row times the same call with ``impl='cuda'`` and ``impl='ref'`` in alternation (best of N,
CUDA-synchronised) and records the max abs difference between the two. The synthesis rows
switch the kernels off with ``SPATIAL_LATENT_NO_CUDA_OPS=1`` (read on every call). Without a
CUDA device it prints one line and exits 0.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any, Callable

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import compare_times, machine, print_table, write_json  # noqa: E402

from spatial_latent.ops import bias_act, make_filter, upfirdn2d  # noqa: E402
from spatial_latent.ops.cuda_build import ENV_DISABLE  # noqa: E402

COLUMNS = ["op", "shape", "dtype", "pass", "ref_ms", "cuda_ms", "speedup", "max_abs_diff"]


def _row(op: str, shape: tuple[int, ...], dtype: torch.dtype, kind: str, times: dict[str, float], diff: float) -> dict[str, Any]:
    return dict(
        op=op, shape="x".join(map(str, shape)), dtype=str(dtype).replace("torch.", ""), **{"pass": kind},
        ref_ms=times["ref"] * 1e3, cuda_ms=times["cuda"] * 1e3, speedup=times["ref"] / times["cuda"], max_abs_diff=diff,
    )


def _bench_pair(make: Callable[[str], Callable[[], torch.Tensor]], repeats: int, dev: torch.device) -> tuple[dict[str, float], float]:
    """Time ``make('cuda')`` vs ``make('ref')``; also their max abs output difference."""
    fns = {"ref": make("ref"), "cuda": make("cuda")}
    diff = (fns["cuda"]().float() - fns["ref"]().float()).abs().max().item()
    return compare_times(fns, repeats, device=dev), diff


def bench_ops(batch: int, repeats: int, dev: torch.device) -> list[dict[str, Any]]:
    f = make_filter(device=dev)
    rows = []
    # (label, shape, upfirdn2d kwargs): the resampling calls a 256 px StyleGAN2 makes most often.
    up_cases = [
        ("upsample2d", (batch, 512, 32, 32), dict(up=2, padding=(2, 1, 2, 1), gain=4)),
        ("upsample2d", (batch, 128, 128, 128), dict(up=2, padding=(2, 1, 2, 1), gain=4)),
        ("fir after convT", (batch, 256, 129, 129), dict(padding=(1, 1, 1, 1), gain=4)),
        ("downsample2d", (batch, 256, 128, 128), dict(down=2, padding=(1, 1, 1, 1))),
        ("upsample2d rgb", (batch, 3, 128, 128), dict(up=2, padding=(2, 1, 2, 1), gain=4)),
    ]
    for label, shape, kw in up_cases:
        for dtype in (torch.float32, torch.float16):
            x = torch.randn(shape, device=dev, dtype=dtype)
            times, diff = _bench_pair(lambda impl: (lambda: upfirdn2d(x, f, impl=impl, **kw)), repeats, dev)
            rows.append(_row(f"upfirdn2d {label}", shape, dtype, "fwd", times, diff))
        xg = torch.randn(shape, device=dev, requires_grad=True)

        def fwd_bwd(impl: str, xg: torch.Tensor = xg, kw: dict = kw) -> Callable[[], torch.Tensor]:
            return lambda: torch.autograd.grad(upfirdn2d(xg, f, impl=impl, **kw).square().sum(), xg)[0]

        times, diff = _bench_pair(fwd_bwd, repeats, dev)
        rows.append(_row(f"upfirdn2d {label}", shape, torch.float32, "fwd+bwd", times, diff))

    ba_cases = [((batch, 512, 32, 32), "lrelu", 256.0), ((batch, 128, 256, 256), "lrelu", 256.0), ((batch, 512), "lrelu", None), ((batch, 64, 256, 256), "linear", 256.0)]
    for shape, act, clamp in ba_cases:
        b = torch.randn(shape[1], device=dev)
        for dtype in (torch.float32, torch.float16):
            x = torch.randn(shape, device=dev, dtype=dtype)
            times, diff = _bench_pair(lambda impl: (lambda: bias_act(x, b, act=act, clamp=clamp, impl=impl)), repeats, dev)
            rows.append(_row(f"bias_act {act}", shape, dtype, "fwd", times, diff))
        xg = torch.randn(shape, device=dev, requires_grad=True)
        bg = b.clone().requires_grad_()

        def fwd_bwd_ba(impl: str, xg=xg, bg=bg, act=act, clamp=clamp) -> Callable[[], torch.Tensor]:
            return lambda: torch.autograd.grad(bias_act(xg, bg, act=act, clamp=clamp, impl=impl).square().sum(), [xg, bg])[0]

        times, diff = _bench_pair(fwd_bwd_ba, repeats, dev)
        rows.append(_row(f"bias_act {act}", shape, torch.float32, "fwd+bwd", times, diff))
    return rows


def bench_synthesis(batch: int, repeats: int, dev: torch.device) -> list[dict[str, Any]]:
    """256 px StyleGAN2 synthesis forward with the kernels on vs off (``SPATIAL_LATENT_NO_CUDA_OPS``)."""
    try:
        from spatial_latent.networks import Generator, GeneratorConfig
    except ImportError as exc:
        print(f"synthesis benchmark skipped: spatial_latent.networks.Generator is not available ({exc})")
        return []
    rows = []
    channels = {r: 512 if r <= 32 else 512 // (r // 32) for r in (4, 8, 16, 32, 64, 128, 256)}
    for num_fp16_res in (0, 4):
        cfg = GeneratorConfig(z_dim=512, w_dim=512, img_resolution=256, channels=channels, num_fp16_res=num_fp16_res, conv_clamp=256 if num_fp16_res else None)
        torch.manual_seed(0)
        G = Generator(cfg).to(dev).eval().requires_grad_(False)
        with torch.no_grad():
            ws = G.map(torch.randn(batch, cfg.z_dim, device=dev))

        def run(disabled: bool) -> Callable[[], torch.Tensor]:
            def fn() -> torch.Tensor:
                old = os.environ.get(ENV_DISABLE)
                os.environ[ENV_DISABLE] = "1" if disabled else "0"
                try:
                    with torch.no_grad():
                        return G.synthesis(ws)
                finally:
                    if old is None:
                        os.environ.pop(ENV_DISABLE, None)
                    else:
                        os.environ[ENV_DISABLE] = old

            return fn

        fns = {"ref": run(True), "cuda": run(False)}
        try:
            diff = (fns["cuda"]().float() - fns["ref"]().float()).abs().max().item()
            times = compare_times(fns, max(3, repeats // 4), device=dev)
        except Exception as exc:  # noqa: BLE001 - report and go on with the other configuration
            print(f"synthesis (num_fp16_res={num_fp16_res}) failed: {type(exc).__name__}: {exc}")
            continue
        label = "synthesis 256px" + (f" fp16 x{num_fp16_res}" if num_fp16_res else "")
        rows.append(_row(label, (batch, 3, 256, 256), torch.float16 if num_fp16_res else torch.float32, "fwd", times, diff))
        del G
    return rows


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--repeats", type=int, default=20)
    p.add_argument("--skip-synthesis", action="store_true")
    p.add_argument("--out", default="bench/results/ops_cuda.json")
    args = p.parse_args()
    if not torch.cuda.is_available():
        print("no CUDA device; nothing measured")
        return 0
    dev = torch.device("cuda")
    os.environ.pop(ENV_DISABLE, None)
    from spatial_latent.ops import activation, fir  # the modules defining bias_act and upfirdn2d

    loaders = {"upfirdn2d": fir._loader, "bias_act": activation._loader}
    status = {n: ("loaded" if ld.get() is not None else f"unavailable: {ld.failure_reason}") for n, ld in loaders.items()}
    for n, s in status.items():
        print(f"{n} kernel: {s}")
    if any(s != "loaded" for s in status.values()):
        print("kernels unavailable; nothing to compare")
        write_json(args.out, {"benchmark": "ops_cuda", "machine": machine(), "kernels": status, "rows": []})
        return 0
    rows = bench_ops(args.batch, args.repeats, dev)
    if not args.skip_synthesis:
        rows += bench_synthesis(args.batch, args.repeats, dev)
    print_table(rows, COLUMNS)
    path = write_json(args.out, {"benchmark": "ops_cuda", "machine": machine(), "kernels": status, "batch": args.batch, "rows": rows})
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
