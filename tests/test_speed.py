"""The speed fixes change no result: the optimized update computes what the plain formulation computes."""

import copy
import runpy

import gymnasium as gym
import pytest
import torch
import torch.nn.functional as F
from conftest import ROOT

from common.masks import reset_adam_moments
from common.speed import LeanAdam


def test_lean_adam_steps_exactly_like_torch_fused_adam_and_close_to_the_loop():
    torch.manual_seed(0)
    params = [torch.randn(64, 32), torch.randn(64), torch.randn(1, 64)]
    lean, fused, loop = ([torch.nn.Parameter(p.clone()) for p in params] for _ in range(3))
    optimizers = (
        LeanAdam(lean, lr=1e-3, weight_decay=2e-4),
        torch.optim.Adam(fused, lr=1e-3, weight_decay=2e-4, fused=True),
        torch.optim.Adam(loop, lr=1e-3, weight_decay=2e-4, foreach=False),  # the plain per-tensor loop
    )
    for step in range(20):
        grads = [torch.randn_like(p) for p in params]
        for group, optimizer in zip((lean, fused, loop), optimizers):
            for p, g in zip(group, grads):
                p.grad = g.clone()
            optimizer.step()
        if step == 10:  # in-place edits of the moments (reset of grown connections) reach the cached lists
            grown = torch.rand(64, 32) < 0.3
            for group, optimizer in zip((lean, fused, loop), optimizers):
                reset_adam_moments(optimizer, [group[0]], [grown])
    assert all(torch.equal(a, b) for a, b in zip(lean, fused))
    assert all(torch.allclose(a, b, atol=1e-6) for a, b in zip(lean, loop))
    assert all(int(optimizers[0].state[p]["step"]) == 20 for p in lean)
    restored = LeanAdam([torch.nn.Parameter(p.detach().clone()) for p in lean], lr=1e-3, weight_decay=2e-4)
    restored.load_state_dict(optimizers[0].state_dict())
    assert int(restored.state[restored.param_groups[0]["params"][0]]["step"]) == 20


def test_lean_adam_falls_back_when_a_parameter_has_no_gradient():
    a, b = torch.nn.Parameter(torch.ones(3)), torch.nn.Parameter(torch.ones(3))
    optimizer = LeanAdam([a, b], lr=0.1)
    a.grad, b.grad = torch.ones(3), torch.ones(3)
    optimizer.step()
    a.grad, b.grad = torch.ones(3), None  # torch's step skips b
    optimizer.step()
    assert int(optimizer.state[a]["step"]) == 2 and int(optimizer.state[b]["step"]) == 1


@pytest.mark.parametrize("script", ["sparse_td3.py", "rlx2_td3.py", "sparse_sac.py"])
def test_optimized_update_matches_the_plain_formulation(script):
    """Five critic + actor updates on a fixed batch: the scripts' LeanAdam and actor backward restricted to the actor's
    parameters against torch's Adam and a full backward. Same losses, same actor gradients, same weights."""
    module = runpy.run_path(str(ROOT / script), run_name="not_main")  # the classes only
    env = gym.make("Hopper-v4")
    torch.manual_seed(0)
    actor, qf1 = module["Actor"](env), module["QNetwork"](env)
    nets = {"optimized": (actor, qf1), "plain": (copy.deepcopy(actor), copy.deepcopy(qf1))}
    obs, actions, targets = torch.randn(64, 11), torch.rand(64, 3) * 2 - 1, torch.randn(64)
    history = {}
    for name, (actor, qf1) in nets.items():
        if name == "optimized":
            q_optimizer, actor_optimizer = LeanAdam(qf1.parameters(), lr=1e-3), LeanAdam(actor.parameters(), lr=1e-3)
        else:
            q_optimizer = torch.optim.Adam(qf1.parameters(), lr=1e-3, foreach=False)
            actor_optimizer = torch.optim.Adam(actor.parameters(), lr=1e-3, foreach=False)
        history[name] = []
        torch.manual_seed(1)  # SAC's actor samples its actions
        for _ in range(5):
            qf_loss = F.mse_loss(qf1(obs, actions).view(-1), targets)
            q_optimizer.zero_grad()
            qf_loss.backward()
            q_optimizer.step()
            pi = actor.get_action(obs)[0] if script == "sparse_sac.py" else actor(obs)
            actor_loss = -qf1(obs, pi).mean()
            actor_optimizer.zero_grad()
            if name == "optimized":
                q_grads = [p.grad.clone() for p in qf1.parameters()]
                actor_loss.backward(inputs=list(actor.parameters()))
                assert all(torch.equal(p.grad, g) for p, g in zip(qf1.parameters(), q_grads))  # critics untouched
            else:
                actor_loss.backward()
            history[name].append((qf_loss.item(), actor_loss.item(), [p.grad.clone() for p in actor.parameters()]))
            actor_optimizer.step()
    for (q_a, pi_a, grads_a), (q_b, pi_b, grads_b) in zip(history["optimized"], history["plain"]):
        assert q_a == pytest.approx(q_b, rel=1e-5) and pi_a == pytest.approx(pi_b, rel=1e-5)
        assert all(torch.allclose(a, b, rtol=1e-4, atol=1e-6) for a, b in zip(grads_a, grads_b))
    for a, b in zip(*(list(actor.parameters()) + list(qf1.parameters()) for actor, qf1 in nets.values())):
        assert torch.allclose(a, b, atol=1e-5)
