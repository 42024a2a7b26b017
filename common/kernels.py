"""A CPU backend for sparse layers that computes with the active weights only (`--sparse-backend kernel`).

The masked path multiplies dense matrices that are mostly zeros. Here the three products of a sparse linear layer
(forward, gradient w.r.t. the input, gradient w.r.t. the weights) run over the active connections only, in numba
kernels. Activations are feature-major (features x batch) in memory: each active weight then does one contiguous
multiply-add over the batch, which vectorises. The dense layers of the network use BLAS with the same layout, so no
activation is ever transposed.

Everything else is the masked path's: a layer keeps its dense `weight` Parameter (zero where inactive), its mask, the
optimizer, the topology update and the checkpoint format. The kernels gather the active values from `weight` and
return the weight gradient scattered into a dense tensor that is zero where inactive (what the masked path's
`mask_gradients_` leaves). A layer's index is rebuilt whenever its mask has been written to.

Adam therefore still steps the dense matrices (~7% of an iteration, benchmarks/profile_step.py). Keeping its moments
on the active values only would save most of that, but needs values remapped at every topology update and a checkpoint
format of its own; it is not done.
"""

import numba
import numpy as np
import torch
from torch import nn


@numba.njit(cache=True, fastmath=True)
def _forward(xt, indptr, cols, active, weight, bias, yt):
    """yt[i] = bias[i] + sum over active (i, j) of W[i, j] * xt[j]; xt is (in, batch), yt is (out, batch), `weight`
    the flat dense matrix and `active` the flat position of each connection in CSR order."""
    for i in range(yt.shape[0]):
        y = yt[i]
        y[:] = bias[i]
        for k in range(indptr[i], indptr[i + 1]):
            w, x = weight[active[k]], xt[cols[k]]
            for b in range(y.shape[0]):
                y[b] += w * x[b]


@numba.njit(cache=True, fastmath=True)
def _backward(gyt, xt, indptr, cols, active, weight, gxt, grad_weight, grad_bias):
    """gxt[j] = sum over active (i, j) of W[i, j] * gyt[i] (if gxt has rows), grad_weight[(i, j)] = gyt[i] . xt[j] at
    the active positions (if it has any; the rest of it stays zero) and grad_bias[i] = sum of gyt[i]."""
    gxt[:] = 0.0
    for i in range(gyt.shape[0]):
        gy = gyt[i]
        grad_bias[i] = gy.sum()
        for k in range(indptr[i], indptr[i + 1]):
            x = xt[cols[k]]
            if gxt.shape[0] > 0:
                w, gx = weight[active[k]], gxt[cols[k]]
                for b in range(gy.shape[0]):
                    gx[b] += w * gy[b]
            if grad_weight.shape[0] > 0:
                total = np.float32(0.0)
                for b in range(gy.shape[0]):
                    total += gy[b] * x[b]
                grad_weight[active[k]] = total


def _sparse_forward(x, weight, bias, layer):
    xt = x.detach().t().contiguous()  # a view (no copy) when x is feature-major, as this module keeps it
    yt = torch.empty(weight.shape[0], x.shape[0])
    _forward(
        xt.numpy(), layer.indptr, layer.cols, layer.active, weight.detach().view(-1).numpy(), bias.detach().numpy(), yt.numpy()
    )
    return yt, xt


class _SparseProduct(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, weight, bias, layer):
        yt, xt = _sparse_forward(x, weight, bias, layer)
        ctx.save_for_backward(xt, weight)
        ctx.layer = layer
        return yt.t()

    @staticmethod
    def backward(ctx, grad_y):
        xt, weight = ctx.saved_tensors
        layer, gyt = ctx.layer, grad_y.t().contiguous()
        needs_x, needs_weight = ctx.needs_input_grad[0], ctx.needs_input_grad[1] and not layer.dense_gradient
        gxt = torch.empty_like(xt) if needs_x else torch.empty(0, xt.shape[1])
        grad_weight, grad_bias = torch.zeros(weight.numel() if needs_weight else 0), torch.empty(weight.shape[0])
        _backward(gyt.numpy(), xt.numpy(), layer.indptr, layer.cols, layer.active, weight.detach().view(-1).numpy(),
                  gxt.numpy(), grad_weight.numpy(), grad_bias.numpy())  # fmt: skip
        if ctx.needs_input_grad[1] and layer.dense_gradient:  # RigL's grow score: dL/dW at every position, dense
            grad_weight = gyt @ xt.t()
        grad_weight = grad_weight.view_as(weight) if ctx.needs_input_grad[1] else None
        return gxt.t() if needs_x else None, grad_weight, grad_bias, None


class KernelLinear(nn.Linear):
    """Drop-in for an nn.Linear: the same Parameters (same state_dict keys, optimizer and checkpoint). With a mask,
    products over its active weights only; without, a dense product in the feature-major layout.
    `dense_gradient` makes the next backward compute the weight gradient at every position (RigL's grow score)."""

    def __init__(self, linear: nn.Linear, mask: torch.Tensor | None):
        nn.Module.__init__(self)  # not nn.Linear's: the Parameters are the given layer's, not new ones
        self.weight, self.bias, self.mask = linear.weight, linear.bias, mask
        self.in_features, self.out_features = linear.in_features, linear.out_features
        self.dense_gradient, self.built_version = False, None

    def rebuild_index(self) -> None:
        """CSR structure of the mask: row pointers, each connection's column and its flat position in `weight`."""
        active = self.mask.view(-1).nonzero().squeeze(1)
        rows, cols = active // self.in_features, active % self.in_features
        self.indptr = np.concatenate([[0], torch.bincount(rows, minlength=self.out_features).cumsum(0).numpy()])
        self.active, self.cols = active.numpy(), cols.int().numpy()
        self.built_version = self.mask._version  # torch bumps it on every in-place write to the mask

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.mask is None:  # (W x^T + b)^T: the output is feature-major like the sparse layers', at the same cost
            return torch.addmm(self.bias[:, None], self.weight, x.t()).t()
        if self.built_version != self.mask._version:
            self.rebuild_index()
        if not torch.is_grad_enabled():  # acting and evaluation: skip autograd's bookkeeping
            return _sparse_forward(x, self.weight, self.bias, self)[0].t()
        return _SparseProduct.apply(x, self.weight, self.bias, self)


# Above this density the dense BLAS product is faster than the kernels (benchmarks/sparse_layers.py, batch 256)
MAX_KERNEL_DENSITY = 0.1


def use_kernels(module: nn.Module, names: list[str], masks: list[torch.Tensor], max_density=MAX_KERNEL_DENSITY) -> None:
    """Replace every nn.Linear of `module` by a KernelLinear: the masked layers `names` ("fc2.weight", ...) whose
    density is at most `max_density` compute sparsely, the others densely (in the same feature-major layout)."""
    masks_by_layer = dict(zip((name.removesuffix(".weight") for name in names), masks, strict=True))
    for name, linear in list(module.named_modules()):
        if type(linear) is nn.Linear:
            mask = masks_by_layer.get(name)
            sparse = mask is not None and mask.mean().item() <= max_density
            parent, _, child = name.rpartition(".")
            setattr(module.get_submodule(parent), child, KernelLinear(linear, mask if sparse else None))


def request_dense_gradients(module: nn.Module, dense: bool) -> None:
    """Ask the sparse kernel layers of `module` for the full weight gradient in the next backward (no-op when masked)."""
    for layer in module.modules():
        if isinstance(layer, KernelLinear):
            layer.dense_gradient = dense
