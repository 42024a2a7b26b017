"""The shared core: densities, masks, the drop/grow update, schedules, targets and counting."""

import dataclasses
import re
import runpy
from types import SimpleNamespace

import pytest
import torch
from conftest import ROOT
from torch import nn

from common.checks import check_bounds
from common.distributions import er_densities, erk_densities, uniform_densities
from common.flops import forward_flops, training_flops, weight_counts
from common.masks import TopKTargets, kept_count, magnitude_mask, random_mask, reset_adam_moments, sparsify, top_k_mask
from common.topology import (
    cosine_drop_fraction,
    gradient_scores,
    is_topology_step,
    random_scores,
    released_sign_drop_counts,
    update_mask,
    update_topology,
)

OBS, ACT, HIDDEN = 17, 6, 256  # HalfCheetah
ACTOR = [(HIDDEN, OBS), (HIDDEN, HIDDEN), (ACT, HIDDEN)]
CRITIC = [(HIDDEN, OBS + ACT), (HIDDEN, HIDDEN), (1, HIDDEN)]


def mlp(n_in: int, n_out: int) -> nn.Module:
    net = nn.Module()
    net.fc1, net.fc2, net.fc3 = nn.Linear(n_in, HIDDEN), nn.Linear(HIDDEN, HIDDEN), nn.Linear(HIDDEN, n_out)
    return net


def test_er_densities_match_ds_td3_halfcheetah():
    actor = er_densities(ACTOR[:2], [7, 64]) + [1.0]
    critic = er_densities(CRITIC[:2], [7, 64]) + [1.0]
    assert actor[0] == pytest.approx(0.44, abs=0.005) and critic[0] == pytest.approx(0.33, abs=0.005)
    assert actor[1] == critic[1] == pytest.approx(0.50)
    numels = [o * i for o, i in ACTOR] + 2 * [o * i for o, i in CRITIC]
    assert sum(numels) == 214_784  # the paper's dense count for actor + 2 critics
    nnz = sum(d * n for d, n in zip(actor + critic + critic, numels))
    assert 1 - nnz / sum(numels) == pytest.approx(0.506, abs=0.002)


def test_erk_densities_match_rlx2_halfcheetah():
    actor = erk_densities(ACTOR, 0.90)
    critic = erk_densities(2 * CRITIC, 0.85)  # jointly over both Q heads
    assert actor == pytest.approx([0.45, 0.06, 1.0], abs=0.005)
    assert critic[:3] == pytest.approx([0.63, 0.10, 1.0], abs=0.005) and critic[3:] == pytest.approx(critic[:3])
    for shapes, densities, sparsity in ((ACTOR, actor, 0.90), (2 * CRITIC, critic, 0.85)):
        numels = [o * i for o, i in shapes]
        assert 1 - sum(d * n for d, n in zip(densities, numels)) / sum(numels) == pytest.approx(sparsity)


def test_erk_with_dense_output_layer_and_edge_cases():
    densities = erk_densities(ACTOR, 0.5, dense=frozenset({2}))
    assert densities[2] == 1.0 and densities[1] < 1  # the small input layer may come out dense too
    assert erk_densities(ACTOR, 0.0) == [1.0, 1.0, 1.0]
    for bad in (-0.1, 1.0, 1.5):
        with pytest.raises(ValueError):
            erk_densities(ACTOR, bad)
    with pytest.raises(ValueError, match="unreachable"):
        erk_densities([(10, 10), (1000, 1000)], 0.5, dense=frozenset({1}))


def test_uniform_densities():
    densities = uniform_densities(ACTOR, 0.5, dense=frozenset({2}))
    assert densities[0] == densities[1] < 1 and densities[2] == 1.0
    numels = [o * i for o, i in ACTOR]
    assert 1 - sum(d * n for d, n in zip(densities, numels, strict=True)) / sum(numels) == pytest.approx(0.5)
    assert uniform_densities(ACTOR, 0.0) == [1.0, 1.0, 1.0]
    with pytest.raises(ValueError, match="unreachable"):
        uniform_densities([(10, 10), (1000, 1000)], 0.5, dense=frozenset({1}))


def test_mask_inits():
    assert int(random_mask(torch.Size([256, 17]), 0.3).sum()) == round(0.3 * 256 * 17)
    # the released count n - int(S * n) rounds up where round() would round down
    assert kept_count(0.25, 10) == 3 and round(0.25 * 10) == 2
    assert kept_count(1.0, 10) == 10 and kept_count(0.0, 10) == 0
    w = torch.randn(64, 64)
    mask = magnitude_mask(w, 0.25)
    assert int(mask.sum()) == 1024 and w.abs()[mask].min() >= w.abs()[~mask].max()


def test_sparsify_zeroes_inactive_weights_and_skips_dense_layers():
    net = mlp(OBS, ACT)
    sparse = sparsify(net, {"fc1.weight": 0.44, "fc2.weight": 0.5, "fc3.weight": 1.0}, "bernoulli")
    assert sparse.names == ["fc1.weight", "fc2.weight"]
    for w, m in zip(sparse.weights, sparse.masks):
        assert torch.all(w[m == 0] == 0) and torch.all(w[m == 1] != 0)
    assert 0.45 < sparse.nnz()[1] / HIDDEN**2 < 0.55
    assert sparsify(net, {"fc1.weight": 1.0}, "random").names == []


def test_update_mask_keeps_count_drops_active_grows_inactive():
    torch.manual_seed(0)
    mask = random_mask(torch.Size([64, 32]), 0.3)
    weight = torch.randn(64, 32) * mask
    for split in (False, True):
        new = update_mask(mask, weight, torch.rand(64, 32), 0.2, split_signs=split)
        assert int(new.sum()) == int(mask.sum())
        dropped, grown = mask & ~new, new & ~mask
        assert int(dropped.sum()) > 0 and int(dropped.sum()) == int(grown.sum())
        assert weight.abs()[dropped].max() <= weight.abs()[mask & new].median()  # the small ones go


def test_sign_split_drops_fraction_of_each_sign_and_every_active_zero():
    # 80 positive, 20 negative and 5 active weights that are exactly zero; 23 inactive positions
    weight = torch.cat([torch.linspace(0.01, 1, 80), -torch.linspace(0.01, 1, 20), torch.zeros(28)]).view(8, 16)
    mask = torch.cat([torch.ones(105, dtype=torch.bool), torch.zeros(23, dtype=torch.bool)]).view(8, 16)
    grow_score = (~mask).float()  # grown connections land on positions that were inactive
    new = update_mask(mask, weight, grow_score, 0.1, split_signs=True)
    dropped = mask & ~new
    # released thresholds: floor(0.1 * 80) + 1 positive, 20 - int(0.9 * 20) negative, and the 5 zeros
    assert int(new.sum()) == 105 and int(dropped.sum()) == 9 + 2 + 5
    assert torch.equal(
        weight[dropped].sort().values,
        torch.cat([-torch.linspace(0.01, 1, 20)[:2], torch.zeros(5), torch.linspace(0.01, 1, 80)[:9]]).sort().values,
    )
    assert int((new & ~mask).sum()) == 16  # all of them regrown


def test_released_sign_drop_counts():
    # a 256x256 layer at 50% density: one more per sign than floor(0.05 * n) (809 / 814)
    assert released_sign_drop_counts(16_190, 16_290, 256 * 256, 0.05) == (810, 815)
    assert released_sign_drop_counts(0, 0, 100, 0.05) == (0, 0)
    assert released_sign_drop_counts(10, 10, 100, 0.99) == (10, 10)  # never more than there are


def test_update_topology_rigl_grows_largest_gradient():
    torch.manual_seed(0)
    net = mlp(OBS, ACT)
    sparse = sparsify(net, {"fc2.weight": 0.1}, "magnitude")
    net.fc2(torch.relu(net.fc1(torch.randn(32, OBS)))).pow(2).sum().backward()
    scores = gradient_scores(sparse)
    mask = sparse.masks[0].bool().clone()
    assert scores[0][~mask].abs().sum() > 0  # a dense gradient: RigL sees inactive positions
    n = int(0.3 * int(mask.sum()))
    kept = mask.flatten().clone()
    kept[torch.topk(torch.where(mask, net.fc2.weight.abs(), torch.inf).flatten(), n, largest=False).indices] = False
    expected = kept.clone()
    expected[torch.topk(torch.where(kept, -torch.inf, scores[0].flatten()), n).indices] = True
    grown = update_topology(sparse, scores, 0.3)[0]
    assert torch.equal(sparse.masks[0].bool().flatten(), expected) and int(grown.sum()) > 0
    assert int(sparse.masks[0].sum()) == int(mask.sum())
    assert torch.all(net.fc2.weight[grown] == 0) and torch.all(net.fc2.weight[sparse.masks[0] == 0] == 0)
    assert torch.equal(sparse.ever_active[0], mask | sparse.masks[0].bool())


def test_set_update_many_times_keeps_invariants():
    torch.manual_seed(1)
    net = mlp(OBS + ACT, 1)
    sparse = sparsify(net, {"fc1.weight": 0.33, "fc2.weight": 0.5}, "bernoulli")
    nnz = sparse.nnz()
    opt = torch.optim.Adam(net.parameters(), lr=1e-2)
    for _ in range(20):
        opt.zero_grad()
        net.fc3(torch.relu(net.fc2(torch.relu(net.fc1(torch.randn(16, OBS + ACT)))))).pow(2).mean().backward()
        opt.step()
        sparse.apply_()
        assert all(torch.all(w[m == 0] == 0) for w, m in zip(sparse.weights, sparse.masks))
        grown = update_topology(sparse, random_scores(sparse), 0.05, split_signs=True)
        reset_adam_moments(opt, sparse.weights, grown)
        assert sparse.nnz() == nnz
        assert all(torch.all(w[m == 0] == 0) for w, m in zip(sparse.weights, sparse.masks))
        assert all(torch.all(opt.state[w]["exp_avg"][g] == 0) for w, g in zip(sparse.weights, grown))
    assert sum(int(e.sum()) for e in sparse.ever_active) > sum(nnz)


def full_top_k_(weights: list[torch.Tensor], target_masks: list[torch.Tensor], online_masks: list[torch.Tensor]) -> None:
    """The reference: each layer keeps the k largest-|w| entries of the union of its target and online topologies."""
    for weight, target_mask, online in zip(weights, target_masks, online_masks, strict=True):
        union = torch.maximum(target_mask, online)
        keep = top_k_mask(torch.where(union > 0, weight.abs(), -1.0), int(online.sum())).float()
        target_mask.copy_(keep)
        weight.mul_(keep)


def test_top_k_targets_match_a_full_top_k():
    torch.manual_seed(0)
    for trial in range(200):
        online = (torch.rand(8, 8) < 0.5).float()
        k = int(online.sum())
        target_mask = top_k_mask(torch.rand(8, 8) * (1 + online), k).float()  # overlaps the online topology
        scale = 0.01 if trial % 2 else 1.0  # small added weights: few candidates; large ones: most of the union
        weight = torch.randn(8, 8) * target_mask + scale * torch.randn(8, 8) * online * (1 - target_mask)
        expected = weight * top_k_mask(weight.abs(), k)
        top_k = TopKTargets([weight], [online])
        top_k.masks[0].copy_(target_mask)
        top_k.apply_()
        assert torch.equal(weight, expected) and int(top_k.masks[0].sum()) == k
        assert torch.all(weight[top_k.masks[0] == 0] == 0)
    same = torch.randn(4, 4)
    kept = same.clone()
    TopKTargets([same], [torch.ones(4, 4)]).apply_()  # nothing added: unchanged
    assert torch.equal(same, kept)
    TopKTargets([], []).apply_()  # no sparse layer (dense mode)


def test_top_k_targets_several_layers_at_once():
    """As the scripts use it: layers of several shapes (none a multiple of 64) in one call, soft updates, and online
    topology updates in place; a layer with nothing added beside layers with many added."""
    torch.manual_seed(1)
    shapes = [(5, 7), (16, 9), (3, 3), (12, 20)]
    online_masks = [(torch.rand(shape) < 0.5).float() for shape in shapes]
    online = [torch.randn(shape) * mask for shape, mask in zip(shapes, online_masks)]
    targets = [nn.Parameter(w.clone()) for w in online]
    reference, reference_masks = [w.clone() for w in online], [m.clone() for m in online_masks]
    top_k = TopKTargets(targets, online_masks)
    added = []
    for step in range(60):
        if step % 20 == 0:  # a topology update of every layer but the 3x3 one: some connections move
            for mask, weight in [(online_masks[i], online[i]) for i in (0, 1, 3)]:
                new = top_k_mask(torch.rand(mask.shape) + 0.8 * mask, int(mask.sum())).float()
                weight.mul_(new).add_(torch.randn(mask.shape) * new * (1 - mask))
                mask.copy_(new)
        if step == 30:  # one connection the target lacks moves: as many added as at the call before, but not the same
            lacking = tuple((online_masks[3] > top_k.masks[3]).nonzero()[0])
            free = tuple((online_masks[3] + top_k.masks[3] == 0).nonzero()[0])
            online_masks[3][lacking], online[3][lacking] = 0, 0
            online_masks[3][free], online[3][free] = 1, 1.5
        with torch.no_grad():
            torch._foreach_lerp_(targets, online, 0.2)
        torch._foreach_lerp_(reference, online, 0.2)
        added.append([int((m > t).sum()) for m, t in zip(online_masks, top_k.masks)])
        top_k.apply_()
        full_top_k_(reference, reference_masks, online_masks)
        assert all(torch.equal(t, r) for t, r in zip(targets, reference))
        assert all(torch.equal(m, r) for m, r in zip(top_k.masks, reference_masks))
    assert all(isinstance(t, nn.Parameter) and t.shape == s for t, s in zip(targets, shapes))
    assert all(n[2] == 0 for n in added) and max(n[3] for n in added) > 10
    assert sum(n[1] for n in added[:20]) > sum(n[1] for n in added[:1])  # the target lags for several updates


def test_schedules():
    steps = [t for t in range(1, 5001) if is_topology_step(t, 1000, 3500)]
    assert steps == [1000, 2000, 3000]
    assert [t for t in range(1, 5001) if is_topology_step(t, 1000, 3000)] == [1000, 2000]  # ends before T_end
    assert cosine_drop_fraction(0, 0.5, 100) == pytest.approx(0.5)
    assert cosine_drop_fraction(50, 0.5, 100) == pytest.approx(0.25)
    assert cosine_drop_fraction(100, 0.5, 100) == pytest.approx(0.0)


def test_flop_counts():
    net = mlp(OBS, ACT)
    dense = forward_flops(net)
    assert dense == 2 * (17 * 256 + 256 * 256 + 256 * 6)  # the papers' count: weights only
    sparse = sparsify(net, {"fc2.weight": 0.5}, "random")
    assert weight_counts(net, sparse)["fc2"] == 256 * 256 // 2
    assert forward_flops(net, sparse) == dense - 256 * 256
    assert training_flops(10, 100) == 30
    assert training_flops(10, 100, dense_gradient_interval=9) == pytest.approx((3 * 10 * 9 + 2 * 10 + 100) / 10)


def test_check_bounds_reads_open_and_closed_ends_and_choices():
    bounds = {"tau": "(0, 1]", "gamma": "[0, 1]", "fraction": "[0, 1)", "epsilons": "(0, inf)", "mode": ("a", "b")}
    good = {"tau": 1.0, "gamma": 0.0, "fraction": 0.0, "epsilons": (7.0, 64.0), "mode": "a"}
    check_bounds(SimpleNamespace(**good), bounds)
    check_bounds(SimpleNamespace(**{**good, "epsilons": None}), bounds)  # None: a default the script fills in
    for name, value in (("tau", 0.0), ("gamma", 1.5), ("fraction", 1.0), ("epsilons", (7.0, 0.0)), ("mode", "c")):
        with pytest.raises(SystemExit, match=f"^error: --{name} must be"):
            check_bounds(SimpleNamespace(**{**good, name: value}), bounds)


@pytest.mark.parametrize("script", ["sparse_td3.py", "sparse_sac.py", "rlx2_td3.py", "rlx2_sac.py"])
def test_every_numeric_argument_has_its_bounds(script):
    """A new int or float flag gets a line in its script's BOUNDS table (the seed takes any int)."""
    g = runpy.run_path(str(ROOT / script))  # not as __main__: the definitions only
    numeric = {f.name for f in dataclasses.fields(g["Args"]) if re.search(r"\b(int|float)\b", str(f.type))}
    assert numeric - {"seed"} == {name for name, bound in g["BOUNDS"].items() if isinstance(bound, str)}
