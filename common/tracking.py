"""Weights and Biases (`--track`), as CleanRL sets it up, and what a resumed run needs: its W&B run goes on."""

import glob


def init_tracking(args, run_name: str, run_id: str | None) -> str | None:
    """Starts or, given the `run_id` a resumed run saved, continues the W&B run of `--track` and returns its id (to
    save in the training state); without --track, returns `run_id` as it is. Called before the SummaryWriter is
    made: W&B mirrors everything it writes (`sync_tensorboard`)."""
    if not args.track:
        return run_id
    import wandb

    return wandb.init(
        project=args.wandb_project_name,
        entity=args.wandb_entity,
        sync_tensorboard=True,
        config=vars(args),
        name=run_name,
        save_code=True,
        id=run_id,  # None: a new W&B run
        resume="allow",
    ).id


def log_videos(video_dir: str) -> None:
    """The videos a run recorded, logged by hand: W&B's monitor_gym breaks on gymnasium 1.x's RecordVideo
    (wandb/wandb#9947)."""
    import wandb

    for path in sorted(glob.glob(f"{video_dir}/*.mp4")):
        wandb.log({"videos": wandb.Video(path)})
