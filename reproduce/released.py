"""The authors' released code, unmodified, on today's stack: their training script run over a stand-in `gym` module.

The two released codes target gym 0.19 with mujoco-py (HalfCheetah-v3). Given a user's clone of one of them, this runs
its training script as it is, in this process, with `import gym` answered by a small stand-in over gymnasium: the old
API (`env.seed`, `reset()` returning the observation, a 4-tuple `step` whose `done` is terminated or truncated,
`_max_episode_steps`) over the gymnasium env we use (`--env-id HalfCheetah-v4`: the same model and reward as -v3 on
the maintained mujoco bindings). Nothing else of theirs is touched: their networks, updates, buffer, seeding and
time-limit bootstrap stay theirs; only, for the DS-TD3 repository, the process flushes float32 denormals to zero, as
`sparse_td3.py` does (a CPU speed setting). The stand-in also watches the env steps, so their evaluations go into a
TensorBoard log under our tags (`eval/episodic_return` at the env step it was taken) and `reproduce/report.py` draws
their runs beside ours; a `step N/M` line after each evaluation lets `reproduce/sweep.py` follow them.

    python reproduce/released.py --algo rlx2-td3 --released-dir ~/src/RLx2 --env-id HalfCheetah-v4 --seed 1
    export DS_TD3_RELEASED_DIR=~/src/Dynamic-Sparse-Training-for-Deep-Reinforcement-Learning
    python reproduce/released.py --algo ds-td3 --env-id Hopper-v4 --total-timesteps 1000000

Their script runs in the run's directory (`runs/{env}__{algo}-released__{seed}__{time}`, beside the TensorBoard log), so
what it writes to its working directory (RLx2: `results_TD3/` or `results_SAC/`; DS-TD3: `results/`, `models/`) stays
with the run (a path in --released-args is read from there too). Their runs cannot resume (the released code saves no
training state): a stopped run starts again from step 0, unless the process itself is dumped and restored with CRIU
(docs/released.md says how).
"""

import hashlib
import inspect
import json
import os
import runpy
import shlex
import sys
import time
import types
from dataclasses import dataclass
from pathlib import Path

import gymnasium
import numpy as np
import tyro

# The two releases this adapter knows, by a digest of each file it runs (line endings ignored): a clone at another
# commit may train differently, so it is refused rather than run.
RLX2 = "tyq1024/RLx2 at 3f4898b"
DS_TD3 = "GhadaSokar/Dynamic-Sparse-Training-for-Deep-Reinforcement-Learning at 0c8fa33"
RELEASES = {
    RLX2: {
        "DST/DST_Scheduler.py": "2f8e914d64bb8ae8",
        "DST/utils.py": "0414ec59895415d7",
        "RLx2_TD3/train.py": "7be0687be3a27be5",
        "RLx2_TD3/TD3.py": "9f7aef3b6716d1d2",
        "RLx2_TD3/modules_TD3.py": "81dbcc1ce6139481",
        "RLx2_SAC/train.py": "4e9e0c9d2933b6f1",
        "RLx2_SAC/SAC.py": "0ab4f0eb24dd2156",
        "RLx2_SAC/modules_SAC.py": "701b295794897a52",
    },
    DS_TD3: {
        "main.py": "45ca864827fc6431",
        "DS_TD3.py": "2d1a60db8e082139",
        "TD3.py": "8af0f8f57f176fe2",
        "sparse_utils.py": "3b6b812af4f464cf",
        "utils.py": "d322a014ae3fe310",
    },
}
DIR_VARIABLES = {RLX2: "RLX2_RELEASED_DIR", DS_TD3: "DS_TD3_RELEASED_DIR"}  # where a clone is, without --released-dir
# RLx2's sparsities per env family (actor, critic): Table 1 of the paper for TD3, as in rlx2_td3.py and rlx2_sac.py
RLX2_TD3_SPARSITY = {"HalfCheetah": (0.90, 0.85), "Hopper": (0.98, 0.95), "Walker2d": (0.97, 0.95), "Ant": (0.96, 0.88)}
RLX2_SAC_SPARSITY = {"HalfCheetah": (0.90, 0.80), "Hopper": (0.98, 0.95), "Walker2d": (0.90, 0.90), "Ant": (0.90, 0.75)}
# DS-TD3's ER epsilons per env family (layer 1, layer 2), as in sparse_td3.py (ER_EPSILONS)
DS_TD3_EPSILONS = {"HalfCheetah": (7, 64), "Hopper": (7, 64), "Walker2d": (7, 64), "Ant": (40, 64), "Humanoid": (61, 64)}
# --algo: (release, script, the script's own arguments for it). RLx2's are its README's command (3-step targets
# from iteration 300k, the dynamic buffer) at the paper's sparsities; the dense settings are their train.py defaults.
ALGOS = {
    "rlx2-td3": (RLX2, "RLx2_TD3/train.py", "--nstep 3 --delay_nstep 300000 --use_dynamic_buffer"),
    "rlx2-td3-dense": (RLX2, "RLx2_TD3/train.py", ""),
    "rlx2-sac": (RLX2, "RLx2_SAC/train.py", "--nstep 3 --delay_nstep 300000 --use_dynamic_buffer"),
    "rlx2-sac-dense": (RLX2, "RLx2_SAC/train.py", ""),
    "ds-td3": (DS_TD3, "main.py", "--policy DS-TD3"),
    "td3": (DS_TD3, "main.py", "--policy TD3"),
}


@dataclass
class Args:
    algo: str
    """rlx2-td3, rlx2-sac (RLx2 as in its README, at the paper's sparsity for the env), rlx2-td3-dense, rlx2-sac-dense
    (the same scripts' defaults: dense, 1-step, fixed buffer), ds-td3 (DS-TD3 with the paper's ER epsilons), td3
    (the DS-TD3 repository's dense TD3)"""
    released_dir: str | None = None
    """a clone of the algorithm's release: tyq1024/RLx2 (commit 3f4898b) or
    GhadaSokar/Dynamic-Sparse-Training-for-Deep-Reinforcement-Learning (commit 0c8fa33); None: the directory named by
    the environment variable RLX2_RELEASED_DIR or DS_TD3_RELEASED_DIR (what a sweep's preset uses)"""
    env_id: str = "HalfCheetah-v4"
    """the gymnasium env their script trains on (their -v3 needs mujoco-py; -v4 is the same model and reward)"""
    seed: int = 1
    """their --seed"""
    total_timesteps: int | None = None
    """their --max_timesteps (None: their default, RLx2 3M, DS-TD3 1M); their schedules scale with it, as released"""
    learning_starts: int | None = None
    """their --start_timesteps, random-action steps before training (None: their default, 25k)"""
    released_args: str = ""
    """more arguments for their script, in their spelling, after ours (the last one wins): --released-args="--zeta 0.3" """


def check_release(released_dir: Path, release: str) -> None:
    """Refuse a directory that is not the release `release` at its known commit, with one line."""
    for name, digest in RELEASES[release].items():
        path = released_dir / name
        text = path.read_bytes().replace(b"\r\n", b"\n") if path.is_file() else None
        if text is None or hashlib.sha256(text).hexdigest()[:16] != digest:
            problem = "is missing" if text is None else "differs from the release"
            raise SystemExit(f"error: {released_dir} is not a clone of {release}: {name} {problem}")


def their_argv(args: Args) -> list[str]:
    """The command line of their script: --env, --seed, the budget, the algorithm's own settings, then --released-args."""
    release, _, settings = ALGOS[args.algo]
    family = args.env_id.split("-")[0]
    argv = ["--env", args.env_id, "--seed", str(args.seed)]
    if args.total_timesteps is not None:
        argv += ["--max_timesteps", str(args.total_timesteps)]
    if args.learning_starts is not None:
        argv += ["--start_timesteps", str(args.learning_starts)]
    if args.algo in ("rlx2-td3", "rlx2-sac"):
        table = RLX2_TD3_SPARSITY if args.algo == "rlx2-td3" else RLX2_SAC_SPARSITY
        if family not in table:
            raise SystemExit(f"error: the paper gives no RLx2 sparsity for {args.env_id}; set it with --released-args")
        argv += ["--actor_sparsity", str(table[family][0]), "--critic_sparsity", str(table[family][1])]
    if args.algo == "ds-td3":
        epsilons = DS_TD3_EPSILONS.get(family, (7, 64))  # their main.py's defaults for an unlisted env
        argv += ["--ann_epsilonHid1", str(epsilons[0]), "--ann_epsilonHid2", str(epsilons[1])]
    return argv + shlex.split(settings) + shlex.split(args.released_args)


class Progress:
    """What the stand-in sees of a run: training env steps and episodes, and evaluation episodes, into TensorBoard."""

    def __init__(self, writer, total: int, eval_episodes: int = 10):
        self.writer, self.total, self.eval_episodes = writer, total, eval_episodes  # both eval_policy's default: 10
        self.global_step, self.start = 0, time.time()

    def training_episode(self, episode_return: float, length: int) -> None:
        self.writer.add_scalar("charts/episodic_return", episode_return, self.global_step)
        self.writer.add_scalar("charts/episodic_length", length, self.global_step)

    def evaluation(self, returns: list[float]) -> None:
        self.writer.add_scalar("eval/episodic_return", float(np.mean(returns)), self.global_step)
        self.writer.add_scalar("charts/SPS", int(self.global_step / (time.time() - self.start)), self.global_step)
        self.writer.flush()
        print(f"step {self.global_step}/{self.total} eval {np.mean(returns):.1f}", flush=True)


class OldGymEnv:
    """gym 0.19's env API over a gymnasium env: what the released scripts call, and no more."""

    def __init__(self, env_id: str, progress: Progress, evaluation: bool):
        self.env = gymnasium.make(env_id)
        self.observation_space, self.action_space = self.env.observation_space, self.env.action_space
        self._max_episode_steps = self.env.spec.max_episode_steps
        self.progress, self.evaluation = progress, evaluation
        self.next_seed, self.episode_return, self.episode_length, self.eval_returns = None, 0.0, 0, []

    def seed(self, seed: int) -> None:  # gym 0.19 seeded the env's generator here; gymnasium does it at the next reset
        self.next_seed = seed

    def reset(self):
        obs, _ = self.env.reset(seed=self.next_seed)
        self.next_seed, self.episode_return, self.episode_length = None, 0.0, 0
        return obs

    def step(self, action):
        obs, reward, terminated, truncated, info = self.env.step(action)
        self.episode_return, self.episode_length = self.episode_return + float(reward), self.episode_length + 1
        if not self.evaluation:
            self.progress.global_step += 1
        if terminated or truncated:
            if not self.evaluation:
                self.progress.training_episode(self.episode_return, self.episode_length)
            else:
                self.eval_returns.append(self.episode_return)
                if len(self.eval_returns) == self.progress.eval_episodes:
                    self.progress.evaluation(self.eval_returns)
        return obs, reward, terminated or truncated, info


def stand_in_gym(progress: Progress) -> types.ModuleType:
    """A module `gym` whose `make` gives an old-API env: an evaluation env when called from their `eval_policy`."""
    gym = types.ModuleType("gym")

    def make(env_id: str) -> OldGymEnv:
        caller = inspect.currentframe().f_back.f_code.co_name
        return OldGymEnv(env_id, progress, evaluation=caller == "eval_policy")

    gym.make = make
    return gym


def main(argv: list[str] | None = None) -> int:
    args = tyro.cli(Args, args=argv, description=__doc__)
    if args.algo not in ALGOS:
        raise SystemExit(f"error: --algo must be one of {', '.join(ALGOS)}, got {args.algo!r}")
    release, script, _ = ALGOS[args.algo]
    if args.total_timesteps is not None and args.total_timesteps < 1:
        raise SystemExit(f"error: --total-timesteps must be positive, got {args.total_timesteps}")
    if args.learning_starts is not None and args.learning_starts < 0:
        raise SystemExit(f"error: --learning-starts must be >= 0, got {args.learning_starts}")
    total = args.total_timesteps or (3_000_000 if release == RLX2 else 1_000_000)
    if release == RLX2 and total - (25_000 if args.learning_starts is None else args.learning_starts) < 1000:
        raise SystemExit("error: the released RLx2 trains at least 1000 iterations (it logs every T_end / 1000 of them)")
    try:
        gymnasium.make(args.env_id).close()
    except gymnasium.error.Error as e:
        raise SystemExit(f"error: --env-id {args.env_id}: {e}") from None
    script_argv = their_argv(args)
    if args.released_dir is None and not os.environ.get(DIR_VARIABLES[release]):
        raise SystemExit(
            f"error: --algo {args.algo}: give --released-dir or set {DIR_VARIABLES[release]} (a clone of {release})"
        )
    released_dir = Path(args.released_dir or os.environ[DIR_VARIABLES[release]]).expanduser().resolve()
    check_release(released_dir, release)

    import torch
    from torch.utils.tensorboard import SummaryWriter

    run_name = f"runs/{args.env_id}__{args.algo}-released__{args.seed}__{int(time.time())}"
    run_dir = os.path.abspath(run_name)  # absolute: the writer still finds it after the chdir below
    writer = SummaryWriter(run_dir)
    writer.add_text("released", f"{release}: {script} {shlex.join(script_argv)}")
    progress = Progress(writer, total)
    print(f"{run_name}: {release}, {script} {shlex.join(script_argv)}", flush=True)
    with open(f"{run_dir}/released.json", "w") as file:
        json.dump({"release": release, "script": script, "argv": script_argv}, file, indent=2)

    # their script as `python script ARGS` from its own folder's imports: `from TD3 import TD3`, `from DST.utils ...`,
    # in the run's directory: what it writes to its working directory (results_TD3/, results/, models/) stays there
    os.chdir(run_dir)
    sys.argv = [str(released_dir / script), *script_argv]
    sys.path[:0] = [str((released_dir / script).parent), str(released_dir)]
    sys.modules["gym"] = stand_in_gym(progress)
    if release == DS_TD3:  # as sparse_td3.py: their coupled weight decay too walks dead units' weights into denormals
        torch.set_flush_denormal(True)
    runpy.run_path(str(released_dir / script), run_name="__main__")
    writer.close()
    print(f"step {progress.global_step}/{total}", flush=True)  # the sweep's "reached its last step"
    return 0 if progress.global_step == total else 1


if __name__ == "__main__":
    raise SystemExit(main())
