# DS-SAC: the dynamic sparse training of Sokar, Mocanu, Mocanu, Pechenizkiy, Stone (IJCAI 2022) applied to SAC, as in the
# paper's appendix. Its authors released no SAC code; every choice the appendix leaves open is named in a comment here.
# SAC whose actor and critics are sparse from scratch (Erdos-Renyi masks on the first two layers) and change topology
# during training (SET: drop the weights closest to zero, regrow at random).
import json
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
from common.distributions import er_densities, erk_densities
from common.flops import forward_flops, training_flops, weight_counts
from common.masks import TopKTargets, reset_adam_moments, sparsify
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
from common.topology import is_topology_step, random_scores, update_topology
from common.tracking import init_tracking, log_videos

# (eps1, eps2) of the ER init per env family, from the DS-SAC table of the paper's appendix
ER_EPSILONS = {"HalfCheetah": (12, 80), "Walker2d": (12, 80), "Hopper": (7, 20), "Ant": (30, 64), "Humanoid": (61, 64)}
# As in DS-TD3, only the first two layers are sparse: the actor's two heads (mean, log-std), the critics' output layers
# and all biases stay dense (the appendix applies DS-TD3's components unchanged).
SPARSE_LAYERS = ("fc1.weight", "fc2.weight")
LOG_STD_MAX, LOG_STD_MIN = 2, -5

SCORE_WINDOW = 10  # the published score: mean of the last 10 evaluations (Sokar et al. 2022)
SCRIPT = "sparse_sac"  # names the checkpoints and states this script writes, so another script refuses them


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

    # Algorithm specific arguments (SAC as in the appendix: lr 3e-4, batch 256, fixed alpha 0.2, hard target updates)
    env_id: str = "HalfCheetah-v4"
    """the id of the environment (the papers used gym's -v3, which needs mujoco-py: -v4 is the same task on mujoco)"""
    env_kwargs: str = "{}"
    """keyword arguments of `gym.make`, as JSON: '{"use_contact_forces": true}' gives Ant-v4 the papers' 111-dim input"""
    total_timesteps: int = 1_000_000
    """total timesteps of the experiments (paper: 1M)"""
    learning_rate: float = 3e-4
    """the learning rate of the actor, critic and alpha optimizers (appendix: 3e-4)"""
    buffer_size: int = 1_000_000
    """the replay memory buffer size (paper: 1e6)"""
    gamma: float = 0.99
    """the discount factor gamma (paper: 0.99)"""
    tau: float = 1.0
    """target smoothing coefficient (appendix: 1, a hard copy; 0.005 with --target-network-frequency 1 is soft SAC)"""
    target_network_frequency: int = 1_000
    """training iterations between target network updates (appendix: 1000)"""
    batch_size: int = 256
    """the batch size of sample from the replay memory (appendix: 256)"""
    learning_starts: int = 25_000
    """timestep to start learning; random actions before (counted inside total_timesteps; as DS-TD3, the appendix
    names no other value)"""
    alpha: float = 0.2
    """entropy regularization coefficient (appendix: fixed 0.2)"""
    autotune: bool = False
    """automatic tuning of the entropy coefficient, target entropy -|A| (Haarnoja et al. 2018b)"""
    eval_frequency: int = 5_000
    """evaluate the deterministic policy every this many env steps (paper: 5000)"""
    eval_episodes: int = 10
    """the number of evaluation episodes (paper: 10, eval env seeded seed + 100)"""

    # Dynamic sparse training
    sparsity: float | None = None
    """target sparsity of each network (all weights, output layer dense); solves one ER epsilon for the first two
    layers. None: the paper's per-layer ER epsilons (`er_epsilons`). 0 gives dense SAC with otherwise identical code"""
    er_epsilons: tuple[float, float] | None = None
    """(eps1, eps2) of the ER init of layers 1 and 2; None: the paper's value for the env (7/64 for unknown envs)"""
    topology_interval: int = 1_000
    """e: training iterations between SET topology updates (appendix: 1000)"""
    drop_fraction: float = 0.1
    """eta: fraction of the positive and, separately, of the negative weights dropped per update (appendix: 0.1)"""
    topology_end: int | None = None
    """topology updates happen at training iterations below this; None: total - learning_starts - 50k (DS-TD3's released code)"""
    target_topology: str = "top-k"
    """'top-k': each target layer keeps its k largest-|w| entries, k = online nnz (paper); 'online': target weights
    multiplied by the online masks. Moot with the default hard copy, which carries the online topology"""
    reset_grown_moments: bool = False
    """improvement (jaxpruner): zero Adam's moments of grown connections; DS-TD3's released code keeps them warm"""


# the bounds of the arguments, checked before anything is written (common/checks.py): an interval, or the values allowed
BOUNDS = {
    **dict.fromkeys(("checkpoint_frequency", "total_timesteps", "buffer_size", "target_network_frequency", "batch_size",
                     "eval_frequency", "eval_episodes", "er_epsilons", "topology_interval"), "(0, inf)"),
    **dict.fromkeys(("learning_rate", "learning_starts", "alpha", "topology_end"), "[0, inf)"),
    **dict.fromkeys(("sparsity", "drop_fraction"), "[0, 1)"),
    "gamma": "[0, 1]",
    "tau": "(0, 1]",
    "target_topology": ("top-k", "online"),
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
    if args.sparsity is not None and args.er_epsilons is not None:
        raise SystemExit("error: give --sparsity or --er-epsilons, not both")
    return env


class QNetwork(nn.Module):
    def __init__(self, env):
        super().__init__()
        self.fc1 = nn.Linear(np.prod(env.observation_space.shape) + np.prod(env.action_space.shape), 256)
        self.fc2 = nn.Linear(256, 256)
        self.fc3 = nn.Linear(256, 1)

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
        self.fc_mean = nn.Linear(256, np.prod(env.action_space.shape))
        self.fc_logstd = nn.Linear(256, np.prod(env.action_space.shape))
        # action rescaling
        self.register_buffer(
            "action_scale", torch.tensor((env.action_space.high - env.action_space.low) / 2.0, dtype=torch.float32)
        )
        self.register_buffer(
            "action_bias", torch.tensor((env.action_space.high + env.action_space.low) / 2.0, dtype=torch.float32)
        )

    def forward(self, x):
        x = F.relu(self.fc1(x))
        x = F.relu(self.fc2(x))
        mean = self.fc_mean(x)
        log_std = torch.tanh(self.fc_logstd(x))
        log_std = LOG_STD_MIN + 0.5 * (LOG_STD_MAX - LOG_STD_MIN) * (log_std + 1)  # From SpinUp / Denis Yarats
        return mean, log_std

    def get_action(self, x):
        mean, log_std = self(x)
        std = log_std.exp()
        normal = torch.distributions.Normal(mean, std)
        x_t = normal.rsample()  # for reparameterization trick (mean + std * N(0,1))
        y_t = torch.tanh(x_t)
        action = y_t * self.action_scale + self.action_bias
        log_prob = normal.log_prob(x_t)
        # Enforcing Action Bound
        log_prob -= torch.log(self.action_scale * (1 - y_t.pow(2)) + 1e-6)
        log_prob = log_prob.sum(1, keepdim=True)
        mean = torch.tanh(mean) * self.action_scale + self.action_bias
        return action, log_prob, mean


class ReplayBuffer:
    """Transitions (s, a, r, s', terminated) in preallocated tensors on the training device. s' is the true next
    state also at a time-limit end, and `terminated` excludes truncation, so truncated episodes bootstrap."""

    def __init__(self, capacity, obs_dim, act_dim, device):
        self.obs = torch.zeros((capacity, obs_dim), device=device)
        self.next_obs = torch.zeros((capacity, obs_dim), device=device)
        self.actions = torch.zeros((capacity, act_dim), device=device)
        self.rewards = torch.zeros(capacity, device=device)
        self.terminations = torch.zeros(capacity, device=device)
        self.capacity, self.pos, self.size = capacity, 0, 0

    def add(self, obs, next_obs, action, reward, terminated):
        self.obs[self.pos] = torch.as_tensor(obs)
        self.next_obs[self.pos] = torch.as_tensor(next_obs)
        self.actions[self.pos] = torch.as_tensor(action)
        self.rewards[self.pos] = float(reward)
        self.terminations[self.pos] = float(terminated)
        self.pos = (self.pos + 1) % self.capacity
        self.size = min(self.size + 1, self.capacity)

    def sample(self, batch_size):
        idx = torch.randint(0, self.size, (batch_size,), device=self.obs.device)
        return self.obs[idx], self.actions[idx], self.next_obs[idx], self.rewards[idx], self.terminations[idx]

    FIELDS = ("obs", "next_obs", "actions", "rewards", "terminations")

    def state_dict(self):
        """The filled slots (the first `size`: a ring fills in order) and the position; no copy of the buffer on CPU."""
        return {
            "pos": self.pos,
            "size": self.size,
            **{name: filled_rows(getattr(self, name), self.size) for name in self.FIELDS},
        }

    def load_state_dict(self, state):
        self.pos, self.size = state["pos"], state["size"]
        for name in self.FIELDS:
            getattr(self, name)[: self.size].copy_(state[name])


def layer_densities(args: Args, actor: nn.Module, qf: nn.Module) -> tuple[dict[str, float], dict[str, float]]:
    """Densities of the sparse layers of the actor and of one critic: the paper's per-layer ER epsilons, or one
    epsilon solved for `--sparsity` over all weights of the network with the output layer kept dense."""
    densities = []
    for layers in ((actor.fc1, actor.fc2, actor.fc_mean, actor.fc_logstd), (qf.fc1, qf.fc2, qf.fc3)):
        shapes = [tuple(layer.weight.shape) for layer in layers]
        if args.sparsity is not None:
            densities.append(erk_densities(shapes, args.sparsity, dense=frozenset(range(2, len(shapes))))[:2])
        else:
            epsilons = args.er_epsilons or ER_EPSILONS.get(args.env_id.split("-")[0], (7, 64))
            densities.append(er_densities(shapes[:2], list(epsilons)))
    return dict(zip(SPARSE_LAYERS, densities[0])), dict(zip(SPARSE_LAYERS, densities[1]))


def evaluate(actor, env_id, eval_episodes, seed, device, capture_video=False, run_name="", env_kwargs=None):
    """Mean return of the deterministic policy (the tanh-squashed mean action) on a separate env."""
    env = make_env(env_id, seed, capture_video, run_name, env_kwargs)
    obs, _ = env.reset(seed=seed)
    episodic_returns = []
    while len(episodic_returns) < eval_episodes:
        with torch.no_grad():
            mean, _ = actor(torch.as_tensor(obs, dtype=torch.float32, device=device)[None])  # no sampling: no RNG use
            action = (torch.tanh(mean) * actor.action_scale + actor.action_bias)[0].cpu().numpy()
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


def iteration_flops(actor_fwd, qf1_fwd, qfs_fwd, batch_size):
    """FLOPs of one env step and training iteration (the papers' count, common/flops.py): actor forward on the next states, both
    target critics forward, both critics forward + backward, the actor and both critics forward + backward for the
    actor loss, and the batch-1 acting forward. Targets have as many connections as the online networks."""
    critic_update = batch_size * (actor_fwd + qfs_fwd + training_flops(qfs_fwd))
    actor_update = batch_size * (training_flops(actor_fwd) + training_flops(qfs_fwd))
    return critic_update + actor_update + actor_fwd


def log_sparsity(writer, global_step, args, actor, qfs, actor_sparse, critic_sparse):
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
    sparse_fwd = (
        forward_flops(actor, actor_sparse),
        forward_flops(qfs.qf1, critic_sparse, "qf1."),
        forward_flops(qfs, critic_sparse),
    )
    dense_fwd = forward_flops(actor), forward_flops(qfs.qf1), forward_flops(qfs)
    report["training FLOPs"] = iteration_flops(*sparse_fwd, args.batch_size) / iteration_flops(*dense_fwd, args.batch_size)
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
    # Erdos-Renyi masks, drawn per entry (Bernoulli) as the released code; the realised count is each layer's budget.
    # With --sparsity the count is exact instead, so the network hits the requested sparsity.
    try:
        actor_densities, qf_densities = layer_densities(args, actor, qf1)
    except ValueError as e:  # a --sparsity the dense output layers alone exceed
        raise SystemExit(f"error: --sparsity {args.sparsity}: {e}") from None
    dense = [
        f"{net}.{name}" for net, d in (("actor", actor_densities), ("qf", qf_densities)) for name, v in d.items() if v >= 1
    ]
    # Only the paper's epsilons promise a sparsity: Ant-v4's default 27-dim input makes layer 1 dense at the epsilon the
    # paper chose for gym Ant-v3's 111 dims. A dense run, a solved --sparsity or one's own epsilons promise nothing.
    if dense and args.sparsity is None and args.er_epsilons is None and args.env_id.split("-")[0] in ER_EPSILONS:
        print(f"note: {', '.join(dense)} come out dense at these ER epsilons: the networks are less sparse than the paper's")
    mask_init = "bernoulli" if args.sparsity is None else "random"
    actor_sparse = sparsify(actor, actor_densities, mask_init)
    critic_sparse = sparsify(qfs, {f"{q}.{name}": d for q in ("qf1", "qf2") for name, d in qf_densities.items()}, mask_init)
    qf1_target = QNetwork(env).to(device)
    qf2_target = QNetwork(env).to(device)
    qf1_target.load_state_dict(qf1.state_dict())
    qf2_target.load_state_dict(qf2.state_dict())
    qfs_target = nn.ModuleDict({"qf1": qf1_target, "qf2": qf2_target})
    q_optimizer = torch.optim.Adam(qfs.parameters(), lr=args.learning_rate, fused=True)
    actor_optimizer = torch.optim.Adam(actor.parameters(), lr=args.learning_rate, fused=True)
    # Targets: (online params, target params, sparse target layers and their online masks)
    critic_params, critic_target_params = list(qfs.parameters()), list(qfs_target.parameters())
    critic_target_sparse = critic_sparse.layers_of(qfs_target)
    actor_params = list(actor.parameters())

    # Automatic entropy tuning
    if args.autotune:
        target_entropy = -torch.prod(torch.Tensor(env.action_space.shape).to(device)).item()
        log_alpha = torch.zeros(1, requires_grad=True, device=device)
        alpha = log_alpha.exp().item()
        a_optimizer = torch.optim.Adam([log_alpha], lr=args.learning_rate)
    else:
        alpha = args.alpha
    # the targets' own topology (top-k), a copy of the online one at first (TopKTargets makes the target weights views
    # into one buffer)
    target_top_k = TopKTargets(critic_target_sparse, critic_sparse.masks)
    critic_target_masks = target_top_k.masks
    topology_end = args.topology_end if args.topology_end is not None else args.total_timesteps - args.learning_starts - 50_000
    if topology_end < args.topology_interval and (actor_sparse.names or critic_sparse.names):
        print(
            f"note: topology end {topology_end} < interval {args.topology_interval}: the masks stay static (set --topology-end)"
        )

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
        report = log_sparsity(writer, 0, args, actor, qfs, actor_sparse, critic_sparse)
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
        "critic_target_masks": critic_target_masks,
        **({"log_alpha": [log_alpha]} if args.autotune else {}),
    }
    if args.resume:  # everything the loop reads, as it was at the episode end where the run stopped
        restore_state(state, env, networks, optimizers, in_place, rb)
        alpha = log_alpha.exp().item() if args.autotune else args.alpha
        global_step, eval_means, last_return = state["global_step"], state["eval_means"], state["last_return"]
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
                action = env.action_space.sample()
            else:
                with torch.no_grad():  # explore by sampling the policy
                    action = (
                        actor.get_action(torch.as_tensor(obs, dtype=torch.float32, device=device)[None])[0][0].cpu().numpy()
                    )

            # TRY NOT TO MODIFY: execute the game and log data.
            next_obs, reward, terminated, truncated, info = env.step(action)
            # Time-limit truncation is not terminal: store the true next state and bootstrap from it.
            rb.add(obs, next_obs, action, reward, terminated)
            obs = next_obs
            if terminated or truncated:
                last_return = float(info["episode"]["r"])
                writer.add_scalar("charts/episodic_return", last_return, global_step)
                writer.add_scalar("charts/episodic_length", int(info["episode"]["l"]), global_step)
                reset_rng = env_rng_state(env)  # a resumed run repeats this reset
                obs, _ = env.reset()

            # ALGO LOGIC: training.
            if global_step > args.learning_starts:
                iteration = global_step - args.learning_starts  # training iterations so far, this one included
                topology_step = is_topology_step(iteration, args.topology_interval, topology_end)
                data_obs, data_actions, data_next_obs, data_rewards, data_terminations = rb.sample(args.batch_size)
                with torch.no_grad():
                    next_state_actions, next_state_log_pi, _ = actor.get_action(data_next_obs)
                    qf1_next_target = qf1_target(data_next_obs, next_state_actions).view(-1)
                    qf2_next_target = qf2_target(data_next_obs, next_state_actions).view(-1)
                    min_qf_next_target = torch.min(qf1_next_target, qf2_next_target) - alpha * next_state_log_pi.view(-1)
                    next_q_value = data_rewards + (1 - data_terminations) * args.gamma * min_qf_next_target

                qf1_a_values = qf1(data_obs, data_actions).view(-1)
                qf2_a_values = qf2(data_obs, data_actions).view(-1)
                qf1_loss = F.mse_loss(qf1_a_values, next_q_value)
                qf2_loss = F.mse_loss(qf2_a_values, next_q_value)
                qf_loss = qf1_loss + qf2_loss

                # optimize the model: Adam steps every entry, then the masks zero the inactive ones (no gradient masking)
                q_optimizer.zero_grad()
                qf_loss.backward()
                q_optimizer.step()
                critic_sparse.apply_()
                if topology_step:  # SET (section 3.2): drop the weights closest to zero by sign, regrow at random
                    grown = update_topology(critic_sparse, random_scores(critic_sparse), args.drop_fraction, split_signs=True)
                    if args.reset_grown_moments:
                        reset_adam_moments(q_optimizer, critic_sparse.weights, grown)

                pi, log_pi, _ = actor.get_action(data_obs)
                qf1_pi = qf1(data_obs, pi)
                qf2_pi = qf2(data_obs, pi)
                min_qf_pi = torch.min(qf1_pi, qf2_pi)
                actor_loss = ((alpha * log_pi) - min_qf_pi).mean()
                actor_optimizer.zero_grad()
                actor_loss.backward(inputs=actor_params)  # the critics' gradients would be thrown away
                actor_optimizer.step()
                actor_sparse.apply_()
                if topology_step:
                    grown = update_topology(actor_sparse, random_scores(actor_sparse), args.drop_fraction, split_signs=True)
                    if args.reset_grown_moments:
                        reset_adam_moments(actor_optimizer, actor_sparse.weights, grown)

                if args.autotune:
                    alpha_loss = (-log_alpha.exp() * (log_pi.detach() + target_entropy)).mean()
                    a_optimizer.zero_grad()
                    alpha_loss.backward()
                    a_optimizer.step()
                    alpha = log_alpha.exp().item()

                # update the target networks (appendix: a hard copy every 1000 iterations, which carries the online
                # topology), then make their sparse layers sparse again as DS-TD3 does for soft updates
                if iteration % args.target_network_frequency == 0:
                    with torch.no_grad():
                        torch._foreach_lerp_(critic_target_params, critic_params, args.tau)
                        if args.target_topology == "top-k":
                            target_top_k.apply_()
                        elif critic_sparse.names:
                            torch._foreach_mul_(critic_target_sparse, critic_sparse.masks)

                if topology_step:
                    log_sparsity(writer, global_step, args, actor, qfs, actor_sparse, critic_sparse)
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
                           wandb_run_id=wandb_run_id)  # fmt: skip
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
