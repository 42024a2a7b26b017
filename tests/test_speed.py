"""The speed fixes change no result: the optimized update computes what the plain formulation computes."""

import copy
import runpy

import gymnasium as gym
import pytest
import torch
import torch.nn.functional as F
from conftest import ROOT


@pytest.mark.parametrize("script", ["sparse_td3.py", "rlx2_td3.py", "sparse_sac.py"])
def test_optimized_update_matches_the_plain_formulation(script):
    """Five critic + actor updates on a fixed batch: the scripts' fused Adam and actor backward restricted to the actor's
    parameters against torch's per-tensor Adam and a full backward. Same losses, same actor gradients, same weights."""
    module = runpy.run_path(str(ROOT / script), run_name="not_main")  # the classes only
    env = gym.make("Hopper-v4")
    torch.manual_seed(0)
    actor, qf1 = module["Actor"](env), module["QNetwork"](env)
    nets = {"optimized": (actor, qf1), "plain": (copy.deepcopy(actor), copy.deepcopy(qf1))}
    obs, actions, targets = torch.randn(64, 11), torch.rand(64, 3) * 2 - 1, torch.randn(64)
    history = {}
    for name, (actor, qf1) in nets.items():
        if name == "optimized":
            q_optimizer = torch.optim.Adam(qf1.parameters(), lr=1e-3, fused=True)
            actor_optimizer = torch.optim.Adam(actor.parameters(), lr=1e-3, fused=True)
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
