"""RLx2: n-step targets, the dynamic-capacity buffer, ERK densities and the RigL training loop."""

import glob
import os

import numpy as np
import pytest
import torch
from conftest import BAD_INPUTS, assert_sparse_invariants, logged_scalars

from common.kernels import KernelLinear
from common.masks import magnitude_mask
from rlx2_td3 import ReplayBuffer


def filled_buffer(capacity: int, n: int, ends: dict[int, str]) -> ReplayBuffer:
    """Transition t has obs t, next_obs t + 0.5, reward t + 1; `ends` marks terminations and truncations."""
    rb = ReplayBuffer(capacity, 1, 1, "cpu")
    for t in range(n):
        rb.add([t], [t + 0.5], [0.0], [0.0], t + 1, ends.get(t) == "terminated", ends.get(t) == "truncated")
    return rb


def sample_by_start(rb: ReplayBuffer, n_step: int, gamma: float) -> dict[int, tuple[float, float, float]]:
    torch.manual_seed(0)
    obs, _, boot, returns, discounts = rb.sample(4096, n_step, gamma)
    table = {}
    for o, b, r, d in zip(obs[:, 0].tolist(), boot[:, 0].tolist(), returns.tolist(), discounts.tolist(), strict=True):
        assert table.setdefault(int(o), (b, r, d)) == (b, r, d)  # the same start always gives the same target
    return table


def test_n_step_targets_by_hand():
    # 11 transitions in a ring of 8: the live ones are t = 3..10 (t = 8, 9, 10 wrapped to slots 0, 1, 2).
    # t = 4 terminates, t = 6 is truncated by a time limit.
    rb = filled_buffer(8, 11, {4: "terminated", 6: "truncated"})
    table = sample_by_start(rb, n_step=3, gamma=0.5)
    assert table == {
        3: (4.5, 4 + 0.5 * 5, 0.0),  # cut at the termination: no bootstrap
        4: (4.5, 5, 0.0),
        5: (6.5, 6 + 0.5 * 7, 0.5**2),  # cut at the truncation: bootstrap from where the episode ended, gamma^2
        6: (6.5, 7, 0.5),
        7: (9.5, 8 + 0.5 * 9 + 0.25 * 10, 0.5**3),  # slots 7, 0, 1: across the ring's wrap-around
        8: (10.5, 9 + 0.5 * 10 + 0.25 * 11, 0.5**3),
    }  # starts 9 and 10 have no 3 live transitions ahead: never sampled
    one_step = sample_by_start(rb, n_step=1, gamma=0.5)
    assert one_step[4] == (4.5, 5, 0.0) and one_step[6] == (6.5, 7, 0.5) and set(one_step) == set(range(3, 11))


def test_dynamic_capacity_shrinks_and_grows_back():
    rb = filled_buffer(100, 130, {})
    assert rb.size == 100 and rb.oldest(3).tolist() == [30, 31, 32]  # slots of t = 30, 31, 32
    rb.shrink(0.1, min_size=50)
    assert rb.size == rb.capacity == 90 and rb.obs[rb.oldest(1)].item() == 40
    assert set(sample_by_start(rb, 1, 0.99)) == set(range(40, 130))  # nothing read outside the live window
    for t in range(130, 135):  # one slot back per step
        rb.add([t], [t + 0.5], [0.0], [0.0], 0.0, False, False)
    assert rb.size == rb.capacity == 95 and rb.obs[rb.oldest(1)].item() == 40
    for _ in range(20):
        rb.shrink(0.1, min_size=50)
    assert rb.size == 50 and set(sample_by_start(rb, 3, 0.99)) == set(range(85, 133))
    for t in range(135, 300):
        rb.add([t], [t + 0.5], [0.0], [0.0], 0.0, False, False)
    assert rb.size == rb.capacity == 100 and rb.obs[rb.oldest(1)].item() == 200


def test_shrink_drops_a_tenth_even_below_the_minimum():
    rb = filled_buffer(200, 104, {})
    rb.shrink(0.1)  # released: int(0.1 * 104) = 10 go, whatever the minimum
    assert rb.size == rb.capacity == 94
    rb = filled_buffer(200, 104, {})
    rb.shrink(0.1, min_size=100)  # --clamp-buffer-min
    assert rb.size == rb.capacity == 100


def test_hopper_preset_flops_are_the_papers_count(run_script):
    """Weights only (2 FLOPs per weight): the actor at 98% gives exactly the abstract's 50x fewer inference FLOPs."""
    g = run_script("rlx2_td3.py", "--env-id", "Hopper-v4", "--total-timesteps", "2", "--learning-starts", "1",
                   "--eval-episodes", "1")  # fmt: skip
    assert g["report"]["inference FLOPs"] == pytest.approx(0.020, abs=5e-4)
    assert g["report"]["training FLOPs"] == pytest.approx(0.044, abs=5e-4)
    # ERK counts as released (n - int(S * n)): the critic's first layer keeps 1,110, where round() kept 1,109
    assert g["critic_sparse"].nnz()[0] == 1110


def test_a_dense_network_beside_a_sparse_one_never_skips_a_step(run_script):
    g = run_script("rlx2_td3.py", "--env-id", "Hopper-v4", "--actor-sparsity", "0", "--critic-sparsity", "0.9", *SMOKE)
    assert g["actor_sparse"].names == [] and all(int(s["step"]) == 500 for s in g["actor_optimizer"].state.values())
    assert all(int(s["step"]) == 1000 - 9 for s in g["q_optimizer"].state.values())


def test_erk_densities_at_the_halfcheetah_preset(run_script):
    g = run_script("rlx2_td3.py", "--total-timesteps", "2", "--learning-starts", "1", "--eval-frequency", "10",
                   "--eval-episodes", "1")  # fmt: skip
    actor, critic = g["actor_densities"], g["qf_densities"]
    assert list(actor.values()) == pytest.approx([0.45, 0.06, 1.0], abs=0.005)
    assert list(critic.values()) == pytest.approx([0.63, 0.10, 1.0], abs=0.005)
    assert g["actor_sparse"].names == ["fc1.weight", "fc2.weight"]  # the dense output layer gets no mask
    torch.manual_seed(1)  # the script's seed: the same default init, before masking
    reference = g["Actor"](g["env"])
    for layer, mask in zip(("fc1", "fc2"), g["actor_sparse"].masks, strict=True):
        weight = getattr(reference, layer).weight.detach()
        mask = mask.bool().cpu()  # the script's device, the reference's CPU
        assert torch.equal(mask, magnitude_mask(weight, actor[f"{layer}.weight"]))  # the largest |w| of the init
        assert torch.equal(getattr(g["actor"], layer).weight.cpu()[mask], weight[mask])


SMOKE = ["--total-timesteps", "1500", "--learning-starts", "500", "--batch-size", "32", "--topology-interval", "100",
         "--delay-nstep", "300", "--buffer-size", "1200", "--buffer-min-size", "700", "--buffer-check-interval", "500",
         "--policy-distance-threshold", "0", "--eval-frequency", "750", "--eval-episodes", "1", "--save-model"]  # fmt: skip


def test_smoke_halfcheetah_reaches_rigl_nstep_and_buffer(run_script):
    g = run_script("rlx2_td3.py", "--env-id", "HalfCheetah-v4", *SMOKE)
    # 1000 critic iterations with a RigL update every 100 before T_end = 1000 (optimizer step skipped): 9 of them;
    # 500 actor updates with 4 (every 100 before 500)
    assert all(int(s["step"]) == 1000 - 9 for s in g["q_optimizer"].state.values())
    assert all(int(s["step"]) == 500 - 4 for s in g["actor_optimizer"].state.values())
    for target, sparse in ((g["actor_target_sparse"], g["actor_sparse"]), (g["critic_target_sparse"], g["critic_sparse"])):
        assert all(bool(torch.all(w[m == 0] == 0)) for w, m in zip(target, sparse.masks, strict=True))
    assert g["n_step"] == 3

    run_dir = glob.glob("runs/*")[0]
    logged = logged_scalars(run_dir)
    assert_sparse_invariants(g["actor_sparse"], "actor", logged)
    assert_sparse_invariants(g["critic_sparse"], "critic", logged)
    # n-step from iteration 300 (= step 800) on, as released (iteration >= delay_nstep)
    n_steps = dict(logged_scalars(run_dir, steps=True)["charts/n_step"])
    assert n_steps[700] == 1 and n_steps[800] == 3 and n_steps[1500] == 3
    assert logged_scalars(run_dir, steps=True)["eval/episodic_return"][0][0] == 0  # the untrained policy, at step 0
    drop = logged["sparse/critic_drop_fraction"]
    assert drop[0] == pytest.approx(0.5 / 2 * (1 + np.cos(np.pi * 100 / 1000))) and drop == sorted(drop, reverse=True)
    # threshold 0: every check above the minimum (700) drops the oldest 10%: at step 500 nothing (500 stored), at
    # 1000 1000 -> 900, then one slot back per step up to the maximum 1200, and at 1500 1200 -> 1080
    assert logged["buffer/size"] == [500, 900, 1080] and logged["buffer/capacity"] == [1200, 900, 1080]
    for tag in ("buffer/policy_distance", "buffer/capacity", "eval/episodic_return", "sparse/training_FLOPs_ratio",
                "sparse/actor_drop_fraction", "losses/actor_loss"):  # fmt: skip
        assert tag in logged, tag

    checkpoint = torch.load(f"{run_dir}/rlx2_td3.pt", weights_only=True)
    for name, mask in checkpoint["masks"]["actor"].items():
        assert torch.all(checkpoint["actor"][name][~mask] == 0)
    loaded = g["load_actor"](f"{run_dir}/rlx2_td3.pt", g["env"], g["device"])
    final_eval = logged["eval/episodic_return"][-1]
    assert g["evaluate"](loaded, "HalfCheetah-v4", 1, 101, g["device"]) == pytest.approx([final_eval], rel=1e-4)


def test_set_ablation_with_moment_reset(run_script):
    g = run_script("rlx2_td3.py", "--env-id", "Hopper-v4", "--topology", "set", "--reset-grown-moments", *SMOKE)
    assert_sparse_invariants(g["critic_sparse"], "critic", logged_scalars(glob.glob("runs/*")[0]))


def test_dense_setting_is_plain_td3(run_script):
    g = run_script("rlx2_td3.py", "--env-id", "Pendulum-v1", "--actor-sparsity", "0", "--critic-sparsity", "0",
                   "--topology", "static", "--n-step", "1", "--no-dynamic-buffer", *SMOKE)  # fmt: skip
    assert g["actor_sparse"].names == [] and g["critic_sparse"].names == [] and g["n_step"] == 1
    assert all(int(s["step"]) == 1000 for s in g["q_optimizer"].state.values())
    # evaluation needs only the checkpoint: no sparsity flags for an env without a preset
    with pytest.raises(SystemExit) as exit_info:
        run_script("rlx2_td3.py", "--env-id", "Pendulum-v1", "--eval-checkpoint", glob.glob("runs/*/rlx2_td3.pt")[0])
    assert exit_info.value.code == 0


def test_training_run_matches_the_masked_path(run_script):
    """Same seed and batches: RigL picks the same connections and the losses agree to float32 round-off."""
    runs = {}
    for backend in ("masked", "kernel"):
        g = run_script("rlx2_td3.py", "--env-id", "Hopper-v4", "--sparse-backend", backend, "--no-cuda",
                       "--exp-name", backend, *SMOKE)  # fmt: skip
        runs[backend] = g, logged_scalars(glob.glob(f"runs/*__{backend}__*")[0])
    (masked, masked_log), (kernel, kernel_log) = runs["masked"], runs["kernel"]
    assert any(type(layer) is KernelLinear and layer.mask is not None for layer in kernel["qfs"].modules())
    for name in ("actor_sparse", "critic_sparse"):
        assert all(torch.equal(a, b) for a, b in zip(masked[name].masks, kernel[name].masks, strict=True))
        assert all(torch.equal(a, b) for a, b in zip(masked[name].ever_active, kernel[name].ever_active, strict=True))
    assert masked_log["losses/qf_loss"] == pytest.approx(kernel_log["losses/qf_loss"], rel=1e-3)
    assert masked_log["losses/actor_loss"] == pytest.approx(kernel_log["losses/actor_loss"], rel=1e-3)
    for a, b in zip(masked["actor"].parameters(), kernel["actor"].parameters(), strict=True):
        assert torch.allclose(a, b, atol=1e-4)


@pytest.mark.parametrize("bad", [["--env-id", "Pendulum-v1"], ["--actor-sparsity", "1"], ["--topology", "magic"],
                                 ["--n-step", "0"], ["--buffer-min-size", "2000000"], ["--env-id", "CartPole-v1"],
                                 ["--sparse-backend", "sparse"],
                                 ["--eval-episodes", "0"], ["--tau", "1.5"], ["--gamma", "-0.1"], ["--learning-rate", "nan"],
                                 ["--env-id", "DictObservations-v0"], ["--resume", "x", "--eval-checkpoint", "y"], ["--exploration-noise", "-0.1"], ["--policy-distance-threshold", "-1"], *BAD_INPUTS])  # fmt: skip
def test_bad_input_fails_before_training(run_script, bad):
    with pytest.raises(SystemExit) as exit_info:
        run_script("rlx2_td3.py", *bad)
    assert str(exit_info.value).startswith("error: ") and not os.path.exists("runs")  # nothing written


def test_learns_pendulum(run_script):
    """The full method (RigL, 3-step targets, dynamic buffer) at 80% sparsity; a random policy scores -1200 to -1500."""
    g = run_script("rlx2_td3.py", "--env-id", "Pendulum-v1", "--actor-sparsity", "0.8", "--critic-sparsity", "0.8",
                   "--total-timesteps", "6000", "--learning-starts", "1000", "--topology-interval", "500",
                   "--delay-nstep", "1000", "--buffer-min-size", "2000", "--buffer-check-interval", "1000",
                   "--eval-frequency", "6000", "--eval-episodes", "5")  # fmt: skip
    assert np.mean(g["eval_returns"]) > -700


def test_a_shrink_leaves_the_n_transitions_an_n_step_window_needs(run_script):
    """--n-step 20 --buffer-min-size 20: a shrink of 90% at 50 or 70 transitions would leave 5 or 7; it leaves 20."""
    g = run_script("rlx2_td3.py", "--env-id", "Pendulum-v1", "--actor-sparsity", "0.9", "--critic-sparsity", "0.9",
                   "--total-timesteps", "400", "--learning-starts", "100", "--batch-size", "32", "--eval-episodes", "1",
                   "--n-step", "20", "--delay-nstep", "0", "--buffer-min-size", "20", "--buffer-size", "1000",
                   "--buffer-check-interval", "50", "--policy-distance-threshold", "0", "--buffer-drop-fraction", "0.9")  # fmt: skip
    sizes = logged_scalars(glob.glob("runs/*")[0])["buffer/size"]
    assert g["global_step"] == 400 and sizes == [20] * 8  # each check, every 50 steps, after its shrink
