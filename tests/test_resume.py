"""Stop a run with a signal anywhere and resume it: it ends bit for bit where the same run never stopped would. And
what surrounds that: every flag kept on resume, one process per run directory, a signal at the end of a run, damaged
files, a run that diverges."""

import glob
import os
import re
import signal
import struct
import subprocess
import sys
import zipfile

import pytest
import torch
from conftest import logged_scalars, on_env_steps, signal_at

from common.resume import load_file, read_digests, save_file

HOPPER = ["--env-id", "Hopper-v4", "--total-timesteps", "1500", "--learning-starts", "500", "--batch-size", "32",
          "--topology-interval", "100", "--eval-frequency", "250", "--eval-episodes", "2", "--checkpoint-frequency", "400"]  # fmt: skip
# n-step switch at iteration 300 (step 800), buffer checks at 500, 1000, 1500 with shrinks from 1000 on
RLX2 = ["--delay-nstep", "300", "--buffer-size", "1200", "--buffer-min-size", "700", "--buffer-check-interval", "500",
        "--policy-distance-threshold", "0"]  # fmt: skip
SCRIPTS = {
    "sparse_td3.py": ["--topology-end", "900"],
    "sparse_sac.py": ["--topology-end", "900", "--target-network-frequency", "50", "--autotune"],
    "rlx2_td3.py": RLX2,
    "rlx2_sac.py": RLX2,
}


def assert_same_run(a: dict, b: dict) -> None:
    for name in ("actor", "qf1", "qf2"):
        for (key, x), y in zip(a[name].state_dict().items(), b[name].state_dict().values(), strict=True):
            assert torch.equal(x, y), f"{name}.{key}"
    for name in ("actor_sparse", "critic_sparse"):
        assert all(torch.equal(x, y) for x, y in zip(a[name].masks, b[name].masks, strict=True)), name
        assert all(torch.equal(x, y) for x, y in zip(a[name].ever_active, b[name].ever_active, strict=True)), name
    for name in ("actor_optimizer", "q_optimizer"):
        for x, y in zip(a[name].state.values(), b[name].state.values(), strict=True):
            assert all(torch.equal(x[k], y[k]) for k in ("exp_avg", "exp_avg_sq", "step")), name
    rb_a, rb_b = a["rb"], b["rb"]
    assert rb_a.size == rb_b.size
    for field in rb_a.FIELDS:
        assert torch.equal(getattr(rb_a, field), getattr(rb_b, field)), field


@pytest.mark.parametrize("script", SCRIPTS)
def test_stop_mid_episode_after_a_topology_update_and_resume(run_script, monkeypatch, script):
    args = [*HOPPER, *SCRIPTS[script]]
    full = run_script(script, *args, "--exp-name", "full")
    # iteration 101, just after the topology update at 100, mid-episode: the run goes on to the episode's end
    with monkeypatch.context() as patch:
        signal_at(patch, 601)
        with pytest.raises(SystemExit) as stopped:
            run_script(script, *args, "--exp-name", "stopped")
    assert stopped.value.code == 143
    run_dir = glob.glob("runs/*__stopped__*")[0]
    saved = torch.load(f"{run_dir}/state.pt", weights_only=True)["global_step"]
    assert 601 < saved < 1500 and saved % 100 != 0  # an episode end, not a step the periodic save would pick
    resumed = run_script(script, "--resume", run_dir)
    assert resumed["global_step"] == 1500 and not os.path.exists(f"{run_dir}/state.pt")  # complete: state removed
    assert_same_run(full, resumed)
    full_log = logged_scalars(glob.glob("runs/*__full__*")[0], steps=True)
    resumed_log = logged_scalars(run_dir, steps=True)
    assert resumed_log["eval/episodic_return"] == full_log["eval/episodic_return"]  # no duplicates, no gaps
    assert [s for s, _ in resumed_log["eval/episodic_return"]] == list(range(0, 1501, 250))
    if script.startswith("rlx2"):
        assert resumed["n_step"] == 3 and resumed["rb"].capacity < 1200  # crossed the n-step switch and a shrink


def test_a_second_signal_exits_at_once_keeping_the_last_state(run_script, monkeypatch):
    with monkeypatch.context() as patch:
        signal_at(patch, 700, signals=2)
        with pytest.raises(SystemExit) as stopped:
            run_script("sparse_td3.py", *HOPPER, *SCRIPTS["sparse_td3.py"])
    assert stopped.value.code == 143
    state = torch.load(glob.glob("runs/*/state.pt")[0], weights_only=True)
    assert 400 <= state["global_step"] < 700  # the periodic save before the signals; nothing was written after them


BAD_FILES = {
    "empty": b"",
    "truncated": None,  # the first half of a real checkpoint
    "not a checkpoint": b"hello, world",
}


@pytest.mark.parametrize("script", SCRIPTS)
def test_bad_checkpoints_and_states_get_one_line(run_script, monkeypatch, tmp_path, script):
    """Every file a user may hand back: missing, empty, truncated, not a checkpoint, another script's, a directory
    without a state, a state of another version; and a flag that would change a resumed run."""
    other = "sparse_sac.py" if script != "sparse_sac.py" else "sparse_td3.py"
    base = [*HOPPER, *SCRIPTS[script], "--total-timesteps", "700", "--save-model"]
    with monkeypatch.context() as patch:
        signal_at(patch, 650)
        with pytest.raises(SystemExit):
            run_script(script, *base, "--exp-name", "mine")
    mine = glob.glob("runs/*__mine__*")[0]
    other_args = [*HOPPER, *SCRIPTS[other], "--total-timesteps", "600", "--save-model", "--exp-name", "theirs"]
    run_script(other, *other_args)
    theirs = glob.glob("runs/*__theirs__*")[0]
    real = open(glob.glob(f"{mine}/*.pt")[0], "rb").read()
    cases = {}
    for name, content in BAD_FILES.items():
        path = tmp_path / f"{name}.pt"
        path.write_bytes(real[: len(real) // 2] if content is None else content)
        cases[name] = ["--eval-checkpoint", str(path)]
    cases["missing"] = ["--eval-checkpoint", "no/such.pt"]
    cases["another script's checkpoint"] = ["--eval-checkpoint", glob.glob(f"{theirs}/*.pt")[0]]
    cases["no state"] = ["--resume", theirs]  # complete: its state was removed
    state = torch.load(f"{mine}/state.pt", weights_only=True)
    old = tmp_path / "old"
    old.mkdir()
    torch.save({**state, "version": 0}, old / "state.pt")
    cases["another version"] = ["--resume", str(old)]
    cases["a flag that changes the run"] = ["--resume", mine, "--total-timesteps", "5000"]
    for name, argv in cases.items():
        with pytest.raises(SystemExit) as exit_info:
            run_script(script, "--env-id", "Hopper-v4", *argv)
        message = str(exit_info.value)
        assert message.startswith("error: ") and "\n" not in message, (name, message)
    with pytest.raises(SystemExit, match="written by"):
        run_script(other, "--resume", mine)
    # what may change: whether the policy is saved, the state's frequency
    resumed = run_script(script, "--resume", mine, "--checkpoint-frequency", "7")
    assert resumed["global_step"] == 700 and resumed["args"].checkpoint_frequency == 7


# Pendulum: 200-step episodes, so a signal at step 250 saves the state at 400
PENDULUM = ["--env-id", "Pendulum-v1", "--total-timesteps", "800", "--learning-starts", "200", "--batch-size", "32",
            "--topology-interval", "100", "--eval-frequency", "400", "--eval-episodes", "1"]  # fmt: skip
SPARSITY = {"rlx2_td3.py": ["--actor-sparsity", "0.9", "--critic-sparsity", "0.9"]}  # no published one for Pendulum
SPARSITY["rlx2_sac.py"] = SPARSITY["rlx2_td3.py"]


def stopped_run(run_script, monkeypatch, script: str, *args: str, step: int = 250) -> str:
    """A run of `script` on Pendulum stopped by SIGTERM at `step`: its directory."""
    with monkeypatch.context() as patch:
        signal_at(patch, step)
        with pytest.raises(SystemExit) as stopped:
            run_script(script, *PENDULUM, *SPARSITY.get(script, []), *args)
    assert stopped.value.code == 143
    return glob.glob("runs/*")[0]


@pytest.mark.parametrize("script", SCRIPTS)
def test_resume_alone_keeps_every_flag_and_a_typed_default_is_not_ignored(run_script, monkeypatch, script):
    run_dir = stopped_run(run_script, monkeypatch, script, "--save-model", "--checkpoint-frequency", "10000")
    assert torch.load(f"{run_dir}/{script[:-3]}.pt", weights_only=True)["global_step"] == 400  # saved on the stop
    # 1_000_000 is --total-timesteps' default: typed, it must match the run's 800, not pass unseen
    with pytest.raises(SystemExit, match="^error: --total-timesteps 1000000 differs from the resumed run's 800"):
        run_script(script, "--resume", run_dir, "--total-timesteps", "1000000")
    resumed = run_script(script, "--resume", run_dir)
    assert resumed["args"].save_model and resumed["args"].checkpoint_frequency == 10000
    assert torch.load(f"{run_dir}/{script[:-3]}.pt", weights_only=True)["global_step"] == 800  # the final policy


# another process holding a run directory's lock as a script does (common/resume.py lock_run_dir), without torch's import
HOLD_LOCK = """import fcntl, os, sys, time
lock = open(sys.argv[1], "w")
fcntl.flock(lock, fcntl.LOCK_EX)
lock.write(f"{os.getpid()}\\n")
lock.flush()
print("held", flush=True)
time.sleep(60)"""


@pytest.mark.parametrize("script", SCRIPTS)
def test_one_run_directory_one_process(run_script, monkeypatch, script):
    run_dir = stopped_run(run_script, monkeypatch, script)
    holder = subprocess.Popen([sys.executable, "-c", HOLD_LOCK, f"{run_dir}/.lock"], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline() == "held\n"
        with pytest.raises(SystemExit, match=rf"^error: {run_dir} is in use by another process \(pid {holder.pid}\)"):
            run_script(script, "--resume", run_dir)
        assert torch.load(f"{run_dir}/state.pt", weights_only=True)["global_step"] == 400  # untouched
    finally:
        holder.kill()
        holder.wait()
    assert run_script(script, "--resume", run_dir)["global_step"] == 800  # a dead holder holds nothing


def signal_in_final_checkpoint(monkeypatch, total: int, signals: int) -> None:
    """SIGTERM `signals` times as the run starts writing its final checkpoint (the second of step `total`: the first is
    the last evaluation's, inside the loop). The script's stop handler must be there to catch it."""
    save, writes = torch.save, []

    def save_and_signal(obj, f, *args, **kwargs):
        if isinstance(obj, dict) and "actor" in obj and obj["global_step"] == total:
            writes.append(f)
            if len(writes) == 2:
                assert signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL, "a signal here would kill the run"
                for _ in range(signals):
                    os.kill(os.getpid(), signal.SIGTERM)
        return save(obj, f, *args, **kwargs)

    monkeypatch.setattr(torch, "save", save_and_signal)


@pytest.mark.parametrize("script", SCRIPTS)
def test_a_signal_while_the_final_outputs_are_written_loses_nothing(run_script, monkeypatch, script):
    args = [*PENDULUM, *SPARSITY.get(script, []), "--save-model", "--checkpoint-frequency", "500"]  # a state at 600
    checkpoint = lambda run_dir: torch.load(glob.glob(f"{run_dir}/[ot]*.pt")[0], weights_only=True)["global_step"]  # noqa: E731
    # one signal: the final checkpoint is written, the run completes (exit 0), its state goes, the marker stays
    with monkeypatch.context() as patch:
        signal_in_final_checkpoint(patch, 800, signals=1)
        run_script(script, *args, "--exp-name", "one")
    [run_dir] = glob.glob("runs/*__one__*")
    assert checkpoint(run_dir) == 800 and not os.path.exists(f"{run_dir}/state.pt")
    assert open(f"{run_dir}/complete").read() == "800\n"
    with pytest.raises(SystemExit, match=r"^error: .* is complete \(step 800\): nothing to resume$"):
        run_script(script, "--resume", run_dir)
    # two signals: the process exits at once; the state stays (a sweep resumes it), and a resumed run completes
    with monkeypatch.context() as patch:
        signal_in_final_checkpoint(patch, 800, signals=2)
        with pytest.raises(SystemExit) as stopped:
            run_script(script, *args, "--exp-name", "two")
    [run_dir] = glob.glob("runs/*__two__*")
    assert stopped.value.code == 143 and not os.path.exists(f"{run_dir}/complete")
    assert torch.load(f"{run_dir}/state.pt", weights_only=True)["global_step"] == 600
    assert run_script(script, "--resume", run_dir)["global_step"] == 800
    assert checkpoint(run_dir) == 800 and os.path.exists(f"{run_dir}/complete") and not os.path.exists(f"{run_dir}/state.pt")


def flip_a_byte_inside_the_largest_tensor(path: str) -> None:
    """A flipped bit in a tensor's data: the zip's own checksums are not read by a memory-mapped load."""
    with zipfile.ZipFile(path) as archive:
        largest = max(archive.infolist(), key=lambda info: info.file_size)
    with open(path, "r+b") as f:
        f.seek(largest.header_offset + 26)  # the local header: name and extra field lengths, then the data
        name_length, extra_length = struct.unpack("<HH", f.read(4))
        f.seek(largest.header_offset + 30 + name_length + extra_length + largest.file_size // 2)
        byte = f.read(1)[0]
        f.seek(-1, os.SEEK_CUR)
        f.write(bytes([byte ^ 0x10]))


@pytest.mark.parametrize("script", SCRIPTS)
def test_a_damaged_state_or_checkpoint_is_refused(run_script, monkeypatch, script):
    run_dir = stopped_run(run_script, monkeypatch, script, "--save-model")
    checkpoint = f"{run_dir}/{script[:-3]}.pt"
    for path, argv in ((checkpoint, ["--eval-checkpoint", checkpoint]), (f"{run_dir}/state.pt", ["--resume", run_dir])):
        flip_a_byte_inside_the_largest_tensor(path)
        with pytest.raises(SystemExit, match=rf"^error: {path} is damaged: its sha256 is not the one written beside it"):
            run_script(script, "--env-id", "Pendulum-v1", *argv)


def test_a_kill_between_a_file_and_its_digest_leaves_a_pair_that_loads(tmp_path, monkeypatch):
    path = str(tmp_path / "state.pt")
    save_file(path, {"args": {}, "step": 1})
    replace = os.replace

    def killed_before_the_rename(source, target):  # kill -9 after the digest file listed both digests
        if target == path:
            raise InterruptedError
        replace(source, target)

    with monkeypatch.context() as patch:
        patch.setattr(os, "replace", killed_before_the_rename)
        with pytest.raises(InterruptedError):
            save_file(path, {"args": {}, "step": 2})
    assert load_file(path, "any", "checkpoint")["step"] == 1
    save_file(path, {"args": {}, "step": 3})
    assert load_file(path, "any", "checkpoint")["step"] == 3 and len(read_digests(path)) == 1


def nan_rewards_from(monkeypatch, step: int) -> None:
    """Every env made from now on returns a nan reward from its `step`-th step on (a broken env, or a diverging run)."""

    def step_with_nan(n, env_step, action):
        obs, reward, terminated, truncated, info = env_step(action)
        return obs, float("nan") if n >= step else reward, terminated, truncated, info

    on_env_steps(monkeypatch, step_with_nan)


@pytest.mark.parametrize("script", SCRIPTS)
def test_a_loss_gone_nan_stops_the_run_keeping_the_last_good_state(run_script, monkeypatch, script):
    with monkeypatch.context() as patch:
        nan_rewards_from(patch, 450)
        with pytest.raises(SystemExit) as stopped:
            run_script(script, *PENDULUM, *SPARSITY.get(script, []), "--checkpoint-frequency", "300", "--save-model")
    [run_dir] = glob.glob("runs/*")
    # found at the first update whose batch holds a nan reward, soon after step 450
    step = re.fullmatch(rf"error: training diverged \(nan or inf\) by step (\d+): stopped; the state saved before stays in "
                        rf"{run_dir}/state.pt", str(stopped.value))  # fmt: skip
    assert step and 450 <= int(step[1]) < 500, str(stopped.value)
    state = torch.load(f"{run_dir}/state.pt", weights_only=True)
    assert state["global_step"] == 400 and all(w.isfinite().all() for w in state["networks"]["actor"].values())
    assert torch.load(f"{run_dir}/{script[:-3]}.pt", weights_only=True)["global_step"] == 400  # the last evaluation's
    assert not os.path.exists(f"{run_dir}/complete")
