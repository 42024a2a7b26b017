"""The kernel backend computes what the masked path computes: outputs, input and weight gradients, RigL's dense
gradient, after topology updates, and over a whole short training run."""

import copy

import pytest
import torch
from torch import nn

from common.kernels import KernelLinear, request_dense_gradients, use_kernels
from common.masks import sparsify
from common.topology import random_scores, update_topology


def masked_network(densities: dict[str, float]) -> tuple[nn.Module, object]:
    torch.manual_seed(0)
    network = nn.Sequential(nn.Linear(23, 256), nn.ReLU(), nn.Linear(256, 256), nn.ReLU(), nn.Linear(256, 6))
    return network, sparsify(network, densities, "random")


def gradients(network: nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
    x = x.clone().requires_grad_()
    y = network(x)
    return y, *torch.autograd.grad((y * torch.linspace(-1, 1, y.numel()).view_as(y)).sum(), [x, *network.parameters()])


@pytest.mark.parametrize("batch", [64, 1])
@pytest.mark.parametrize("max_density", [1.0, 0.1])  # every masked layer on the kernels / only the 5% one
def test_kernels_match_the_masked_path(batch, max_density):
    masked, sparse = masked_network({"0.weight": 0.5, "2.weight": 0.05, "4.weight": 0.3})
    kernel = copy.deepcopy(masked)
    use_kernels(kernel, sparse.names, [m.clone() for m in sparse.masks], max_density)
    assert [type(layer) is KernelLinear and layer.mask is not None for layer in kernel if hasattr(layer, "weight")] == [
        max_density == 1.0, True, max_density == 1.0]  # fmt: skip
    x = torch.randn(batch, 23)
    expected, actual = gradients(masked, x), gradients(kernel, x)
    # A kernel layer returns its weight gradient already masked (what the masked path gives Adam); a dense-computed one
    # the full gradient, masked afterwards by `mask_gradients_` as in the masked path. Positions: [y, x, w0, b0, w2, ...]
    weight_masks = {2 + 2 * i: mask for i, mask in enumerate(sparse.masks) if max_density == 1.0 or i == 1}
    for i, (e, a) in enumerate(zip(expected, actual, strict=True)):
        e = e * weight_masks[i] if i in weight_masks else e
        assert a.shape == e.shape and torch.allclose(a, e, rtol=1e-5, atol=1e-5), i
        if i in weight_masks:
            assert torch.all(a[weight_masks[i] == 0] == 0)  # exactly zero: Adam sees no gradient there
    with torch.no_grad():
        assert torch.allclose(kernel(x), expected[0], rtol=1e-5, atol=1e-6)  # the no-autograd path (acting)


def test_dense_gradient_for_rigl_and_index_rebuilt_after_topology_update():
    masked, sparse = masked_network({"2.weight": 0.05})
    kernel = copy.deepcopy(masked)
    kernel_sparse = copy.copy(sparse)
    kernel_sparse.weights, kernel_sparse.masks = [kernel[2].weight], [m.clone() for m in sparse.masks]
    kernel_sparse.ever_active = [e.clone() for e in sparse.ever_active]
    use_kernels(kernel, kernel_sparse.names, kernel_sparse.masks)
    x = torch.randn(32, 23)
    request_dense_gradients(kernel, True)  # RigL: dL/dW at every position, as the masked forward gives it
    expected, actual = gradients(masked, x), gradients(kernel, x)
    assert torch.allclose(actual[4], expected[4], rtol=1e-5, atol=1e-6) and torch.count_nonzero(actual[4]) > 0.5 * 65536
    request_dense_gradients(kernel, False)
    before = sparse.masks[0].clone()
    torch.manual_seed(1)
    update_topology(sparse, random_scores(sparse), 0.5)
    torch.manual_seed(1)
    update_topology(kernel_sparse, random_scores(kernel_sparse), 0.5)
    assert torch.equal(sparse.masks[0], kernel_sparse.masks[0]) and not torch.equal(sparse.masks[0], before)
    expected, actual = gradients(masked, x), gradients(kernel, x)
    assert torch.allclose(actual[0], expected[0], rtol=1e-5, atol=1e-6)
    assert torch.allclose(actual[4], expected[4] * sparse.masks[0], rtol=1e-5, atol=1e-6)
