"""Counting parameters and FLOPs as RigL and both papers do: the weights only, 2 FLOPs (a multiply-add) per non-zero
weight per sample. Bias and activation terms are left out, as in the papers' ratios: at RLx2's Hopper preset (actor 98%
sparse) the inference ratio is then exactly 0.02, the "50x" of Tan et al. 2023's abstract."""

from torch import nn

from common.masks import SparseWeights


def weight_counts(module: nn.Module, sparse: SparseWeights | None = None, prefix: str = "") -> dict[str, int]:
    """Non-zero weights per Linear layer (biases excluded, as the papers count parameters). `prefix` locates
    `module` inside the network whose masks `sparse` holds (e.g. "qf1." for one head of the critics)."""
    nnz = dict(zip(sparse.names, sparse.nnz())) if sparse else {}
    return {
        name: nnz.get(f"{prefix}{name}.weight", layer.weight.numel())
        for name, layer in module.named_modules()
        if isinstance(layer, nn.Linear)
    }


def forward_flops(module: nn.Module, sparse: SparseWeights | None = None, prefix: str = "") -> int:
    """FLOPs of one forward pass on one sample: 2 per non-zero weight (multiply-add)."""
    return 2 * sum(weight_counts(module, sparse, prefix).values())


def training_flops(forward: int, dense_forward: int = 0, dense_gradient_interval: int | None = None) -> float:
    """FLOPs of one forward + backward pass (3x forward: grads w.r.t. inputs and weights). RigL needs a dense
    weight gradient once every `dense_gradient_interval` steps: (3 f_S dT + 2 f_S + f_D) / (dT + 1)."""
    if dense_gradient_interval is None:
        return 3.0 * forward
    dt = dense_gradient_interval
    return (3.0 * forward * dt + 2.0 * forward + dense_forward) / (dt + 1)
