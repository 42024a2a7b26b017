"""Sweeps: every (configuration, env, seed) run of an experiment, on local worker processes or on Slurm, resumable.

A configuration is `NAME=SCRIPT [ARGS...]`, SCRIPT relative to the repository root; `--twins SPARSE=DENSE` names the
dense twin of a sparse configuration for the report. Each run gets its own directory OUT/{config}/{env}/seed{n}:

- `run.json`: what runs (the configuration, env, seed, dense twin and the script's command line);
- `runs/`: the script's TensorBoard log (the script runs with the run directory as its working directory);
- `stdout_stderr.log`: everything the script printed;
- `done.json`: written only after the script exited with 0 having reached its last step. A sweep skips the runs that
  have it; a run the scripts saved a training state for (`runs/*/state.pt`: stopped by a signal, a time limit or a
  preemption) continues from it with `--resume`, and any other is wiped and rerun. So running the same command again
  resumes an interrupted or partly failed sweep, each run from where it stopped.

    python reproduce/sweep.py --preset first-reproduction --total-timesteps 100000 --workers 2
    python reproduce/sweep.py --config "ds-td3=sparse_td3.py" "td3=sparse_td3.py --sparsity 0" --twins ds-td3=td3 \
        --env-ids Hopper-v4 --seeds 1 2 3 --out results/hopper
    python reproduce/sweep.py --preset first-reproduction --backend slurm --slurm-partition cpu   # one job per run

Local runs go `--workers` at a time, each pinned to one CPU thread; a failed run is reported at the end and the others
go on; the exit status is 1 if any run failed. Ctrl-C, SIGTERM or SIGHUP (the terminal closed) stops the runs in
flight: each saves its state at the end of its current episode, and the next sweep resumes it; a sweep killed without
that chance (SIGKILL) takes its runs down too, each saving as it goes. On Slurm, a job signalled before its time limit
(SIGUSR2) or stopped by Slurm itself (SIGTERM: a preemption, `scontrol requeue`) does the same and is requeued, so a run
longer than one job's limit finishes across several jobs.
"""

import csv
import ctypes
import faulthandler
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import tyro

ROOT = Path(__file__).resolve().parents[1]
SPEC, DONE, LOG = "run.json", "done.json", "stdout_stderr.log"
# The scripts have no thread flag: the environment pins PyTorch (and numpy's BLAS) to one thread per run.
ONE_THREAD = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
# a script stopped by SIGINT, SIGTERM or SIGUSR2 saves its state at the end of its episode and exits 128 + the signal
STOPPED = {128 + signal.SIGINT, 128 + signal.SIGTERM, 128 + signal.SIGUSR2}
PR_SET_PDEATHSIG = 1


@dataclass(frozen=True)
class Preset:
    configs: tuple[str, ...]
    twins: tuple[str, ...]
    env_ids: tuple[str, ...]
    seeds: tuple[int, ...]
    only_on: tuple[str, ...] = ()  # `CONFIG=ENV,ENV`: a configuration that runs on these of `env_ids` only


PRESETS = {
    # DS-TD3 and RLx2 against dense runs of the same scripts (the sweep asks for the budget: --total-timesteps)
    "first-reproduction": Preset(
        configs=(
            "ds-td3=sparse_td3.py",
            "td3=sparse_td3.py --sparsity 0",
            "rlx2=rlx2_td3.py",
            "rlx2-dense=rlx2_td3.py --actor-sparsity 0 --critic-sparsity 0 --topology static --n-step 1 --no-dynamic-buffer",
        ),
        twins=("ds-td3=td3", "rlx2=rlx2-dense"),
        env_ids=("HalfCheetah-v4", "Hopper-v4"),
        seeds=(1, 2, 3),
    ),
    # every mechanism on: RLx2 long enough for its n-step targets (from iteration 300k) and its buffer to act, and
    # DS-SAC against SAC; each configuration carries its own budget (run it without --total-timesteps)
    "long-results": Preset(
        configs=(
            # the kernel backend: x1.07 (HalfCheetah) and x1.95 (Hopper) the steps/s of the masked one at one thread
            "rlx2=rlx2_td3.py --total-timesteps 500000 --sparse-backend kernel --no-cuda",
            "rlx2-dense=rlx2_td3.py --total-timesteps 500000 --actor-sparsity 0 --critic-sparsity 0 --topology static "
            "--n-step 1 --no-dynamic-buffer",
            "ds-sac=sparse_sac.py --total-timesteps 200000",
            "sac=sparse_sac.py --total-timesteps 200000 --sparsity 0",
            "rlx2-sac=rlx2_sac.py --total-timesteps 500000 --sparse-backend kernel --no-cuda",
            "rlx2-sac-dense=rlx2_sac.py --total-timesteps 500000 --actor-sparsity 0 --critic-sparsity 0 --topology static "
            "--n-step 1 --no-dynamic-buffer",
        ),
        twins=("rlx2=rlx2-dense", "ds-sac=sac", "rlx2-sac=rlx2-sac-dense"),
        env_ids=("HalfCheetah-v4", "Hopper-v4"),
        seeds=(1, 2, 3),
        only_on=("rlx2-sac=Hopper-v4", "rlx2-sac-dense=Hopper-v4"),
    ),
    # the authors' released code beside ours (reproduce/released.py; set RLX2_RELEASED_DIR and DS_TD3_RELEASED_DIR to
    # the clones): their RLx2 at our long-results budget, and DS-TD3, ours and theirs, at the paper's 1M steps. rlx2 and
    # rlx2-dense are long-results' own commands: --skip-complete-in a record holding them runs only the rest
    "released": Preset(
        configs=(
            "rlx2-released=reproduce/released.py --algo rlx2-td3 --total-timesteps 500000",
            "rlx2-dense-released=reproduce/released.py --algo rlx2-td3-dense --total-timesteps 500000",
            "ds-td3=sparse_td3.py --total-timesteps 1000000",
            "td3=sparse_td3.py --total-timesteps 1000000 --sparsity 0",
            "ds-td3-released=reproduce/released.py --algo ds-td3 --total-timesteps 1000000",
            "rlx2=rlx2_td3.py --total-timesteps 500000 --sparse-backend kernel --no-cuda",
            "rlx2-dense=rlx2_td3.py --total-timesteps 500000 --actor-sparsity 0 --critic-sparsity 0 --topology static "
            "--n-step 1 --no-dynamic-buffer",
        ),
        twins=("rlx2=rlx2-dense", "rlx2-released=rlx2-dense-released", "ds-td3=td3"),
        env_ids=("HalfCheetah-v4", "Hopper-v4"),
        seeds=(1, 2, 3),
        only_on=("rlx2-dense-released=HalfCheetah-v4",),
    ),
}


@dataclass
class Args:
    preset: str | None = None
    """a named sweep (`first-reproduction`); --config, --twins, --env-ids or --seeds given too replace its own"""
    config: tuple[str, ...] = ()
    """configurations, each `NAME=SCRIPT [ARGS...]` with SCRIPT relative to the repository root"""
    twins: tuple[str, ...] = ()
    """`SPARSE=DENSE`: the dense twin of a sparse configuration (the report's % of dense and steps to reach it)"""
    env_ids: tuple[str, ...] = ()
    """environments; every configuration runs on each"""
    seeds: tuple[int, ...] = ()
    """seeds; every configuration runs with each on each env"""
    total_timesteps: int | None = None
    """if set, `--total-timesteps` of every run (otherwise the scripts' default, the papers' budget)"""
    extra_args: str = ""
    """more arguments for every run, one string with `=` (a value starting with -- needs it): --extra-args="--eval-episodes 5" """
    out: str = "results"
    """the sweep's directory; OUT/{config}/{env}/seed{n} per run"""
    workers: int = os.cpu_count() or 1
    """runs at once: local processes, or with --backend slurm the job array's parallelism"""
    backend: str = "local"
    """'local': worker processes here; 'slurm': one Slurm job per run through submitit; 'submitit-local': the Slurm
    path run here by submitit's local executor (every run at once), to try it before a cluster"""
    slurm_partition: str | None = None
    """the Slurm partition (None: the cluster's default)"""
    slurm_timeout_min: int = 24 * 60
    """time limit of one job in minutes (also submitit-local's); a run past it saves its state and is requeued"""
    slurm_signal_delay_s: int = 120
    """seconds between the time-limit signal and the kill: the run finishes its episode and saves in that time"""
    slurm_mem_gb: int = 8
    """memory of one Slurm job in GB"""
    slurm_max_requeues: int = 100
    """how many times one run's job may reach its time limit and be requeued (preemptions do not count)"""
    progress_interval: float = 60.0
    """seconds between two progress lines (the step each running run has reached); on Slurm also how often the jobs are
    looked at (at least every 30 s)"""
    skip_complete_in: str | None = None
    """a results directory of reproduce/report.py (its runs.csv): the runs it records complete are not run again,
    here a record whose run directories were lost (a new machine); pair with report.py --keep-recorded"""
    dry_run: bool = False
    """list the runs, which would run and which are complete, and exit"""


@dataclass(frozen=True)
class Run:
    config: str
    env_id: str
    seed: int
    argv: tuple[str, ...]  # SCRIPT ARGS..., without the interpreter
    twin: str | None

    @property
    def name(self) -> str:
        return f"{self.config}/{self.env_id.replace('/', '_')}/seed{self.seed}"

    def spec(self) -> dict:
        return {"config": self.config, "env_id": self.env_id, "seed": self.seed, "twin": self.twin, "argv": list(self.argv)}


def parse_pairs(items: tuple[str, ...], what: str) -> dict[str, str]:
    """`NAME=VALUE` strings as a dict; the same name twice must say the same thing (then it counts once)."""
    pairs: dict[str, str] = {}
    for item in items:
        name, sep, value = item.partition("=")
        name, value = name.strip(), value.strip()
        if not sep or not re.fullmatch(r"[A-Za-z0-9_.+-]+", name) or not value:
            raise SystemExit(f"error: {what} {item!r}: expected NAME=VALUE, NAME of letters, digits and _.+-")
        if pairs.get(name, value) != value:
            raise SystemExit(f"error: {what} {name!r} is given twice, as {pairs[name]!r} and {value!r}")
        pairs[name] = value
    return pairs


def plan(args: Args) -> list[Run]:
    """Seeds x env ids x configurations, each run once, in that order: a sweep stopped early has compared every
    configuration on its first seeds rather than run one configuration on all of them."""
    if args.preset is not None and args.preset not in PRESETS:
        raise SystemExit(f"error: unknown preset {args.preset!r}; presets: {', '.join(PRESETS)}")
    preset = PRESETS[args.preset] if args.preset else Preset((), (), (), ())
    configs = parse_pairs(args.config or preset.configs, "configuration")
    twins = parse_pairs(args.twins or (() if args.config else preset.twins), "twin")  # the preset's fit its configs
    env_ids, seeds = args.env_ids or preset.env_ids, args.seeds or preset.seeds
    only_on = parse_pairs(() if args.config else preset.only_on, "only-on")  # the preset's restrictions fit its configs
    if not configs or not env_ids or not seeds:
        raise SystemExit("error: give --preset, or --config, --env-ids and --seeds")
    for sparse, dense in twins.items():
        if sparse not in configs or dense not in configs:
            raise SystemExit(f"error: twin {sparse}={dense}: both must be configurations of this sweep")
    common = ["--total-timesteps", str(args.total_timesteps)] if args.total_timesteps is not None else []
    common += shlex.split(args.extra_args)
    commands = {config: shlex.split(command) for config, command in configs.items()}
    for config, (script, *_) in commands.items():
        if not (ROOT / script).is_file():
            raise SystemExit(f"error: configuration {config}: no script {ROOT / script}")
    runs = []
    for seed in dict.fromkeys(seeds):
        for env_id in dict.fromkeys(env_ids):
            for config, (script, *script_args) in commands.items():
                if config in only_on and env_id not in only_on[config].split(","):
                    continue
                argv = (script, *script_args, "--env-id", env_id, "--seed", str(seed), *common)
                runs.append(Run(config, env_id, seed, argv, twins.get(config)))
    return runs


def total_timesteps(argv: list[str]) -> int | None:
    """A command's --total-timesteps (the last one wins, as in the scripts' parser); None: the script's default."""
    total = None
    for arg, following in zip(argv, [*argv[1:], ""]):
        name, _, value = arg.replace("_", "-").partition("=")
        if name == "--total-timesteps":
            total = int(value or following)
    return total


def recorded_complete(record: Path, runs: list[Run]) -> list[Run]:
    """The runs of this sweep that a record's runs.csv holds complete; a record of another budget is an error."""
    if not (record / "runs.csv").is_file():
        raise SystemExit(f"error: --skip-complete-in {record}: no runs.csv there")
    with open(record / "runs.csv", newline="") as file:
        complete = {(r["config"], r["env_id"], int(r["seed"])): r for r in csv.DictReader(file) if r["complete"] == "True"}
    recorded = []
    for run in runs:
        if (row := complete.get((run.config, run.env_id, run.seed))) is not None:
            asked, ran = total_timesteps(list(run.argv)), int(row["total_timesteps"]) if row["total_timesteps"] else None
            if asked != ran:
                raise SystemExit(f"error: {run.name}: the record ran {ran} steps, this sweep asks for {asked}")
            recorded.append(run)
    return recorded


def die_with_parent(sig: int, ignore_usr2: bool = False):
    """For Popen's preexec_fn: the child gets `sig` when the thread that started it ends, which waits on it until it
    exits: so when this process ends, by SIGKILL too (Linux's PR_SET_PDEATHSIG). If it has ended already, no exec.
    `ignore_usr2`: the child starts with SIGUSR2 ignored, so a SIGUSR2 that comes before the script catches it does not
    kill it (the job repeats its own until the script exits)."""
    parent = os.getpid()
    libc = ctypes.CDLL(None, use_errno=True) if sys.platform == "linux" else None  # looked up before the fork
    if libc is not None:
        libc.signal.argtypes, libc.signal.restype = [ctypes.c_int, ctypes.c_void_p], ctypes.c_void_p

    def set_up() -> None:  # in the child, between fork and exec: no import, no lookup, no lock
        if libc is not None:
            libc.prctl(PR_SET_PDEATHSIG, sig)
            if ignore_usr2:
                libc.signal(signal.SIGUSR2, 1)  # SIG_IGN, which exec keeps
        if os.getppid() != parent:
            os._exit(1)

    return set_up


def run_one(run_dir: str, running: set | None = None, job: bool = False) -> int:
    """Run the command of one run directory's run.json there, and write done.json if it exits with 0 having reached its
    last step; returns the exit code. The same function runs in a local worker and in a Slurm job. A saved training
    state is resumed (`--resume`); anything else an earlier attempt left in the directory is wiped first. A local run
    has its own session, so a Ctrl-C meant for the sweep does not reach it; the sweep sends it SIGTERM instead, and it
    saves its state at the end of its episode. In a Slurm job (`job`) the script stays in the job's process group, so
    Slurm's own signals reach it whatever the cluster tracks processes with, and the job stops it with SIGUSR2, which
    the scripts never take as a second, stop-now signal. The script gets that signal too if this process dies without
    stopping it (killed, or a closed terminal's SIGHUP where nothing handles it). `running` collects the live process."""
    run_dir = Path(run_dir)
    if (run_dir / DONE).exists():  # a job requeued as its run completed (Slurm's signal came as the script ended)
        return 0
    spec = json.loads((run_dir / SPEC).read_text())
    if any(run_dir.glob("runs/*/complete")):  # the script wrote its outputs and marked its run complete, then was killed
        (run_dir / DONE).write_text(json.dumps({"finished": time.strftime("%Y-%m-%d %H:%M:%S")}) + "\n")
        return 0
    script, *script_args = spec["argv"]
    states = sorted(run_dir.glob("runs/*/state.pt"))
    if len(states) == 1:
        script_args = ["--resume", str(states[0].parent.relative_to(run_dir))]
    else:
        for path in run_dir.iterdir():
            if path.is_dir():
                shutil.rmtree(path)
            elif path.name != SPEC:
                path.unlink()
    start = time.time()
    with open(run_dir / LOG, "a" if len(states) == 1 else "w") as log:
        process = subprocess.Popen(
            [sys.executable, str(ROOT / script), *script_args],
            cwd=run_dir,
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**os.environ, **ONE_THREAD},
            start_new_session=not job,
            preexec_fn=die_with_parent(signal.SIGUSR2 if job else signal.SIGTERM, ignore_usr2=job),
        )
        if running is not None:
            running.add(process)
        try:  # `running` holds the process until its end is recorded (what a job's checkpoint reads)
            returncode = record(run_dir, process.wait(), start)
        except BaseException:  # this process interrupted (Ctrl-C, or submitit cancelling its job): stop the script too
            stop(process, signal.SIGUSR2 if job else signal.SIGTERM)
            raise
        finally:
            if running is not None:
                running.discard(process)
    return returncode


def record(run_dir: Path, returncode: int, start: float) -> int:
    """Write done.json if the script exited with 0 having reached its last step; returns the exit code, 1 for an exit
    0 short of the last step (not complete, whatever the exit status says)."""
    step, _, total = last_line(run_dir / LOG, "step ").removeprefix("step ").partition(" ")[0].partition("/")
    if returncode == 0 and step and step == total:
        done = {"seconds": round(time.time() - start, 1), "finished": time.strftime("%Y-%m-%d %H:%M:%S")}
        (run_dir / DONE).write_text(json.dumps(done) + "\n")
    elif returncode == 0:
        returncode = 1
    return returncode


def stop(process: subprocess.Popen, sig: int = signal.SIGTERM, timeout_s: float = 600) -> None:
    """`sig`, then wait while the script finishes its episode and saves its state; kill it if it takes too long.
    SIGUSR2 is sent again every second: the scripts take a repeat as the same request, and one sent while the script
    was starting is not lost. Waits with os.waitpid, not Popen.wait: this also runs in a signal handler that
    interrupted a Popen.wait, whose lock it would wait on forever."""
    if process.returncode is not None:
        return
    process.send_signal(sig)
    deadline, sent = time.time() + timeout_s, time.time()
    while True:
        try:
            pid, status = os.waitpid(process.pid, os.WNOHANG)
        except ChildProcessError:  # reaped already
            return
        if pid:
            process.returncode = os.waitstatus_to_exitcode(status)
            return
        if time.time() > deadline:
            process.kill()
        elif sig == signal.SIGUSR2 and time.time() - sent >= 1:
            process.send_signal(sig)
            sent = time.time()
        time.sleep(0.1)


class RunInJob:
    """`run_one` as a submitit job that survives its time limit and preemption. Before the time limit Slurm sends
    SIGUSR2 (`--slurm-signal-delay-s` before the kill) to the job and the script; submitit calls `checkpoint`, which
    stops the script (it saves its state) and returns the same job, which submitit requeues (`scontrol requeue`). At a
    preemption or a `scontrol requeue`, Slurm sends SIGTERM to both; submitit ignores it, the script saves its state and
    exits 143, and the job ends without a result (`requeue`), so the sweep waits for the requeued job. Either way the
    requeued job resumes the run from its state."""

    def __init__(self):
        self.running: set = set()

    def __call__(self, run_dir: str) -> int:
        self.start = time.time()
        returncode = run_one(run_dir, self.running, job=True)
        if returncode in STOPPED and len(list(Path(run_dir).glob("runs/*/state.pt"))) == 1:
            self.requeue(returncode)
        return returncode

    def checkpoint(self, run_dir: str):
        import submitit

        for process in list(self.running):
            stop(process, signal.SIGUSR2)
            if process.returncode == 0:  # the run completed as the signal came: the requeued job finds it done
                record(Path(run_dir), 0, self.start)
        return submitit.helpers.DelayedSubmission(RunInJob(), run_dir)

    @staticmethod
    def requeue(returncode: int) -> None:
        """The script saved its state and exited on a signal that did not come through `checkpoint`: Slurm's SIGTERM
        (a preemption, `scontrol requeue`, `scancel`) or a signal sent by hand. That is no result: the job ends
        without one, which the sweep reads as 'not done yet' while the job is requeued and as a failure otherwise (a
        rerun resumes the run). Slurm requeues the job itself after `scontrol requeue` and a preemption in REQUEUE
        mode; the job asks for it after a preemption Slurm would not requeue (CANCEL mode); a `scancel`, with or without
        a signal, is left to end the job."""
        import submitit

        signal.signal(signal.SIGUSR2, signal.SIG_IGN)  # submitit's own handler would requeue it again
        name = signal.Signals(returncode - 128).name
        if os.environ.get("SUBMITIT_EXECUTOR") != "slurm":
            print(f"run stopped by {name}, its state saved; the job ends without a result", flush=True)
            raise SystemExit(returncode)
        job_id = submitit.JobEnvironment().job_id
        shown = subprocess.run(["scontrol", "-o", "show", "job", job_id], capture_output=True, text=True, timeout=60)
        restarts = re.search(r"\bRestarts=(\d+)", shown.stdout)
        if restarts and int(restarts[1]) > int(os.environ.get("SLURM_RESTART_COUNT", "0")):
            said = "Slurm requeues the job"
        elif re.search(r"\bPreemptTime=(?!None)", shown.stdout):
            done = subprocess.run(["scontrol", "requeue", job_id], capture_output=True, text=True, timeout=60)
            said = "preempted: " + ((done.stdout + done.stderr).strip().replace("\n", " ") or f"requeued {job_id}")
        else:
            said = "not requeued (cancelled, or a signal sent by hand): rerunning the sweep resumes it"
        print(f"run stopped by {name}, its state saved; {said}", flush=True)
        raise SystemExit(returncode)


def last_line(path: Path, pattern: str = "") -> str:
    """The last line of a log that starts with `pattern` ('' if none)."""
    if not path.exists():
        return ""
    lines = [line for line in path.read_text(errors="replace").splitlines() if line.startswith(pattern) and line.strip()]
    return lines[-1] if lines else ""


def modified(path: Path) -> int | None:
    """When a file was last written (ns), None if it does not exist (a worker may be wiping it as we look)."""
    try:
        return path.stat().st_mtime_ns
    except FileNotFoundError:
        return None


def watch(jobs: list, run_dirs: list[Path], out: Path, poll_s: float, progress_interval: float) -> dict[Path, str]:
    """Wait for every job (a concurrent.futures.Future or a submitit Job: both have done() and result()), printing a
    line as each ends and, every `progress_interval` seconds, the step each running run has reached (its log's last
    `step N/M` line). A run counts as running once its log is written to during this sweep: a log an earlier sweep
    left (a run stopped there, to resume here) counts only when a worker picks the run up. Returns each run
    directory's outcome: 'ok', or why it failed."""
    outcomes: dict[Path, str] = {}
    pending, last_progress, start = list(zip(jobs, run_dirs)), time.time(), time.time()
    earlier_logs = {run_dir: modified(run_dir / LOG) for run_dir in run_dirs}
    while pending:
        for job, run_dir in [(job, run_dir) for job, run_dir in pending if job.done()]:
            pending.remove((job, run_dir))
            try:
                returncode = job.result()
                outcomes[run_dir] = "ok" if returncode == 0 else f"exit {returncode}: {last_line(run_dir / LOG)}"
            except Exception as e:  # a job the cluster killed (time limit, node failure) or that could not start
                outcomes[run_dir] = f"{type(e).__name__}: {str(e).strip().splitlines()[-1] if str(e).strip() else ''}"
            failed = sum(outcome != "ok" for outcome in outcomes.values())
            status = "done" if outcomes[run_dir] == "ok" else f"FAILED ({outcomes[run_dir]})"
            print(f"[{len(outcomes)}/{len(jobs)}, {failed} failed] {run_dir.relative_to(out)} {status}", flush=True)
        if pending and time.time() - last_progress >= progress_interval:
            last_progress = time.time()
            started = [run_dir for _, run_dir in pending if modified(run_dir / LOG) not in (None, earlier_logs[run_dir])]
            steps = [last_line(run_dir / LOG, "step ").removeprefix("step ").split(" ")[0] for run_dir in started]
            running = ", ".join(f"{run_dir.relative_to(out)} {step or 'starting'}" for run_dir, step in zip(started, steps))
            minutes = (time.time() - start) / 60
            print(f"[{minutes:.0f} min] {len(started)} running, {len(pending) - len(started)} queued: {running}", flush=True)
        if pending:
            time.sleep(poll_s)
    return outcomes


def run_local(run_dirs: list[Path], out: Path, workers: int, progress_interval: float) -> dict[Path, str]:
    running: set[subprocess.Popen] = set()
    pool = ThreadPoolExecutor(max_workers=workers)  # threads that each wait on one script process
    jobs = []
    try:
        jobs = [pool.submit(run_one, str(run_dir), running) for run_dir in run_dirs]
        return watch(jobs, run_dirs, out, poll_s=0.5, progress_interval=progress_interval)
    except KeyboardInterrupt:
        pool.shutdown(wait=False, cancel_futures=True)
        stopped: set[subprocess.Popen] = set()
        while not all(job.done() for job in jobs):  # also catches a process started while we were stopping the others
            for process in running - stopped:  # once each: a second signal would make it exit without saving
                process.terminate()  # it saves its state at the end of its episode, then exits
                stopped.add(process)
            time.sleep(0.1)
        raise
    finally:
        pool.shutdown(wait=True)


def run_submitit(run_dirs: list[Path], out: Path, args: Args, cluster: str) -> dict[Path, str]:
    """One job per run, as a job array; the job runs `run_one` on the run directory (a shared filesystem on Slurm)."""
    import submitit

    folder = out / "_submitit" / "%j"
    if cluster == "slurm":
        executor = submitit.AutoExecutor(folder=folder, cluster=cluster, slurm_max_num_timeout=args.slurm_max_requeues)
        executor.update_parameters(
            name="sweep",
            timeout_min=args.slurm_timeout_min,
            cpus_per_task=1,
            mem_gb=args.slurm_mem_gb,
            slurm_partition=args.slurm_partition,
            slurm_array_parallelism=args.workers,
            slurm_signal_delay_s=args.slurm_signal_delay_s,
        )
    else:  # submitit's own local executor: the same jobs, time limit and signal, here
        executor = submitit.LocalExecutor(folder=folder, max_num_timeout=args.slurm_max_requeues)
        executor.update_parameters(timeout_min=args.slurm_timeout_min, signal_delay_s=args.slurm_signal_delay_s)
    jobs = executor.map_array(RunInJob(), [str(run_dir) for run_dir in run_dirs])
    ids = ", ".join(job.job_id for job in jobs[:3]) + (", ..." if len(jobs) > 3 else "")
    print(f"submitted {len(jobs)} jobs ({cluster}: {ids}); submitit's own logs in {out / '_submitit'}", flush=True)
    if cluster == "slurm":
        print("Ctrl-C stops watching only; the jobs go on (scancel them to stop them)", flush=True)
    poll_s = 1 if cluster == "local" else min(30, args.progress_interval)
    return watch(jobs, run_dirs, out, poll_s=poll_s, progress_interval=args.progress_interval)


def main(argv: list[str] | None = None) -> int:
    args = tyro.cli(Args, args=argv, description=__doc__)
    if args.backend not in ("local", "slurm", "submitit-local"):
        raise SystemExit(f"error: --backend must be 'local', 'slurm' or 'submitit-local', got {args.backend!r}")
    if not 0 < args.slurm_signal_delay_s < 60 * args.slurm_timeout_min:
        raise SystemExit("error: --slurm-signal-delay-s must be positive and shorter than --slurm-timeout-min")
    if args.workers < 1:
        raise SystemExit(f"error: --workers must be positive, got {args.workers}")
    runs, out = plan(args), Path(args.out).resolve()
    recorded = recorded_complete(Path(args.skip_complete_in), runs) if args.skip_complete_in else []
    todo, complete, conflicts = [], [], []
    for run in runs:
        run_dir = out / run.name
        if run in recorded:
            continue
        if (run_dir / DONE).exists():
            spec = json.loads((run_dir / SPEC).read_text())
            if spec["argv"] != list(run.argv):
                conflicts.append(f"  {run.name}: ran {shlex.join(spec['argv'])}\n    now {shlex.join(run.argv)}")
            elif spec != run.spec():  # only the dense twin changed: nothing to rerun
                (run_dir / SPEC).write_text(json.dumps(run.spec(), indent=2) + "\n")
            complete.append(run)
        else:
            todo.append(run)
    if conflicts:
        raise SystemExit(
            "error: complete runs in this directory ran another command; use another --out or delete them:\n"
            + "\n".join(conflicts)
        )
    in_record = f"{len(recorded)} complete in the record, " if args.skip_complete_in else ""
    print(f"{len(runs)} runs in {out}: {len(complete)} complete, {in_record}{len(todo)} to run ({args.backend})", flush=True)
    if args.dry_run:
        for run in runs:
            state = "complete" if run in complete else "recorded" if run in recorded else "to run  "
            print(f"  {state} {run.name}: {shlex.join(run.argv)}")
        return 0
    for run in todo:
        (out / run.name).mkdir(parents=True, exist_ok=True)
        (out / run.name / SPEC).write_text(json.dumps(run.spec(), indent=2) + "\n")
    run_dirs = [out / run.name for run in todo]
    try:
        if args.backend == "local":
            outcomes = run_local(run_dirs, out, args.workers, args.progress_interval)
        else:
            outcomes = run_submitit(run_dirs, out, args, "slurm" if args.backend == "slurm" else "local")
    except KeyboardInterrupt:
        if args.backend == "slurm":
            print("\nstopped watching; the Slurm jobs go on. Rerun this command only once none is left (squeue).")
        else:
            print("\ninterrupted: the runs in flight were stopped; the same command resumes the sweep")
        return 130
    failed = {run_dir: outcome for run_dir, outcome in outcomes.items() if outcome != "ok"}
    print(f"\n{len(outcomes) - len(failed)} runs done, {len(complete)} were already complete, {len(failed)} failed")
    for run_dir, outcome in failed.items():
        print(f"  FAILED {run_dir.relative_to(out)}: {outcome}\n    log: {run_dir / LOG}")
    if failed:
        print("the same command reruns the failed runs and skips the complete ones")
    return 1 if failed else 0


if __name__ == "__main__":
    # Ctrl-C, a kill and a closed terminal stop the runs in flight; SIGINT explicitly, as a shell starts background jobs
    # with it ignored; SIGHUP unless ignored (nohup: the sweep is meant to outlive its terminal)
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        if sig != signal.SIGHUP or signal.getsignal(sig) != signal.SIG_IGN:
            signal.signal(sig, signal.default_int_handler)
    faulthandler.register(signal.SIGUSR1, all_threads=True)  # `kill -USR1 PID` prints where each thread is
    raise SystemExit(main())
