"""Deblurring speed: full-resolution inference latency and memory, and training throughput.

Inference: one 1×3×1436×2152 image (the paper's test size; both sides are multiples of 4)
through LBAG and MIMO-UNet, in the modes asked for (CUDA: fp32, bf16 autocast, bf16 +
channels_last, bf16 + channels_last + torch.compile; CPU: fp32). Latency is the median of
--repeats timed runs after warm-up, with torch.cuda.synchronize() around each (the released
MIMO-UNet timings were taken without it). Peak memory: torch.cuda.max_memory_allocated, or
the process's peak RSS on CPU. The bf16 rows also give the PSNR of their output against fp32.

Training: LBAG at batch 12 × 3 × 256² with the LBAG loss (L1 + FFT + SSIM, shift-invariant,
gate MSE) and Adam: iterations/s, median over --train-windows windows of --train-steps steps.

    python benchmarks/bench_deblur.py --device cuda      # on a GPU machine
    .venv/bin/python benchmarks/bench_deblur.py --device cpu --repeats 1 --no-train
"""

from __future__ import annotations

import argparse
import math
import platform
import resource
import statistics
import time

import torch

from deblur.archs import build_model, count_parameters, model_output
from deblur.losses import LBAGLoss, LBAGLossConfig

H, W = 1436, 2152


def sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def run_model(model, x, bf16: bool, device: str):
    with torch.inference_mode(), torch.autocast(device, dtype=torch.bfloat16, enabled=bf16):
        out = model(x)
    return model_output(out).final.float()


def time_inference(name: str, mode: str, device: str, repeats: int, reference=None):
    torch.manual_seed(0)
    model = build_model(name).to(device).eval()
    x = torch.rand(1, 3, H, W, device=device)
    bf16 = "bf16" in mode
    if "cl" in mode:
        model = model.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
    if "compile" in mode:
        model = torch.compile(model)
    if device == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
    out = run_model(model, x, bf16, device)  # warm-up (and compilation)
    if device == "cuda":
        run_model(model, x, bf16, device)
    times = []
    for _ in range(repeats):
        sync(device)
        t0 = time.perf_counter()
        out = run_model(model, x, bf16, device)
        sync(device)
        times.append(time.perf_counter() - t0)
    if device == "cuda":
        peak = torch.cuda.max_memory_allocated() / 2**20
    else:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    psnr = None
    if reference is not None:
        mse = torch.mean((out.clamp(0, 1) - reference.clamp(0, 1)) ** 2).item()
        psnr = math.inf if mse == 0 else 10 * math.log10(1 / mse)
    return statistics.median(times), min(times), max(times), peak, out, psnr


def train_throughput(mode: str, device: str, steps: int, windows: int) -> float:
    torch.manual_seed(0)
    model = build_model("lbag").to(device).train()
    bf16 = "bf16" in mode and device == "cuda"
    if "cl" in mode:
        model = model.to(memory_format=torch.channels_last)
    step_model = torch.compile(model) if "compile" in mode else model
    loss_fn = LBAGLoss(LBAGLossConfig())
    opt = torch.optim.Adam(model.parameters(), lr=1e-4)
    blur = torch.rand(12, 3, 256, 256, device=device)
    sharp = torch.rand(12, 3, 256, 256, device=device)
    mask = (torch.rand(12, 1, 256, 256, device=device) > 0.8).float()
    if "cl" in mode:
        blur = blur.contiguous(memory_format=torch.channels_last)

    def step():
        with torch.autocast(device, dtype=torch.bfloat16, enabled=bf16):
            outputs, gates = step_model(blur)
        total, _ = loss_fn([o.float() for o in outputs], sharp, gates=[g.float() for g in gates], mask=mask)
        opt.zero_grad(set_to_none=True)
        total.backward()
        opt.step()

    for _ in range(3):
        step()
    rates = []
    for _ in range(windows):
        sync(device)
        t0 = time.perf_counter()
        for _ in range(steps):
            step()
        sync(device)
        rates.append(steps / (time.perf_counter() - t0))
    return statistics.median(rates)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--modes", default=None, help="comma-separated: fp32,bf16,bf16_cl,bf16_cl_compile")
    parser.add_argument("--models", default="lbag,mimo_unet")
    parser.add_argument("--no-train", action="store_true")
    parser.add_argument("--train-steps", type=int, default=20)
    parser.add_argument("--train-windows", type=int, default=5)
    parser.add_argument("--train-modes", default="fp32,bf16_cl,bf16_cl_compile")
    args = parser.parse_args()
    device = args.device
    modes = (args.modes or ("fp32,bf16,bf16_cl,bf16_cl_compile" if device == "cuda" else "fp32")).split(",")
    if device == "cuda":
        torch.backends.cudnn.benchmark = True
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
        where = f"{torch.cuda.get_device_name()} (TF32 allowed for fp32), torch {torch.__version__}"
    else:
        where = f"{platform.processor() or 'CPU'}, {torch.get_num_threads()} threads, torch {torch.__version__}"
    print(f"device: {where}; input 1×3×{H}×{W}; median of {args.repeats} runs after warm-up\n")
    print("| model | params | mode | median ms | min–max ms | peak memory MiB | PSNR vs fp32 (dB) |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for name in args.models.split(","):
        reference = None
        for mode in modes:
            med, lo, hi, peak, out, psnr = time_inference(name, mode, device, args.repeats,
                                                         None if mode == "fp32" else reference)
            if mode == "fp32":
                reference = out
            params = count_parameters(build_model(name))
            shown = "—" if psnr is None else f"{psnr:.1f}"
            print(f"| {name} | {params:,} | {mode} | {med * 1e3:.1f} | {lo * 1e3:.1f}–{hi * 1e3:.1f} | {peak:.0f} | {shown} |",
                  flush=True)
    if args.no_train:
        return
    print(f"\nLBAG training, batch 12 × 3 × 256², Adam, full LBAG loss; median of {args.train_windows} windows "
          f"of {args.train_steps} steps\n")
    print("| mode | it/s |")
    print("| --- | --- |")
    for mode in args.train_modes.split(","):
        print(f"| {mode} | {train_throughput(mode, device, args.train_steps, args.train_windows):.2f} |", flush=True)


if __name__ == "__main__":
    main()
