"""Stopping a run and continuing it bit for bit: the signals that stop it, the state that continues it, the checks on
what a user hands back.

A run stops only at an episode end: an environment's internal state cannot be saved portably, but its random generator
can, and a reset depends only on that. So the state holds the env's generator as it was before the reset that began
the next episode, and a resumed run repeats that reset. Every file is read without unpickling (`weights_only=True`):
RNG states and arguments are stored as tensors and plain types.
"""

import dataclasses
import fcntl
import hashlib
import os
import random
import signal
import sys

import numpy as np
import torch

STATE_VERSION = 1  # bump when the state's layout changes: an older state is then refused with a one-line error
STATE_FILE = "state.pt"
LOCK_FILE = ".lock"
COMPLETE_FILE = "complete"  # written once a run reached its budget and wrote everything it hands over; then the state goes
# flags that change what a run writes, not its result: a resumed run keeps its own unless one is given again (a sweep and
# a Slurm requeue resume with --resume alone), and may take a new one (WANDB_MODE=disabled turns off a saved --track)
RESUME_FREE = ("save_model", "capture_video", "checkpoint_frequency", "track", "wandb_project_name", "wandb_entity")


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
        again = "" if signum == signal.SIGUSR2 else " (again: stop now)"
        print(f"{signal.Signals(signum).name}: stopping at the end of this episode{again}", flush=True)

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


_held_locks: dict[str, int] = {}  # run directory -> the open lock file of this process


def lock_run_dir(run_dir: str) -> None:
    """One run directory, one process: an exclusive lock on `{run_dir}/.lock` (holding the pid), held until this
    process exits, when the kernel releases it (also on kill -9), or calls `unlock_run_dir`. A second process gets a
    one-line error. Taken again by the same process (tests run the scripts in-process), the old lock is let go first."""
    path = os.path.realpath(os.path.join(run_dir, LOCK_FILE))
    if path in _held_locks:
        os.close(_held_locks.pop(path))
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.read(fd, 32).decode(errors="replace").strip() or "unknown"
        os.close(fd)
        raise SystemExit(f"error: {run_dir} is in use by another process (pid {holder}): one run directory, one process")
    os.ftruncate(fd, 0)
    os.write(fd, f"{os.getpid()}\n".encode())
    _held_locks[path] = fd


def unlock_run_dir(run_dir: str) -> None:
    fd = _held_locks.pop(os.path.realpath(os.path.join(run_dir, LOCK_FILE)), None)
    if fd is not None:
        os.close(fd)


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


def sha256(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(1 << 24):
            digest.update(block)
    return digest.hexdigest()


def write_text(path: str, text: str) -> None:
    with open(path + ".tmp", "w") as f:
        f.write(text)
    os.replace(path + ".tmp", path)


def read_digests(path: str) -> list[str]:
    if not os.path.isfile(path + ".sha256"):
        return []
    with open(path + ".sha256") as f:
        return f.read().split()


def check_digest(path: str) -> None:
    """A one-line error if `path` is not what `save_file` wrote (memory-mapped reads skip the zip's checksums). A file
    without a digest beside it (written before digests, or a checkpoint copied alone) is not checked."""
    digests = read_digests(path)
    if digests and sha256(path) not in digests:
        raise SystemExit(f"error: {path} is damaged: its sha256 is not the one written beside it in {path}.sha256")


def save_file(path: str, data: dict) -> None:
    """A checkpoint or state, written to a temporary file and renamed (an interruption never leaves half a file), with
    its sha256 beside it in `{path}.sha256`, which `load_file` checks. Until the rename, the digest file also lists
    the digests it held before: killed between the two writes (kill -9), a run keeps a pair that loads."""
    torch.save(data, path + ".tmp")
    digest, before = sha256(path + ".tmp"), read_digests(path)
    write_text(path + ".sha256", "\n".join([digest, *before]) + "\n")
    os.replace(path + ".tmp", path)
    write_text(path + ".sha256", digest + "\n")


def save_state(path, script, args, env, env_rng, networks, optimizers, in_place, buffer, **loop) -> None:
    """The training state of `script` at an episode end: its arguments, the state dicts of its networks, optimizers
    and replay buffer, the tensors the loop holds in place (masks and the like), every random generator (the env's
    as it was before the reset that began the next episode: `env_rng`), and the loop's own variables (`loop`: plain
    types or tensors), which `load_file` returns as saved."""
    state = {
        "version": STATE_VERSION,
        "script": script,
        "args": vars(args),
        "networks": {name: network.state_dict() for name, network in networks.items()},
        "optimizers": {name: optimizer.state_dict() for name, optimizer in optimizers.items()},
        "in_place": in_place,
        "buffer": buffer.state_dict(),
        "rng": rng_state(env),
        "env_rng": env_rng,
        **loop,
    }
    save_file(path, state)


def restore_state(state: dict, env, networks, optimizers, in_place, buffer) -> None:
    """Puts back what `save_state` saved but the loop's own variables, which the script reads from `state`; the
    script then repeats the env's reset that began the next episode."""
    for name, network in networks.items():
        network.load_state_dict(state["networks"][name])
    for name, optimizer in optimizers.items():
        optimizer.load_state_dict(state["optimizers"][name])
    with torch.no_grad():  # in place: the topology update and the targets hold these tensors
        for name, tensors in in_place.items():
            for tensor, saved in zip(tensors, state["in_place"][name], strict=True):
                tensor.copy_(saved)
    buffer.load_state_dict(state["buffer"])
    set_rng_state(state["rng"], env, state["env_rng"])


def stop_if_diverged(step: int, run_dir: str, tensors: list[torch.Tensor]) -> None:
    """A loss or weights gone nan or inf stop the run with a one-line error, before anything more is saved: the last
    state stays the last good one. One device sync: the scripts check the losses after every update (the transfer of
    the next action to the CPU waits for the update anyway, and SAC's next action would fail on a nan actor), the
    weights at each evaluation and before each state save."""
    if not bool(torch.stack([torch.isfinite(t).all() for t in tensors]).all()):
        kept = f"; the state saved before stays in {run_dir}/{STATE_FILE}" if os.path.exists(f"{run_dir}/{STATE_FILE}") else ""
        raise SystemExit(f"error: training diverged (nan or inf) by step {step}: stopped{kept}")


def mark_complete(run_dir: str, global_step: int) -> None:
    """The end of a run, called after its final checkpoint and video: the `complete` marker (what a sweep reads: a run
    that has it is never run again), then its state is removed. Killed before, the run keeps its state and resumes."""
    write_text(f"{run_dir}/{COMPLETE_FILE}", f"{global_step}\n")
    for name in (STATE_FILE, f"{STATE_FILE}.sha256"):
        if os.path.exists(f"{run_dir}/{name}"):
            os.remove(f"{run_dir}/{name}")


def load_file(path: str, script: str, what: str) -> dict:
    """A checkpoint or state file of `script`, its digest checked (`check_digest`), read without unpickling
    (memory-mapped: a large replay buffer is copied into place from the file, never held twice), or a one-line error
    saying why it cannot be used."""
    complete = os.path.join(os.path.dirname(path), COMPLETE_FILE)
    if what == "state" and not os.path.isfile(path) and os.path.isfile(complete):
        with open(complete) as f:
            raise SystemExit(f"error: {os.path.dirname(path)} is complete (step {f.read().strip()}): nothing to resume")
    if not os.path.isfile(path):
        raise SystemExit(f"error: {path}: no such file")
    check_digest(path)
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


def given_flags(fields: set[str], argv: list[str]) -> set[str]:
    """The fields typed on a tyro command line (`--name value`, `--name=value`, `--no-name`; dashes or underscores), at
    whatever value: a flag given at its default is given."""
    names = {token[2:].partition("=")[0].replace("-", "_") for token in argv if token.startswith("--")}
    return {name if name in fields else name.removeprefix("no_") for name in names} & fields


def resumed_args(given, saved: dict, argv: list[str] | None = None):
    """The saved arguments of a run, with --resume and the `RESUME_FREE` flags typed on the command line (`argv`,
    default `sys.argv[1:]`). Any other flag typed beside --resume must repeat the saved value: one that would change
    the run's result is a one-line error. A state saved before one of the free flags existed resumes with its
    default."""
    defaults = type(given)()
    fields = {f.name for f in dataclasses.fields(given)}
    result_free = fields & set(RESUME_FREE)
    if set(saved) - fields or fields - result_free - {"resume"} - set(saved):
        raise SystemExit(f"error: {given.resume} was saved by another version of this script (arguments differ)")
    saved = {**{name: getattr(defaults, name) for name in result_free}, **saved}
    typed = given_flags(fields, sys.argv[1:] if argv is None else argv) - {"resume"}
    for name in sorted(typed - result_free):
        if getattr(given, name) != saved[name]:
            raise SystemExit(
                f"error: --{name.replace('_', '-')} {getattr(given, name)} differs from the resumed run's {saved[name]}: "
                "a resumed run keeps its own arguments"
            )
    return dataclasses.replace(
        type(given)(**saved), resume=given.resume, **{name: getattr(given, name) for name in typed & result_free}
    )
