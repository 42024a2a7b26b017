"""Argument checks every script makes the same way: a one-line error before anything is written."""

import importlib.util
import json
import math
import os
import re

import gymnasium as gym
import torch

INTERVAL = re.compile(r"([\[(])(\S+), (\S+)([\])])")  # "(0, 1]", "[0, inf)"


def check_arguments(args, bounds: dict, make_env, buffer_type: type, algorithm: str) -> gym.Env:
    """What every script checks, in one call: the env (`make_env(env_id, seed, env_kwargs=...)`, returned), the
    modes, finite floats, each argument's bounds (`bounds`, see `check_bounds`), a learning start inside the budget,
    and the replay buffer (`buffer_type`) against its batch and the device's memory."""
    env = checked_env(args, make_env, algorithm)
    if args.resume and args.eval_checkpoint:
        raise SystemExit("error: give --resume or --eval-checkpoint, not both")
    if args.track and args.eval_checkpoint:
        raise SystemExit("error: --track logs a training run; --eval-checkpoint only prints a return")
    if args.track and importlib.util.find_spec("wandb") is None:
        raise SystemExit("error: --track needs wandb: pip install wandb")
    check_finite(args)
    check_bounds(args, bounds)
    if not args.learning_starts < args.total_timesteps:
        raise SystemExit("error: --learning-starts must be below --total-timesteps: otherwise no update ever happens")
    if args.batch_size > args.buffer_size:
        raise SystemExit(f"error: --batch-size must be <= --buffer-size (a batch is drawn from it), got {args.batch_size}")
    check_buffer_fits(buffer_type, args.buffer_size, env, args.cuda and torch.cuda.is_available())
    return env


def checked_env(args, make_env, algorithm: str) -> gym.Env:
    """The training env of --env-id and --env-kwargs (JSON), or a one-line error: an unknown id or keyword, a
    render_mode (the script's own: rgb_array with --capture-video; "human" opens a window per env, or aborts without
    a display), observations that are not a flat Box, actions that are not a Box."""
    try:
        env_kwargs = json.loads(args.env_kwargs)
    except json.JSONDecodeError as e:
        raise SystemExit(f"error: --env-kwargs is not JSON: {e}") from None
    if not isinstance(env_kwargs, dict):
        raise SystemExit(f"error: --env-kwargs must be a JSON object, got {args.env_kwargs!r}")
    if "render_mode" in env_kwargs:
        raise SystemExit("error: --env-kwargs: render_mode is the script's (rgb_array with --capture-video)")
    try:
        env = make_env(args.env_id, args.seed, env_kwargs=env_kwargs)
    except gym.error.Error as e:
        raise SystemExit(f"error: unknown or unavailable env id {args.env_id!r}: {e}") from None
    except TypeError as e:  # a keyword the env does not take
        raise SystemExit(f"error: --env-kwargs: {e}") from None
    if not isinstance(env.observation_space, gym.spaces.Box) or len(env.observation_space.shape) != 1:
        raise SystemExit(f"error: {args.env_id} observations are {env.observation_space}; these networks need a flat Box")
    if not isinstance(env.action_space, gym.spaces.Box):
        raise SystemExit(f"error: {args.env_id} has a {type(env.action_space).__name__} action space; {algorithm} needs Box")
    return env


def check_finite(args) -> None:
    """nan or inf in a float argument, or in a tuple of them (--er-epsilons nan 64 would make a layer silently dense;
    --learning-rate inf trains on NaN weights)."""
    for name, value in vars(args).items():
        if any(isinstance(v, float) and not math.isfinite(v) for v in (value if isinstance(value, tuple) else (value,))):
            raise SystemExit(f"error: --{name.replace('_', '-')} must be finite, got {value}")


def check_bounds(args, bounds: dict[str, str | tuple[str, ...]]) -> None:
    """Each argument named in `bounds` against its interval ("(0, 1]", "[0, inf)") or its tuple of allowed values.
    None (a default the script fills in) is not checked; each element of a tuple is."""
    for name, bound in bounds.items():
        value, flag = getattr(args, name), f"--{name.replace('_', '-')}"
        if value is None:
            continue
        if isinstance(bound, tuple):
            if value not in bound:
                raise SystemExit(f"error: {flag} must be one of {', '.join(map(repr, bound))}, got {value!r}")
            continue
        left, low, high, right = INTERVAL.fullmatch(bound).groups()
        for v in value if isinstance(value, tuple) else (value,):
            above = float(low) < v if left == "(" else float(low) <= v
            below = v < float(high) if right == ")" else v <= float(high)
            if not (above and below):
                raise SystemExit(f"error: {flag} must be in {bound}, got {value}")


def check_buffer_fits(buffer_type: type, buffer_size: int, env, cuda: bool) -> None:
    """A script's replay buffer is preallocated whole on the training device: one larger than the device's memory
    would fail later, in the allocator, after the run directory exists. Its size a transition is read from a buffer
    of one (`buffer_type(capacity, obs_dim, act_dim, device)`, its tensors named in `FIELDS`)."""
    one = buffer_type(1, env.observation_space.shape[0], env.action_space.shape[0], "cpu")
    transition_bytes = sum(getattr(one, name).nbytes for name in one.FIELDS)
    if cuda:
        memory, device = torch.cuda.mem_get_info()[1], "GPU"
    else:
        memory, device = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"), "machine"
    if buffer_size * transition_bytes > memory:
        raise SystemExit(
            f"error: --buffer-size {buffer_size} needs {buffer_size * transition_bytes / 2**30:,.1f} GiB for the replay "
            f"buffer ({transition_bytes} bytes a transition); the {device} has {memory / 2**30:,.1f} GiB"
        )
