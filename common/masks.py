"""Masks: which connections of a weight matrix exist, how they are drawn, and how they are enforced."""

from dataclasses import dataclass, field
from itertools import accumulate

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


TOP_K_BLOCK = 64  # TopKTargets starts every layer at a multiple of this in its flat buffers (see there)


@dataclass(eq=False)
class TopKTargets:
    """DS-TD3's sparse target networks (section 3.3): after each soft update, every sparse target layer keeps its k
    largest-|w| entries, k = the online layer's connection count. `masks` (0/1, k ones a layer) is the targets' own
    topology, which can lag the online one. A soft update adds exactly the online connections the target lacks, so
    that many entries of the union must go; all of them are at most as large as the largest added entry, so only the
    added entries and the target's entries up to that size are ranked.

    All layers go at once (per layer, the dozen small ops of this cost more than a dense training step's arithmetic):
    the target weights become views into one flat buffer here (a soft update or load_state_dict writes in place and
    keeps them; moving the network to another device would not), each layer starting at a multiple of TOP_K_BLOCK, so
    per-layer counts and maxima are per-block ones and no 8-byte word of flags spans two layers. Between two topology
    updates the added entries are the same at every call, the online connections that the previous call dropped and
    the soft update brought back: a call finds them among the last drops, without a search, and scans only for the
    target's small entries. Exact: the same weights and masks as a full per-layer top-k of the union, ties at equal
    |w| aside."""

    weights: list[torch.Tensor]  # the sparse target layers
    online_masks: list[torch.Tensor]  # read at every call: topology updates change them in place
    masks: list[torch.Tensor] = field(init=False)  # the targets' topologies, copies of the online ones at first

    def __post_init__(self) -> None:
        like = self.weights[0] if self.weights else torch.empty(0)
        sizes = [w.numel() for w in self.weights]
        blocks = [-(-n // TOP_K_BLOCK) for n in sizes]
        starts = [TOP_K_BLOCK * sum(blocks[:i]) for i in range(len(blocks))]
        self._weight = like.new_zeros(TOP_K_BLOCK * sum(blocks))  # the padding: zero and off the union, never ranked
        self._mask, self._added, self._score = (torch.zeros_like(self._weight) for _ in range(3))
        self.masks, self._compare = [], []
        for w, online, start, n in zip(self.weights, self.online_masks, starts, sizes, strict=True):
            layer = slice(start, start + n)
            self._weight[layer] = w.detach().view(-1)
            w.data = self._weight[layer].view_as(w)
            self._mask[layer] = online.view(-1)
            self.masks.append(self._mask[layer].view_as(w))
            # a view of the online mask: it sees the topology updates' in-place changes
            self._compare.append((online.view(-1), self._mask[layer], self._added[layer]))
        self._block_layer = torch.repeat_interleave(torch.arange(len(sizes)), torch.tensor(blocks, dtype=torch.long))
        self._block_layer = self._block_layer.to(like.device)
        self._layer_index = torch.arange(len(sizes), device=like.device)
        self._bounds = torch.tensor([*starts, len(self._weight)], device=like.device)
        self._flags = torch.zeros(len(self._weight), dtype=torch.int8, device=like.device)
        self._byte = torch.arange(8, device=like.device)
        # the last call's drops, grouped by layer: unless a topology changes in between, the next call's added entries
        # are those of them that are online
        self._dropped = torch.zeros(0, dtype=torch.long, device=like.device)

    def _flagged(self) -> torch.Tensor:
        """The positions of the nonzero flags, ascending. nonzero() over the flags as int64 words, then over the bytes
        of the words with any, is several times cheaper than nonzero() over all the bytes."""
        words = self._flags.view(torch.int64).nonzero().squeeze(1)
        in_words = (8 * words.unsqueeze(1) + self._byte).view(-1)
        return in_words.index_select(0, self._flags.view(-1, 8).index_select(0, words).view(-1).nonzero().squeeze(1))

    @torch.no_grad()
    def apply_(self) -> None:
        if not self.weights:
            return
        weight, target, added = self._weight, self._mask, self._added
        for online_layer, target_layer, added_layer in self._compare:
            torch.gt(online_layer, target_layer, out=added_layer)  # 1: an online connection the target lacks
        n_added = added.new_zeros(len(self.weights)).index_add_(0, self._block_layer, added.view(-1, TOP_K_BLOCK).sum(1))
        n_added = n_added.long()  # exact: sums of 0/1 far below 2**24
        counts = n_added.tolist()
        total = sum(counts)
        if not total:  # same topologies: nothing to drop
            self._dropped = self._dropped[:0]
            return
        added_at = self._dropped.masked_select(added.index_select(0, self._dropped) > 0)  # the re-added last drops
        if len(added_at) != total:  # not all of them: a topology changed, search
            torch.gt(added, 0, out=self._flags)
            added_at = self._flagged()
        added_size = weight.index_select(0, added_at).abs_()
        added_layer = torch.repeat_interleave(self._layer_index, n_added, output_size=total)
        largest_added = added.new_full(n_added.shape, -1.0).scatter_reduce_(0, added_layer, added_size, "amax")
        # the target's entries up to its layer's largest added one: with the added ones, all that can go
        score = torch.abs(weight, out=self._score)
        score /= target  # |w| on the target; inf, or nan for 0/0, elsewhere (the added entries too)
        flags = self._flags.view(-1, TOP_K_BLOCK)
        torch.le(score.view(-1, TOP_K_BLOCK), largest_added[self._block_layer].unsqueeze(1), out=flags)
        small = self._flagged()
        small_size = score.index_select(0, small)
        small_bounds = torch.searchsorted(small, self._bounds).tolist()
        added_bounds = [0, *accumulate(counts)]
        dropped = []
        for n, a, b, c, d in zip(counts, added_bounds, added_bounds[1:], small_bounds, small_bounds[1:]):
            if n and c == d:  # none of the target's entries is as small as an added one: the added ones go
                dropped.append(added_at[a:b])
            elif n:  # the n smallest of the added and small entries go
                position, size = torch.cat([added_at[a:b], small[c:d]]), torch.cat([added_size[a:b], small_size[c:d]])
                dropped.append(position.index_select(0, torch.topk(size, n, largest=False, sorted=False).indices))
        dropped = torch.cat(dropped)
        target.index_fill_(0, added_at, 1)
        target.index_fill_(0, dropped, 0)
        weight.index_fill_(0, dropped, 0)
        self._dropped = dropped


@torch.no_grad()
def reset_adam_moments(optimizer: torch.optim.Optimizer, weights: list[torch.Tensor], grown: list[torch.Tensor]) -> None:
    """Zero Adam's moments at newly grown connections so they start fresh (jaxpruner; Graesser et al. 2022).
    Neither paper's released code does this: it is an improvement flag."""
    for weight, new in zip(weights, grown):
        state = optimizer.state.get(weight, {})
        for moment in ("exp_avg", "exp_avg_sq"):
            if moment in state:
                state[moment][new] = 0.0
