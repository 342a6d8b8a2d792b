"""Training-step throughput of the Reserve model, and a ViT-B/16 anchor.

On CUDA: bf16 autocast, fused AdamW, optional torch.compile; reports samples/s,
frames/s, peak memory, achieved TFLOP/s and MFU against --peak-tflops (989, H100 bf16
dense). FLOPs are counted on one real step with torch.utils.flop_counter (matmuls,
convolutions and attention; elementwise work is not counted). The anchor is timm's
vit_base_patch16_224 at img_size (192, 320), batch 256, same recipe, when timm imports.

On CPU (no CUDA): a smoke run of the tiny config in float32; the figures are CPU
figures and no MFU is claimed.

    python bench/bench_model.py                       # base on CUDA, tiny on CPU
    python bench/bench_model.py --size base --batch-size 32 --compile blocks
    python bench/bench_model.py --objectives span,mvm --no-anchor --json out.json
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from model.config import ModelConfig, ObjectiveConfig
from model.data.batch import random_batch
from model.nn.layers import Transformer
from model.objectives.reserve import Reserve


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--size", default=None, help="model preset (default: base on CUDA, tiny on CPU)")
    p.add_argument(
        "--batch-size", type=int, default=None, help="windows per step (default 32 CUDA / 2 CPU)"
    )
    p.add_argument("--segments", type=int, default=None, help="S (default: max_segments; 4 on CPU)")
    p.add_argument("--text-len", type=int, default=15, help="L tokens per sub-segment")
    p.add_argument(
        "--objectives", default="span", help="comma-separated: span,combinatorial,milnce,mvm"
    )
    p.add_argument("--steps", type=int, default=None, help="timed steps (default 20 CUDA / 3 CPU)")
    p.add_argument(
        "--warmup", type=int, default=None, help="untimed steps (default 5 CUDA / 1 CPU)"
    )
    p.add_argument("--compile", choices=("none", "blocks", "model"), default=None,
                   help="torch.compile each transformer stack, the whole model, or nothing "
                   "(default blocks on CUDA, none on CPU)")  # fmt: skip
    p.add_argument("--peak-tflops", type=float, default=989.0, help="dense bf16 peak for MFU")
    p.add_argument("--anchor", action=argparse.BooleanOptionalAction, default=None,
                   help="also time timm vit_base_patch16_224 (default on CUDA)")  # fmt: skip
    p.add_argument("--anchor-batch", type=int, default=256)
    p.add_argument("--threads", type=int, default=None,
                   help="CPU intra-op threads (default 1 on CPU: the tiny model's ops are too "
                   "small to share, and extra threads spin on a shared machine)")  # fmt: skip
    p.add_argument("--json", type=Path, default=None, help="write the results here")
    a = p.parse_args()
    cuda = a.device.startswith("cuda")
    a.size = a.size or ("base" if cuda else "tiny")
    a.batch_size = a.batch_size or (32 if cuda else 2)
    a.steps = a.steps or (20 if cuda else 3)
    a.warmup = a.warmup if a.warmup is not None else (5 if cuda else 1)
    a.compile = a.compile or ("blocks" if cuda else "none")
    a.anchor = cuda if a.anchor is None else a.anchor
    a.threads = a.threads or (None if cuda else 1)
    return a


def count_flops(step: Callable[[], None]) -> int:
    """FLOPs of one call of `step` (forward + backward), as torch's flop counter sees them."""
    counter = FlopCounterMode(display=False)
    with counter:
        step()
    return counter.get_total_flops()


def timed(step: Callable[[], None], steps: int, warmup: int, device: torch.device) -> float:
    """Seconds per step after `warmup` untimed steps."""
    for _ in range(warmup):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(steps):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return (time.perf_counter() - start) / steps


def make_optimizer(model: torch.nn.Module, device: torch.device) -> torch.optim.Optimizer:
    return torch.optim.AdamW(
        model.parameters(), lr=1e-4, betas=(0.9, 0.98), eps=1e-6, weight_decay=0.1,
        fused=device.type == "cuda",
    )  # fmt: skip


def autocast(device: torch.device) -> contextlib.AbstractContextManager:
    if device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()  # CPU smoke run: float32


def compile_model(model: Reserve, mode: str) -> Callable:
    """The callable to train with: the model itself, or with its transformer stacks compiled."""
    if mode == "model":
        return torch.compile(model)
    if mode == "blocks":
        for module in model.modules():
            if isinstance(module, Transformer):
                module.compile()
    return model


def bench_reserve(a: argparse.Namespace, device: torch.device) -> dict:
    cfg = ModelConfig.from_name(a.size)
    objectives = ObjectiveConfig()
    chosen = a.objectives.split(",")
    for name in objectives.weights():
        getattr(objectives, name).weight = 1.0 if name in chosen else 0.0
    torch.manual_seed(0)
    model = Reserve(cfg, objectives).to(device)
    S = a.segments or (cfg.max_segments if device.type == "cuda" else 4)
    batch = random_batch(cfg, a.batch_size, S, text_len=a.text_len, device=device)
    opt = make_optimizer(model, device)

    def forward_backward(fn: Callable) -> None:
        with autocast(device):
            loss = fn(batch).loss
        loss.backward()

    flops = count_flops(lambda: forward_backward(model))  # eager: the same math as compiled
    opt.zero_grad(set_to_none=True)
    train = compile_model(model, a.compile)

    def step() -> None:
        forward_backward(train)
        opt.step()
        opt.zero_grad(set_to_none=True)

    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    seconds = timed(step, a.steps, a.warmup, device)
    return summarize(
        name=f"reserve-{a.size} [{a.objectives}] B={a.batch_size} S={S} L={a.text_len} compile={a.compile}",
        seconds=seconds,
        flops=flops,
        samples=a.batch_size,
        frames=a.batch_size * S,
        params=model.num_params(),
        device=device,
        peak_tflops=a.peak_tflops,
    )


def bench_anchor(a: argparse.Namespace, device: torch.device) -> dict | None:
    try:
        import timm
    except ImportError:
        print("anchor skipped: timm is not importable here")
        return None
    torch.manual_seed(0)
    model = timm.create_model("vit_base_patch16_224", img_size=(192, 320)).to(device)
    x = torch.randn(a.anchor_batch, 3, 192, 320, device=device)
    y = torch.randint(0, 1000, (a.anchor_batch,), device=device)
    opt = make_optimizer(model, device)

    def forward_backward(fn: Callable) -> None:
        with autocast(device):
            loss = F.cross_entropy(fn(x), y)
        loss.backward()

    flops = count_flops(lambda: forward_backward(model))
    opt.zero_grad(set_to_none=True)
    train = torch.compile(model) if a.compile != "none" else model

    def step() -> None:
        forward_backward(train)
        opt.step()
        opt.zero_grad(set_to_none=True)

    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    seconds = timed(step, a.steps, a.warmup, device)
    return summarize(
        name=f"timm vit_base_patch16_224 img_size=(192,320) B={a.anchor_batch} compile={a.compile != 'none'}",
        seconds=seconds,
        flops=flops,
        samples=a.anchor_batch,
        frames=a.anchor_batch,
        params=sum(p.numel() for p in model.parameters()),
        device=device,
        peak_tflops=a.peak_tflops,
    )


def summarize(*, name, seconds, flops, samples, frames, params, device, peak_tflops) -> dict:
    achieved = flops / seconds
    out = {
        "name": name,
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "params_M": round(params / 1e6, 2),
        "step_s": round(seconds, 4),
        "samples_per_s": round(samples / seconds, 2),
        "frames_per_s": round(frames / seconds, 2),
        "flops_per_step_T": round(flops / 1e12, 4),
        "achieved_TFLOPs": round(achieved / 1e12, 4),
    }
    if device.type == "cuda":
        out["peak_mem_GiB"] = round(torch.cuda.max_memory_allocated(device) / 2**30, 2)
        out["mfu"] = round(achieved / (peak_tflops * 1e12), 4)
    else:
        out["note"] = "CPU smoke run (float32, tiny config): not a GPU figure, no MFU"
    return out


def main() -> None:
    a = parse_args()
    device = torch.device(a.device)
    if a.threads:
        torch.set_num_threads(a.threads)
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    results = [bench_reserve(a, device)]
    print(json.dumps(results[0], indent=2))
    if a.anchor:
        anchor = bench_anchor(a, device)
        if anchor is not None:
            results.append(anchor)
            print(json.dumps(anchor, indent=2))
    if a.json:
        a.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
