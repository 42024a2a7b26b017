"""Masks: which connections of a weight matrix exist, how they are drawn, and how they are enforced."""

from dataclasses import dataclass

import torch
from torch import nn


def kept_count(density: float, numel: int) -> int:
    """Connections a layer of `numel` weights keeps at `density`: numel - int(sparsity * numel), as RLx2's released
    `DST_Scheduler.weight_sparsify`. This rounds up where round(density * numel) would round down: about a third of
    the ERK layers at RLx2's presets keep one connection more than with round (11 of 36 on the MuJoCo shapes)."""
    return numel - int((1 - density) * numel)


def random_mask(shape: torch.Size, density: float) -> torch.Tensor:
    """Exactly `kept_count` connections, uniformly at random."""
    numel = shape.numel()
    mask = torch.zeros(numel, dtype=torch.bool)
    mask[torch.randperm(numel)[: kept_count(density, numel)]] = True
    return mask.view(shape)


def bernoulli_mask(shape: torch.Size, density: float) -> torch.Tensor:
    """Each connection kept independently with probability `density` (DS-TD3's ER init); the realised count
    becomes the layer's budget."""
    return torch.rand(shape) < density


def magnitude_mask(weight: torch.Tensor, density: float) -> torch.Tensor:
    """The `kept_count` largest-|w| entries of an initialised weight (RLx2)."""
    return top_k_mask(weight.abs(), kept_count(density, weight.numel()))


def top_k_mask(score: torch.Tensor, k: int) -> torch.Tensor:
    mask = torch.zeros(score.numel(), dtype=torch.bool, device=score.device)
    mask[torch.topk(score.flatten(), k, sorted=False).indices] = True
    return mask.view_as(score)


MASK_INITS = {
    "random": lambda w, d: random_mask(w.shape, d),
    "bernoulli": lambda w, d: bernoulli_mask(w.shape, d),
    "magnitude": magnitude_mask,
}


@dataclass
class SparseWeights:
    """The sparse weight matrices of one network (or of several trained by one optimizer) with their masks.

    Masks are stored as 0/1 in the weights' dtype: re-masking is then one fused multiply over all layers
    (a bool mask costs ~6x more per multiply on CPU).
    """

    names: list[str]
    weights: list[nn.Parameter]
    masks: list[torch.Tensor]
    ever_active: list[torch.Tensor]  # positions active at any time so far: the in-time over-parameterisation rate

    @torch.no_grad()
    def apply_(self) -> None:
        """W <- W * M: after every optimizer step, so inactive weights are exactly zero."""
        if self.weights:
            torch._foreach_mul_(self.weights, self.masks)

    @torch.no_grad()
    def mask_gradients_(self) -> None:
        """grad <- grad * M: Adam then sees no gradient at inactive positions (RLx2)."""
        if self.weights:
            torch._foreach_mul_([w.grad for w in self.weights], self.masks)

    def layers_of(self, module: nn.Module) -> list[torch.Tensor]:
        """The same weight matrices in a copy of the network (a target network)."""
        params = dict(module.named_parameters())
        return [params[name] for name in self.names]

    def nnz(self) -> list[int]:
        return [int(m.sum()) for m in self.masks]

    def state_dict(self) -> dict[str, torch.Tensor]:
        return {name: mask.bool().cpu() for name, mask in zip(self.names, self.masks)}


def sparsify(module: nn.Module, densities: dict[str, float], init: str) -> SparseWeights:
    """Mask the named weight matrices of `module` at the given densities and zero their inactive weights.
    Weights keep the default nn.Linear init (no rescaling, as both papers). A layer whose density rounds to all
    connections stays dense and gets no mask, so `--sparsity 0` is plain dense training."""
    params = dict(module.named_parameters())
    names, weights, masks = [], [], []
    for name, density in densities.items():
        weight = params[name]
        if kept_count(density, weight.numel()) >= weight.numel():
            continue
        names.append(name)
        weights.append(weight)
        masks.append(MASK_INITS[init](weight.detach().cpu(), density).to(weight.device, weight.dtype))
    sparse = SparseWeights(names, weights, masks, [m.bool() for m in masks])
    sparse.apply_()
    return sparse


@torch.no_grad()
def keep_top_k_(weights: list[torch.Tensor], target_masks: list[torch.Tensor], online_masks: list[torch.Tensor]) -> None:
    """DS-TD3's sparse target networks: after a soft update, each target layer keeps its k largest-|w| entries,
    k = the online layer's connection count. `target_masks` (0/1, k ones, updated in place) is the target's own
    topology, which can lag the online one. A soft update adds exactly the online connections the target lacks, so
    that many entries must go; all of them are at most as large as the largest added entry, so only the entries up
    to that size are ranked (a handful, instead of the whole matrix)."""
    for weight, target_mask, online_mask in zip(weights, target_masks, online_masks, strict=True):
        added = online_mask > target_mask
        n_added = int(added.sum())
        if n_added == 0:  # same topology: nothing to drop
            continue
        magnitude = weight.abs().view(-1)
        largest_added = magnitude[added.view(-1)].max()
        target_mask += added  # the union, from which n_added entries go
        candidates = ((magnitude <= largest_added) * target_mask.view(-1)).nonzero().squeeze(1)
        dropped = candidates[torch.topk(magnitude[candidates], n_added, largest=False, sorted=False).indices]
        target_mask.view(-1)[dropped] = 0
        weight.view(-1)[dropped] = 0


@torch.no_grad()
def reset_adam_moments(optimizer: torch.optim.Optimizer, weights: list[torch.Tensor], grown: list[torch.Tensor]) -> None:
    """Zero Adam's moments at newly grown connections so they start fresh (jaxpruner; Graesser et al. 2022).
    Neither paper's released code does this: it is an improvement flag."""
    for weight, new in zip(weights, grown):
        state = optimizer.state.get(weight, {})
        for moment in ("exp_avg", "exp_avg_sq"):
            if moment in state:
                state[moment][new] = 0.0
