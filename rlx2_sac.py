# RLx2 on SAC: "RLx2: Training a Sparse Deep Reinforcement Learning Model from Scratch", Tan et al. (ICLR 2023), whose
# authors released a SAC variant beside the TD3 one (tyq1024/RLx2, `RLx2_SAC/`) and report both (Table 1).
# SAC with every weight matrix sparse from scratch (ERK), gradient-based topology evolution (RigL), delayed multi-step
# soft TD targets and a dynamic-capacity replay buffer. Defaults follow the paper and the released SAC code.
import json
import math
import os
import random
import time
from dataclasses import dataclass

import gymnasium as gym
import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
import tyro
from torch.utils.tensorboard import SummaryWriter

from common.checks import check_arguments
from common.distributions import erk_densities
from common.flops import forward_flops, training_flops, weight_counts
from common.kernels import request_dense_gradients, use_kernels
from common.masks import reset_adam_moments, sparsify
from common.resume import (
    STATE_FILE,
    StopRequest,
    env_rng_state,
    filled_rows,
    load_file,
    lock_run_dir,
    make_run_dir,
    mark_complete,
    restore_state,
    resumed_args,
    save_file,
    save_state,
    stop_if_diverged,
    unlock_run_dir,
)
from common.topology import cosine_drop_fraction, gradient_scores, is_topology_step, random_scores, update_topology
from common.tracking import init_tracking, log_videos

# (actor, critic) sparsity per env family, SAC (Tan et al. 2023, Table 1; the released code ships no presets)
SPARSITY_PRESETS = {"HalfCheetah": (0.90, 0.80), "Hopper": (0.98, 0.95), "Walker2d": (0.90, 0.90), "Ant": (0.90, 0.75)}
LOG_STD_MAX, LOG_STD_MIN = 2, -5  # released `log_std_bounds`

SCORE_WINDOW = 30  # the published score: mean of the last 30 evaluations (Tan et al. 2023)
SCRIPT = "rlx2_sac"  # names the checkpoints and states this script writes, so another script refuses them


@dataclass
class Args:
    exp_name: str = os.path.basename(__file__)[: -len(".py")]
    """the name of this experiment"""
    seed: int = 1
    """seed of the experiment"""
    torch_deterministic: bool = True
    """if toggled, `torch.backends.cudnn.deterministic=True`"""
    cuda: bool = True
    """if toggled, cuda will be enabled when available"""
    track: bool = False
    """if toggled, the run is also logged to Weights and Biases (`pip install wandb`): the TensorBoard log, the
    arguments, this script and the video"""
    wandb_project_name: str = "sparse-rl"
    """with --track: the W&B project the run is logged to"""
    wandb_entity: str | None = None
    """with --track: the W&B user or team owning the project (None: your default entity)"""
    capture_video: bool = False
    """whether to record one evaluation episode of the final policy (`videos/{run_name}`)"""
    save_model: bool = False
    """whether to save the model to `runs/{run_name}/{exp_name}.pt` (at every evaluation and at the end)"""
    eval_checkpoint: str | None = None
    """if set, load this checkpoint, evaluate its policy for `eval_episodes` episodes and exit"""
    resume: str | None = None
    """continue the run in this directory (`runs/{run_name}`) from its saved state, with its own arguments"""
    checkpoint_frequency: int = 100_000
    """save the full training state (`runs/{run_name}/state.pt`) at the first episode end after every this many env
    steps; SIGTERM or Ctrl-C also save it, at the end of the current episode (at most one episode later), and stop"""

    # Algorithm specific arguments (SAC as in the released `RLx2_SAC/train.py` and `SAC.py`)
    env_id: str = "HalfCheetah-v4"
    """the id of the environment (the papers used gym's -v3, which needs mujoco-py: -v4 is the same task on mujoco)"""
    env_kwargs: str = "{}"
    """keyword arguments of `gym.make`, as JSON: '{"use_contact_forces": true}' gives Ant-v4 the papers' 111-dim input"""
    total_timesteps: int = 3_000_000
    """total timesteps of the experiments (paper: 3M)"""
    learning_rate: float = 3e-4
    """the learning rate of the actor, critic and alpha optimizers (released code: 3e-4)"""
    buffer_size: int = 3_000_000
    """the maximum capacity of the replay buffer (released SAC code: 3e6)"""
    gamma: float = 0.99
    """the discount factor gamma (paper: 0.99)"""
    tau: float = 0.005
    """target smoothing coefficient (paper: 0.005)"""
    batch_size: int = 256
    """the batch size of sample from the replay memory (paper: 256)"""
    learning_starts: int = 25_000
    """timestep to start learning; random actions before (released: 25k, counted inside total_timesteps)"""
    alpha: float = 0.2
    """entropy regularization coefficient, used only with --no-autotune"""
    autotune: bool = True
    """automatic tuning of the entropy coefficient from alpha = 1, target entropy -|A| (released code: always on)"""
    sample_actions: bool = False
    """fix: collect data with actions sampled from the policy. The released `SAC.select_action` defaults to
    `sample=False`, so after the warm-up its agent acts with the mean action tanh(mu): no exploration noise at all"""
    eval_frequency: int = 5_000
    """evaluate the deterministic policy every this many env steps (paper: 5000)"""
    eval_episodes: int = 10
    """the number of evaluation episodes (paper: 10, eval env seeded seed + 100)"""

    # (a) Topology evolution
    actor_sparsity: float | None = None
    """sparsity of the actor over all its weight matrices (ERK); None: the paper's value for the env"""
    critic_sparsity: float | None = None
    """sparsity of both critics over all their weight matrices, solved jointly (ERK); None: the paper's value"""
    topology: str = "rigl"
    """'rigl': grow by |dense gradient| (RLx2); 'set': grow at random; 'static': the initial masks stay (ablations)"""
    topology_interval: int = 10_000
    """delta_T: training iterations between topology updates, of both networks on the same iteration (paper: 10k)"""
    drop_fraction: float = 0.5
    """zeta_0: initial drop fraction, cosine-annealed to 0 at the end of the schedule (paper: 0.5)"""
    topology_end: int | None = None
    """T_end in training iterations; None: total - learning_starts (released code)"""
    critic_score_with_actor_loss: bool = True
    """released quirk: RigL grows the critics where |g_critic_loss + g_actor_loss| is largest, the actor loss's gradient
    w.r.t. the critics' weights being the previous iteration's (the released `DST_Scheduler`'s gradient hook also
    records the actor loss's backward through the critics, from one step before an update on). --no-critic-score-with-
    actor-loss scores by this iteration's critic-loss gradient alone, as RigL does"""
    reset_grown_moments: bool = False
    """improvement (jaxpruner): zero Adam's moments of grown connections; the released code keeps them"""
    # (b) Delayed multi-step TD targets
    n_step: int = 3
    """n of the multi-step TD target (paper: 3; 1: ordinary TD)"""
    delay_nstep: int = 300_000
    """n-step targets from this training iteration on (paper: 300k; released code: iteration >= delay_nstep)"""
    # (c) Dynamic-capacity replay buffer
    dynamic_buffer: bool = True
    """drop the oldest transitions when they are too far from the current policy (paper: on)"""
    buffer_min_size: int = 200_000
    """no shrink unless the buffer holds more than this many transitions (released SAC code: 2e5)"""
    clamp_buffer_min: bool = False
    """improvement: a shrink never takes the buffer below --buffer-min-size (the released `utils.ReplayBuffer.shrink`
    drops int(0.1 * size) whenever size > min, so a buffer just above the minimum ends below it)"""
    buffer_check_interval: int = 10_000
    """env steps between policy-distance checks (paper: 10k)"""
    buffer_check_size: int = 2_048
    """the oldest transitions on which the policy distance is measured (8 x batch size)"""
    policy_distance_threshold: float = 0.2
    """shrink when the mean of ((mean_action(s) - a_behaviour) / action_scale)^2 / 2 exceeds this, a_behaviour being the
    mean action stored when acting (paper: 0.2; action_scale is each dimension's half-range, the released max_action
    on the MuJoCo tasks)"""
    buffer_drop_fraction: float = 0.1
    """fraction of the stored transitions (the oldest) dropped per shrink (paper: 0.1)"""
    sparse_backend: str = "masked"
    """'masked': dense products of masked weights (as every published code); 'kernel': CPU products over the active
    weights only: the same algorithm, other float rounding, so long runs drift apart (common/kernels.py)"""


# the bounds of the arguments, checked before anything is written (common/checks.py): an interval, or the values allowed
BOUNDS = {
    **dict.fromkeys(("checkpoint_frequency", "total_timesteps", "buffer_size", "batch_size",
                     "eval_frequency", "eval_episodes", "topology_interval", "n_step", "buffer_min_size",
                     "buffer_check_interval", "buffer_check_size"), "(0, inf)"),
    **dict.fromkeys(("learning_rate", "learning_starts", "alpha", "topology_end",
                     "delay_nstep", "policy_distance_threshold"), "[0, inf)"),
    **dict.fromkeys(("actor_sparsity", "critic_sparsity", "drop_fraction", "buffer_drop_fraction"), "[0, 1)"),
    "gamma": "[0, 1]",
    "tau": "(0, 1]",
    "topology": ("rigl", "set", "static"),
    "sparse_backend": ("masked", "kernel"),
}  # fmt: skip


def make_env(env_id, seed, capture_video=False, run_name="", env_kwargs=None):
    # One env, reset by hand at episode ends: no vector-env autoreset step to mask out of the buffer.
    if capture_video:
        os.environ.setdefault("MUJOCO_GL", "egl")  # render without a display
        env = gym.make(env_id, render_mode="rgb_array", **(env_kwargs or {}))
        env = gym.wrappers.RecordVideo(env, f"videos/{run_name}")
    else:
        env = gym.make(env_id, **(env_kwargs or {}))
    env = gym.wrappers.RecordEpisodeStatistics(env)
    env.action_space.seed(seed)
    return env


def check_args(args: Args) -> gym.Env:
    """Fail before any training with a one-line reason; returns the training env."""
    env = check_arguments(args, BOUNDS, make_env, ReplayBuffer, "SAC")  # the env, the bounds, the buffer's memory
    family = args.env_id.split("-")[0]
    if (
        (args.actor_sparsity is None or args.critic_sparsity is None)
        and family not in SPARSITY_PRESETS
        and not args.eval_checkpoint
    ):
        raise SystemExit(f"error: no published sparsity for {args.env_id}: give --actor-sparsity and --critic-sparsity")
    if args.n_step > args.buffer_min_size or args.buffer_min_size > args.buffer_size:
        raise SystemExit("error: need --n-step <= --buffer-min-size <= --buffer-size")
    if args.learning_starts + max(args.delay_nstep, 1) < args.n_step:
        raise SystemExit("error: the first n-step target needs n stored transitions: raise --learning-starts or --delay-nstep")
    if args.sparse_backend == "kernel" and args.cuda and torch.cuda.is_available():
        raise SystemExit("error: --sparse-backend kernel runs on the CPU: add --no-cuda (the GPU uses the masked path)")
    return env


def orthogonal_init(module):
    """Every Linear of the released `modules_SAC.py` (`weight_init`): orthogonal weights (gain 1), zero biases. The
    initial masks keep the largest |w| of THIS init."""
    if isinstance(module, nn.Linear):
        nn.init.orthogonal_(module.weight)
        nn.init.zeros_(module.bias)


class QNetwork(nn.Module):
    def __init__(self, env):
        super().__init__()
        self.fc1 = nn.Linear(np.prod(env.observation_space.shape) + np.prod(env.action_space.shape), 256)
        self.fc2 = nn.Linear(256, 256)
        self.fc3 = nn.Linear(256, 1)
        self.apply(orthogonal_init)

    def forward(self, x, a):
        x = torch.cat([x, a], 1)
        x = F.relu(self.fc1(x))
        x = F.relu(self.fc2(x))
        return self.fc3(x)


class Actor(nn.Module):
    def __init__(self, env):
        super().__init__()
        self.fc1 = nn.Linear(np.prod(env.observation_space.shape), 256)
        self.fc2 = nn.Linear(256, 256)
        # ONE output matrix for the mean and the log-std (released `DiagGaussianActor.l3`, split by `chunk(2)`): one
        # ERK density, one mask, one RigL ranking. Two heads would get other densities and separate rankings.
        self.fc_mean_logstd = nn.Linear(256, 2 * np.prod(env.action_space.shape))
        # action rescaling (the released code multiplies the pre-activations by max_action and never rescales the
        # output: the same on the papers' envs, whose bounds are [-1, 1]; here any box works)
        self.register_buffer(
            "action_scale", torch.tensor((env.action_space.high - env.action_space.low) / 2.0, dtype=torch.float32)
        )
        self.register_buffer(
            "action_bias", torch.tensor((env.action_space.high + env.action_space.low) / 2.0, dtype=torch.float32)
        )
        self.apply(orthogonal_init)

    def forward(self, x):
        x = F.relu(self.fc1(x))
        x = F.relu(self.fc2(x))
        mean, log_std = self.fc_mean_logstd(x).chunk(2, dim=-1)
        log_std = torch.tanh(log_std)
        log_std = LOG_STD_MIN + 0.5 * (LOG_STD_MAX - LOG_STD_MIN) * (log_std + 1)  # in [-5, 2], as released
        return mean, log_std

    def get_action(self, x):
        mean, log_std = self(x)
        std = log_std.exp()
        normal = torch.distributions.Normal(mean, std)
        x_t = normal.rsample()  # for reparameterization trick (mean + std * N(0,1))
        y_t = torch.tanh(x_t)
        action = y_t * self.action_scale + self.action_bias
        log_prob = normal.log_prob(x_t)
        # Enforcing Action Bound: log(1 - tanh(x)^2) in the stable form of the released `TanhTransform`,
        # 2 (log 2 - x - softplus(-2x)), and the rescaling
        log_prob -= 2 * (math.log(2) - x_t - F.softplus(-2 * x_t)) + torch.log(self.action_scale)
        log_prob = log_prob.sum(1, keepdim=True)
        mean = torch.tanh(mean) * self.action_scale + self.action_bias
        return action, log_prob, mean

    def mean_action(self, x):
        """The deterministic policy tanh(mu): evaluation, the released code's acting, and the buffer's policy distance."""
        return torch.tanh(self(x)[0]) * self.action_scale + self.action_bias


class ReplayBuffer:
    """Transitions (s, a, r, s', terminated, episode end, behaviour action) in preallocated tensors on the training
    device. The live transitions are a contiguous window [start, start + size) of a ring: a shrink drops the oldest by
    advancing `start`, and the window grows back by one transition per step (Tan et al. 2023, section 4.3).
    s' is the true next state also at a time-limit end, and `terminated` excludes truncation."""

    def __init__(self, capacity, obs_dim, act_dim, device):
        self.obs = torch.zeros((capacity, obs_dim), device=device)
        self.next_obs = torch.zeros((capacity, obs_dim), device=device)
        self.actions = torch.zeros((capacity, act_dim), device=device)
        self.behaviour_actions = torch.zeros((capacity, act_dim), device=device)  # mean actions: the policy distance
        self.rewards = torch.zeros(capacity, device=device)
        self.terminations = torch.zeros(capacity, device=device)
        self.episode_ends = torch.zeros(capacity, device=device)  # terminated or truncated: an n-step window stops here
        self.max_capacity, self.capacity, self.start, self.size = capacity, capacity, 0, 0
        self.filled = 0  # slots written so far: [0, filled)

    def add(self, obs, next_obs, action, behaviour_action, reward, terminated, truncated):
        pos = (self.start + self.size) % self.max_capacity
        self.obs[pos] = torch.as_tensor(obs)
        self.next_obs[pos] = torch.as_tensor(next_obs)
        self.actions[pos] = torch.as_tensor(action)
        self.behaviour_actions[pos] = torch.as_tensor(behaviour_action)
        self.rewards[pos] = float(reward)
        self.terminations[pos] = float(terminated)
        self.episode_ends[pos] = float(terminated or truncated)
        self.filled = max(self.filled, pos + 1)
        self.capacity = min(self.capacity + 1, self.max_capacity)
        if self.size < self.capacity:
            self.size += 1
        else:  # full: the new transition replaced the oldest
            self.start = (self.start + 1) % self.max_capacity

    def oldest(self, n):
        return (self.start + torch.arange(min(n, self.size), device=self.obs.device)) % self.max_capacity

    def shrink(self, fraction, min_size=0):
        """Drop the oldest int(fraction * size) live transitions (released code), or fewer to keep `min_size`."""
        n = max(0, min(int(fraction * self.size), self.size - min_size))
        self.start, self.size, self.capacity = (self.start + n) % self.max_capacity, self.size - n, self.size - n

    def sample(self, batch_size, n_step):
        """Windows of n consecutive live transitions t..t+n-1: (s_t, a_t) and, per slot, (s', r, terminated, episode
        end), the slots shaped (batch, n). `soft_n_step_target` cuts a window after its first episode end."""
        offsets = torch.randint(0, self.size - n_step + 1, (batch_size,), device=self.obs.device)
        idx = (self.start + offsets[:, None] + torch.arange(n_step, device=self.obs.device)) % self.max_capacity
        return (
            self.obs[idx[:, 0]],
            self.actions[idx[:, 0]],
            self.next_obs[idx],
            self.rewards[idx],
            self.terminations[idx],
            self.episode_ends[idx],
        )

    FIELDS = ("obs", "next_obs", "actions", "behaviour_actions", "rewards", "terminations", "episode_ends")
    COUNTERS = ("capacity", "start", "size", "filled")

    def state_dict(self):
        """The written slots and the live window's bounds; no copy of the buffer on CPU."""
        return {
            **{name: getattr(self, name) for name in self.COUNTERS},
            **{name: filled_rows(getattr(self, name), self.filled) for name in self.FIELDS},
        }

    def load_state_dict(self, state):
        for name in self.COUNTERS:
            setattr(self, name, state[name])
        for name in self.FIELDS:
            getattr(self, name)[: self.filled].copy_(state[name])


def soft_n_step_target(actor, qf1_target, qf2_target, next_obs, rewards, terminations, episode_ends, alpha, gamma):
    """The released n-step soft target (`SAC.train`) of windows from `ReplayBuffer.sample`, cut after the first
    episode end (slot L):
        y = sum_{i<=L} g^i r_{t+i} + sum_{i<=L} g^(i+1) (-alpha log pi(a_i | s_{t+i+1})) + g^(L+1) min Q'(s_{t+L+1}, a_L)
    with a_i a fresh sample of the online actor at every next state: the entropy bonus of every intermediate state, not
    only of the last. A termination at L keeps r_L and drops the entropy term and the bootstrap after it; a time-limit
    end bootstraps (entropy term included) from the state where the episode ended. For n = 1 this is SAC's target."""
    batch, n_step = rewards.shape
    ends = episode_ends[:, :-1]
    alive = torch.cumprod(torch.cat([torch.ones_like(rewards[:, :1]), 1 - ends], dim=1), dim=1)  # up to the first end
    # all slots' next states in one forward, slot by slot as the released loop draws them: every window's first slot,
    # then every second one (the same random numbers as the released code for the same generator state)
    actions, log_pi, _ = actor.get_action(next_obs.transpose(0, 1).flatten(0, 1))
    actions, log_pi = actions.view(n_step, batch, -1).transpose(0, 1), log_pi.view(n_step, batch).t()
    gammas = gamma ** torch.arange(n_step + 1, device=rewards.device)
    bootstrap = alive * (1 - terminations)  # slots whose next state belongs to the episode
    target = (alive * gammas[:-1] * rewards).sum(1) - alpha * (bootstrap * gammas[1:] * log_pi).sum(1)
    rows, last = torch.arange(batch, device=rewards.device), alive.sum(1).long() - 1
    boot_obs, boot_actions = next_obs[rows, last], actions[rows, last]
    min_qf_next_target = torch.min(qf1_target(boot_obs, boot_actions), qf2_target(boot_obs, boot_actions)).view(-1)
    return target + bootstrap[rows, last] * gammas[last + 1] * min_qf_next_target


def layer_densities(args: Args, actor: nn.Module, qf: nn.Module) -> tuple[dict[str, float], dict[str, float]]:
    """ERK densities of every weight matrix: over the actor's three (the fused mean / log-std output counting as one
    2A x 256 matrix), and jointly over both critics' six (the two heads have equal shapes and come out equal; solving
    over all six sums as the released code does, to the last bit)."""
    preset = SPARSITY_PRESETS.get(args.env_id.split("-")[0], (None, None))
    actor_sparsity = args.actor_sparsity if args.actor_sparsity is not None else preset[0]
    critic_sparsity = args.critic_sparsity if args.critic_sparsity is not None else preset[1]
    densities = []
    for layers, sparsity in (
        ((actor.fc1, actor.fc2, actor.fc_mean_logstd), actor_sparsity),
        ((qf.fc1, qf.fc2, qf.fc3), critic_sparsity),
    ):
        shapes = [tuple(layer.weight.shape) for layer in layers]
        heads = 1 if layers[0] is actor.fc1 else 2
        names = [f"{name}.weight" for name in ("fc1", "fc2", "fc_mean_logstd" if heads == 1 else "fc3")]
        densities.append(dict(zip(names, erk_densities(heads * shapes, sparsity)[:3])))
    return densities[0], densities[1]


def evaluate(actor, env_id, eval_episodes, seed, device, capture_video=False, run_name="", env_kwargs=None):
    """Mean return of the deterministic policy (the tanh-squashed mean action) on a separate env."""
    env = make_env(env_id, seed, capture_video, run_name, env_kwargs)
    obs, _ = env.reset(seed=seed)
    episodic_returns = []
    while len(episodic_returns) < eval_episodes:
        with torch.no_grad():
            action = actor.mean_action(torch.as_tensor(obs, dtype=torch.float32, device=device)[None])[0].cpu().numpy()
        obs, _, terminated, truncated, info = env.step(action)
        if terminated or truncated:
            episodic_returns.append(float(info["episode"]["r"]))
            obs, _ = env.reset()
    env.close()
    return episodic_returns


def save_checkpoint(path, args, actor, qf1, qf2, actor_sparse, critic_sparse, global_step):
    """Written whole or not at all, its sha256 beside it (common/resume.py save_file)."""
    checkpoint = {
        "actor": actor.state_dict(),
        "qf1": qf1.state_dict(),
        "qf2": qf2.state_dict(),
        "masks": {"actor": actor_sparse.state_dict(), "critic": critic_sparse.state_dict()},
        "args": vars(args),
        "global_step": global_step,
        "script": SCRIPT,
    }
    save_file(path, checkpoint)


def load_actor(path, env, device):
    """The policy of a checkpoint, its masks re-applied; refuses a checkpoint made for another env."""
    checkpoint = load_file(path, SCRIPT, "checkpoint")
    if checkpoint["args"]["env_id"] != env.spec.id:
        raise SystemExit(f"error: {path} was trained on {checkpoint['args']['env_id']}, not {env.spec.id}")
    actor = Actor(env).to(device)
    try:
        actor.load_state_dict(checkpoint["actor"])
    except (KeyError, RuntimeError) as e:  # another script's or another env variant's actor
        raise SystemExit(f"error: {path} holds no {SCRIPT}.py actor for this env: {str(e).splitlines()[0]}") from None
    params = dict(actor.named_parameters())
    with torch.no_grad():
        for name, mask in checkpoint["masks"]["actor"].items():
            params[name].mul_(mask.to(device))
    return actor


def iteration_flops(actor_fwd, qfs_fwd, batch_size, n_step, actor_train, qfs_train):
    """FLOPs of one env step and training iteration (the papers' count, common/flops.py): the actor forward on the n
    next states of each window, both target critics forward, both critics forward + backward, the actor forward +
    backward with both critics forward + backward for the actor loss, and the batch-1 acting forward. Targets carry
    the online masks. `actor_train` and `qfs_train` include RigL's dense gradient once per topology interval."""
    critic_update = batch_size * (n_step * actor_fwd + qfs_fwd + qfs_train)
    actor_update = batch_size * (actor_train + training_flops(qfs_fwd))
    return critic_update + actor_update + actor_fwd


def log_sparsity(writer, global_step, args, n_step, actor, qfs, actor_sparse, critic_sparse):
    """Per-layer and per-network density, FLOPs relative to the dense twin, and the in-time over-parameterisation
    rate (fraction of the sparse layers' positions active at some point). Returns the numbers for the first report."""
    report = {}
    for name, net, sparse in (("actor", actor, actor_sparse), ("critic", qfs, critic_sparse)):
        counts, dense_counts = weight_counts(net, sparse), weight_counts(net)
        for layer, nnz in counts.items():
            writer.add_scalar(f"sparse/{name}.{layer}_density", nnz / dense_counts[layer], global_step)
        report[f"{name} weights"] = sum(counts.values())  # the papers' parameter count: weights, no biases
        report[f"{name} density"] = sum(counts.values()) / sum(dense_counts.values())
        if sparse.names:
            ever = sum(int(e.sum()) for e in sparse.ever_active) / sum(e.numel() for e in sparse.ever_active)
            writer.add_scalar(f"sparse/{name}_ever_active", ever, global_step)
    sparse_fwd = forward_flops(actor, actor_sparse), forward_flops(qfs, critic_sparse)
    dense_fwd = forward_flops(actor), forward_flops(qfs)
    interval = args.topology_interval if args.topology == "rigl" else None
    sparse_train = [training_flops(sparse_fwd[i], dense_fwd[i], interval) for i in (0, 1)]
    dense_train = [training_flops(dense_fwd[i]) for i in (0, 1)]
    sparse_flops = iteration_flops(*sparse_fwd, args.batch_size, n_step, *sparse_train)
    report["training FLOPs"] = sparse_flops / iteration_flops(*dense_fwd, args.batch_size, n_step, *dense_train)
    report["inference FLOPs"] = sparse_fwd[0] / dense_fwd[0]
    for key, value in report.items():
        writer.add_scalar(f"sparse/{key.replace(' ', '_')}{'_ratio' if 'FLOPs' in key else ''}", value, global_step)
    return report


if __name__ == "__main__":
    args = tyro.cli(Args)
    if args.resume:  # the run's own arguments, from its saved state
        state = load_file(os.path.join(args.resume, STATE_FILE), SCRIPT, "state")
        args = resumed_args(args, state["args"])
    env = check_args(args)
    env_kwargs = json.loads(args.env_kwargs)
    device = torch.device("cuda" if torch.cuda.is_available() and args.cuda else "cpu")

    if args.eval_checkpoint:
        returns = evaluate(
            load_actor(args.eval_checkpoint, env, device),
            args.env_id,
            args.eval_episodes,
            args.seed + 100,
            device,
            env_kwargs=env_kwargs,
        )
        print(f"{args.eval_checkpoint}: return {np.mean(returns):.1f} +- {np.std(returns):.1f} over {len(returns)} episodes")
        raise SystemExit(0)

    # TRY NOT TO MODIFY: seeding
    random.seed(args.seed)
    np.random.seed(args.seed)
    torch.manual_seed(args.seed)
    torch.backends.cudnn.deterministic = args.torch_deterministic

    actor = Actor(env).to(device)
    qf1 = QNetwork(env).to(device)
    qf2 = QNetwork(env).to(device)
    qfs = nn.ModuleDict({"qf1": qf1, "qf2": qf2})  # both critics share one optimizer, so one set of masks
    # ERK densities; each layer's initial mask keeps the largest-|w| entries of the default init (section 4.1)
    try:
        actor_densities, qf_densities = layer_densities(args, actor, qf1)
    except ValueError as e:  # a sparsity the solver cannot reach
        raise SystemExit(f"error: --actor-sparsity / --critic-sparsity: {e}") from None
    actor_sparse = sparsify(actor, actor_densities, "magnitude")
    critic_sparse = sparsify(qfs, {f"{q}.{name}": d for q in ("qf1", "qf2") for name, d in qf_densities.items()}, "magnitude")
    qf1_target = QNetwork(env).to(device)
    qf2_target = QNetwork(env).to(device)
    qf1_target.load_state_dict(qf1.state_dict())  # sparse from the start (released code: dense until the first update)
    qf2_target.load_state_dict(qf2.state_dict())
    qfs_target = nn.ModuleDict({"qf1": qf1_target, "qf2": qf2_target})  # SAC has no actor target
    if args.sparse_backend == "kernel":  # same weights, masks and optimizer; the products skip inactive weights
        for network, sparse in ((actor, actor_sparse), (qfs, critic_sparse), (qfs_target, critic_sparse)):
            use_kernels(network, sparse.names, sparse.masks)  # the target carries the online masks (section 4.1)
    q_optimizer = torch.optim.Adam(qfs.parameters(), lr=args.learning_rate, fused=True)
    actor_optimizer = torch.optim.Adam(actor.parameters(), lr=args.learning_rate, fused=True)
    # Targets: (online params, target params, sparse target layers and their online masks)
    critic_params, critic_target_params = list(qfs.parameters()), list(qfs_target.parameters())
    critic_target_sparse = critic_sparse.layers_of(qfs_target)
    actor_params = list(actor.parameters())

    # Automatic entropy tuning
    if args.autotune:
        target_entropy = -torch.prod(torch.Tensor(env.action_space.shape).to(device)).item()
        log_alpha = torch.zeros(1, requires_grad=True, device=device)  # alpha starts at 1 (released code)
        alpha = log_alpha.exp().item()
        a_optimizer = torch.optim.Adam([log_alpha], lr=args.learning_rate)
    else:
        alpha = args.alpha
    # T_end counts training iterations; the actor updates on every one, so both networks share the schedule
    topology_end = args.topology_end if args.topology_end is not None else args.total_timesteps - args.learning_starts
    grow_scores = {"rigl": gradient_scores, "set": random_scores}.get(args.topology)
    # the released quirk (--critic-score-with-actor-loss): the actor loss's gradient w.r.t. the critics' weights on the
    # iteration before a critic topology update, added to the next critic-loss gradient for RigL's grow score
    carry_actor_loss = args.critic_score_with_actor_loss and grow_scores is gradient_scores and bool(critic_sparse.names)
    actor_loss_critic_grads = []

    # nothing is written before the arguments are checked; a resumed run continues in its own directory
    run_dir = args.resume or make_run_dir(f"{args.env_id}__{args.exp_name}__{args.seed}__{int(time.time())}")
    lock_run_dir(run_dir)  # one run directory, one process
    run_name = os.path.basename(os.path.normpath(run_dir))
    # --track: W&B, before the SummaryWriter (it mirrors what the writer writes); a resumed run goes on in its W&B run
    wandb_run_id = init_tracking(args, run_name, state.get("wandb_run_id") if args.resume else None)
    # events a resumed run logged after its saved step (before it stopped) are dropped
    writer = SummaryWriter(run_dir, purge_step=state["global_step"] + 1 if args.resume else None)
    if not args.resume:
        writer.add_text(
            "hyperparameters",
            "|param|value|\n|-|-|\n{}".format("\n".join([f"|{key}|{value}|" for key, value in vars(args).items()])),
        )
        report = log_sparsity(writer, 0, args, 1, actor, qfs, actor_sparse, critic_sparse)
        print(
            f"{run_dir}: " + ", ".join(f"{k} {v:,}" if isinstance(v, int) else f"{k} {v:.3f}" for k, v in report.items()),
            flush=True,
        )

    rb = ReplayBuffer(
        args.buffer_size, int(np.prod(env.observation_space.shape)), int(np.prod(env.action_space.shape)), device
    )
    checkpoint_path = f"{run_dir}/{args.exp_name}.pt"
    networks = {"actor": actor, "qfs": qfs, "qfs_target": qfs_target}
    optimizers = {"actor": actor_optimizer, "q": q_optimizer, **({"alpha": a_optimizer} if args.autotune else {})}
    # with the sparse layers' masks and ever-active sets, in place: the topology update and the targets hold them
    in_place = {
        "actor_masks": actor_sparse.masks,
        "actor_ever_active": actor_sparse.ever_active,
        "critic_masks": critic_sparse.masks,
        "critic_ever_active": critic_sparse.ever_active,
        **({"log_alpha": [log_alpha]} if args.autotune else {}),
    }
    if args.resume:  # everything the loop reads, as it was at the episode end where the run stopped
        restore_state(state, env, networks, optimizers, in_place, rb)
        alpha = log_alpha.exp().item() if args.autotune else args.alpha
        global_step, eval_means, last_return = state["global_step"], state["eval_means"], state["last_return"]
        actor_loss_critic_grads = [grad.to(device) for grad in state["actor_loss_critic_grads"]]  # read on the CPU
        obs, _ = env.reset()  # the reset that began the next episode, from the same generator state
        print(f"{run_dir}: resumed at step {global_step}", flush=True)
    else:
        # both papers evaluate the untrained policy too: curves start at step 0
        eval_returns = evaluate(actor, args.env_id, args.eval_episodes, args.seed + 100, device, env_kwargs=env_kwargs)
        eval_means = [float(np.mean(eval_returns))]
        writer.add_scalar("eval/episodic_return", eval_means[0], 0)
        writer.add_scalar("eval/score", eval_means[0], 0)
        last_return, global_step = float("nan"), 0
        # TRY NOT TO MODIFY: start the game
        obs, _ = env.reset(seed=args.seed)
    start_step = saved_step = global_step
    start_time = report_time = time.time()  # the ETA uses the speed since the last report, not the fast warm-up
    report_step = start_step
    stop = StopRequest()  # SIGINT / SIGTERM: save at the end of this episode and exit

    try:
        for global_step in range(start_step + 1, args.total_timesteps + 1):
            # ALGO LOGIC: put action logic here
            if global_step <= args.learning_starts:
                action = behaviour_action = env.action_space.sample()
            else:
                with torch.no_grad():  # the released agent acts with its mean action tanh(mu): see --sample-actions
                    sampled, _, mean = actor.get_action(torch.as_tensor(obs, dtype=torch.float32, device=device)[None])
                    behaviour_action = mean[0]  # stored for the policy distance: the mean action, also when sampling
                    action = (sampled if args.sample_actions else mean)[0].cpu().numpy()

            # TRY NOT TO MODIFY: execute the game and log data.
            next_obs, reward, terminated, truncated, info = env.step(action)
            # Time-limit truncation is not terminal: store the true next state and bootstrap from it.
            rb.add(obs, next_obs, action, behaviour_action, reward, terminated, truncated)
            obs = next_obs
            if terminated or truncated:
                last_return = float(info["episode"]["r"])
                writer.add_scalar("charts/episodic_return", last_return, global_step)
                writer.add_scalar("charts/episodic_length", int(info["episode"]["l"]), global_step)
                reset_rng = env_rng_state(env)  # a resumed run repeats this reset
                obs, _ = env.reset()

            # (c) Dynamic-capacity buffer: drop the oldest transitions once the policy has moved far from them
            if args.dynamic_buffer and global_step % args.buffer_check_interval == 0:
                with torch.no_grad():
                    oldest = rb.oldest(args.buffer_check_size)
                    policy_distance = (
                        ((actor.mean_action(rb.obs[oldest]) - rb.behaviour_actions[oldest]) / actor.action_scale) ** 2
                    ).mean().item() / 2  # mean against mean, as released
                if policy_distance > args.policy_distance_threshold and rb.size > args.buffer_min_size:
                    # never below n transitions, an n-step window's length: the released code, whose minimum (1e5) is far
                    # above n, never gets there; a minimum within 10% of n would, and sampling would fail
                    floor = max(args.n_step, args.buffer_min_size if args.clamp_buffer_min else 0)
                    rb.shrink(args.buffer_drop_fraction, floor)
                writer.add_scalar("buffer/policy_distance", policy_distance, global_step)
                writer.add_scalar("buffer/size", rb.size, global_step)
                writer.add_scalar("buffer/capacity", rb.capacity, global_step)

            # ALGO LOGIC: training.
            if global_step > args.learning_starts:
                iteration = global_step - args.learning_starts  # training iterations so far, this one included
                # a network without sparse layers has no topology and never skips a step (released: an always-stepping pruner)
                topology_step = (
                    grow_scores is not None
                    and bool(critic_sparse.names)
                    and is_topology_step(iteration, args.topology_interval, topology_end)
                )
                actor_topology_step = (
                    grow_scores is not None
                    and bool(actor_sparse.names)
                    and is_topology_step(iteration, args.topology_interval, topology_end)
                )
                n_step = args.n_step if iteration >= args.delay_nstep else 1  # (b) delayed multi-step targets (released: >=)
                data_obs, data_actions, *window = rb.sample(args.batch_size, n_step)
                with torch.no_grad():
                    next_q_value = soft_n_step_target(actor, qf1_target, qf2_target, *window, alpha, args.gamma)

                qf1_a_values = qf1(data_obs, data_actions).view(-1)
                qf2_a_values = qf2(data_obs, data_actions).view(-1)
                qf1_loss = F.mse_loss(qf1_a_values, next_q_value)
                qf2_loss = F.mse_loss(qf2_a_values, next_q_value)
                qf_loss = qf1_loss + qf2_loss

                q_optimizer.zero_grad()
                request_dense_gradients(qfs, topology_step)  # kernel backend: RigL scores need dL/dW everywhere
                qf_loss.backward()
                if topology_step:  # (a) RigL on this batch's dense gradient; the optimizer step is skipped (released code)
                    if actor_loss_critic_grads:  # the released quirk: plus the last actor loss's gradient
                        torch._foreach_add_([w.grad for w in critic_sparse.weights], actor_loss_critic_grads)
                    drop_fraction = cosine_drop_fraction(iteration, args.drop_fraction, topology_end)
                    grown = update_topology(critic_sparse, grow_scores(critic_sparse), drop_fraction)
                    if args.reset_grown_moments:
                        reset_adam_moments(q_optimizer, critic_sparse.weights, grown)
                    writer.add_scalar("sparse/critic_drop_fraction", drop_fraction, global_step)
                else:  # masked gradients, then re-mask: inactive weights stay exactly zero
                    critic_sparse.mask_gradients_()
                    q_optimizer.step()
                    critic_sparse.apply_()

                # the actor loss with min(Q1, Q2), through the critics as they are now (after a topology update)
                pi, log_pi, _ = actor.get_action(data_obs)
                qf1_pi = qf1(data_obs, pi)
                qf2_pi = qf2(data_obs, pi)
                min_qf_pi = torch.min(qf1_pi, qf2_pi)
                actor_loss = ((alpha * log_pi) - min_qf_pi).mean()
                actor_optimizer.zero_grad()
                request_dense_gradients(actor, actor_topology_step)
                # the critics' gradients are thrown away, except just before a critic topology update (the quirk)
                carry = carry_actor_loss and is_topology_step(iteration + 1, args.topology_interval, topology_end)
                if carry:
                    q_optimizer.zero_grad()
                    request_dense_gradients(qfs, True)
                actor_loss.backward(inputs=actor_params + (critic_sparse.weights if carry else []))
                actor_loss_critic_grads = [w.grad.clone() for w in critic_sparse.weights] if carry else []
                if actor_topology_step:
                    drop_fraction = cosine_drop_fraction(iteration, args.drop_fraction, topology_end)
                    grown = update_topology(actor_sparse, grow_scores(actor_sparse), drop_fraction)
                    if args.reset_grown_moments:
                        reset_adam_moments(actor_optimizer, actor_sparse.weights, grown)
                    writer.add_scalar("sparse/actor_drop_fraction", drop_fraction, global_step)
                else:
                    actor_sparse.mask_gradients_()
                    actor_optimizer.step()
                    actor_sparse.apply_()

                if args.autotune:  # also on topology iterations (released code), with the actor loss's log-probs
                    alpha_loss = (-log_alpha.exp() * (log_pi.detach() + target_entropy)).mean()
                    a_optimizer.zero_grad()
                    alpha_loss.backward()
                    a_optimizer.step()
                    alpha = log_alpha.exp().item()

                # soft-update the critics' target on every iteration, then give it the online masks (released code)
                with torch.no_grad():
                    torch._foreach_lerp_(critic_target_params, critic_params, args.tau)
                    if critic_sparse.names:
                        torch._foreach_mul_(critic_target_sparse, critic_sparse.masks)

                if topology_step or actor_topology_step:
                    log_sparsity(writer, global_step, args, n_step, actor, qfs, actor_sparse, critic_sparse)
                stop_if_diverged(global_step, run_dir, [qf_loss, actor_loss])  # a sync the next action's .cpu() makes anyway
                if global_step % 100 == 0:
                    writer.add_scalar("losses/qf1_values", qf1_a_values.mean().item(), global_step)
                    writer.add_scalar("losses/qf2_values", qf2_a_values.mean().item(), global_step)
                    writer.add_scalar("losses/qf1_loss", qf1_loss.item(), global_step)
                    writer.add_scalar("losses/qf2_loss", qf2_loss.item(), global_step)
                    writer.add_scalar("losses/qf_loss", qf_loss.item() / 2.0, global_step)
                    writer.add_scalar("losses/actor_loss", actor_loss.item(), global_step)
                    writer.add_scalar("losses/log_prob", log_pi.mean().item(), global_step)
                    writer.add_scalar("losses/alpha", alpha, global_step)
                    if args.autotune:
                        writer.add_scalar("losses/alpha_loss", alpha_loss.item(), global_step)
                    writer.add_scalar("charts/SPS", int((global_step - start_step) / (time.time() - start_time)), global_step)
                    writer.add_scalar("charts/n_step", n_step, global_step)

            if global_step % args.eval_frequency == 0 or global_step == args.total_timesteps:
                stop_if_diverged(global_step, run_dir, actor_params + critic_params)
                eval_returns = evaluate(actor, args.env_id, args.eval_episodes, args.seed + 100, device, env_kwargs=env_kwargs)
                writer.add_scalar("eval/episodic_return", np.mean(eval_returns), global_step)
                eval_means.append(float(np.mean(eval_returns)))
                writer.add_scalar("eval/score", np.mean(eval_means[-SCORE_WINDOW:]), global_step)
                sps = (global_step - start_step) / (time.time() - start_time)
                eta = (args.total_timesteps - global_step) * (time.time() - report_time) / (global_step - report_step)
                report_time, report_step = time.time(), global_step
                print(
                    f"step {global_step}/{args.total_timesteps} | SPS {sps:.0f} | return {last_return:.1f} | "
                    f"eval {np.mean(eval_returns):.1f} +- {np.std(eval_returns):.1f} | "
                    f"score {np.mean(eval_means[-SCORE_WINDOW:]):.1f} | ETA {eta / 60:.0f} min",
                    flush=True,
                )
                if args.save_model:
                    save_checkpoint(checkpoint_path, args, actor, qf1, qf2, actor_sparse, critic_sparse, global_step)

            # the full training state, at an episode end: every --checkpoint-frequency steps, and when asked to stop
            if (terminated or truncated) and (stop.signal or global_step - saved_step >= args.checkpoint_frequency):
                stop_if_diverged(global_step, run_dir, actor_params + critic_params)
                saved_step = global_step
                save_state(f"{run_dir}/{STATE_FILE}", SCRIPT, args, env, reset_rng, networks, optimizers, in_place, rb,
                           global_step=global_step, eval_means=eval_means, last_return=last_return,
                           wandb_run_id=wandb_run_id, actor_loss_critic_grads=actor_loss_critic_grads)  # fmt: skip
                if stop.signal:
                    if args.save_model:
                        save_checkpoint(checkpoint_path, args, actor, qf1, qf2, actor_sparse, critic_sparse, global_step)
                    print(f"stopped at step {global_step}, state saved: continue with --resume {run_dir}", flush=True)
                    raise SystemExit(128 + stop.signal)  # 130 for SIGINT, 143 for SIGTERM, as shells expect

        # the budget is reached: what the run hands over, then the end of the run, with a signal now waiting for both
        # (a second one exits at once, the state kept: a resumed run repeats the steps since it was saved, then these)
        if args.save_model:
            save_checkpoint(checkpoint_path, args, actor, qf1, qf2, actor_sparse, critic_sparse, global_step)
            print(f"model saved to {checkpoint_path}")
        if args.capture_video:
            evaluate(
                actor, args.env_id, 1, args.seed + 100, device, capture_video=True, run_name=run_name, env_kwargs=env_kwargs
            )
            if args.track:
                log_videos(f"videos/{run_name}")
        writer.flush()
        mark_complete(run_dir, global_step)
    finally:
        stop.restore()
        env.close()
        writer.close()
        unlock_run_dir(run_dir)
