"""DS-SAC end to end: SAC and alpha updates, SET topology updates and hard target copies keep the invariants."""

import glob
import os

import numpy as np
import pytest
import torch
from conftest import BAD_INPUTS, assert_sparse_invariants, logged_scalars

SMOKE = ["--total-timesteps", "1000", "--learning-starts", "400", "--batch-size", "32", "--topology-interval", "100",
         "--topology-end", "500", "--target-network-frequency", "50", "--eval-frequency", "500", "--eval-episodes", "1",
         "--save-model", "--autotune"]  # fmt: skip


def test_soft_targets_with_online_masks(run_script):
    g = run_script("sparse_sac.py", "--env-id", "Hopper-v4", "--tau", "0.005", "--target-network-frequency", "1",
                   "--target-topology", "online", "--reset-grown-moments", *SMOKE)  # fmt: skip
    critic = g["critic_sparse"]
    assert all(bool(torch.all(w[m == 0] == 0)) for w, m in zip(g["critic_target_sparse"], critic.masks, strict=True))
    assert_sparse_invariants(critic, "critic", logged_scalars(glob.glob("runs/*")[0]))


def test_smoke_halfcheetah_reaches_every_update(run_script):
    g = run_script("sparse_sac.py", "--env-id", "HalfCheetah-v4", *SMOKE)
    actor_sparse, critic_sparse = g["actor_sparse"], g["critic_sparse"]
    assert actor_sparse.names == ["fc1.weight", "fc2.weight"] and len(critic_sparse.names) == 4
    # 600 iterations: actor and critics every iteration, alpha tuned, 5 topology updates, 12 hard target copies
    assert all(int(s["step"]) == 600 for s in g["actor_optimizer"].state.values())
    assert all(int(s["step"]) == 600 for s in g["q_optimizer"].state.values())
    assert int(g["a_optimizer"].state[g["log_alpha"]]["step"]) == 600 and g["alpha"] != 1.0
    # the last hard copy (iteration 600) made the targets equal to the online critics: same weights, same topology
    for online, target in zip(g["qfs"].parameters(), g["qfs_target"].parameters(), strict=True):
        assert torch.equal(online, target)

    run_dir = glob.glob("runs/*")[0]
    logged = logged_scalars(run_dir)
    assert_sparse_invariants(actor_sparse, "actor", logged)
    assert_sparse_invariants(critic_sparse, "critic", logged)
    for tag in ("charts/episodic_return", "losses/qf1_loss", "losses/actor_loss", "losses/alpha", "losses/alpha_loss",
                "losses/log_prob", "eval/episodic_return", "sparse/training_FLOPs_ratio", "sparse/actor_ever_active"):  # fmt: skip
        assert tag in logged, tag
    heads = 2 * 256 * 6  # the dense mean and log-std layers
    assert logged["sparse/actor_weights"] == 5 * [sum(actor_sparse.nnz()) + heads]  # at step 0 and 4 updates (before 500)

    checkpoint = torch.load(f"{run_dir}/sparse_sac.pt", weights_only=True)
    assert set(checkpoint) >= {"actor", "qf1", "qf2", "masks", "args"}
    for name, mask in checkpoint["masks"]["actor"].items():
        assert torch.all(checkpoint["actor"][name][~mask] == 0)
    final_eval = logged["eval/episodic_return"][-1]
    loaded = g["load_actor"](f"{run_dir}/sparse_sac.pt", g["env"], g["device"])
    assert g["evaluate"](loaded, "HalfCheetah-v4", 1, 101, g["device"]) == pytest.approx([final_eval], rel=1e-4)


@pytest.mark.parametrize("env_id, eps1, eps2", [("HalfCheetah-v4", 12, 80), ("Hopper-v4", 7, 20)])
def test_er_densities_follow_the_appendix_table(run_script, env_id, eps1, eps2):
    g = run_script("sparse_sac.py", "--env-id", env_id, "--total-timesteps", "2", "--learning-starts", "1",
                   "--eval-frequency", "10", "--eval-episodes", "1")  # fmt: skip
    for net, densities, sparse in ((g["actor"], g["actor_densities"], g["actor_sparse"]),
                                   (g["qf1"], g["qf_densities"], g["critic_sparse"])):  # fmt: skip
        n_in = net.fc1.in_features
        assert densities["fc1.weight"] == pytest.approx(min(1.0, eps1 * (n_in + 256) / (n_in * 256)))
        assert densities["fc2.weight"] == pytest.approx(eps2 * (256 + 256) / (256 * 256))
        realised = [int(m.sum()) / m.numel() for m in sparse.masks[:2]]
        assert realised == pytest.approx([densities["fc1.weight"], densities["fc2.weight"]], abs=0.02)


def test_dense_mode_has_no_masks(run_script):
    g = run_script("sparse_sac.py", "--env-id", "Pendulum-v1", "--sparsity", "0", *SMOKE)
    assert g["actor_sparse"].names == [] and g["critic_sparse"].names == []


@pytest.mark.parametrize("bad", [["--env-id", "CartPole-v1"], ["--sparsity", "1"], ["--tau", "0"],
                                 ["--target-network-frequency", "0"], ["--total-timesteps", "10", "--learning-starts", "10"],
                                 ["--eval-episodes", "0"], ["--tau", "1.5"], ["--gamma", "-0.1"], ["--learning-rate", "nan"],
                                 ["--env-id", "DictObservations-v0"], ["--resume", "x", "--eval-checkpoint", "y"], ["--alpha", "-1"], ["--sparsity", "0.999"], ["--er-epsilons", "nan", "64"], ["--alpha", "inf"], *BAD_INPUTS])  # fmt: skip
def test_bad_input_fails_before_training(run_script, bad):
    with pytest.raises(SystemExit) as exit_info:
        run_script("sparse_sac.py", *bad)
    assert str(exit_info.value).startswith("error: ") and not os.path.exists("runs")  # nothing written


@pytest.mark.parametrize("sparsity", ["0", "0.5"])
def test_learns_pendulum(run_script, sparsity):
    """Random policy: about -1200 to -1500. Soft targets and batch 128 keep this test short."""
    g = run_script("sparse_sac.py", "--env-id", "Pendulum-v1", "--sparsity", sparsity, "--total-timesteps", "5000",
                   "--learning-starts", "1000", "--batch-size", "128", "--tau", "0.005", "--target-network-frequency", "1",
                   "--topology-interval", "200", "--eval-frequency", "5000", "--eval-episodes", "5")  # fmt: skip
    assert np.mean(g["eval_returns"]) > -700
