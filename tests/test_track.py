"""`--track`: the run is also logged to Weights and Biases, here in offline mode (no account, no network; wandb comes
with requirements-dev.txt)."""

import dataclasses
import glob
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from common.resume import resumed_args

ROOT = Path(__file__).resolve().parents[1]
# InvertedPendulum: short episodes under a random policy, so a stop request is honoured within a few steps
RUN = ["--env-id", "InvertedPendulum-v4", "--learning-starts", "100", "--batch-size", "32", "--eval-frequency", "200",
       "--eval-episodes", "1", "--track", "--wandb-project-name", "test"]  # fmt: skip


def start(tmp_path: Path, *args: str) -> subprocess.Popen:
    """`python sparse_td3.py ARGS` in tmp_path, with W&B offline and writing there."""
    wandb_env = {
        "WANDB_MODE": "offline",
        "WANDB_DIR": str(tmp_path),
        "WANDB_SILENT": "true",
        "MUJOCO_GL": "egl",
        "OMP_NUM_THREADS": "1",
    }
    return subprocess.Popen(
        [sys.executable, str(ROOT / "sparse_td3.py"), *args],
        cwd=tmp_path,
        env={**os.environ, **wandb_env},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def offline_runs(tmp_path: Path) -> list[Path]:
    return sorted(Path(p) for p in glob.glob(f"{tmp_path}/wandb/offline-run-*"))


def test_a_tracked_run_stopped_and_resumed_logs_to_one_wandb_run(tmp_path):
    process = start(tmp_path, *RUN, "--total-timesteps", "500")
    for line in process.stdout:  # the first progress report comes from inside the training loop
        if line.startswith("step "):
            process.send_signal(signal.SIGTERM)
            break
    output = process.communicate(timeout=300)[0]
    assert process.returncode == 143, output
    [run_dir] = glob.glob(f"{tmp_path}/runs/*")
    # --resume alone: the run keeps its --track and its W&B project (and records the final policy's video)
    resumed = start(tmp_path, "--resume", os.path.relpath(run_dir, tmp_path), "--capture-video")
    output = resumed.communicate(timeout=300)[0]
    assert resumed.returncode == 0 and "resumed at step" in output, output
    first, second = offline_runs(tmp_path)
    assert first.name.split("-")[-1] == second.name.split("-")[-1], "two W&B runs"
    for run in (first, second):
        # the scalars W&B read from the TensorBoard log as the script wrote it, and the arguments
        data = next(run.glob("run-*.wandb")).read_bytes()
        for tag in (b"eval/episodic_return", b"charts/episodic_return", b"losses/qf1_loss", b"wandb_project_name"):
            assert tag in data, (run.name, tag)
        assert glob.glob(f"{run}/files/**/events.out.tfevents.*", recursive=True), "the TensorBoard log is not saved"
    assert b"sparse/training_FLOPs_ratio" in next(first.glob("run-*.wandb")).read_bytes()  # logged at the start
    assert glob.glob(f"{second}/files/media/videos/*.mp4"), "the video is not logged"


@dataclasses.dataclass
class Args:
    resume: str | None = None
    save_model: bool = False
    capture_video: bool = False
    checkpoint_frequency: int = 100
    track: bool = False
    wandb_project_name: str = "sparse-rl"
    wandb_entity: str | None = None
    seed: int = 1


def test_tracking_flags_on_resume():
    saved = vars(Args(track=True, wandb_project_name="mine", save_model=True, seed=3))
    # kept unless given: --save-model and the tracking flags alike
    args = resumed_args(Args(resume="runs/x"), saved, ["--resume", "runs/x"])
    assert (args.track, args.wandb_project_name, args.save_model, args.seed) == (True, "mine", True, 3)
    other = resumed_args(Args(resume="runs/x", wandb_project_name="other"), saved, ["--wandb-project-name", "other"])
    assert other.wandb_project_name == "other"
    assert not resumed_args(Args(resume="runs/x"), saved, ["--resume", "runs/x", "--no-save-model"]).save_model
    # tracking may start on a resumed run; a state saved before the tracking flags existed still resumes
    untracked = {k: v for k, v in vars(Args(seed=3)).items() if k not in ("track", "wandb_project_name", "wandb_entity")}
    assert resumed_args(Args(resume="runs/x", track=True), untracked, ["--track"]).track
    assert not resumed_args(Args(resume="runs/x"), untracked, []).track
    with pytest.raises(SystemExit, match="another version"):
        resumed_args(Args(resume="runs/x"), {k: v for k, v in untracked.items() if k != "seed"}, [])
    with pytest.raises(SystemExit, match="--seed 4 differs"):
        resumed_args(Args(resume="runs/x", seed=4), saved, ["--seed", "4"])
    # typed is typed: a flag at its default value still has to match the saved one
    with pytest.raises(SystemExit, match="--seed 1 differs from the resumed run's 3"):
        resumed_args(Args(resume="runs/x", seed=1), saved, ["--seed=1"])
    assert resumed_args(Args(resume="runs/x", seed=3), saved, ["--seed", "3"]).seed == 3


@pytest.mark.parametrize("script", ["sparse_td3.py", "sparse_sac.py", "rlx2_td3.py"])
def test_track_with_eval_checkpoint_is_refused(run_script, script):
    with pytest.raises(SystemExit, match="^error: --track logs a training run"):
        run_script(script, "--env-id", "Hopper-v4", "--track", "--eval-checkpoint", "any.pt")
