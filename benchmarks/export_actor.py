"""Exported sparse actor vs the torch dense actor at batch 1: latency per action and file size.

    python benchmarks/export_actor.py [--script rlx2_sac.py] [--checkpoint runs/<run>/rlx2_td3.pt]

Without a checkpoint it makes one: `--script` (rlx2_td3.py or rlx2_sac.py) at the HalfCheetah preset (90% actor
sparsity), 2 steps. Latency does not depend on the weights' values, only on the masks, which have the preset's
densities from the start. The torch actor is timed on its deterministic action (rlx2_sac.py: the mean action)."""

import argparse
import importlib
import os
import statistics
import subprocess
import sys
import tempfile
import time
from glob import glob
from pathlib import Path

import gymnasium as gym
import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from common.export import export_actor  # noqa: E402
from common.sparse_policy import SparsePolicy  # noqa: E402


def per_call_us(act, observations, rounds=7) -> float:
    for obs in observations[:100]:
        act(obs)
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        for obs in observations:
            act(obs)
        times.append((time.perf_counter() - start) / len(observations) * 1e6)
    return statistics.median(times)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--checkpoint", help="an rlx2_td3.py, rlx2_sac.py or sparse_td3.py checkpoint (default: make one)")
    parser.add_argument("--script", default="rlx2_td3.py", choices=("rlx2_td3.py", "rlx2_sac.py"), help="without --checkpoint")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (1: the fastest at batch 1 here)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    workdir = tempfile.mkdtemp()
    checkpoint = args.checkpoint
    if checkpoint is None:
        subprocess.run([sys.executable, str(ROOT / args.script), "--total-timesteps", "2", "--learning-starts", "1",
                        "--eval-episodes", "1", "--save-model"], cwd=workdir, check=True, stdout=subprocess.DEVNULL)  # fmt: skip
        checkpoint = glob(f"{workdir}/runs/*/{args.script[:-3]}.pt")[0]
    state = torch.load(checkpoint, weights_only=True)
    env = gym.make(state["args"]["env_id"])
    actor = importlib.import_module(state["script"]).Actor(env)
    actor.load_state_dict(state["actor"])  # the dense twin's cost: same shapes, no masks
    torch.save(actor.state_dict(), f"{workdir}/actor.pt")
    export_actor(checkpoint, f"{workdir}/actor.npz")
    policy, numpy_policy = SparsePolicy(f"{workdir}/actor.npz"), SparsePolicy(f"{workdir}/actor.npz", use_numba=False)

    observations = np.random.default_rng(0).normal(size=(2000, actor.fc1.in_features)).astype(np.float32)

    @torch.no_grad()
    def torch_act(obs):
        return getattr(actor, "mean_action", actor)(torch.as_tensor(obs)[None])[0].numpy()

    torch_us, sparse_us = per_call_us(torch_act, observations), per_call_us(policy, observations)
    numpy_us = per_call_us(numpy_policy, observations)
    torch_bytes, sparse_bytes = os.path.getsize(f"{workdir}/actor.pt"), os.path.getsize(f"{workdir}/actor.npz")
    active = sum(int(m.sum()) for m in state["masks"]["actor"].values())
    print(f"{state['args']['env_id']}: {active:,} active weights in the actor's masked layers; torch threads {args.threads}")
    print("| actor | latency per action (us) | file (bytes) |\n|---|---|---|")
    print(f"| torch dense (state_dict) | {torch_us:.1f} | {torch_bytes:,} |")
    print(f"| exported sparse, numba | {sparse_us:.1f} | {sparse_bytes:,} |")
    print(f"| exported sparse, numpy only | {numpy_us:.1f} | {sparse_bytes:,} |")
    print(f"| torch / numba | x{torch_us / sparse_us:.1f} | x{torch_bytes / sparse_bytes:.1f} |")


if __name__ == "__main__":
    main()
