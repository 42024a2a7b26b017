"""The sweep's Slurm backend against a live Slurm: the one-node cluster of tests/slurm/cluster.sh on this machine (CI
starts it for this test alone: `SLURM_CONF=/tmp/slurm-local/slurm.conf python -m pytest tests/test_slurm_live.py` with
the cluster up; without SLURM_CONF it is skipped).

Two tiny runs (two scripts on Pendulum-v1) go through three sweeps: locally, as the reference; on Slurm with a one-minute
time limit and Slurm's time-limit signal 10 s before it, so that Slurm's SIGUSR2 stops each run at least once, the job
requeues itself and the requeued job resumes the run; and on Slurm with a long limit, where the test requeues each
running job (`scontrol requeue`, what an administrator or a preemption with requeue does), so that Slurm's SIGTERM stops
the run and Slurm requeues the job. Each Slurm run must end bit for bit where the local one did (every loss, return and
evaluation logged), and its logs must show that each stop came from Slurm's signal and that the job ran again. A
third sweep's job is cancelled (`scancel`) while it trains: its run saves its state and the job stays cancelled.

A time-limit signal comes up to 30 s before the time Slurm is asked for, and the time limit itself up to 30 s after
(slurmctld looks at both every 30 s): with a 60 s limit and 10 s, the signal comes between 20 s and 50 s into a job,
well after the job and its script have started, and 30 s before Slurm ends the job. The runs (about 55 s of training
on an idle core) outlast the first job's signal."""

import os
import re
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from conftest import ROOT, logged_scalars

SLURM_CONF = os.environ.get("SLURM_CONF", "")
ENV = {**os.environ, "SLURM_CONF": SLURM_CONF}


def why_no_cluster() -> str:
    """Why this test cannot run here ('' if it can). It needs SLURM_CONF set, naming the cluster to test against: a
    missing configuration would cost a minute of Slurm's retries at every collection, and a real cluster is not one to
    fill with test jobs unasked."""
    if shutil.which("sbatch") is None:
        return "no Slurm here (sbatch not on PATH; tests/slurm/cluster.sh install, then start)"
    if not os.path.isfile(SLURM_CONF):
        return "SLURM_CONF names no cluster to test against (tests/slurm/cluster.sh start prints what to export)"
    try:
        nodes = subprocess.run(["sinfo", "-h", "-o", "%t"], env=ENV, capture_output=True, text=True, timeout=20)
    except subprocess.TimeoutExpired:
        return f"the Slurm cluster of {SLURM_CONF} does not answer"
    if nodes.returncode or not re.search(r"^(idle|mix|alloc)", nodes.stdout, re.M):
        return f"the Slurm cluster of {SLURM_CONF} is not up (tests/slurm/cluster.sh start)"
    return ""


pytestmark = pytest.mark.skipif(bool(reason := why_no_cluster()), reason=reason)

COMMON = "--total-timesteps 10000 --learning-starts 500 --batch-size 32 --eval-frequency 1000 --eval-episodes 1"
CONFIGS = [
    f"ds-td3=sparse_td3.py {COMMON} --topology-interval 500",
    f"rlx2=rlx2_td3.py {COMMON} --actor-sparsity 0.9 --critic-sparsity 0.9 --topology-interval 500 --delay-nstep 2000",
]
RUNS = ["ds-td3/Pendulum-v1/seed1", "rlx2/Pendulum-v1/seed1"]  # the sweep's order: its job array's tasks 0 and 1
STOP_LINE = re.compile(r"^(SIGUSR2|SIGTERM|SIGINT): stopping at the end of this episode", re.M)


class Sweep:
    """`reproduce/sweep.py` in a subprocess, its output collected as it comes; `close()` ends it and cancels its jobs."""

    def __init__(self, out: Path, *args: str, configs: list[str] = CONFIGS):
        self.out, self.lines, self.jobs = out, [], []
        argv = [sys.executable, str(ROOT / "reproduce" / "sweep.py"), "--config", *configs, "--env-ids", "Pendulum-v1",
                "--seeds", "1", "--out", str(out), "--progress-interval", "5", *args]  # fmt: skip
        self.process = subprocess.Popen(argv, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        self.reader = threading.Thread(target=lambda: self.lines.extend(self.process.stdout), daemon=True)
        self.reader.start()

    def job_ids(self, timeout_s: float = 60) -> list[str]:
        deadline = time.time() + timeout_s
        while time.time() < deadline:
            for line in list(self.lines):
                if match := re.match(r"submitted \d+ jobs \(slurm: ([^)]+)\)", line):
                    self.jobs = match[1].split(", ")
                    return self.jobs
            assert self.process.poll() is None, "".join(self.lines)
            time.sleep(0.2)
        pytest.fail("the sweep submitted no jobs:\n" + "".join(self.lines))

    def wait(self, timeout_s: float) -> str:
        try:
            self.process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            self.close()
            self.reader.join(5)
            pytest.fail(f"the sweep did not end within {timeout_s} s:\n" + "".join(self.lines) + job_logs(self.out))
        self.reader.join(5)
        return "".join(self.lines)

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        if self.jobs:
            subprocess.run(["scancel", *self.jobs], env=ENV, capture_output=True)


@pytest.fixture
def sweeps():
    """Sweeps started by a test, closed after it whatever happened (no job of a failed test is left on the cluster)."""
    started: list[Sweep] = []
    yield started
    for sweep in started:
        sweep.close()


def job_logs(out: Path) -> str:
    return "".join(f"\n--- {path}\n{path.read_text()}" for path in sorted(out.glob("_submitit/*/*_log.*")))


def job_log(out: Path, job_id: str, stream: str = "out") -> str:
    """A job's submitit log, appended to across its requeues: "out" (submitit's own lines, what the job printed) or
    "err" (submitit's warnings again, and Slurm's)."""
    return (out / "_submitit" / job_id / f"{job_id}_0_log.{stream}").read_text()


def scalars(run_dir: Path) -> dict:
    """Every value the run logged that does not depend on time: losses, returns, evaluations, sparsity."""
    (log_dir,) = run_dir.glob("runs/*")
    return {tag: values for tag, values in logged_scalars(str(log_dir), steps=True).items() if tag != "charts/SPS"}


def assert_stopped_saved_and_resumed(log: str, signal_name: str) -> int:
    """Each stop in a run's log came from `signal_name`, was saved, and the next job resumed at the saved step; the
    run reached its last step. Returns the number of stops."""
    stops = STOP_LINE.findall(log)
    assert stops and set(stops) == {signal_name}, log
    saved = re.findall(r"^stopped at step (\d+), state saved", log, re.M)
    resumed = re.findall(r": resumed at step (\d+)$", log, re.M)
    assert saved == resumed and len(saved) == len(stops), log
    assert re.search(r"^step 10000/10000 ", log, re.M), log
    return len(stops)


@pytest.fixture(scope="module")
def local(tmp_path_factory):
    """The two runs swept here, as the reference: started at once, beside the first Slurm sweep (the local runs fill
    the CPUs while Slurm's jobs wait to be requeued); `local()` waits for them and returns their sweep directory."""
    out = tmp_path_factory.mktemp("local")
    sweep = Sweep(out, "--workers", "2")

    def wait() -> Path:
        if sweep.process.returncode is None:
            assert sweep.wait(900).endswith("2 runs done, 0 were already complete, 0 failed\n"), "".join(sweep.lines)
        return out

    yield wait
    sweep.close()


def test_a_run_stopped_by_slurms_time_limit_signal_is_requeued_and_resumes_bit_for_bit(tmp_path, local, sweeps):
    """One-minute jobs: Slurm's SIGUSR2 stops each run at least once; each stop saved, the job requeued by submitit
    (`scontrol requeue`), the run resumed where it stopped, and its end is the local run's, every logged value."""
    start = time.time()
    limited = Sweep(tmp_path, "--backend", "slurm", "--slurm-timeout-min", "1", "--slurm-signal-delay-s", "10",
                    "--slurm-mem-gb", "1", "--workers", "2")  # fmt: skip
    sweeps.append(limited)
    jobs = limited.job_ids()
    output = limited.wait(1500)
    assert limited.process.returncode == 0 and "2 runs done, 0 were already complete, 0 failed" in output, output
    for run, job_id in zip(RUNS, jobs):
        run_dir = tmp_path / run
        stops = assert_stopped_saved_and_resumed((run_dir / "stdout_stderr.log").read_text(), "SIGUSR2")
        log = job_log(tmp_path, job_id)
        # submitit caught Slurm's signal in the job and requeued it once per signal, and the job ran again each time
        # (a signal that came as the run ended finds it complete: one more signal than stops, and a last, empty job)
        signals = len(re.findall(r"Caught signal SIGUSR2 on .*: this job is timed-out", log))
        assert stops <= signals <= stops + 1, log
        assert len(re.findall(rf"Requeued job {job_id} ", log)) == signals, log
        assert log.count("Starting with JobEnvironment") == signals + 1, log
        assert (run_dir / "done.json").exists()
        assert scalars(run_dir) == scalars(local() / run), run  # bit for bit: every logged value
    print(f"time-limit sweep: {time.time() - start:.0f} s")


def test_a_run_slurm_requeues_while_it_trains_resumes_bit_for_bit(tmp_path, local, sweeps):
    """`scontrol requeue` of each running job once its run trains (what a preemption with requeue does): Slurm's
    SIGTERM stops the run, which saves; the job ends without a result, Slurm requeues it, the run resumes where it
    stopped and ends where the local run did."""
    start = time.time()
    requeued = Sweep(tmp_path, "--backend", "slurm", "--slurm-timeout-min", "10", "--slurm-signal-delay-s", "10",
                     "--slurm-mem-gb", "1", "--workers", "2")  # fmt: skip
    sweeps.append(requeued)
    jobs, done = requeued.job_ids(), set()
    deadline = time.time() + 600
    while len(done) < len(jobs):
        assert time.time() < deadline and requeued.process.poll() is None, requeued.wait(1) + job_logs(tmp_path)
        for run, job_id in zip(RUNS, jobs):
            log_path = tmp_path / run / "stdout_stderr.log"
            if job_id not in done and log_path.exists() and re.search(r"^step \d+/", log_path.read_text(), re.M):
                subprocess.run(["scontrol", "requeue", job_id], env=ENV, check=True)
                done.add(job_id)
        time.sleep(0.5)
    output = requeued.wait(900)
    assert requeued.process.returncode == 0 and "2 runs done, 0 were already complete, 0 failed" in output, output
    for run, job_id in zip(RUNS, jobs):
        run_dir = tmp_path / run
        assert assert_stopped_saved_and_resumed((run_dir / "stdout_stderr.log").read_text(), "SIGTERM") == 1
        log = job_log(tmp_path, job_id)
        # Slurm's word that it ended the job to requeue it; the job's, that it left no result; and a second start
        assert "DUE TO JOB REQUEUE" in job_log(tmp_path, job_id, "err"), log
        assert "run stopped by SIGTERM, its state saved; Slurm requeues the job" in log, log
        assert log.count("Starting with JobEnvironment") == 2, log
        assert (run_dir / "done.json").exists()
        assert scalars(run_dir) == scalars(local() / run), run
    print(f"requeue sweep: {time.time() - start:.0f} s")


def test_a_cancelled_job_stays_cancelled(tmp_path, sweeps):
    """`scancel` of a running job: the run saves its state (Slurm's SIGTERM), and the job ends for good, not requeued
    (rerunning the sweep resumes the run). The sweep itself would wait on: without accounting (`sacct`) here it cannot
    tell a cancelled job from one not yet requeued, so the test reads Slurm and the logs."""
    cancelled = Sweep(tmp_path, "--backend", "slurm", "--slurm-timeout-min", "10", "--slurm-mem-gb", "1",
                      configs=CONFIGS[:1])  # fmt: skip
    sweeps.append(cancelled)
    (job_id,) = cancelled.job_ids()
    log_path, deadline = tmp_path / RUNS[0] / "stdout_stderr.log", time.time() + 300
    while not (log_path.exists() and re.search(r"^step \d+/", log_path.read_text(), re.M)):
        assert time.time() < deadline and cancelled.process.poll() is None, "".join(cancelled.lines)
        time.sleep(0.5)
    subprocess.run(["scancel", job_id], env=ENV, check=True)
    while "run stopped by" not in (job := job_log(tmp_path, job_id)):
        assert time.time() < deadline, job + job_log(tmp_path, job_id, "err")
        time.sleep(0.5)
    assert "run stopped by SIGTERM, its state saved; not requeued" in job, job
    time.sleep(20)  # longer than a requeued job waits here before it starts again
    shown = subprocess.run(["scontrol", "-o", "show", "job", job_id], env=ENV, capture_output=True, text=True).stdout
    assert "JobState=CANCELLED" in shown and "Restarts=0" in shown, shown
    log = log_path.read_text()
    assert STOP_LINE.findall(log) == ["SIGTERM"] and re.search(r"^stopped at step \d+, state saved", log, re.M), log
    assert job.count("Starting with JobEnvironment") == 1 and len(list((tmp_path / RUNS[0]).glob("runs/*/state.pt"))) == 1
