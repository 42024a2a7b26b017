"""Training speed of whole scripts, measured side by side and interleaved.

Each configuration is a command line that accepts --env-id, --seed, --total-timesteps and --learning-starts (ours and
CleanRL's do). Each round starts every configuration twice, with `--short` and `--long` training iterations after
`--warmup` random steps, and runs all of these processes at once but only one at a time: each gets the CPU for
`--slice` seconds in turn while the others are stopped (SIGSTOP). A process's time is the wall-clock time of its own
turns, so a slow minute of this shared machine hits every configuration alike. The difference of a configuration's
long and short times over the difference of iterations is the time of one training iteration (env step + update),
free of start-up, warm-up and final-evaluation costs. Prints each configuration's median iterations per second and
the median of its per-round ratios to the first configuration.

    python benchmarks/speed.py --config "dense=python sparse_td3.py --sparsity 0" "sparse=python sparse_td3.py --sparsity 0.5"
"""

import os
import shlex
import signal
import statistics
import subprocess
import time
from dataclasses import dataclass, field

import tyro

# ours: skip evaluation until the final one, which both lengths share
QUIET = ["--eval-frequency", "100000000", "--eval-episodes", "1"]
OURS = ("sparse_td3.py", "sparse_sac.py", "rlx2_td3.py", "rlx2_sac.py")


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
    """rounds; each runs every configuration at both lengths, interleaved"""
    slice: float = 0.25
    """seconds of each process's turn on the CPU"""


def command_line(command: list[str], args: Args, iterations: int, seed: int) -> list[str]:
    extra = QUIET if any(part.endswith(OURS) for part in command) else []
    steps = ["--total-timesteps", str(args.warmup + iterations), "--learning-starts", str(args.warmup)]
    return [*command, "--env-id", args.env_id, "--seed", str(seed), *steps, *extra]


def interleaved_times(commands: list[list[str]], slice_: float) -> list[float]:
    """Run the commands to completion in turns of `slice_` seconds, one at a time; return each one's own time."""
    processes: list[subprocess.Popen | None] = [None] * len(commands)
    times = [0.0] * len(commands)
    try:
        while any(p is None or p.returncode is None for p in processes):
            for i, command in enumerate(commands):
                if processes[i] is not None and processes[i].returncode is not None:
                    continue
                start = time.perf_counter()
                if processes[i] is None:  # a new session: the signals reach the process and any child of it
                    processes[i] = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                                    start_new_session=True)  # fmt: skip
                else:
                    os.killpg(processes[i].pid, signal.SIGCONT)
                try:
                    processes[i].wait(timeout=slice_)
                except subprocess.TimeoutExpired:
                    os.killpg(processes[i].pid, signal.SIGSTOP)
                times[i] += time.perf_counter() - start
                if processes[i].returncode not in (None, 0):
                    raise SystemExit(f"error: exit {processes[i].returncode}: {shlex.join(command)}")
    finally:
        for p in processes:
            if p is not None and p.returncode is None:
                os.killpg(p.pid, signal.SIGKILL)
                p.wait()
    return times


if __name__ == "__main__":
    args = tyro.cli(Args)
    if len(args.config) < 1 or any("=" not in c for c in args.config):
        raise SystemExit("error: give at least one --config NAME=COMMAND")
    if not 0 < args.short < args.long or args.warmup < 1 or args.slice <= 0:
        raise SystemExit("error: need 0 < --short < --long, --warmup >= 1 and --slice > 0")
    configs = {name: shlex.split(command) for name, command in (c.split("=", 1) for c in args.config)}
    rates: dict[str, list[float]] = {name: [] for name in configs}
    for round_ in range(args.rounds):
        lengths = [(name, n) for name in configs for n in (args.short, args.long)]
        commands = [command_line(configs[name], args, n, seed=round_ + 1) for name, n in lengths]
        times = dict(zip(lengths, interleaved_times(commands, args.slice), strict=True))
        for name in configs:
            rates[name].append((args.long - args.short) / (times[name, args.long] - times[name, args.short]))
        print(f"round {round_ + 1}: " + ", ".join(f"{name} {rates[name][-1]:.1f}" for name in configs) + " it/s", flush=True)
    first = next(iter(configs))
    print(f"\n{args.env_id}, {args.rounds} rounds interleaved, median training iterations per second:")
    for name, values in rates.items():
        median = statistics.median(values)
        ratios = [v / b for v, b in zip(values, rates[first], strict=True)]
        print(f"  {name:>20}: {median:7.1f} it/s ({1000 / median:.2f} ms/it), x{statistics.median(ratios):.2f} of "
              f"{first} (per round: {' '.join(f'x{r:.2f}' for r in ratios)})")  # fmt: skip
