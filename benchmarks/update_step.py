"""One TD3 training update, plain vs as the scripts do it, timed in one process on the same CPU.

"plain" is CleanRL's formulation: torch's Adam (fused=True) and the actor loss backpropagated into every parameter it
touches. "ours" is the scripts': the same Adam and the actor loss backpropagated into the actor's parameters only. Both
update their own copy of the same dense networks (`sparse_td3.py`'s classes, HalfCheetah shapes, CleanRL's batch 256
and lr 3e-4) on batches drawn from one random buffer: target computation, both critics' step, every second iteration
the actor's step and the target update. No env step: this isolates the update. Blocks of iterations alternate between
the two, so a slow minute of the machine hits both; prints the median ms per iteration and the median of the
per-round ratios.

    python benchmarks/update_step.py [--rounds 7] [--iterations 200] [--batch-size 256]

At `--batch-size 1` the same ops do almost no arithmetic: what is left is the cost of the ops themselves.
"""

import copy
import runpy
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import gymnasium as gym
import torch
import torch.nn.functional as F
import tyro

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


@dataclass
class Args:
    rounds: int = 7
    """alternating rounds; each runs `iterations` updates of both"""
    iterations: int = 200
    """training iterations per block"""
    buffer: int = 100_000
    """transitions in the random buffer the batches are drawn from"""
    batch_size: int = 256
    """transitions per batch (CleanRL's 256)"""


def make_update(
    script: dict,
    env: gym.Env,
    buffer: list[torch.Tensor],
    batch_size: int,
    actor_only: bool,
    lr: float = 3e-4,
    weight_decay: float = 0.0,
    saved: dict | None = None,
):
    """One update of its own networks per call: fresh ones (seed 0), or copies of a `sparse_td3.py` state's networks
    and optimizer moments."""
    torch.manual_seed(0)
    actor, qf1, qf2 = script["Actor"](env), script["QNetwork"](env), script["QNetwork"](env)
    target_actor, qf1_target, qf2_target = copy.deepcopy(actor), copy.deepcopy(qf1), copy.deepcopy(qf2)
    if saved is not None:
        actor.load_state_dict(saved["networks"]["actor"])
        target_actor.load_state_dict(saved["networks"]["target_actor"])
        torch.nn.ModuleDict({"qf1": qf1, "qf2": qf2}).load_state_dict(saved["networks"]["qfs"])
        torch.nn.ModuleDict({"qf1": qf1_target, "qf2": qf2_target}).load_state_dict(saved["networks"]["qfs_target"])
    critic_params, actor_params = [*qf1.parameters(), *qf2.parameters()], list(actor.parameters())
    critic_target_params = [*qf1_target.parameters(), *qf2_target.parameters()]
    actor_target_params = list(target_actor.parameters())
    q_optimizer = torch.optim.Adam(critic_params, lr=lr, weight_decay=weight_decay, fused=True)
    actor_optimizer = torch.optim.Adam(actor_params, lr=lr, weight_decay=weight_decay, fused=True)
    if saved is not None:
        q_optimizer.load_state_dict(copy.deepcopy(saved["optimizers"]["q"]))  # a copy: loading may share its tensors
        actor_optimizer.load_state_dict(copy.deepcopy(saved["optimizers"]["actor"]))
    iteration = 0

    def update():
        nonlocal iteration
        iteration += 1
        idx = torch.randint(0, len(buffer[0]), (batch_size,))
        obs, actions, next_obs, rewards, terminations = (x[idx] for x in buffer)
        with torch.no_grad():
            noise = (torch.randn_like(actions) * 0.2).clamp(-0.5, 0.5)
            next_actions = (target_actor(next_obs) + noise).clamp(-1, 1)
            q_next = torch.min(qf1_target(next_obs, next_actions).view(-1), qf2_target(next_obs, next_actions).view(-1))
            next_q_value = rewards + (1 - terminations) * 0.99 * q_next
        qf_loss = F.mse_loss(qf1(obs, actions).view(-1), next_q_value) + F.mse_loss(qf2(obs, actions).view(-1), next_q_value)
        q_optimizer.zero_grad()
        qf_loss.backward()
        q_optimizer.step()
        if iteration % 2 == 0:
            actor_loss = -qf1(obs, actor(obs)).mean()
            actor_optimizer.zero_grad()
            actor_loss.backward(inputs=actor_params) if actor_only else actor_loss.backward()
            actor_optimizer.step()
            with torch.no_grad():
                torch._foreach_lerp_(critic_target_params, critic_params, 0.005)
                torch._foreach_lerp_(actor_target_params, actor_params, 0.005)

    return update


if __name__ == "__main__":
    args = tyro.cli(Args)
    script = runpy.run_path(str(ROOT / "sparse_td3.py"), run_name="benchmark")  # the network classes only
    env = gym.make("HalfCheetah-v4")
    obs_dim, act_dim = env.observation_space.shape[0], env.action_space.shape[0]
    buffer = [torch.randn(args.buffer, obs_dim), torch.rand(args.buffer, act_dim) * 2 - 1]
    buffer += [torch.randn(args.buffer, obs_dim), torch.randn(args.buffer), torch.zeros(args.buffer)]
    updates = {
        name: make_update(script, env, buffer, args.batch_size, actor_only=name == "ours") for name in ("plain", "ours")
    }
    times: dict[str, list[float]] = {name: [] for name in updates}
    for update in updates.values():
        for _ in range(50):  # warm-up: allocations, optimizer state
            update()
    for _ in range(args.rounds):
        for name, update in updates.items():
            start = time.perf_counter()
            for _ in range(args.iterations):
                update()
            times[name].append(1000 * (time.perf_counter() - start) / args.iterations)
    threads, rounds = torch.get_num_threads(), args.rounds
    print(f"dense TD3 update, HalfCheetah shapes, batch {args.batch_size}, {threads} torch threads, {rounds} rounds:")
    for name, values in times.items():
        print(f"  {name}: {statistics.median(values):.2f} ms per iteration ({' '.join(f'{v:.2f}' for v in values)})")
    ratios = [plain / ours for plain, ours in zip(times["plain"], times["ours"])]
    print(f"  plain / ours: x{statistics.median(ratios):.3f} (per round: {' '.join(f'x{r:.3f}' for r in ratios)})")
