"""The exported actor: a small torch-free file that reproduces the trained policy's actions."""

import glob
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from conftest import ROOT
from test_resume import flip_a_byte_inside_the_largest_tensor

from common.export import export_actor
from common.sparse_policy import SparsePolicy

TINY = ["--total-timesteps", "300", "--learning-starts", "100", "--batch-size", "32", "--topology-interval", "50",
        "--eval-frequency", "300", "--eval-episodes", "1", "--save-model"]  # fmt: skip


@pytest.mark.parametrize("script", ["rlx2_td3.py", "sparse_sac.py", "rlx2_sac.py"])
def test_exported_actor_reproduces_the_torch_actor(run_script, script):
    g = run_script(script, "--env-id", "HalfCheetah-v4", *TINY)
    checkpoint = glob.glob(f"runs/*/{script[:-3]}.pt")[0]
    arrays = export_actor(checkpoint, "actor.npz")
    assert "layer1.indices" in arrays and arrays["layer1.indices"].dtype == np.uint8  # the sparse 256x256 layer as CSR
    if script == "rlx2_sac.py":  # the fused output layer is sparse (ERK density 0.604): its mean rows only
        assert arrays["layer2.shape"].tolist() == [6, 256] and len(arrays["layer2.bias"]) == 6
    else:
        assert "layer2.weight" in arrays  # the dense output layer stays dense
    actor = g["load_actor"](checkpoint, g["env"], torch.device("cpu"))
    observations = np.random.default_rng(0).normal(size=(20, 17)).astype(np.float32) * 3
    with torch.no_grad():
        if script == "sparse_sac.py":
            mean, _ = actor(torch.as_tensor(observations))
            expected = torch.tanh(mean) * actor.action_scale + actor.action_bias
        elif script == "rlx2_sac.py":
            expected = actor.mean_action(torch.as_tensor(observations))
        else:
            expected = actor(torch.as_tensor(observations))
    for use_numba in (True, False):
        policy = SparsePolicy("actor.npz", use_numba=use_numba)
        actual = np.stack([policy(obs) for obs in observations])
        assert actual.dtype == np.float32 and np.allclose(actual, expected.numpy(), atol=1e-5), use_numba
    assert os.path.getsize("actor.npz") < os.path.getsize(checkpoint) / 5  # actor, critics and masks vs one actor


def test_policy_module_needs_no_torch():
    code = "import sys, common.sparse_policy; assert 'torch' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True)


def test_export_refuses_a_damaged_checkpoint(run_script):
    run_script("sparse_td3.py", "--env-id", "Pendulum-v1", *TINY)
    checkpoint = glob.glob("runs/*/sparse_td3.pt")[0]
    flip_a_byte_inside_the_largest_tensor(checkpoint)
    with pytest.raises(SystemExit, match=f"^error: {checkpoint} is damaged"):
        export_actor(checkpoint, "actor.npz")
