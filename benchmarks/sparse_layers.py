"""Per-layer cost of one 256x256 sparse linear layer: forward + gradients w.r.t. input and weights, for the dense
product, the masked path (dense product, then the gradient masked) and the kernel backend (common/kernels.py).

    python benchmarks/sparse_layers.py [--threads 1]

Configurations alternate within each round; the table gives the median over rounds, in microseconds."""

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from common.kernels import KernelLinear  # noqa: E402


def step_time(layer: nn.Module, x: torch.Tensor, mask: torch.Tensor | None, repeats: int) -> float:
    def step():
        y = layer(x)
        grad_x, grad_w = torch.autograd.grad(y, (x, layer.weight), torch.ones_like(y))
        if mask is not None:  # the masked path's `mask_gradients_`
            grad_w.mul_(mask)

    for _ in range(5):
        step()
    start = time.perf_counter()
    for _ in range(repeats):
        step()
    return (time.perf_counter() - start) / repeats * 1e6


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=200)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"torch threads {torch.get_num_threads()}; microseconds per forward + backward, median of {args.rounds} rounds")
    print("| batch | density | dense | masked | kernel | kernel vs dense |\n|---|---|---|---|---|---|")
    for batch in (256, 1):
        for density in (0.5, 0.2, 0.1, 0.05, 0.02):
            torch.manual_seed(0)
            dense = nn.Linear(256, 256)
            mask = (torch.rand(256, 256) < density).float()
            with torch.no_grad():
                dense.weight.mul_(mask)
            kernel = KernelLinear(dense, mask)
            # feature-major input, as the layer before it (a KernelLinear too) leaves it
            x = torch.randn(256, batch).t().requires_grad_()
            times = {"dense": [], "masked": [], "kernel": []}
            for _ in range(args.rounds):
                times["dense"].append(step_time(dense, x, None, args.repeats))
                times["masked"].append(step_time(dense, x, mask, args.repeats))
                times["kernel"].append(step_time(kernel, x, None, args.repeats))
            med = {k: statistics.median(v) for k, v in times.items()}
            print(f"| {batch} | {density} | {med['dense']:.0f} | {med['masked']:.0f} | {med['kernel']:.0f} | "
                  f"x{med['dense'] / med['kernel']:.2f} |", flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
