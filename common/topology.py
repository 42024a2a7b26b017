"""The topology update shared by SET and RigL, and when and how much it changes.

SET and RigL are one update with different grow scores (jaxpruner's formulation): drop the active connections
with the smallest |w|, grow the same number of inactive connections with the highest score, uniformly random for
SET and |dense gradient| for RigL. The connection count of every layer stays exactly constant.
"""

import math

import torch

from common.masks import SparseWeights


def drop_smallest(mask: torch.Tensor, score: torch.Tensor, n: int) -> torch.Tensor:
    """`mask` without its n active entries of smallest score."""
    if n == 0:
        return mask
    flat = mask.flatten().clone()
    flat[torch.topk(torch.where(mask, score, torch.inf).flatten(), n, largest=False, sorted=False).indices] = False
    return flat.view_as(mask)


def grow_largest(mask: torch.Tensor, score: torch.Tensor, n: int) -> torch.Tensor:
    """`mask` with its n inactive entries of largest score added."""
    if n == 0:
        return mask
    flat = mask.flatten().clone()
    flat[torch.topk(torch.where(mask, -torch.inf, score).flatten(), n, sorted=False).indices] = True
    return flat.view_as(mask)


def released_sign_drop_counts(n_positive: int, n_negative: int, numel: int, fraction: float) -> tuple[int, int]:
    """How many positive and negative weights DS-TD3's released thresholds drop (`sparse_utils.changeConnectivitySET`).
    It sorts the whole matrix (inactive zeros included) and drops every active value from the threshold value towards
    zero, the threshold itself included: that is one weight more than floor(fraction * n) on the positive side and
    ceil(fraction * n) on the negative side (810 / 815 instead of 809 / 814 on a 256x256 layer). The float expressions
    are the released ones, so the counts agree also where fraction * n is within rounding of an integer."""
    first_positive = numel - n_positive  # sorted position of the smallest positive value
    threshold = int(min(numel - 1, first_positive + fraction * n_positive))
    return n_positive - (numel - 1 - threshold), n_negative - int((1 - fraction) * n_negative)


def update_mask(
    mask: torch.Tensor, weight: torch.Tensor, grow_score: torch.Tensor, drop_fraction: float, split_signs: bool = False
) -> torch.Tensor:
    """One drop/grow step on a bool mask. Drop floor(drop_fraction * nnz) active weights of smallest |w|, or with
    `split_signs` (DS-TD3) the released count of the positive and, separately, of the negative weights closest to
    zero, and every active weight that is exactly zero (it lies between the two thresholds; it would otherwise hold
    its slot forever if it gets no gradient). Then grow as many among the now-inactive positions by `grow_score`:
    a just-dropped position may be re-grown, and then keeps its value."""
    if split_signs:
        positive, negative = mask & (weight > 0), mask & (weight < 0)
        n_positive, n_negative = released_sign_drop_counts(
            int(positive.sum()), int(negative.sum()), mask.numel(), drop_fraction
        )
        kept = drop_smallest(positive, weight, n_positive) | drop_smallest(negative, -weight, n_negative)
        n_dropped = int(mask.sum()) - int(kept.sum())
    else:
        n_dropped = int(drop_fraction * int(mask.sum()))
        kept = drop_smallest(mask, weight.abs(), n_dropped)
    return grow_largest(kept, grow_score, n_dropped)


@torch.no_grad()
def update_topology(
    sparse: SparseWeights, grow_scores: list[torch.Tensor], drop_fraction: float, split_signs: bool = False
) -> list[torch.Tensor]:
    """Apply `update_mask` to every layer, zero the dropped weights and return the grown positions (bool).
    Grown connections start at exactly zero: they were inactive, so their weight was zero."""
    grown = []
    for weight, mask, ever, score in zip(sparse.weights, sparse.masks, sparse.ever_active, grow_scores, strict=True):
        old = mask.bool()
        new = update_mask(old, weight, score, drop_fraction, split_signs)
        mask.copy_(new)
        ever |= new
        grown.append(new & ~old)
    sparse.apply_()
    return grown


def random_scores(sparse: SparseWeights) -> list[torch.Tensor]:
    """SET: grow uniformly at random."""
    return [torch.rand_like(w) for w in sparse.weights]


def gradient_scores(sparse: SparseWeights) -> list[torch.Tensor]:
    """RigL: grow where |dL/dW| is largest. Needs the gradient w.r.t. the FULL matrix, i.e. read before any
    gradient masking; the forward uses W itself (zero where inactive), so autograd gives it."""
    return [w.grad.abs() for w in sparse.weights]


def is_topology_step(step: int, interval: int, end: int) -> bool:
    """Update every `interval` steps (counted from 1) before step `end` (RLx2's released `DST_Scheduler`: the cosine
    schedule reaches zero at T_end, so an update there would drop nothing)."""
    return step % interval == 0 and step < end


def cosine_drop_fraction(step: int, initial: float, end: int) -> float:
    """RigL / RLx2: zeta_t = zeta_0 / 2 * (1 + cos(pi * t / T_end))."""
    return initial / 2 * (1 + math.cos(math.pi * min(step, end) / end))
