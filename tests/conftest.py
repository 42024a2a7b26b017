import os
import runpy
import signal
import sys
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def pytest_configure(config):
    """`pytest -n 2` (pytest-xdist): each worker computes on one thread, and so do the scripts it starts as
    subprocesses, so two workers share two cores without oversubscribing them."""
    if os.environ.get("PYTEST_XDIST_WORKER"):
        os.environ["OMP_NUM_THREADS"] = "1"
        torch.set_num_threads(1)


# bad inputs every script refuses before it writes anything (each test file adds its own)
BAD_INPUTS = [["--learning-rate", "inf"], ["--batch-size", "10000000000"], ["--buffer-size", "10000000000"],
              ["--topology-end", "-5"], ["--env-kwargs", '{"render_mode": "human"}']]  # fmt: skip


@pytest.fixture
def run_script(tmp_path, monkeypatch):
    """Run a top-level script as `python script.py ARGS` inside a temporary directory and return its globals,
    so a test can inspect the networks, masks and buffer the training loop left behind."""
    monkeypatch.chdir(tmp_path)

    def run(script: str, *args: str) -> dict:
        monkeypatch.setattr(sys, "argv", [script, *args])
        return runpy.run_path(str(ROOT / script), run_name="__main__")

    os.environ.setdefault("MUJOCO_GL", "egl")
    yield run
    torch.set_flush_denormal(False)  # sparse_td3.py flushes denormals for its whole process


def on_env_steps(monkeypatch, step) -> None:
    """Every env made from now on steps through `step(n, env_step, action)`, n counting its steps from 1."""
    make = gym.make

    def make_and_wrap(*args, **kwargs):
        env = make(*args, **kwargs)
        env_step, count = env.step, [0]

        def wrapped(action):
            count[0] += 1
            return step(count[0], env_step, action)

        env.step = wrapped
        return env

    monkeypatch.setattr(gym, "make", make_and_wrap)


def signal_at(monkeypatch, step: int, signals: int = 1, signum: int = signal.SIGTERM) -> None:
    """Every env made from now on sends this process `signum` (`signals` times) at its `step`-th env step."""

    def step_and_signal(n, env_step, action):
        if n == step:
            for _ in range(signals):
                os.kill(os.getpid(), signum)
        return env_step(action)

    on_env_steps(monkeypatch, step_and_signal)


def logged_scalars(run_dir: str, steps: bool = False) -> dict[str, list]:
    """Every scalar logged in a run: its values, or with `steps` (step, value) pairs."""
    events = EventAccumulator(run_dir, size_guidance={"scalars": 0})
    events.Reload()
    return {tag: [(e.step, e.value) if steps else e.value for e in events.Scalars(tag)] for tag in events.Tags()["scalars"]}


class UnevenBounds(gym.Env):
    """A 2-D action box [0, 4] x [-20, 20] (neither symmetric nor equal), 3-D observations, 50-step episodes."""

    observation_space = gym.spaces.Box(-np.inf, np.inf, (3,), np.float32)
    action_space = gym.spaces.Box(np.array([0.0, -20.0], np.float32), np.array([4.0, 20.0], np.float32))

    def reset(self, seed=None, options=None):
        super().reset(seed=seed)
        self.state = self.np_random.normal(size=3).astype(np.float32)
        return self.state, {}

    def step(self, action):
        reward = -float(((action - np.array([1.0, 5.0])) ** 2).sum())
        self.state = (0.9 * self.state + self.np_random.normal(size=3) * 0.1).astype(np.float32)
        return self.state, reward, False, False, {}


gym.register("UnevenBounds-v0", entry_point=UnevenBounds, max_episode_steps=50)


class DictObservations(UnevenBounds):
    """Observations that are not a flat Box: the scripts refuse them with one line."""

    observation_space = gym.spaces.Dict({"position": gym.spaces.Box(-1.0, 1.0, (3,), np.float32)})


gym.register("DictObservations-v0", entry_point=DictObservations, max_episode_steps=50)


def assert_sparse_invariants(sparse, network: str, logged: dict[str, list[float]]) -> None:
    """Inactive weights exactly zero; every layer's connection count what it was at the start (the density logged
    at step 0 and at each topology update); and the topology moved (more positions ever active than active now)."""
    for name, weight, mask in zip(sparse.names, sparse.weights, sparse.masks, strict=True):
        assert torch.all(weight[mask == 0] == 0), name
        densities = logged[f"sparse/{network}.{name.removesuffix('.weight')}_density"]
        assert len(densities) > 1 and all(d == pytest.approx(float(mask.sum()) / mask.numel()) for d in densities), name
    assert sum(int(e.sum()) for e in sparse.ever_active) > sum(sparse.nnz())
