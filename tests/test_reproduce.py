"""The reproduction harness: the sweep runner (dedup, failures, resume, Ctrl-C, submitit) and the report (exact
numbers on synthetic TensorBoard logs, its CSV data, the page re-made from that data alone, runs not complete), and one
end-to-end pass of the first reproduction's preset at a tiny budget."""

import csv
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from types import SimpleNamespace

import numpy as np
import pytest
from conftest import ROOT
from matplotlib.image import imread
from torch.utils.tensorboard import SummaryWriter

from reproduce import report, sweep

SWEEP, REPORT = str(ROOT / "reproduce" / "sweep.py"), str(ROOT / "reproduce" / "report.py")

# A stand-in for a training script: records its call, fails while a flag file exists, or sleeps until SIGTERM or
# SIGUSR2, then (like the real scripts) saves a state in its run directory and exits 128 + the signal; `--resume`
# finishes the run; `--short` exits 0 before its last step. Writes runs/ into its working directory.
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
        sys.exit(128 + signum)
    signal.signal(signal.SIGTERM, save_and_stop)
    signal.signal(signal.SIGUSR2, save_and_stop)
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


def test_sweep_skips_the_runs_a_record_holds_complete(tmp_path, fake, capsys):
    """--skip-complete-in: a sweep whose run directories were lost reruns only what its record (runs.csv) does not
    hold complete, and refuses a record of another budget."""
    record, out = tmp_path / "record", tmp_path / "out"
    record.mkdir()
    header = ",".join(report.RUN_COLUMNS)
    rows = ["a,E-v0,1,,True,10", "a,E-v0,2,,False,10", "b,E-v0,1,a,True,10"]  # b: not a configuration of this sweep
    (record / "runs.csv").write_text("\n".join([header, *(row + "," * 7 for row in rows)]) + "\n")
    argv = ["--config", f"a={fake}", "--env-ids", "E-v0", "--seeds", "1", "2", "--total-timesteps", "10", "--out", str(out)]
    assert sweep.main([*argv, "--skip-complete-in", str(record), "--dry-run"]) == 0
    listing = capsys.readouterr().out
    assert "2 runs in" in listing and "1 complete in the record" in listing and "1 to run" in listing
    assert "  recorded a/E-v0/seed1" in listing and "  to run   a/E-v0/seed2" in listing
    assert sweep.main([*argv, "--skip-complete-in", str(record)]) == 0
    assert fake.calls() == ["1 --env-id E-v0 --seed 2 --total-timesteps 10"] and not (out / "a" / "E-v0" / "seed1").exists()
    assert sweep.main([*argv, "--skip-complete-in", str(record)]) == 0 and len(fake.calls()) == 1  # both complete now
    assert f"2 runs in {out}: 1 complete, 1 complete in the record, 0 to run" in capsys.readouterr().out
    (record / "runs.csv").write_text(header + "\na,E-v0,1,,True,20" + "," * 7 + "\n")
    with pytest.raises(SystemExit, match="a/E-v0/seed1: the record ran 20 steps, this sweep asks for 10"):
        sweep.main([*argv, "--skip-complete-in", str(record)])
    with pytest.raises(SystemExit, match="no runs.csv"):
        sweep.main([*argv, "--skip-complete-in", str(tmp_path)])


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


def test_sweep_progress_counts_a_run_left_by_an_earlier_sweep_as_queued_until_it_resumes(tmp_path, capsys):
    """A run stopped by an earlier sweep keeps its log; in this sweep it is queued until a worker writes to it again."""
    waiting, resumed = tmp_path / "a" / "E-v0" / "seed1", tmp_path / "a" / "E-v0" / "seed2"
    past = time.time() - 3600
    for run_dir in (waiting, resumed):
        run_dir.mkdir(parents=True)
        (run_dir / sweep.LOG).write_text("step 5/10 | stopped at step 5\n")
        os.utime(run_dir / sweep.LOG, (past, past))  # written by the earlier sweep

    class Job:  # the second of its done() calls ends it; `log`, if given, is written at the first (a worker starting)
        def __init__(self, log=None):
            self.log, self.calls = log, 0

        def done(self):
            self.calls += 1
            if self.calls == 1 and self.log:
                with open(self.log, "a") as f:
                    f.write("step 7/10 | resumed\n")
            return self.calls > 1

        def result(self):
            return 0

    outcomes = sweep.watch([Job(), Job(resumed / sweep.LOG)], [waiting, resumed], tmp_path, 0, progress_interval=0)
    assert outcomes == {waiting: "ok", resumed: "ok"}
    assert "1 running, 1 queued: a/E-v0/seed2 7/10\n" in capsys.readouterr().out


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
    """A run directory as the sweep leaves it, with a TensorBoard log of known values: `evals` {step: return}, `tags`
    {tag: values at steps 0, 1000, 2000, ... or {step: value}}; `evals` None: a run that has not started."""
    run_dir = sweep_dir / config / env_id / f"seed{seed}"
    run_dir.mkdir(parents=True)
    spec = {"config": config, "env_id": env_id, "seed": seed, "twin": twin, "argv": ["x.py", "--total-timesteps", "50000"]}
    (run_dir / "run.json").write_text(json.dumps(spec))
    if evals is None:
        return
    writer = SummaryWriter(str(run_dir / "runs" / f"{env_id}__x__{seed}__0"))
    for step, value in evals.items():
        writer.add_scalar("eval/episodic_return", value, step)
    for tag, values in tags.items():
        for step, value in values.items() if isinstance(values, dict) else zip(range(0, 10**9, 1000), values):
            writer.add_scalar(tag, value, step)
    writer.close()
    if done:
        (run_dir / "done.json").write_text("{}")


def read_csv(path):
    with open(path, newline="") as file:
        return list(csv.reader(file))


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
        # a twin whose final return is negative: no % of it, and no step at which it is "reached"
        write_run(tmp_path, "early", "Hopper-v4", seed, "falling", {s: 1.0 for s in steps}, sparse_tags)
        write_run(tmp_path, "falling", "Hopper-v4", seed, None, {s: -s / 1000 for s in steps}, dense_tags)

    report.write_csvs(tmp_path, tmp_path)
    text = report.write_report(tmp_path)

    summaries = {s.config: s for s in report.summarize_env(report.read_csvs(tmp_path))}
    sparse, dense = summaries["sparse"], summaries["dense"]
    assert (sparse.final_mean, sparse.final_std, dense.final_mean, dense.final_std) == pytest.approx((160, 5, 80.5, 3))
    assert sparse.percent_of_twin == pytest.approx(100 * 160 / 80.5)
    # seed-averaged curve 10k + 5 at step 1000k; its trailing mean of 10 passes 80.5 at k = 13 (80 at k = 12)
    assert sparse.steps_to_twin == 13_000 and summaries["slow"].steps_to_twin is None
    np.testing.assert_allclose(sparse.curve_mean, [s / 100 + 5 for s in steps])
    np.testing.assert_allclose(sparse.curve_std, 5)
    assert sparse.last["charts/SPS"] == 110  # median over seeds of each run's last SPS

    assert "| sparse | dense | 2 | 20,000 | 160.0 ± 5.0 | 198.8% | 50.0% | 60.0% | 0.450x | 0.500x | 1,001 + 3,000 | 13,000 (65%) | 110 |" in text  # fmt: skip
    assert "| dense | — | 2 | 20,000 | 80.5 ± 3.0 | — | 0.0% | 0.0% | 1.000x | 1.000x | 2,000 + 6,000 | — | — |" in text
    assert "| slow | dense | 2 | 20,000 | 10.0 ± 0.0 | 12.4% |" in text and "| not reached |" in text
    assert "| early | falling | 2 | 20,000 | 1.0 ± 0.0 | — | 50.0% | 60.0% | 0.450x | 0.500x | — | — |" in text
    # % of the twin at each quarter of the steps (sparse 35, 60, 110 over dense 18, 30.5, 55.5); no paper for "sparse"
    assert "| sparse | dense | 194.4% (5,000) | 196.7% (10,000) | 198.2% (15,000) | 198.8% (20,000) | — | — |" in text
    assert "| incomplete: " not in text and "Not complete" not in text and "Complete runs only" not in text
    # the published numbers for Hopper, labelled as theirs, with budget, env version and seeds
    assert "Published (theirs, not ours" in text
    assert "| Sokar et al., IJCAI 2022 | DS-TD3 | ~50% overall | 3587 ± 71 | 164.2% | 1M steps | Hopper-v3 (gym) | 5 |" in text
    assert "| Tan et al., ICLR 2023 | RLx2 | 98% / 95% | — | 97.0% | 3M steps (its default) | not stated | 8 |" in text
    ds_sac = next(row for row in report.PUBLISHED if (row.method, row.env) == ("DS-SAC", "HalfCheetah"))
    assert report.published_percent(ds_sac) == pytest.approx(100 * 11084 / 11645)  # the appendix gives returns only
    assert (tmp_path / "report.md").read_text() == text
    image = imread(tmp_path / "curves.png")
    assert image.ndim == 3 and image.shape[0] > 100 and image.std() > 0
    assert not (tmp_path / "buffer.png").exists()  # no run logs a buffer capacity


def test_report_keeps_every_evaluation_as_csv_and_remakes_the_page_from_it_alone(tmp_path):
    """evals.csv: one row per evaluation, with the value each logged quantity had then; runs.csv: one row per run,
    started or not. The page made from them alone is the page made from the sweep; the table marks the runs not complete."""
    sweep_dir, data = tmp_path / "sweep", tmp_path / "data"
    steps = range(0, 50_001, 5000)  # 11 evaluations
    n_step, capacity = {1000: 1, 30_000: 2, 40_000: 3}, {10_000: 1e6, 20_000: 1e6, 30_000: 5e5, 40_000: 2.5e5, 50_000: 2.5e5}
    rlx2_tags = {
        "sparse/actor_density": [0.1],
        "sparse/critic_density": [0.2],
        "charts/n_step": n_step,
        "buffer/capacity": capacity,
    }
    for seed in (1, 2, 3):  # rlx2: returns step / 100, final (last 10 evaluations) 275
        write_run(sweep_dir, "rlx2", "Hopper-v4", seed, "rlx2-dense", {s: s / 100 for s in steps}, rlx2_tags)
    dense_tags = {"sparse/actor_density": [1.0], "sparse/critic_density": [1.0], "charts/n_step": {1000: 1}}
    write_run(sweep_dir, "rlx2-dense", "Hopper-v4", 1, None, {s: s / 250 for s in steps}, dense_tags)
    # seed 2 stopped (or still running) at step 25k, seed 3 not started
    write_run(sweep_dir, "rlx2-dense", "Hopper-v4", 2, None, {s: s / 250 + 10 for s in steps[:6]}, dense_tags, done=False)
    write_run(sweep_dir, "rlx2-dense", "Hopper-v4", 3, None, None, {})

    report.write_csvs(sweep_dir, data)
    evals, runs = read_csv(data / "evals.csv"), read_csv(data / "runs.csv")
    assert ",".join(evals[0]) == "config,env_id,seed,step,eval_return,sparsity_actor,sparsity_critic,n_step,buffer_capacity"
    assert len(evals) == 1 + 3 * 11 + 11 + 6
    rlx2 = [row[3:] for row in evals if row[:3] == ["rlx2", "Hopper-v4", "2"]]
    # each quantity as last logged at or before the evaluation (n-step from step 1000, capacity from 10k: the first)
    assert [row[0] for row in rlx2] == [str(s) for s in steps] and rlx2[3][1] == "150"
    assert {(row[2], row[3]) for row in rlx2} == {("0.9", "0.8")}
    assert [row[4] for row in rlx2] == ["1", "1", "1", "1", "1", "1", "2", "2", "3", "3", "3"]
    assert [row[5] for row in rlx2] == ["1000000"] * 6 + ["500000"] * 2 + ["250000"] * 3
    dense = [row[3:] for row in evals if row[:3] == ["rlx2-dense", "Hopper-v4", "2"]]
    assert dense[-1] == ["25000", "110", "0", "0", "1", ""]  # no buffer capacity logged: an empty cell
    assert [",".join(row[:6]) for row in runs] == [
        "config,env_id,seed,twin,complete,total_timesteps",
        *(f"rlx2,Hopper-v4,{seed},rlx2-dense,True,50000" for seed in (1, 2, 3)),
        "rlx2-dense,Hopper-v4,1,,True,50000",
        "rlx2-dense,Hopper-v4,2,,False,50000",
        "rlx2-dense,Hopper-v4,3,,False,50000",  # not started: a row all the same
    ]
    assert runs[1][runs[0].index("sparse/actor_density")] == "0.1" and runs[-1][6:] == [""] * 7

    text = report.write_report(data)
    # the twin has evaluations to 25k on both its seeds: compared there (rlx2 125 over the twin's (50 + 60) / 2)
    assert "| rlx2 | rlx2-dense | 3 | 50,000 | 275.0 ± 0.0 | 227.3% (at 25,000) | 90.0% | 80.0% |" in text
    assert "| 15,000 (60%) |" in text  # rlx2's trailing mean (0, 25, 50, 75) passes 55 at 15k
    # over training, cut at 6,250 / 12,500 / 18,750 (their last evaluations: 5k / 10k / 15k): rlx2 25 / 50 / 75
    # over the twin's 15 / 25 / 35; the paper's 97.0% for RLx2 on Hopper, and ours minus it
    assert ("| rlx2 | rlx2-dense | 166.7% (5,000) | 200.0% (10,000) | 214.3% (15,000) | 227.3% (25,000) "
            "| 97.0% (Tan et al., ICLR 2023; budget: 3M steps (its default)) | +130.3 points |") in text  # fmt: skip
    assert ("- `rlx2`, at 25,000 steps: 130.3 points above the paper's % of dense (their budget: 3M steps (its default)); "
            "at 5,000, 69.7 points above. A % of dense also depends on how far each dense twin got") in text  # fmt: skip
    assert "| rlx2-dense | — | incomplete: 2 of 3 seeds at step 25,000 | 25,000 | 55.0 ± 5.0 | — | 0.0% | 0.0% |" in text
    # and, as the twin is incomplete, its complete seed beside rlx2's three, each to its last step (110: s / 250)
    complete_only = text.split("Complete runs only")[1].split("Published")[0]
    assert "| rlx2 | rlx2-dense | 3 | 50,000 | 275.0 ± 0.0 | 250.0% |" in complete_only
    assert "| rlx2-dense | — | 1 | 50,000 | 110.0 ± 0.0 | — |" in complete_only
    assert "Not complete (no `done.json`: running, failed, interrupted or not started): 2 of 6 runs" in text
    assert "- `rlx2-dense/Hopper-v4/seed2`: evaluated up to step 25,000 of 50,000" in text
    assert "- `rlx2-dense/Hopper-v4/seed3`: no evaluation yet" in text
    assert imread(data / "buffer.png").std() > 0 and imread(data / "curves.png").std() > 0

    shutil.rmtree(sweep_dir)  # the logs are gone: the CSV files alone make the same page, here and from the command line
    for path in ("report.md", "curves.png", "buffer.png"):
        (data / path).unlink()
    assert report.write_report(data) == text and (data / "curves.png").exists() and (data / "buffer.png").exists()
    command = [sys.executable, REPORT, "--from-csv", str(data), "--out", str(tmp_path / "again")]
    assert subprocess.run(command, capture_output=True, text=True, timeout=120).returncode == 0
    assert (tmp_path / "again" / "report.md").read_text() == text


def test_report_says_plainly_how_far_from_the_papers_percent_and_whether_the_distance_shrank():
    quarters = [(125_000, None), (250_000, 84.0), (375_000, 86.0), (500_000, 89.4)]  # None: a twin not yet positive
    row = SimpleNamespace(config="rlx2", compared_at=500_000, percent_of_twin=89.4, percent_over_training=quarters)
    start = "- `rlx2`, at 500,000 steps: 10.4 points below the paper's % of dense (their budget: 3M steps)"
    assert report.reading(row, 99.8, "3M steps") == start + (
        "; at 250,000, 15.8 points below. The shortfall shrinks with steps, as a shorter budget would explain; whether it "
        "closes by theirs, this run does not show."
    )
    row.percent_over_training = [(250_000, 95.0), (500_000, 89.4)]
    assert report.reading(row, 99.8, "3M steps") == start + (
        "; at 250,000, 4.8 points below. The shortfall did not shrink over our run: more steps alone do not close it here "
        "(a budget can still matter through what scales with it, such as a schedule)."
    )
    row.percent_over_training = [(500_000, 89.4)]  # nothing earlier to compare with
    assert report.reading(row, 99.8, "3M steps") == start + "."
    # a run as long as the paper's: whether or not the shortfall shrank, its length does not explain it
    row.percent_over_training = [(250_000, 84.0), (500_000, 89.4)]
    for budget in ("500k steps", "0.5M steps"):
        assert report.reading(row, 99.8, budget) == start.replace("3M steps", budget) + (
            "; at 250,000, 15.8 points below. Our run is as long as the paper's: its budget does not explain the shortfall."
        )


def test_report_sets_ours_beside_the_released_codes_runs_at_the_step_both_reached(tmp_path):
    """`X` beside `X-released`: both cut at the step all their seeds reached, ours minus theirs against the seeds'
    spread, each over its own dense twin (cut at the twin's last step where that is earlier), the paper's % beside."""
    ours, theirs = range(1000, 20_001, 1000), range(1000, 10_001, 1000)
    for seed, offset in ((1, 0), (2, 10)):
        # ours at 10,000: finals 55 and 65 (60 ± 5), over a dense twin at 100; theirs (incomplete): 42 ± 2 over 50
        write_run(tmp_path, "rlx2", "Hopper-v4", seed, "rlx2-dense", {s: s / 100 + offset for s in ours}, {})
        write_run(tmp_path, "rlx2-dense", "Hopper-v4", seed, None, {s: 100.0 for s in ours}, {})
        write_run(tmp_path, "rlx2-released", "Hopper-v4", seed, "rlx2-dense-released",
                  {s: 40 + 0.4 * offset for s in theirs}, {}, done=False)  # fmt: skip
        write_run(tmp_path, "rlx2-dense-released", "Hopper-v4", seed, None, {s: 50.0 for s in theirs if s <= 8000}, {})
    write_run(tmp_path, "rlx2-released", "Hopper-v4", 3, "rlx2-dense-released", None, {}, done=False)  # not started
    report.write_csvs(tmp_path, tmp_path)
    text = report.write_report(tmp_path)
    assert (
        "| rlx2 | rlx2-released | 10,000 | 60.0 ± 5.0 (2 seeds) | 42.0 ± 2.0 (2 seeds of 3, incomplete) | +18.0 | 7.0 "
        "| 60.0% | 84.0% (at 8,000) | 97.0% (Tan et al., ICLR 2023; budget: 3M steps (its default)) |"
    ) in text
    assert (
        "- `rlx2` and `rlx2-released` at 10,000 steps: ours above theirs by 18.0, more than the seeds' spread (7.0): the "
        "two differ beyond seed noise here."
    ) in text
    assert text.count("| rlx2 | rlx2-released |") == 1  # none of theirs complete: not under "Complete runs only"
    runs = [run for run in report.read_csvs(tmp_path) if run.config in ("rlx2", "rlx2-released") and run.seed == 1]
    assert report.released_table("Hopper-v4", runs)[-1] == (
        "- `rlx2` and `rlx2-released` at 10,000 steps: one seed on each side, no spread to judge the difference by yet."
    )
    # one seed on one side only: whether it lies inside the other side's mean ± std (42 against 60 ± 5; 55 against 42 ± 2)
    runs = [run for run in report.read_csvs(tmp_path) if run.config in ("rlx2", "rlx2-released")]
    assert report.released_table("Hopper-v4", [run for run in runs if run.config == "rlx2" or run.seed == 1])[-1] == (
        "- `rlx2` and `rlx2-released` at 10,000 steps: ours above theirs by 20.0; `rlx2-released` holds one seed, which "
        "lies outside `rlx2`'s mean ± std (60.0 ± 5.0): no spread of its own to judge the difference by yet."
    )
    assert report.released_table("Hopper-v4", [run for run in runs if run.config != "rlx2" or run.seed == 1])[-1] == (
        "- `rlx2` and `rlx2-released` at 10,000 steps: ours above theirs by 13.0; `rlx2` holds one seed, which "
        "lies outside `rlx2-released`'s mean ± std (42.0 ± 2.0): no spread of its own to judge the difference by yet."
    )
    inside = tmp_path / "inside"  # theirs' one seed at 57, inside ours' 60 ± 5
    for seed, offset in ((1, 0), (2, 10)):
        write_run(inside, "rlx2", "Hopper-v4", seed, None, {s: s / 100 + offset for s in ours}, {})
    write_run(inside, "rlx2-released", "Hopper-v4", 1, None, {s: 57.0 for s in theirs}, {}, done=False)
    report.write_csvs(inside, inside)
    assert report.released_table("Hopper-v4", report.read_csvs(inside))[-1] == (
        "- `rlx2` and `rlx2-released` at 10,000 steps: ours above theirs by 3.0; `rlx2-released` holds one seed, which "
        "lies inside `rlx2`'s mean ± std (60.0 ± 5.0): no spread of its own to judge the difference by yet."
    )
    assert report.released_table("Hopper-v4", [run for run in runs if run.config == "rlx2"]) == []
    # the released code's dense setting not run: theirs over ours' dense twin, named (42 over 100)
    runs = [run for run in report.read_csvs(tmp_path) if run.config != "rlx2-dense-released"]
    assert "| 60.0% | 42.0% of `rlx2-dense` | 97.0% (" in "\n".join(report.released_table("Hopper-v4", runs))


def test_report_keeps_the_recorded_runs_a_new_sweep_directory_lacks_or_has_not_completed(tmp_path):
    """--keep-recorded: a sweep whose run directories were lost (a new machine) goes on in a new one; the runs the
    earlier record holds complete keep their rows as recorded until the new directory completes them too, and a run
    the new directory lacks keeps its recorded rows; a run the new directory has, not complete in the record, is the
    new directory's."""
    old, new, data = tmp_path / "old", tmp_path / "new", tmp_path / "data"
    steps = range(0, 50_001, 5000)
    tags = {"sparse/actor_density": [0.1], "charts/SPS": [120]}
    write_run(old, "rlx2", "Hopper-v4", 1, "dense", {s: s / 100 + 0.123 for s in steps}, tags)  # complete
    write_run(old, "rlx2", "Hopper-v4", 2, "dense", {s: s / 100 for s in steps[:4]}, tags, done=False)  # at 15k
    write_run(old, "dense", "Hopper-v4", 1, None, {s: s / 200 for s in steps}, tags)  # complete
    write_run(old, "dense", "Hopper-v4", 2, None, {s: s / 300 for s in steps[:2]}, tags, done=False)  # at 5k
    report.write_csvs(old, data)
    recorded_evals, recorded_runs = read_csv(data / "evals.csv"), read_csv(data / "runs.csv")
    shutil.rmtree(old)

    write_run(new, "rlx2", "Hopper-v4", 1, "dense", {s: 7.0 for s in steps[:2]}, tags, done=False)  # rerun, at 5k
    write_run(new, "rlx2", "Hopper-v4", 2, "dense", {s: s / 50 for s in steps[:2]}, tags, done=False)  # restarted
    write_run(new, "rlx2", "Hopper-v4", 3, "dense", {s: s / 100 for s in steps}, tags)  # new, complete
    kept = report.write_csvs(new, data, keep_recorded=True)
    evals, runs = read_csv(data / "evals.csv"), read_csv(data / "runs.csv")

    assert kept == ["dense/Hopper-v4/seed1", "dense/Hopper-v4/seed2", "rlx2/Hopper-v4/seed1"]
    assert [row[:5] for row in runs[1:]] == [
        ["dense", "Hopper-v4", "1", "", "True"],
        ["dense", "Hopper-v4", "2", "", "False"],  # not in the new directory: as recorded
        ["rlx2", "Hopper-v4", "1", "dense", "True"],  # complete in the record, not yet in the new directory
        ["rlx2", "Hopper-v4", "2", "dense", "False"],
        ["rlx2", "Hopper-v4", "3", "dense", "True"],
    ]
    assert runs[0] == recorded_runs[0] and runs[1:4] == [recorded_runs[i] for i in (1, 2, 3)]
    for key in (["dense", "Hopper-v4", "1"], ["dense", "Hopper-v4", "2"], ["rlx2", "Hopper-v4", "1"]):
        kept_rows = [row for row in evals if row[:3] == key]
        assert kept_rows == [row for row in recorded_evals if row[:3] == key] and kept_rows  # byte for byte
    assert [row[4] for row in evals if row[:3] == ["rlx2", "Hopper-v4", "2"]] == ["0", "100"]  # the new directory's
    assert len([row for row in evals if row[:3] == ["rlx2", "Hopper-v4", "3"]]) == 11

    command = [sys.executable, REPORT, "--sweep-dir", str(new), "--out", str(data), "--keep-recorded"]
    result = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0 and "kept as recorded (absent or not complete in the sweep directory): 3" in result.stdout
    assert read_csv(data / "evals.csv") == evals  # the same record again
    assert report.write_csvs(new, data) == [] and len(read_csv(data / "runs.csv")) == 1 + 3  # without: the directory only


def test_the_committed_results_pages_are_made_from_their_committed_data(tmp_path):
    """docs/results/*/report.md is what report.py makes from the evals.csv and runs.csv beside it, as it makes it now."""
    data_dirs = sorted(path.parent for path in (ROOT / "docs" / "results").glob("*/evals.csv"))
    assert data_dirs
    for data in data_dirs:
        assert report.write_report(data, tmp_path / data.name) == (data / "report.md").read_text(), data.name


def test_the_committed_records_hold_every_evaluation_of_each_run_once():
    """Stopped, resumed and restarted runs left no gap and no repeat: each run's evaluations are at 0, k, 2k, ... with
    one interval, and a complete run's reach its budget."""
    for data in sorted(path.parent for path in (ROOT / "docs" / "results").glob("*/evals.csv")):
        for run in report.read_csvs(data):
            steps = run.evals["step"]
            if not run.started:
                continue
            assert steps[0] == 0 and (len(steps) == 1 or len(set(np.diff(steps))) == 1), (data.name, run.name)
            if run.complete and run.total_timesteps is not None:
                assert steps[-1] == run.total_timesteps, (data.name, run.name)


def test_the_front_pages_results_are_the_committed_pages_numbers():
    """Each final return and % of the README's results table stands in its env's part of the committed page."""
    readme = (ROOT / "README.md").read_text()
    table = readme.split("## Results")[1].split("\n## ")[0].split("\n### ")[0]  # the first table, ours
    page = (ROOT / "docs" / "results" / "long-results" / "report.md").read_text()
    rows = [line.split(" | ") for line in table.splitlines() if line.startswith("| ") and "-v4" in line]
    assert len(rows) >= 9
    for env_id, _, _, final, percent in rows:
        part = page.split(f"## {env_id.removeprefix('| ')}")[1].split("\n## ")[0]
        assert f"| {final} ± " in part or f"| {final} |" in part, (env_id, final)
        if percent.endswith("|") and percent[0].isdigit():
            assert f"| {percent.split()[0]} |" in part, (env_id, percent)


def test_the_front_pages_released_code_table_is_the_released_pages_numbers():
    """Each number of ours and theirs in the README's table of the released code beside ours stands in its env's part
    of the committed page docs/results/released/report.md."""
    readme = (ROOT / "README.md").read_text()
    table = readme.split("### The released code beside ours")[1].split("\n## ")[0]
    page = (ROOT / "docs" / "results" / "released" / "report.md").read_text()
    rows = [line.split(" | ") for line in table.splitlines() if line.startswith("| ") and "-v4" in line]
    assert len(rows) >= 2
    for env_id, _, _, ours, theirs, _ in rows:
        part = page.split(f"## {env_id.removeprefix('| ')}")[1].split("\n## ")[0]
        numbers = re.findall(r"\d[\d,]*\.\d+%?", ours + " " + theirs)
        assert numbers, (env_id, ours, theirs)
        for number in numbers:
            assert number in part, (env_id, number)
    assert re.search(r"ours minus theirs is (-?[\d.]+)", readme)[1] in page


def test_first_reproduction_preset_end_to_end_at_a_tiny_budget(tmp_path):
    """The preset's four commands are valid for the scripts, log every tag the report reads, and report together."""
    out = tmp_path / "out"
    argv = ["--preset", "first-reproduction", "--env-ids", "HalfCheetah-v4", "--seeds", "1", "--total-timesteps", "300",
            "--extra-args=--learning-starts 100 --eval-frequency 150 --eval-episodes 1", "--workers", "2", "--out", str(out)]  # fmt: skip
    assert sweep.main(argv) == 0
    report.write_csvs(out, out)
    text = report.write_report(out)
    rows: dict[str, list[str]] = {}  # each config's first row: our table (its % over training follows)
    for line in text.splitlines():
        if line.startswith("| "):
            rows.setdefault(line.split(" | ")[0].removeprefix("| "), line.split(" | "))
    assert rows["ds-td3"][1] == "td3" and rows["rlx2"][1] == "rlx2-dense"
    assert "| 102.8% (Sokar et al., IJCAI 2022; budget: 1M steps) |" in text  # DS-TD3's, beside ds-td3 over training
    twin_positive = float(rows["td3"][4].split(" ± ")[0]) > 0  # compared with its twin where that means something
    assert rows["ds-td3"][3] == "300" and (rows["ds-td3"][5] != "—") == (rows["ds-td3"][11] != "—") == twin_positive
    assert rows["rlx2"][6:8] == ["90.0%", "85.0%"]  # the paper's HalfCheetah sparsity
    for dense in ("td3", "rlx2-dense"):
        assert rows[dense][6:10] == ["0.0%", "0.0%", "1.000x", "1.000x"]
    assert float(rows["ds-td3"][8].removesuffix("x")) == pytest.approx(0.5, abs=0.05)
    assert rows["td3"][10] == "71,424 + 143,360" and rows["ds-td3"][12] != "—"
    assert (out / "curves.png").stat().st_size > 0
    evals = {(row[0], row[3]): row for row in read_csv(out / "evals.csv")}
    assert [float(cell) for cell in evals["rlx2", "300"][5:8]] == pytest.approx([0.9, 0.85, 1], abs=1e-3)
    assert evals["td3", "300"][7:] == ["", ""]  # n-step: RLx2's; buffer capacity: checked every 10k steps


def test_sweep_rejects_an_unknown_preset():
    with pytest.raises(SystemExit, match="unknown preset"):
        sweep.main(["--preset", "nope"])


def test_long_results_plan_is_seed_major_with_rlx2_sac_on_hopper_only():
    runs = sweep.plan(sweep.Args(preset="long-results"))
    names = [run.name for run in runs]
    assert len(names) == 3 * (2 * 4 + 2)  # seeds x (two envs x four configurations + RLx2-SAC's two on Hopper)
    assert names[:4] == [f"{c}/HalfCheetah-v4/seed1" for c in ("rlx2", "rlx2-dense", "ds-sac", "sac")]
    assert not any(name.startswith("rlx2-sac") and "HalfCheetah" in name for name in names)
    assert {run.twin for run in runs if run.config == "rlx2-sac"} == {"rlx2-sac-dense"}
    # with configurations of one's own, the preset's restriction goes too
    own = sweep.plan(sweep.Args(preset="long-results", config=("rlx2-sac=rlx2_sac.py",), seeds=(1,)))
    assert [run.name for run in own] == ["rlx2-sac/HalfCheetah-v4/seed1", "rlx2-sac/Hopper-v4/seed1"]


def test_a_run_the_script_marked_complete_is_never_run_again(tmp_path, fake):
    """Killed after it wrote its final outputs and its `complete` marker, before it could exit 0: the run is done."""
    marker = tmp_path / "out" / "a" / "E-v0" / "seed1" / "runs" / "run1" / "complete"
    marker.parent.mkdir(parents=True)
    marker.write_text("10\n")
    argv = ["--config", f"a={fake}", "--env-ids", "E-v0", "--seeds", "1", "--out", str(tmp_path / "out")]
    assert sweep.main(argv) == 0 and fake.calls() == []
    assert (marker.parents[2] / "done.json").exists() and marker.exists()  # nothing wiped


def test_report_takes_its_title_conditions_and_commands_from_about_json(tmp_path):
    """What the CSV files cannot say (when, where, which backend) comes from about.json, written by hand; without it
    the page keeps a plain title."""
    steps = range(0, 20_001, 5000)
    write_run(tmp_path, "rlx2", "Hopper-v4", 1, "dense", {s: s / 100 for s in steps}, {})
    write_run(tmp_path, "dense", "Hopper-v4", 1, None, {s: s / 200 for s in steps}, {})
    report.write_csvs(tmp_path, tmp_path)
    assert report.write_report(tmp_path).startswith("# Results of a sweep (reproduce/sweep.py)\n")
    about = {"title": "RLx2 on Hopper", "ran": "2026-12-01", "machine": "a 2-vCPU VM", "conditions": "One thread each.",
             "commands": {"rlx2": "rlx2_td3.py --sparse-backend kernel --no-cuda", "dense": "rlx2_td3.py --actor-sparsity 0"}}  # fmt: skip
    (tmp_path / "about.json").write_text(json.dumps(about))
    text = report.write_report(tmp_path)
    assert text.startswith("# RLx2 on Hopper (2026-12-01, a 2-vCPU VM)\n\nOne thread each.\n\n| config | command |\n")
    assert "| rlx2 | `rlx2_td3.py --sparse-backend kernel --no-cuda` |" in text
    kernel = "`rlx2` ran on the kernel backend (`--sparse-backend kernel`): the same algorithm as the default masked path"
    assert f"{kernel}, not the same numbers." in text


def test_report_puts_each_envs_remarks_from_about_json_in_that_envs_section(tmp_path):
    """A finding the numbers alone cannot explain (a stalled seed, say) is written by hand in about.json's `remarks`,
    keyed by env id, and the page says it under that env's tables, not under another's; an env id no run has is an
    error, not a remark silently dropped."""
    steps = range(0, 20_001, 5000)
    for env_id in ("Hopper-v4", "Walker2d-v4"):
        write_run(tmp_path, "rlx2", env_id, 1, None, {s: s / 100 for s in steps}, {})
    report.write_csvs(tmp_path, tmp_path)
    remark = "Seed 2 of theirs stalls near 440 from 300k on."
    (tmp_path / "about.json").write_text(json.dumps({"remarks": {"Walker2d-v4": remark}}))
    text = report.write_report(tmp_path)
    hopper, walker = text.split("## Hopper-v4")[1].split("## Walker2d-v4")
    assert remark not in hopper and f"\n{remark}\n" in walker
    (tmp_path / "about.json").write_text(json.dumps({"remarks": {"Ant-v4": remark}}))
    with pytest.raises(SystemExit, match="about.json: remarks for Ant-v4, which has no run here"):
        report.write_report(tmp_path)


def test_report_pairs_each_sparse_configuration_with_its_twin_in_one_panel():
    """curves.png: one axis per sparse configuration and its dense twin, so the two are told apart from other pairs."""
    summary = lambda config, twin=None: SimpleNamespace(config=config, twin=twin)  # noqa: E731
    a, a_dense, b, b_dense, alone = summary("a", "a-dense"), summary("a-dense"), summary("b", "b-dense"), summary("b-dense"), summary("alone", "missing")  # fmt: skip
    assert report.pairs([a, a_dense, b, b_dense, alone]) == [[a, a_dense], [b, b_dense], [alone]]


def test_the_long_results_record_names_the_commands_of_the_preset():
    """about.json's commands are the long-results preset's: the report's table says what ran, backend included."""
    about = json.loads((ROOT / "docs" / "results" / "long-results" / "about.json").read_text())
    assert about["commands"] == dict(config.split("=", 1) for config in sweep.PRESETS["long-results"].configs)
    assert (
        "--sparse-backend kernel" in about["commands"]["rlx2"] and "--sparse-backend kernel" in about["commands"]["rlx2-sac"]
    )
