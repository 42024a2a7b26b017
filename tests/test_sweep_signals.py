"""The signals a run meets on a cluster and under a sweep, without a cluster: Slurm's time-limit signal (SIGUSR2) stops a
script like SIGTERM and never twice; a run that Slurm stopped with SIGTERM (a preemption, `scontrol requeue`) ends its
job without a result and asks for a requeue; a local sweep's runs stop with the sweep however it ends (SIGHUP, SIGKILL).
The same cases on a live Slurm: tests/test_slurm_live.py."""

import glob
import os
import signal
import subprocess
import sys
import threading
import time

import pytest
import torch
from conftest import ROOT, signal_at

from reproduce import sweep

PENDULUM = ["--env-id", "Pendulum-v1", "--total-timesteps", "1000", "--learning-starts", "300", "--batch-size", "16",
            "--eval-frequency", "500", "--eval-episodes", "1"]  # fmt: skip

# A stand-in for a training script under a sweep: writes its pid, then sleeps until SIGTERM or SIGUSR2, saves a state
# and exits 128 + the signal (as the real scripts do at their episode end); `--resume` completes the run.
SLEEPER = """
import os, pathlib, signal, sys, time
if "--resume" in sys.argv:
    print("step 10/10 | resumed", flush=True)
    sys.exit(0)
def save_and_stop(signum, frame):
    pathlib.Path("runs/run1/state.pt").write_text("saved")
    print(f"{signal.Signals(signum).name}: saved", flush=True)
    sys.exit(128 + signum)
signal.signal(signal.SIGTERM, save_and_stop)
signal.signal(signal.SIGUSR2, save_and_stop)
pathlib.Path("runs/run1").mkdir(parents=True)
print("step 5/10 | halfway", flush=True)
pathlib.Path("pid").write_text(str(os.getpid()))
time.sleep(120)
"""


@pytest.mark.parametrize("script", ["sparse_td3.py", "rlx2_sac.py"])
def test_slurms_time_limit_signal_stops_a_script_at_its_episode_end_even_twice(run_script, monkeypatch, capsys, script):
    """SIGUSR2 (what Slurm sends before a time limit, to the script and to its job, which passes it on) saves the state
    at the end of the episode and exits 140; the second one does not make it exit at once."""
    sparsity = ["--actor-sparsity", "0.9", "--critic-sparsity", "0.9"] if script.startswith("rlx2") else []
    with monkeypatch.context() as patch:
        signal_at(patch, 401, signals=2, signum=signal.SIGUSR2)
        with pytest.raises(SystemExit) as stopped:
            run_script(script, *PENDULUM, *sparsity)
    assert stopped.value.code == 128 + signal.SIGUSR2
    assert "SIGUSR2: stopping at the end of this episode" in capsys.readouterr().out
    run_dir = glob.glob("runs/*")[0]
    assert torch.load(f"{run_dir}/state.pt", weights_only=True)["global_step"] == 600  # Pendulum's episode end
    resumed = run_script(script, "--resume", run_dir)
    assert resumed["global_step"] == 1000 and not os.path.exists(f"{run_dir}/state.pt")


def start_sweep(tmp_path, *extra: str) -> tuple[subprocess.Popen, "os.PathLike"]:
    """A local sweep of one sleeping run, started in its own session (as from a terminal); returns it once the run's
    script is up, with the run's directory."""
    script = tmp_path / "sleeper.py"
    script.write_text(SLEEPER)
    argv = [sys.executable, str(ROOT / "reproduce" / "sweep.py"), "--config", f"slow={script}", "--env-ids", "E-v0",
            "--seeds", "1", "--out", str(tmp_path / "out"), *extra]  # fmt: skip
    process = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    run_dir = tmp_path / "out" / "slow" / "E-v0" / "seed1"
    deadline = time.time() + 60
    while not (run_dir / "pid").exists() or not (run_dir / "pid").read_text():
        assert time.time() < deadline and process.poll() is None, process.communicate()[0] if process.poll() else ""
        time.sleep(0.1)
    return process, run_dir


def assert_gone(pid: int, within_s: float = 10) -> None:
    deadline = time.time() + within_s
    while time.time() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.1)
    os.kill(pid, signal.SIGKILL)
    pytest.fail(f"the run's script (pid {pid}) outlived its sweep")


def test_a_closed_terminal_stops_the_sweeps_runs(tmp_path):
    """SIGHUP (the terminal closed) stops the sweep as Ctrl-C does: each run saves its state and exits, none is left."""
    process, run_dir = start_sweep(tmp_path)
    pid = int((run_dir / "pid").read_text())
    process.send_signal(signal.SIGHUP)
    output, _ = process.communicate(timeout=30)
    assert_gone(pid)
    assert process.returncode == 130, output
    assert (run_dir / "runs" / "run1" / "state.pt").exists()
    assert "SIGTERM: saved" in (run_dir / sweep.LOG).read_text()


def test_a_killed_sweep_takes_its_runs_down(tmp_path):
    """SIGKILL gives the sweep no chance to stop its runs: each gets SIGTERM from the kernel as its parent dies, saves
    its state and exits, rather than running on beside the next sweep."""
    process, run_dir = start_sweep(tmp_path)
    pid = int((run_dir / "pid").read_text())
    process.kill()
    process.communicate(timeout=30)
    assert_gone(pid)
    assert (run_dir / "runs" / "run1" / "state.pt").exists()
    assert "SIGTERM: saved" in (run_dir / sweep.LOG).read_text()


JOB_SHOWN = {  # what `scontrol -o show job` says of the job as its script exits, and whether the job asks for a requeue
    "preempted": ("JobId=42 JobState=COMPLETING Restarts=0 PreemptTime=2026-12-05T17:00:00", True),
    "requeued by Slurm": ("JobId=42 JobState=COMPLETING Restarts=1 PreemptTime=None", False),
    "cancelled": ("JobId=42 JobState=COMPLETING Restarts=0 PreemptTime=None", False),
    "local executor": ("", False),
}


@pytest.mark.parametrize("case", JOB_SHOWN)
def test_a_job_whose_run_slurm_stopped_ends_without_a_result(tmp_path, monkeypatch, case):
    """In a Slurm job, a script stopped by Slurm's SIGTERM saves its state and exits 143. That is no result: the job
    ends without one (SystemExit: submitit then writes no result file, and the sweep waits for the requeued job). It
    asks Slurm for a requeue (`scontrol requeue JOBID`, here a stand-in that records its calls) only after a preemption
    that Slurm does not requeue itself; not after Slurm's own requeue, nor after a `scancel`, which must end the job."""
    shown, asks = JOB_SHOWN[case]
    script = tmp_path / "sleeper.py"
    script.write_text(SLEEPER)
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / sweep.SPEC).write_text(f'{{"argv": ["{script}"]}}')
    calls = tmp_path / "scontrol_calls"
    (tmp_path / "scontrol").write_text(f'#!/bin/sh\n[ "$1" = -o ] && echo "{shown}" && exit 0\necho "$@" >> {calls}\n')
    (tmp_path / "scontrol").chmod(0o755)
    monkeypatch.setenv("PATH", f"{tmp_path}:{os.environ['PATH']}")
    monkeypatch.setenv("SUBMITIT_EXECUTOR", "local" if case == "local executor" else "slurm")
    monkeypatch.setenv("SLURM_JOB_ID", "42")
    monkeypatch.setenv("SUBMITIT_LOCAL_JOB_ID", "42")
    monkeypatch.delenv("SLURM_RESTART_COUNT", raising=False)

    def preempt():  # Slurm's SIGTERM, once the script is up
        while not (run_dir / "pid").exists() or not (run_dir / "pid").read_text():
            time.sleep(0.05)
        os.kill(int((run_dir / "pid").read_text()), signal.SIGTERM)

    threading.Thread(target=preempt, daemon=True).start()
    previous = signal.getsignal(signal.SIGUSR2)
    try:
        with pytest.raises(SystemExit) as ended:
            sweep.RunInJob()(str(run_dir))
    finally:
        signal.signal(signal.SIGUSR2, previous)
    assert ended.value.code == 143
    assert (run_dir / "runs" / "run1" / "state.pt").exists()
    assert (calls.read_text().split() if calls.exists() else []) == (["requeue", "42"] if asks else [])


# A script at its very end: its last step logged, SIGUSR2 ignored (the scripts' handler is gone by then), still exiting
FINISHING = """
import os, pathlib, signal, sys, time
with open("calls", "a") as calls:
    calls.write("run\\n")
print("step 10/10 | done", flush=True)
pathlib.Path("pid").write_text(str(os.getpid()))
time.sleep(1)
"""


def test_a_run_that_completes_as_slurms_signal_comes_is_not_run_again(tmp_path):
    """Slurm's time-limit signal reaches the job as its script ends at the last step: the job's checkpoint records the
    run complete before submitit requeues the job, and the requeued job finds it done (it used to wipe the run
    directory, whose script had removed its state, and train the run again from step 0)."""
    script = tmp_path / "finishing.py"
    script.write_text(FINISHING)
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / sweep.SPEC).write_text(f'{{"argv": ["{script}"]}}')
    job = sweep.RunInJob()

    def checkpoint_and_exit(signum, frame):  # what submitit does on SIGUSR2
        job.checkpoint(str(run_dir))
        raise SystemExit(-1)

    def signal_at_the_end():
        while not (run_dir / "pid").exists():
            time.sleep(0.05)
        os.kill(os.getpid(), signal.SIGUSR2)

    previous = signal.signal(signal.SIGUSR2, checkpoint_and_exit)
    try:
        threading.Thread(target=signal_at_the_end, daemon=True).start()
        with pytest.raises(SystemExit):
            job(str(run_dir))
    finally:
        signal.signal(signal.SIGUSR2, previous)
    assert (run_dir / sweep.DONE).exists()
    assert sweep.RunInJob()(str(run_dir)) == 0  # the requeued job
    assert (run_dir / "calls").read_text() == "run\n"  # the script ran once
