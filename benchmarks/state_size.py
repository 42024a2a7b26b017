"""What a run's full training state (`state.pt`, --resume) costs: size on disk, time to write and to read back.

The replay buffer is nearly all of it: `sparse_td3.py`'s buffer filled with N random transitions of the env's
dimensions, saved with the networks and both optimizers as the script saves them (its sha256 computed after the write
and checked before the read, as the scripts do). No training.

    python benchmarks/state_size.py --env-id HalfCheetah-v4 --transitions 100000 1000000
"""

import os
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import gymnasium as gym
import numpy as np
import torch
import tyro

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from common.resume import read_digests, save_file, sha256  # noqa: E402
from sparse_td3 import Actor, QNetwork, ReplayBuffer  # noqa: E402


@dataclass
class Args:
    env_id: str = "HalfCheetah-v4"
    transitions: tuple[int, ...] = (100_000, 1_000_000)
    """buffer fills to measure (the default buffer holds 1M)"""


if __name__ == "__main__":
    args = tyro.cli(Args)
    env = gym.make(args.env_id)
    obs_dim, act_dim = int(np.prod(env.observation_space.shape)), int(np.prod(env.action_space.shape))
    actor, qf = Actor(env), torch.nn.ModuleDict({"qf1": QNetwork(env), "qf2": QNetwork(env)})
    optimizers = {name: torch.optim.Adam(net.parameters(), lr=1e-3, fused=True) for name, net in (("actor", actor), ("q", qf))}
    for network, optimizer in ((actor, optimizers["actor"]), (qf, optimizers["q"])):
        sum(p.sum() for p in network.parameters()).backward()
        optimizer.step()  # creates the moments
    for n in args.transitions:
        rb = ReplayBuffer(1_000_000, obs_dim, act_dim, "cpu")
        for name in rb.FIELDS:
            getattr(rb, name)[:n] = torch.randn(getattr(rb, name)[:n].shape)
        rb.pos = rb.size = n
        state = {
            "networks": {"actor": actor.state_dict(), "qfs": qf.state_dict(), "target_actor": actor.state_dict(), "qfs_target": qf.state_dict()},
            "optimizers": {name: optimizer.state_dict() for name, optimizer in optimizers.items()},
            "buffer": rb.state_dict(),
        }  # fmt: skip
        with tempfile.TemporaryDirectory(dir=".") as folder:
            path = os.path.join(folder, "state.pt")
            start = time.perf_counter()
            save_file(path, state)  # with its sha256, as the scripts write it
            write_s = time.perf_counter() - start
            size = os.path.getsize(path)
            start = time.perf_counter()
            assert sha256(path) in read_digests(path)  # the check load_file makes
            loaded = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
            rb.load_state_dict(loaded["buffer"])
            read_s = time.perf_counter() - start
        print(f"{args.env_id} ({obs_dim} obs, {act_dim} act), {n:,} transitions: {size / 2**20:,.0f} MiB, "
              f"written in {write_s:.2f} s, read back into the buffer in {read_s:.2f} s", flush=True)  # fmt: skip
