"""reproduce/released.py: the old gym API it stands in for, its refusals, and (where a clone is given) a short run of
each release logged under our tags."""

import os
import signal
import subprocess
import sys
import time

import gymnasium
import numpy as np
import pytest
from conftest import ROOT, logged_scalars

from reproduce import released


class Writer:
    def __init__(self):
        self.scalars = []

    def add_scalar(self, tag, value, step):
        self.scalars.append((tag, step, value))

    def flush(self):
        pass


def eval_policy(gym, progress):  # named as the released scripts name it: `make` tells evaluation envs by the caller
    return gym.make("Pendulum-v1")


def test_old_api_over_gymnasium_and_evaluations_at_the_training_step():
    progress = released.Progress(Writer(), total=400, eval_episodes=2)
    gym = released.stand_in_gym(progress)
    env = gym.make("Pendulum-v1")
    assert not env.evaluation and env._max_episode_steps == 200
    env.seed(5)
    obs = env.reset()  # the observation alone, from the generator seeded by `seed`
    expected, _ = gymnasium.make("Pendulum-v1").reset(seed=5)
    np.testing.assert_array_equal(obs, expected)
    for t in range(1, 201):
        obs, reward, done, info = env.step(env.action_space.sample())
        assert done == (t == 200) and isinstance(info, dict)  # done: terminated or truncated (here the time limit)
    assert progress.global_step == 200 and ("charts/episodic_length", 200, 200) in progress.writer.scalars

    evaluation = eval_policy(gym, progress)
    assert evaluation.evaluation
    returns = []
    for _ in range(2):
        evaluation.reset()
        done, total = False, 0.0
        while not done:
            _, reward, done, _ = evaluation.step(evaluation.action_space.sample())
            total += reward
        returns.append(total)
    assert progress.global_step == 200  # evaluation steps are not training steps
    logged = [(step, value) for tag, step, value in progress.writer.scalars if tag == "eval/episodic_return"]
    assert logged == [(200, pytest.approx(np.mean(returns)))]


def test_refuses_a_directory_that_is_not_a_known_release(tmp_path, capsys):
    (tmp_path / "main.py").write_text("print('not theirs')\n")
    with pytest.raises(SystemExit, match=r"is not a clone of GhadaSokar/.* at 0c8fa33: main.py differs from the release"):
        released.main(["--algo", "ds-td3", "--released-dir", str(tmp_path)])
    with pytest.raises(SystemExit, match=r"is not a clone of tyq1024/RLx2 at 3f4898b: DST/DST_Scheduler.py is missing"):
        released.main(["--algo", "rlx2-td3", "--released-dir", str(tmp_path)])


def test_one_line_errors(monkeypatch):
    monkeypatch.delenv("RLX2_RELEASED_DIR", raising=False)
    with pytest.raises(SystemExit, match="give --released-dir or set RLX2_RELEASED_DIR"):
        released.main(["--algo", "rlx2-sac"])
    with pytest.raises(SystemExit, match="trains at least 1000 iterations"):
        released.main(["--algo", "rlx2-td3", "--released-dir", ".", "--total-timesteps", "1500", "--learning-starts", "600"])
    with pytest.raises(SystemExit, match="--algo must be one of"):
        released.main(["--algo", "rigl", "--released-dir", "."])


def test_their_command_lines():
    args = released.Args(algo="rlx2-td3", env_id="Hopper-v4", seed=2, total_timesteps=500_000)
    assert released.their_argv(args) == [
        *("--env", "Hopper-v4", "--seed", "2", "--max_timesteps", "500000", "--actor_sparsity", "0.98"),
        *("--critic_sparsity", "0.95", "--nstep", "3", "--delay_nstep", "300000", "--use_dynamic_buffer"),
    ]
    args = released.Args(algo="ds-td3", env_id="Ant-v4", learning_starts=1000, released_args="--ann_setZeta 0.1")
    assert released.their_argv(args) == [
        *("--env", "Ant-v4", "--seed", "1", "--start_timesteps", "1000", "--ann_epsilonHid1", "40", "--ann_epsilonHid2"),
        *("64", "--policy", "DS-TD3"),
        *("--ann_setZeta", "0.1"),
    ]
    assert released.their_argv(released.Args(algo="rlx2-td3-dense"))[-2:] == ["--seed", "1"]  # their defaults: dense


RELEASES = {"RLX2_RELEASED_DIR": ("rlx2-td3", "rlx2-sac"), "DS_TD3_RELEASED_DIR": ("ds-td3", "td3")}


@pytest.mark.parametrize("variable, algo", [(v, a) for v, algos in RELEASES.items() for a in algos])
def test_a_short_run_of_their_code_logs_our_tags(tmp_path, variable, algo):
    if not os.environ.get(variable):
        pytest.skip(f"set {variable} to a clone of the release")
    short = "--eval_freq 1000"
    short += " --delta 500 --delay_nstep 1000 --buffer_adjustment_interval 500" if variable.startswith("RLX2") else ""
    command = [sys.executable, str(ROOT / "reproduce/released.py"), "--algo", algo, "--env-id", "Hopper-v4"]
    command += ["--total-timesteps", "2000", "--learning-starts", "1000", f"--released-args={short}"]
    result = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.splitlines()[-1] == "step 2000/2000"
    assert [path.name for path in tmp_path.iterdir()] == ["runs"]  # their outputs stay in the run's directory
    (run_dir,) = (tmp_path / "runs").iterdir()
    assert {"results_TD3", "results_SAC", "results"} & {path.name for path in run_dir.iterdir()}
    scalars = logged_scalars(str(run_dir), steps=True)
    assert [step for step, _ in scalars["eval/episodic_return"]] == [0, 1000, 2000]
    assert scalars["charts/episodic_return"]  # their training episodes, at the env step each ended


def test_a_run_carried_across_a_criu_dump_logs_what_the_unbroken_run_logs(tmp_path):
    """Their code saves nothing to resume from. CRIU stops a process tree, writes it to disk and restarts it later on the
    same machine: how a released run longer than a working stretch crosses a stop. A run dumped mid-training (topology
    updates, n-step targets and buffer checks on) and restored must log, to the bit, what the same run logs unbroken."""
    criu = os.environ.get("CRIU")
    if not (criu and os.environ.get("RLX2_RELEASED_DIR")):
        pytest.skip("set CRIU to a criu binary (4.0 or later; run as root) and RLX2_RELEASED_DIR to a clone of RLx2")
    short = "--eval_freq 500 --delta 500 --delay_nstep 1000 --buffer_adjustment_interval 500"
    command = [sys.executable, str(ROOT / "reproduce/released.py"), "--algo", "rlx2-td3", "--env-id", "Hopper-v4"]
    command += ["--total-timesteps", "4000", "--learning-starts", "1000", f"--released-args={short}"]
    runs = {}
    for name in ("unbroken", "carried"):
        (tmp_path / name).mkdir()
        with open(tmp_path / name / "out.log", "w") as log:  # a session leader: criu dumps the tree under it
            runs[name] = subprocess.Popen(command, cwd=tmp_path / name, stdout=log, stderr=log, start_new_session=True)
    carried, log, deadline = runs["carried"], tmp_path / "carried/out.log", time.monotonic() + 600
    while "step 2500/4000" not in log.read_text():
        assert carried.poll() is None and time.monotonic() < deadline, log.read_text()[-2000:]
        time.sleep(0.1)
    images = tmp_path / "images"
    images.mkdir()
    subprocess.run([criu, "dump", "-t", str(carried.pid), "-D", str(images)], check=True, capture_output=True)
    assert carried.wait() == -signal.SIGKILL  # gone, and reaped: restore needs its pid free
    time.sleep(1)
    subprocess.run([criu, "restore", "-D", str(images), "-d"], check=True, capture_output=True)
    assert runs["unbroken"].wait(timeout=600) == 0
    while os.path.exists(f"/proc/{carried.pid}"):  # no longer our child: init reaps it
        assert time.monotonic() < deadline, log.read_text()[-2000:]
        time.sleep(0.1)
    assert log.read_text().splitlines()[-1] == "step 4000/4000"

    (unbroken_dir,), (carried_dir,) = [list((tmp_path / name / "runs").iterdir()) for name in runs]
    unbroken, carried = logged_scalars(str(unbroken_dir), steps=True), logged_scalars(str(carried_dir), steps=True)
    assert [step for step, _ in carried["eval/episodic_return"]] == list(range(0, 4001, 500))
    del unbroken["charts/SPS"], carried["charts/SPS"]  # wall-clock
    assert carried == unbroken
