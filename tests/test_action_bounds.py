"""Action bounds that are neither symmetric nor equal across dimensions ([0, 4] x [-20, 20], conftest.UnevenBounds):
every action that reaches the buffer or a critic lies inside them, the TD3 noises scale per dimension, and so does
the dynamic buffer's policy distance."""

import glob

import numpy as np
import pytest
import torch
from conftest import logged_scalars

RUN = ["--env-id", "UnevenBounds-v0", "--total-timesteps", "600", "--learning-starts", "200", "--batch-size", "256",
       "--eval-frequency", "600", "--eval-episodes", "1", "--no-cuda"]  # fmt: skip
RLX2 = ["--actor-sparsity", "0.5", "--critic-sparsity", "0.5", "--delay-nstep", "100", "--buffer-min-size", "300",
        "--buffer-check-interval", "300"]  # fmt: skip
DS = ["--topology-end", "300", "--topology-interval", "100"]
SCRIPTS = {"sparse_td3.py": DS, "sparse_sac.py": DS, "rlx2_td3.py": RLX2, "rlx2_sac.py": [*RLX2, "--sample-actions"]}
LOW, HIGH = torch.tensor([0.0, -20.0]), torch.tensor([4.0, 20.0])


def inside(actions: torch.Tensor) -> bool:
    return bool(torch.all((actions >= LOW) & (actions <= HIGH)))


@pytest.mark.parametrize("script", SCRIPTS)
def test_actions_stay_inside_per_dimension_bounds(run_script, script):
    g = run_script(script, *RUN, *SCRIPTS[script])
    rb = g["rb"]
    if script == "rlx2_sac.py":  # its target actions are sampled inside soft_n_step_target: sample them here
        with torch.no_grad():
            g["next_state_actions"] = g["actor"].get_action(rb.next_obs[: rb.size])[0]
    assert inside(rb.actions[: rb.size]) and inside(g["next_state_actions"])  # what the buffer and the target critics get
    # the policy's actions (after the 200 uniform warm-up steps) reach beyond the first dimension's bound [0, 4]
    assert rb.actions[200 : rb.size, 1].abs().max() > 4
    if script.endswith("sac.py"):
        return
    # TD3's target smoothing noise: N(0, 0.2) clipped at 0.5, times each dimension's half-range (2 and 20)
    noise_std = g["clipped_noise"].std(0)
    assert noise_std[0] == pytest.approx(0.2 * 2, rel=0.15) and noise_std[1] == pytest.approx(0.2 * 20, rel=0.15)
    if script == "rlx2_td3.py":  # exploration noise, from the stored noise-free actions
        assert_exploration_noise_per_dimension(rb.actions[200 : rb.size], rb.behaviour_actions[200 : rb.size])


def assert_exploration_noise_per_dimension(actions: torch.Tensor, behaviour: torch.Tensor) -> None:
    """TD3's exploration noise is N(0, 0.1 x each dimension's half-range): std 0.2 on [0, 4], 2 on [-20, 20]."""
    for dim, std in ((0, 0.1 * 2), (1, 0.1 * 20)):
        unclipped = (behaviour[:, dim] - LOW[dim] > 4 * std) & (HIGH[dim] - behaviour[:, dim] > 4 * std)
        assert int(unclipped.sum()) > 50
        noise = actions[unclipped, dim] - behaviour[unclipped, dim]
        assert float(noise.std()) == pytest.approx(std, rel=0.3), dim


def test_ds_td3_exploration_noise_scales_per_dimension(run_script):
    """sparse_td3.py stores no noise-free action. With the learning rate at zero the actor stays as initialised, so a
    stored action minus the actor's action on its state is the exploration noise (clipped at the bounds)."""
    g = run_script("sparse_td3.py", *RUN, "--sparsity", "0", "--learning-rate", "0", "--weight-decay", "0")
    rb = g["rb"]
    with torch.no_grad():
        behaviour = g["actor"](rb.obs[200 : rb.size])
    assert_exploration_noise_per_dimension(rb.actions[200 : rb.size], behaviour)


@pytest.mark.parametrize("script", ["rlx2_td3.py", "rlx2_sac.py"])
def test_policy_distance_divides_each_dimension_by_its_half_range(run_script, script):
    """The dynamic buffer's policy distance, mean of ((pi(s) - a) / half-range)^2 / 2 over the oldest transitions and
    the action dimensions, recomputed by hand. The learning rate is zero and the masks static, so the actor at the end
    is the actor of the check at the last step; the check covers all 600 stored transitions."""
    g = run_script(script, *RUN, "--actor-sparsity", "0.5", "--critic-sparsity", "0.5", "--topology", "static",
                   "--learning-rate", "0", "--buffer-check-interval", "600")  # fmt: skip
    rb, actor = g["rb"], g["actor"]
    assert rb.size == 600 and rb.capacity > 600  # no shrink: the distance is the check's own
    with torch.no_grad():
        pi = (actor.mean_action if script == "rlx2_sac.py" else actor)(rb.obs[:600]).numpy().astype(np.float64)
    stored = rb.behaviour_actions[:600].numpy().astype(np.float64)
    half_range = np.array([2.0, 20.0])
    expected = np.mean([((pi[i, d] - stored[i, d]) / half_range[d]) ** 2 / 2 for i in range(600) for d in range(2)])
    logged = logged_scalars(glob.glob("runs/*")[0])["buffer/policy_distance"]
    assert logged == [pytest.approx(expected, rel=1e-4)]
    scalar_bound = np.mean((pi - stored) ** 2 / 4.0**2 / 2)  # one max_action = high[0] for every dimension
    assert abs(scalar_bound - expected) > 0.1 * expected
