"""Stopping a run and continuing it bit for bit: the signals that stop it, the state that continues it, the checks on
what a user hands back.

A run stops only at an episode end: an environment's internal state cannot be saved portably, but its random generator
can, and a reset depends only on that. So the state holds the env's generator as it was before the reset that began
the next episode, and a resumed run repeats that reset. Every file is read without unpickling (`weights_only=True`):
RNG states and arguments are stored as tensors and plain types.
"""

import dataclasses
import os
import random
import signal

import numpy as np
import torch

STATE_VERSION = 1  # bump when the state's layout changes: an older state is then refused with a one-line error
STATE_FILE = "state.pt"
# flags that may differ from the saved ones on --resume: they change what is written, not the run's result
RESUME_FREE = ("resume", "save_model", "capture_video", "checkpoint_frequency")
# W&B tracking (`--track`) changes no result either, but a resumed run keeps its own unless the flag is given: a Slurm
# requeue resumes with --resume alone, and the run goes on logging to its W&B run (WANDB_MODE=disabled turns it off)
RESUME_KEPT = ("track", "wandb_project_name", "wandb_entity")


class StopRequest:
    """SIGINT (Ctrl-C), SIGTERM (`kill`, and what Slurm sends at preemption or a requeue) and SIGUSR2 (what submitit
    asks Slurm to send before a time limit) ask the training loop to stop at the end of the current episode, after
    saving its state. A second signal exits at once, but a SIGUSR2 only ever asks (Slurm's reaches a run directly and
    through its job); the last saved state stays intact, as a state is only ever replaced whole. Installed explicitly,
    since a background job of a non-interactive shell starts with SIGINT ignored; `restore()` puts the previous handlers
    back."""

    def __init__(self):
        self.signal = 0
        self._previous = {s: signal.signal(s, self._handle) for s in (signal.SIGINT, signal.SIGTERM, signal.SIGUSR2)}

    def _handle(self, signum, frame):
        if self.signal and signum == signal.SIGUSR2:  # a second SIGUSR2 is the same request
            return
        if self.signal:
            raise SystemExit(128 + signum)
        self.signal = signum
        print(f"{signal.Signals(signum).name}: stopping at the end of this episode (again: stop now)", flush=True)

    def restore(self) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)


def make_run_dir(run_name: str) -> str:
    """`runs/{run_name}`, or with a `-2`, `-3`, ... suffix if another run (started in the same second) has it."""
    path, n = f"runs/{run_name}", 1
    while True:
        try:
            os.makedirs(path)
            return path
        except FileExistsError:
            n += 1
            path = f"runs/{run_name}-{n}"


def filled_rows(tensor: torch.Tensor, n: int) -> torch.Tensor:
    """The first n rows, as a tensor torch.save writes alone: it writes a view's whole storage, so a CPU slice is
    rewrapped (no copy) and a GPU one copied to the host."""
    rows = tensor[:n]
    return torch.from_numpy(rows.numpy()) if rows.device.type == "cpu" else rows.cpu()


def rng_state(env) -> dict:
    """Every generator a training loop draws from except the env's own (saved before its reset: `env_rng_state`)."""
    np_state = np.random.get_state()
    return {
        "python": random.getstate(),
        "numpy": (np_state[0], torch.from_numpy(np_state[1].astype(np.int64)), *np_state[2:]),
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "action_space": env.action_space.np_random.bit_generator.state,
    }


def env_rng_state(env) -> dict:
    return env.unwrapped.np_random.bit_generator.state


def set_rng_state(state: dict, env, env_state: dict) -> None:
    random.setstate(state["python"])
    name, keys, *rest = state["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), *rest))
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    env.action_space.np_random.bit_generator.state = state["action_space"]
    env.unwrapped.np_random = np.random.Generator(np.random.PCG64())
    env.unwrapped.np_random.bit_generator.state = env_state


def save_state(path: str, state: dict) -> None:
    """Written to a temporary file and renamed: an interruption never leaves a half-written state."""
    torch.save({"version": STATE_VERSION, **state}, path + ".tmp")
    os.replace(path + ".tmp", path)


def load_file(path: str, script: str, what: str) -> dict:
    """A checkpoint or state file of `script`, read without unpickling (memory-mapped: a large replay buffer is copied
    into place from the file, never held twice), or a one-line error saying why it cannot be used."""
    if not os.path.isfile(path):
        raise SystemExit(
            f"error: {path}: no such file" + (" (a run that completed removes its state)" if what == "state" else "")
        )
    try:
        data = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception as e:  # empty, truncated, not a torch file, or holding objects that need unpickling
        reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise SystemExit(f"error: {path} is not a readable {what} file: {reason[:200]}") from None
    if not isinstance(data, dict) or not isinstance(data.get("args"), dict):
        raise SystemExit(f"error: {path} is not a {what} file of this project")
    if data.get("script", script) != script:
        raise SystemExit(f"error: {path} was written by {data['script']}.py, not {script}.py")
    if what == "state" and data.get("version") != STATE_VERSION:
        raise SystemExit(
            f"error: {path} is a state of version {data.get('version')}; this {script}.py reads version {STATE_VERSION}"
        )
    return data


def resumed_args(given, saved: dict):
    """The saved arguments of a run, with the flags that change only what is written taken from the command line
    (`RESUME_FREE`) or, for `RESUME_KEPT`, from the command line where given. A flag given beside --resume that would
    change the run's result is a one-line error. A state saved before one of these flags existed resumes with its
    default."""
    defaults = type(given)()
    fields = {f.name for f in dataclasses.fields(given)}
    result_free = fields & {*RESUME_FREE, *RESUME_KEPT}
    if set(saved) - fields or fields - result_free - set(saved):
        raise SystemExit(f"error: {given.resume} was saved by another version of this script (arguments differ)")
    saved = {**{name: getattr(defaults, name) for name in result_free}, **saved}
    for name in sorted(fields - result_free):
        value = getattr(given, name)
        if value != getattr(defaults, name) and value != saved[name]:
            raise SystemExit(
                f"error: --{name.replace('_', '-')} {value} differs from the resumed run's {saved[name]}: a resumed run "
                "keeps its own arguments"
            )
    from_command_line = [
        name for name in result_free if name in RESUME_FREE or getattr(given, name) != getattr(defaults, name)
    ]
    return dataclasses.replace(type(given)(**saved), **{name: getattr(given, name) for name in from_command_line})
