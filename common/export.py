"""Export a trained actor as a compact sparse file for deployment without torch (read by `common/sparse_policy.py`).

    python -m common.export runs/<run>/rlx2_td3.pt actor.npz

The file is a plain .npz (no pickle): per layer either CSR arrays (row pointers, column indices in the smallest
unsigned type that holds them, float32 values) or, where that is not smaller, the dense float32 matrix; float32
biases; the action scaling. Works for the deterministic policy of every script: `fc_mu`, SAC's `fc_mean`, or the
mean rows of rlx2_sac.py's fused mean / log-std layer `fc_mean_logstd`.
"""

import argparse

import numpy as np
import torch

from common.resume import check_digest

HIDDEN, OUTPUTS = ("fc1", "fc2"), ("fc_mu", "fc_mean", "fc_mean_logstd")  # relu, relu, then tanh * action_scale + action_bias


def smallest_uint(largest: int) -> type:
    return next(t for t in (np.uint8, np.uint16, np.uint32) if largest <= np.iinfo(t).max)


def export_actor(checkpoint_path: str, out_path: str) -> dict[str, np.ndarray]:
    check_digest(checkpoint_path)  # the .npz carries zip CRCs of its own, which np.load checks
    checkpoint = torch.load(checkpoint_path, map_location="cpu", weights_only=True)
    state, masks = checkpoint["actor"], checkpoint["masks"]["actor"]
    output = next(name for name in OUTPUTS if f"{name}.weight" in state)
    arrays = {"action_scale": state["action_scale"].numpy(), "action_bias": state["action_bias"].numpy()}
    actions = len(arrays["action_scale"])  # the output's first rows: all of them, or the mean above a fused log-std
    for i, name in enumerate((*HIDDEN, output)):
        kept = actions if name == output else None
        weight = (state[f"{name}.weight"] * masks.get(f"{name}.weight", 1))[:kept]
        arrays[f"layer{i}.bias"] = state[f"{name}.bias"][:kept].numpy()
        rows, cols = weight.nonzero(as_tuple=True)
        csr_bytes = len(rows) * (4 + np.dtype(smallest_uint(weight.shape[1] - 1)).itemsize) + 2 * (weight.shape[0] + 1)
        if csr_bytes < 4 * weight.numel():
            counts = torch.bincount(rows, minlength=weight.shape[0]).cumsum(0).numpy()
            arrays[f"layer{i}.indptr"] = np.concatenate([[0], counts]).astype(smallest_uint(len(rows)))
            arrays[f"layer{i}.indices"] = cols.numpy().astype(smallest_uint(weight.shape[1] - 1))
            arrays[f"layer{i}.values"] = weight[rows, cols].numpy()
            arrays[f"layer{i}.shape"] = np.array(weight.shape)
        else:
            arrays[f"layer{i}.weight"] = weight.numpy()
    np.savez_compressed(out_path, **arrays)
    return arrays


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="export a checkpoint's actor as a torch-free sparse file")
    parser.add_argument("checkpoint")
    parser.add_argument("out", help="the .npz file to write")
    args = parser.parse_args()
    arrays = export_actor(args.checkpoint, args.out)
    print(f"{args.out}: {sum(a.nbytes for a in arrays.values()):,} bytes of arrays")
