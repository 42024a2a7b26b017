"""Float32 denormals in a long run's networks, and what they cost a training update on this CPU.

`sparse_td3.py` trains with Adam's coupled weight decay (2e-4, as the released DS-TD3): once a unit is dead, the decay
is the only gradient its weights get, and it walks them down into float32's denormal range (below 1.2e-38), where they
stay. CPUs compute with denormals through a slow path. Given a run's saved state (`--resume` directory or its
state.pt), this counts the denormals of each weight matrix, then times the script's TD3 update (its lr, weight decay
and batch size; `benchmarks/update_step.py`'s "ours" update) on two copies of the saved networks and Adam moments,
batches drawn from the saved buffer: one computes as IEEE says, the other with denormals flushed to zero
(`torch.set_flush_denormal(True)`, as `sparse_td3.py` sets it). Blocks of iterations alternate between the two;
prints the median ms per iteration and the ratio.

    python benchmarks/denormals.py runs/HalfCheetah-v4__sparse_td3__1__1796486264 [--rounds 5] [--iterations 200]
"""

import os
import runpy
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import gymnasium as gym
import torch
import tyro

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from benchmarks.update_step import make_update  # noqa: E402
from common.resume import STATE_FILE  # noqa: E402


@dataclass
class Args:
    state: tyro.conf.Positional[str]
    """a `sparse_td3.py` run directory (what --resume takes) or its state file"""
    rounds: int = 5
    """alternating rounds; each runs `iterations` updates of both"""
    iterations: int = 200
    """training iterations per block"""


def denormals(tensor: torch.Tensor) -> int:
    return int(((tensor != 0) & (tensor.abs() < torch.finfo(torch.float32).tiny)).sum())


if __name__ == "__main__":
    args = tyro.cli(Args)
    path = os.path.join(args.state, STATE_FILE) if os.path.isdir(args.state) else args.state
    state = torch.load(path, weights_only=True)
    if state.get("script") != "sparse_td3":
        raise SystemExit(f"error: {path} is not a state of sparse_td3.py")
    run_args = state["args"]
    print(f"{path}: step {state['global_step']}, float32 denormals per weight matrix:")
    for net in ("actor", "qfs"):
        for name, weight in state["networks"][net].items():
            if name.endswith("weight"):
                print(f"  {net}.{name} {tuple(weight.shape)}: {denormals(weight)} of {weight.numel()}")

    script = runpy.run_path(str(ROOT / "sparse_td3.py"), run_name="benchmark")  # the network classes only
    env = gym.make(run_args["env_id"])
    size = state["buffer"]["size"]
    buffer = [state["buffer"][k][:size] for k in ("obs", "actions", "next_obs", "rewards", "terminations")]
    settings = dict(lr=run_args["learning_rate"], weight_decay=run_args["weight_decay"], saved=state)
    updates = {
        flush: make_update(script, env, buffer, run_args["batch_size"], actor_only=True, **settings) for flush in (False, True)
    }
    times: dict[bool, list[float]] = {flush: [] for flush in updates}
    for flush, update in updates.items():
        torch.set_flush_denormal(flush)
        for _ in range(20):  # warm-up: allocations, optimizer state
            update()
    for _ in range(args.rounds):
        for flush, update in updates.items():
            torch.set_flush_denormal(flush)
            start = time.perf_counter()
            for _ in range(args.iterations):
                update()
            times[flush].append(1000 * (time.perf_counter() - start) / args.iterations)
    torch.set_flush_denormal(False)
    threads, batch = torch.get_num_threads(), run_args["batch_size"]
    print(f"TD3 update on these networks, batch {batch}, {threads} torch threads, {args.rounds} rounds:")
    for flush, values in times.items():
        name = "flushed to zero" if flush else "as IEEE says"
        print(f"  denormals {name}: {statistics.median(values):.2f} ms per iteration ({' '.join(f'{v:.2f}' for v in values)})")
    print(f"  as IEEE says / flushed: x{statistics.median(times[False]) / statistics.median(times[True]):.2f}")
