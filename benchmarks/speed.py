"""Training speed of whole scripts, measured side by side.

Each configuration is a command line that accepts --env-id, --seed, --total-timesteps and --learning-starts (ours and
CleanRL's do). It runs twice per round, with `--short` and `--long` training iterations after `--warmup` random steps;
the difference of the two wall-clock times over the difference of iterations is the time of one training iteration
(env step + update), free of start-up, warm-up and final-evaluation costs. Configurations alternate within each
round, so a slow minute of the machine hits all of them. Prints the median updates per second of each and its ratio
to the first configuration.

    python benchmarks/speed.py --config "dense=python sparse_td3.py --sparsity 0" "sparse=python sparse_td3.py --sparsity 0.5"
"""

import shlex
import statistics
import subprocess
import time
from dataclasses import dataclass, field

import tyro

# ours: skip evaluation until the final one, which both lengths share
QUIET = ["--eval-frequency", "100000000", "--eval-episodes", "1"]


@dataclass
class Args:
    config: list[str] = field(default_factory=list)
    """NAME=COMMAND ...; `--eval-*` flags of our scripts are added when the command runs one of them"""
    env_id: str = "HalfCheetah-v4"
    """the environment of every run"""
    warmup: int = 1_000
    """random-action steps before training (learning_starts)"""
    short: int = 500
    """training iterations of the short run"""
    long: int = 3_000
    """training iterations of the long run"""
    rounds: int = 3
    """rounds; each runs every configuration at both lengths"""


def wall_time(command: list[str], args: Args, iterations: int, seed: int) -> float:
    extra = QUIET if any(part.endswith(("sparse_td3.py", "sparse_sac.py", "rlx2_td3.py")) for part in command) else []
    steps = ["--total-timesteps", str(args.warmup + iterations), "--learning-starts", str(args.warmup)]
    start = time.perf_counter()
    subprocess.run(
        [*command, "--env-id", args.env_id, "--seed", str(seed), *steps, *extra],
        check=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    return time.perf_counter() - start


if __name__ == "__main__":
    args = tyro.cli(Args)
    if len(args.config) < 1 or any("=" not in c for c in args.config):
        raise SystemExit("error: give at least one --config NAME=COMMAND")
    configs = {name: shlex.split(command) for name, command in (c.split("=", 1) for c in args.config)}
    rates: dict[str, list[float]] = {name: [] for name in configs}
    for round_ in range(args.rounds):
        for name, command in configs.items():
            short = wall_time(command, args, args.short, seed=round_ + 1)
            long = wall_time(command, args, args.long, seed=round_ + 1)
            rates[name].append((args.long - args.short) / (long - short))
            print(f"round {round_ + 1}: {name}: {rates[name][-1]:.1f} updates/s", flush=True)
    baseline = statistics.median(rates[next(iter(configs))])
    print(f"\n{args.env_id}, {args.rounds} rounds, median training iterations per second:")
    for name, values in rates.items():
        median = statistics.median(values)
        print(f"  {name:>20}: {median:7.1f} it/s ({1000 / median:.2f} ms/it), x{median / baseline:.2f} of the first")
