"""Counting parameters and FLOPs as RigL and both papers do (ALGORITHMS.md section 4)."""

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


def forward_flops(module: nn.Module, sparse: SparseWeights | None = None, prefix: str = "", relu_layers=("fc1", "fc2")) -> int:
    """FLOPs of one forward pass on one sample: 2 per weight (multiply-add), 1 per bias, 1 per ReLU output."""
    flops = 0
    for name, nnz in weight_counts(module, sparse, prefix).items():
        n_out = module.get_submodule(name).out_features
        flops += 2 * nnz + n_out + (n_out if name.split(".")[-1] in relu_layers else 0)
    return flops


def training_flops(forward: int, dense_forward: int = 0, dense_gradient_interval: int | None = None) -> float:
    """FLOPs of one forward + backward pass (3x forward: grads w.r.t. inputs and weights). RigL needs a dense
    weight gradient once every `dense_gradient_interval` steps: (3 f_S dT + 2 f_S + f_D) / (dT + 1)."""
    if dense_gradient_interval is None:
        return 3.0 * forward
    dt = dense_gradient_interval
    return (3.0 * forward * dt + 2.0 * forward + dense_forward) / (dt + 1)
