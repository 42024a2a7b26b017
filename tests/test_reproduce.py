"""The reproduction harness: the sweep runner (dedup, failures, resume, Ctrl-C, submitit) and the report (exact
numbers on synthetic TensorBoard logs), and one end-to-end pass of the first reproduction's preset at a tiny budget."""

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from conftest import ROOT
from matplotlib.image import imread
from torch.utils.tensorboard import SummaryWriter

from reproduce import report, sweep

SWEEP = str(ROOT / "reproduce" / "sweep.py")

# A stand-in for a training script: records its call, fails while a flag file exists, or sleeps until SIGTERM, then
# (like the real scripts) saves a state in its run directory and exits 143; `--resume` finishes the run; `--short`
# exits 0 before its last step. Writes runs/ into its working directory.
FAKE_SCRIPT = """
import os, pathlib, signal, sys, time
args = sys.argv[1:]
with open(os.environ["FAKE_CALLS"], "a") as calls:
    calls.write(f"{os.environ.get('OMP_NUM_THREADS')} {' '.join(args)}\\n")
if "--fail-if" in args and pathlib.Path(args[args.index("--fail-if") + 1]).exists():
    sys.exit("error: asked to fail")
if "--resume" in args:
    pathlib.Path(args[args.index("--resume") + 1], "state.pt").unlink()
    print("step 10/10 | resumed", flush=True)
    sys.exit(0)
pathlib.Path("runs/run1").mkdir(parents=True)
print("step 5/10 | halfway", flush=True)
if "--sleep" in args:
    def save_and_stop(signum, frame):
        pathlib.Path("runs/run1/state.pt").write_text("saved")
        sys.exit(143)
    signal.signal(signal.SIGTERM, save_and_stop)
    pathlib.Path(os.environ["FAKE_CALLS"] + ".pid").write_text(str(os.getpid()))
    time.sleep(60)
if "--short" not in args:
    print("step 10/10 | done", flush=True)
"""


@pytest.fixture
def fake(tmp_path, monkeypatch):
    """The fake script's path; its calls, one line each (OMP_NUM_THREADS, then its arguments), in `fake.calls()`."""
    script = tmp_path / "fake_train.py"
    script.write_text(FAKE_SCRIPT)
    calls = tmp_path / "calls.txt"
    monkeypatch.setenv("FAKE_CALLS", str(calls))

    class Fake(str):
        def calls(self) -> list[str]:
            return calls.read_text().splitlines() if calls.exists() else []

    return Fake(script)


def test_sweep_runs_each_run_once_in_its_own_directory(tmp_path, fake):
    out = tmp_path / "out"
    argv = ["--config", f"a={fake}", f"a={fake}", f"b={fake} --x 1", "--env-ids", "E-v0", "E-v0", "--seeds", "1", "2", "1",
            "--out", str(out), "--workers", "2"]  # fmt: skip
    assert sweep.main(argv) == 0
    assert sorted(fake.calls()) == [
        "1 --env-id E-v0 --seed 1",
        "1 --env-id E-v0 --seed 2",
        "1 --x 1 --env-id E-v0 --seed 1",
        "1 --x 1 --env-id E-v0 --seed 2",
    ]  # each (config, env, seed) once, on one thread
    for config in ("a", "b"):
        for seed in (1, 2):
            run_dir = out / config / "E-v0" / f"seed{seed}"
            assert (run_dir / "done.json").exists() and (run_dir / "runs").is_dir()  # the script ran in its directory
            assert "step 5/10" in (run_dir / "stdout_stderr.log").read_text()
            assert json.loads((run_dir / "run.json").read_text())["seed"] == seed
    with pytest.raises(SystemExit, match="given twice"):
        sweep.main(["--config", f"a={fake}", f"a={fake} --x 2", "--env-ids", "E-v0", "--seeds", "1", "--out", str(out)])
    with pytest.raises(SystemExit, match="another command"):  # never mix two budgets under one name
        sweep.main(["--config", f"a={fake} --x 2", "--env-ids", "E-v0", "--seeds", "1", "--out", str(out)])
    assert len(fake.calls()) == 4


def test_sweep_failed_runs_do_not_stop_others_and_resume_reruns_only_them(tmp_path, fake, capsys):
    out, flag = tmp_path / "out", tmp_path / "broken"
    flag.touch()
    argv = ["--config", f"ok={fake}", f"bad={fake} --fail-if {flag}", "--twins", "bad=ok", "--env-ids", "E-v0",
            "--seeds", "1", "2", "--out", str(out), "--workers", "2"]  # fmt: skip
    assert sweep.main(argv) == 1
    assert "FAILED bad/E-v0/seed1: exit 1: error: asked to fail" in capsys.readouterr().out
    assert all((out / "ok" / "E-v0" / f"seed{seed}" / "done.json").exists() for seed in (1, 2))
    assert not any((out / "bad" / "E-v0" / f"seed{seed}" / "done.json").exists() for seed in (1, 2))

    (out / "bad" / "E-v0" / "seed1" / "runs").mkdir()  # what a half-finished attempt leaves behind
    flag.unlink()
    calls = len(fake.calls())
    assert sweep.main(argv) == 0
    assert len(fake.calls()) == calls + 2 and all("--fail-if" in call for call in fake.calls()[calls:])
    assert all((out / "bad" / "E-v0" / f"seed{seed}" / "done.json").exists() for seed in (1, 2))
    assert sweep.main(argv) == 0 and len(fake.calls()) == calls + 2  # everything complete: nothing runs
    assert "4 runs in" in capsys.readouterr().out


def test_sweep_ctrl_c_stops_runs_without_marking_them_done(tmp_path, fake):
    out = tmp_path / "out"
    argv = [sys.executable, SWEEP, "--config", f"slow={fake} --sleep", "--env-ids", "E-v0", "--seeds", "1",
            "--out", str(out), "--progress-interval", "0.2"]  # fmt: skip
    process = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    pid_file = tmp_path / "calls.txt.pid"
    deadline = time.time() + 30
    while not pid_file.exists():
        assert time.time() < deadline and process.poll() is None
        time.sleep(0.1)
    time.sleep(1)  # time for a progress line
    process.send_signal(signal.SIGINT)  # what Ctrl-C sends to the sweep (not to the script: it has its own session)
    try:
        output, _ = process.communicate(timeout=30)
    except subprocess.TimeoutExpired:  # say where the sweep was stuck
        process.send_signal(signal.SIGUSR1)  # faulthandler: every thread's stack, to the output
        time.sleep(1)
        process.kill()
        pytest.fail(f"the sweep did not stop within 30 s of SIGINT; its output and stacks:\n{process.communicate()[0]}")
    assert process.returncode == 130, output
    assert "1 running, 0 queued: slow/E-v0/seed1 5/10" in output and "interrupted" in output
    with pytest.raises(ProcessLookupError):
        os.kill(int(pid_file.read_text()), 0)  # the script was stopped
    run_dir = out / "slow" / "E-v0" / "seed1"
    assert not (run_dir / "done.json").exists() and (run_dir / "runs" / "run1" / "state.pt").exists()
    # the same command again resumes the run from its saved state
    assert sweep.main(argv[2:]) == 0 and fake.calls()[-1] == "1 --resume runs/run1"
    assert (run_dir / "done.json").exists() and "step 10/10 | resumed" in (run_dir / "stdout_stderr.log").read_text()


def test_sweep_marks_a_run_done_only_at_its_last_step(tmp_path, fake):
    out = tmp_path / "out"
    argv = ["--config", f"short={fake} --short", "--env-ids", "E-v0", "--seeds", "1", "--out", str(out)]
    assert sweep.main(argv) == 1  # exit 0 at step 5 of 10: an interrupted run, not a complete one
    assert not (out / "short" / "E-v0" / "seed1" / "done.json").exists()


def test_submitit_job_past_its_time_limit_saves_requeues_and_resumes(tmp_path, fake):
    """A job whose run outlasts its time limit: the signal before the kill stops the script (it saves its state), the
    job requeues itself (submitit's checkpointing) and the requeued job resumes the run to its end."""
    out = tmp_path / "out"
    argv = [sys.executable, SWEEP, "--backend", "submitit-local", "--config", f"long={fake} --sleep", "--env-ids", "E-v0",
            "--seeds", "1", "--out", str(out), "--slurm-timeout-min", "1", "--slurm-signal-delay-s", "52"]  # fmt: skip
    result = subprocess.run(argv, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    assert [call.split(" ", 1)[1] for call in fake.calls()] == ["--sleep --env-id E-v0 --seed 1", "--resume runs/run1"]
    assert (out / "long" / "E-v0" / "seed1" / "done.json").exists()


def test_sweep_through_submitit_local_executor(tmp_path, fake):
    """The Slurm path (a submitit job array running run_one), executed by submitit's local executor."""
    out, flag = tmp_path / "out", tmp_path / "broken"
    flag.touch()
    argv = [sys.executable, SWEEP, "--backend", "submitit-local", "--config", f"ok={fake}", f"bad={fake} --fail-if {flag}",
            "--env-ids", "E-v0", "--seeds", "1", "--out", str(out), "--slurm-timeout-min", "2", "--slurm-signal-delay-s", "30"]  # fmt: skip
    result = subprocess.run(argv, capture_output=True, text=True, timeout=120)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "submitted 2 jobs (local" in result.stdout and "FAILED bad/E-v0/seed1: exit 1" in result.stdout
    assert (out / "ok" / "E-v0" / "seed1" / "done.json").exists()
    assert not (out / "bad" / "E-v0" / "seed1" / "done.json").exists()
    assert len(list((out / "_submitit").glob("*/*_result.pkl"))) == 2  # both ran as submitit jobs
    assert sorted(call.split()[0] for call in fake.calls()) == ["1", "1"]


def write_run(sweep_dir, config, env_id, seed, twin, evals, tags, done=True):
    """A run directory as the sweep leaves it, with a TensorBoard log of known values."""
    run_dir = sweep_dir / config / env_id / f"seed{seed}"
    run_dir.mkdir(parents=True)
    spec = {"config": config, "env_id": env_id, "seed": seed, "twin": twin, "argv": ["x.py"]}
    (run_dir / "run.json").write_text(json.dumps(spec))
    writer = SummaryWriter(str(run_dir / "runs" / f"{env_id}__x__{seed}__0"))
    for step, value in evals.items():
        writer.add_scalar("eval/episodic_return", value, step)
    for tag, values in tags.items():
        for i, value in enumerate(values):
            writer.add_scalar(tag, value, 1000 * i)
    writer.close()
    if done:
        (run_dir / "done.json").write_text("{}")


def test_report_numbers_on_synthetic_logs(tmp_path):
    steps = range(1000, 20_001, 1000)  # 20 evaluations
    sparse_tags = {"sparse/actor_density": [0.6, 0.5], "sparse/critic_density": [0.4], "sparse/training_FLOPs_ratio": [0.45],
                   "sparse/inference_FLOPs_ratio": [0.5], "sparse/critic_weights": [3000]}  # fmt: skip
    dense_tags = {"sparse/actor_density": [1.0], "sparse/critic_density": [1.0], "sparse/training_FLOPs_ratio": [1.0],
                  "sparse/inference_FLOPs_ratio": [1.0], "sparse/actor_weights": [2000], "sparse/critic_weights": [6000]}  # fmt: skip
    for seed, (offset, actor_weights, sps) in enumerate(((0, 1000, [1000, 100]), (10, 1002, [900, 120])), start=1):
        # sparse: last 10 evaluations 110..200 (+offset): finals 155 and 165
        tags = {**sparse_tags, "sparse/actor_weights": [actor_weights], "charts/SPS": sps}
        write_run(tmp_path, "sparse", "Hopper-v4", seed, "dense", {s: s / 100 + offset for s in steps}, tags)
        # dense twin: finals 77.5 and 83.5
        write_run(tmp_path, "dense", "Hopper-v4", seed, None, {s: s / 200 + 0.6 * offset for s in steps}, dense_tags)
        write_run(tmp_path, "slow", "Hopper-v4", seed, "dense", {s: 10.0 for s in steps}, sparse_tags)
    write_run(tmp_path, "sparse", "Hopper-v4", 3, "dense", {s: 1e6 for s in steps}, sparse_tags, done=False)

    text = report.write_report(tmp_path)

    runs, incomplete = report.load_sweep(tmp_path)
    summaries = {s.config: s for s in report.summarize_env(runs)}
    sparse, dense = summaries["sparse"], summaries["dense"]
    assert (sparse.final_mean, sparse.final_std, dense.final_mean, dense.final_std) == pytest.approx((160, 5, 80.5, 3))
    assert sparse.percent_of_twin == pytest.approx(100 * 160 / 80.5)
    # seed-averaged curve 10k + 5 at step 1000k; its trailing mean of 10 passes 80.5 at k = 13 (80 at k = 12)
    assert sparse.steps_to_twin == 13_000 and summaries["slow"].steps_to_twin is None
    np.testing.assert_allclose(sparse.curve_mean, [s / 100 + 5 for s in steps])
    np.testing.assert_allclose(sparse.curve_std, 5)
    assert sparse.last["charts/SPS"] == 110  # median over seeds of each run's last SPS
    assert [run_dir.name for run_dir in incomplete] == ["seed3"]

    assert "| sparse | dense | 2 | 20,000 | 160.0 ± 5.0 | 198.8% | 50.0% | 60.0% | 0.450x | 0.500x | 1,001 + 3,000 | 13,000 (65%) | 110 |" in text  # fmt: skip
    assert "| dense | — | 2 | 20,000 | 80.5 ± 3.0 | — | 0.0% | 0.0% | 1.000x | 1.000x | 2,000 + 6,000 | — | — |" in text
    assert "| slow | dense | 2 | 20,000 | 10.0 ± 0.0 | 12.4% |" in text and "| not reached |" in text
    assert "- `sparse/Hopper-v4/seed3`" in text  # listed as not included
    # the published numbers for Hopper, labelled as theirs, with budget, env version and seeds
    assert "Published (theirs, not ours" in text
    assert "| Sokar et al., IJCAI 2022 | DS-TD3 | ~50% overall | 3587 ± 71 | 164.2% | 1M steps | Hopper-v3 (gym) | 5 |" in text
    assert "| Tan et al., ICLR 2023 | RLx2 | 98% / 95% | — | 97.0% | 3M steps (its default) | not stated | 8 |" in text
    assert (tmp_path / "report.md").read_text() == text
    image = imread(tmp_path / "curves.png")
    assert image.ndim == 3 and image.shape[0] > 100 and image.std() > 0


def test_first_reproduction_preset_end_to_end_at_a_tiny_budget(tmp_path):
    """The preset's four commands are valid for the scripts, log every tag the report reads, and report together."""
    out = tmp_path / "out"
    argv = ["--preset", "first-reproduction", "--env-ids", "HalfCheetah-v4", "--seeds", "1", "--total-timesteps", "300",
            "--extra-args=--learning-starts 100 --eval-frequency 150 --eval-episodes 1", "--workers", "2", "--out", str(out)]  # fmt: skip
    assert sweep.main(argv) == 0
    text = report.write_report(out)
    rows = {line.split(" | ")[0].removeprefix("| "): line.split(" | ") for line in text.splitlines() if line.startswith("| ")}
    assert rows["ds-td3"][1] == "td3" and rows["rlx2"][1] == "rlx2-dense"
    assert rows["ds-td3"][3] == "300" and rows["ds-td3"][11] != "—"  # compared with its twin
    assert rows["rlx2"][6:8] == ["90.0%", "85.0%"]  # the paper's HalfCheetah sparsity
    for dense in ("td3", "rlx2-dense"):
        assert rows[dense][6:10] == ["0.0%", "0.0%", "1.000x", "1.000x"]
    assert float(rows["ds-td3"][8].removesuffix("x")) == pytest.approx(0.5, abs=0.05)
    assert rows["td3"][10] == "71,424 + 143,360" and rows["ds-td3"][12] != "—"
    assert (out / "curves.png").stat().st_size > 0


def test_sweep_rejects_an_unknown_preset():
    with pytest.raises(SystemExit, match="unknown preset"):
        sweep.main(["--preset", "nope"])
