"""Argument checks every script makes the same way: a one-line error before anything is written."""

import math
import os

import torch


def check_finite(args) -> None:
    """nan or inf in a float argument, or in a tuple of them (--er-epsilons nan 64 would make a layer silently dense;
    --learning-rate inf trains on NaN weights)."""
    for name, value in vars(args).items():
        if any(isinstance(v, float) and not math.isfinite(v) for v in (value if isinstance(value, tuple) else (value,))):
            raise SystemExit(f"error: --{name.replace('_', '-')} must be finite, got {value}")


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
