"""Action bounds that are neither symmetric nor equal across dimensions ([0, 4] x [-20, 20], conftest.UnevenBounds):
every action that reaches the buffer or a critic lies inside them, and the TD3 noises scale per dimension."""

import pytest
import torch

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
