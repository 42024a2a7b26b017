"""One training update of ours equals one of the authors' released code on the same inputs: RLx2's TD3 and SAC
(tyq1024/RLx2 at 3f4898b). Runs only where RLX2_RELEASED_DIR names a clone of it; nothing of theirs is copied here,
their modules are imported from the clone.

Our script runs for a short budget with every mechanism on (RigL topology updates of both networks, 3-step targets
after a delay, dynamic-buffer shrinks). A profiler records, at each call of our buffer's `sample`, the state the
previous iteration left (weights, targets, masks, the buffer's window) and what the sample drew (the indices and the
RNG state before the target's first random draw). Their `TD3` / `SAC` then starts from our first state and trains on the same
transitions: their buffer holds our transitions in the same slots and shrinks where ours did, their one index draw
returns ours, and their noise draw starts from our RNG state. After every iteration their weights, targets and masks
must equal ours."""

import argparse
import os
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

RLX2_DIR = os.environ.get("RLX2_RELEASED_DIR")
pytestmark = pytest.mark.skipif(not RLX2_DIR, reason="set RLX2_RELEASED_DIR to a clone of tyq1024/RLx2 at 3f4898b")

# float32 tolerance: torch.optim.Adam (theirs, foreach) and ours (fused=True) round differently in the
# last bits, and the n-step return sums in another order; over a few hundred iterations that stays far below this
TOLERANCE = {"rtol": 1e-5, "atol": 1e-6}


class Recorder:
    """`sys.setprofile` hook: at each call of the script's `ReplayBuffer.sample`, what the loop holds; at its return,
    what the sample drew."""

    def __init__(self, script: str, snapshot):
        self.script, self.snapshot, self.calls = script, snapshot, []

    def __call__(self, frame, event, arg):
        code = frame.f_code
        if code.co_name != "sample" or not code.co_filename.endswith(self.script):
            return
        if event == "call":
            self.calls.append({"before": self.snapshot(frame.f_back.f_globals)})
        elif event == "return":
            self.calls[-1].update(offsets=frame.f_locals["offsets"].clone(), rng=torch.get_rng_state())


def run_recorded(run_script, script: str, args: list[str], snapshot) -> tuple[list[dict], dict]:
    """Our script's run, with a record per training iteration, and its globals at the end."""
    recorder = Recorder(script, snapshot)
    sys.setprofile(recorder)
    try:
        final = run_script(script, *args)
    finally:
        sys.setprofile(None)
    return recorder.calls, final


def cloned(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {name: tensor.detach().clone() for name, tensor in module.state_dict().items()}


def snapshot(g: dict) -> dict:
    """What an iteration of rlx2_td3.py or rlx2_sac.py reads and writes, from the script's globals."""
    networks = ("actor", "qf1", "qf2", "target_actor", "qf1_target", "qf2_target")
    state = {name: cloned(g[name]) for name in networks if name in g}
    state["masks"] = {
        net: dict(zip(g[f"{net}_sparse"].names, [m.clone() for m in g[f"{net}_sparse"].masks])) for net in ("actor", "critic")
    }
    if "log_alpha" in g:
        state["log_alpha"] = g["log_alpha"].detach().clone()
    return {**state, "start": g["rb"].start, "size": g["rb"].size, "iteration": g["iteration"]}


# their layer names against ours: actor l1-l3; one critic module with Q1 in l1-l3 and Q2 in l4-l6
CRITIC_LAYERS = {f"l{i + 3 * q}": (f"qf{q + 1}", f"fc{i}") for q in (0, 1) for i in (1, 2, 3)}


def actor_layers(state: dict) -> dict[str, str]:
    return dict(zip(("l1", "l2", "l3"), ("fc1", "fc2", "fc_mu" if "fc_mu.weight" in state["actor"] else "fc_mean_logstd")))


def ours_as_theirs(state: dict) -> dict[str, dict[str, torch.Tensor]]:
    """Our networks as state dicts of theirs: actor, critic, critic_target and, for TD3, actor_target."""
    theirs = {}
    if "target_actor" in state:
        theirs["actor_target"] = {
            f"{layer}.{p}": state["target_actor"][f"{ours}.{p}"]
            for layer, ours in actor_layers(state).items()
            for p in ("weight", "bias")
        }
    theirs["actor"] = {
        f"{layer}.{p}": state["actor"][f"{ours}.{p}"]
        for layer, ours in actor_layers(state).items()
        for p in ("weight", "bias")
    }
    for name, suffix in (("critic", ""), ("critic_target", "_target")):
        theirs[name] = {
            f"{layer}.{p}": state[q + suffix][f"{fc}.{p}"]
            for layer, (q, fc) in CRITIC_LAYERS.items()
            for p in ("weight", "bias")
        }
    return theirs


def our_masks_as_theirs(state: dict) -> dict[str, list[torch.Tensor]]:
    """Our masks in the order of their pruners' `backward_masks` (get_W: the layers in definition order); a layer
    that ERK leaves dense has no mask of ours and an all-ones one of theirs."""

    def mask(net: str, name: str, weight: torch.Tensor) -> torch.Tensor:
        return state["masks"][net].get(name, torch.ones_like(weight))

    return {
        "actor": [mask("actor", f"{fc}.weight", state["actor"][f"{fc}.weight"]) for fc in actor_layers(state).values()],
        "critic": [mask("critic", f"{q}.{fc}.weight", state[q][f"{fc}.weight"]) for q, fc in CRITIC_LAYERS.values()],
    }


@pytest.fixture
def released_rlx2(monkeypatch):
    """Their modules, importable as their train.py imports them (each script's folder first)."""
    root = Path(RLX2_DIR).resolve()
    monkeypatch.syspath_prepend(str(root))
    for folder in ("RLx2_TD3", "RLx2_SAC"):
        monkeypatch.syspath_prepend(str(root / folder))
    from DST.utils import ReplayBuffer
    from RLx2_SAC.SAC import SAC
    from RLx2_TD3.TD3 import TD3

    return {"TD3": TD3, "SAC": SAC, "ReplayBuffer": ReplayBuffer}


class NoWriter:
    def add_scalar(self, *args, **kwargs):
        pass


def their_args(env, **settings) -> argparse.Namespace:
    """Their train.py's `args` as TD3 and SAC read them, for an env and a short schedule."""
    max_action = float(env.action_space.high[0])
    common = {"max_action": max_action, "discount": 0.99, "tau": 0.005, "hidden_dim": 256, "nstep": 3, "zeta": 0.5}
    common |= {"state_dim": env.observation_space.shape[0], "action_dim": env.action_space.shape[0], "random_grow": False}
    common |= {"static_actor": False, "static_critic": False}
    return argparse.Namespace(**common, **settings)


def replay_against_theirs(policy, ReplayBuffer, calls: list[dict], final: dict, batch_size: int) -> dict:
    """Their policy from our first state, trained on our inputs, compared with our state after every iteration.
    Returns the largest |ours - theirs| per network and their number of topology updates per network."""
    policy.tb_interval = 1  # their logging interval, int(T_end / 1000), is 0 for so short a schedule
    first = calls[0]["before"]
    for name, state in ours_as_theirs(first).items():  # TD3: ours are sparse from the start, theirs dense until the
        getattr(policy, name).load_state_dict(state)  # first target update; here both start from ours
    for name, masks in our_masks_as_theirs(first).items():
        for theirs, ours in zip(getattr(policy, f"{name}_pruner").backward_masks, masks, strict=True):
            theirs.copy_(ours.bool())
    if "log_alpha" in first:
        policy.log_alpha.data.copy_(first["log_alpha"].reshape(()))

    rb = final["rb"]
    buffer = ReplayBuffer(policy.actor.l1.in_features, rb.actions.shape[1], max_size=rb.max_capacity)
    terminated, ends = rb.terminations.numpy(), rb.episode_ends.numpy()
    largest, updates = {}, {}
    for k, call in enumerate(calls[:-1]):
        before, after = call["before"], calls[k + 1]["before"]
        for i in range(buffer.ptr, before["start"] + before["size"]):  # our new slots, as their train.py stores them
            row = [rb.obs[i].numpy(), rb.actions[i].numpy(), rb.next_obs[i].numpy(), float(rb.rewards[i]), terminated[i]]
            buffer.add(*row, rb.behaviour_actions[i].numpy(), ends[i] and not terminated[i])
        while buffer.left_ptr != before["start"]:  # ours shrank since the last iteration: theirs shrinks the same way
            size = buffer.size
            buffer.shrink()
            assert before["size"] <= buffer.size < size, "their shrink drops another number of rows"
        assert buffer.size == before["size"]

        offsets = call["offsets"].numpy()[:, None]

        def our_offsets(low, high, size):  # their sample's one draw: the same range, our values
            assert low == 0 and size == offsets.shape and offsets.max() < high
            return offsets

        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(np.random, "randint", our_offsets)
            torch.set_rng_state(call["rng"])  # their target's random draws: the ones ours made
            policy.train(buffer, batch_size)

        for name, ours in ours_as_theirs(after).items():
            for key, value in getattr(policy, name).state_dict().items():
                torch.testing.assert_close(value, ours[key], **TOLERANCE, msg=f"iteration {k + 1}: {name} {key}")
                largest[name] = max(largest.get(name, 0.0), float((value - ours[key]).abs().max()))
        if "log_alpha" in after:
            torch.testing.assert_close(policy.log_alpha.detach(), after["log_alpha"].reshape(()), **TOLERANCE)
            largest["log_alpha"] = max(
                largest.get("log_alpha", 0.0), abs(float(policy.log_alpha.detach() - after["log_alpha"]))
            )
        for name, masks in our_masks_as_theirs(after).items():
            pruner = getattr(policy, f"{name}_pruner")
            for layer, (theirs, ours) in enumerate(zip(pruner.backward_masks, masks)):
                assert torch.equal(theirs, ours.bool()), f"iteration {k + 1}: {name} layer {layer} masks differ"
            updates[name] = pruner.dst_steps
    return {"largest": largest, "updates": updates}


LEARNING_STARTS, ITERATIONS, BATCH_SIZE, DELTA, DELAY_NSTEP = 300, 200, 32, 20, 60
# every mechanism within 200 iterations: topology updates every 20 (both networks), 3-step targets from iteration 60,
# a buffer check every 50 env steps shrinking whenever the buffer holds more than 300 transitions (threshold 0), so
# from step 350 on, when their shrinks can be replayed between training iterations as ours happened
SHORT_RUN = ["--env-id", "Hopper-v4", "--seed", "3", "--total-timesteps", str(LEARNING_STARTS + ITERATIONS)]
SHORT_RUN += ["--learning-starts", str(LEARNING_STARTS), "--batch-size", str(BATCH_SIZE), "--eval-frequency", "100000"]
SHORT_RUN += ["--eval-episodes", "1", "--topology-interval", str(DELTA), "--n-step", "3", "--delay-nstep", str(DELAY_NSTEP)]
SHORT_RUN += ["--buffer-check-interval", "50", "--buffer-min-size", str(LEARNING_STARTS), "--policy-distance-threshold", "0"]


def check_run(calls: list[dict]) -> None:
    assert [call["before"]["iteration"] for call in calls] == list(range(1, ITERATIONS + 1))
    assert sum(b["before"]["start"] != a["before"]["start"] for a, b in zip(calls, calls[1:])) >= 3  # shrinks seen


def test_rlx2_td3_update_equals_the_released_one(run_script, released_rlx2):
    calls, final = run_recorded(run_script, "rlx2_td3.py", SHORT_RUN, snapshot)
    check_run(calls)
    env = final["env"]
    max_action = float(env.action_space.high[0])
    settings = {"actor_sparsity": 0.98, "critic_sparsity": 0.95, "delay_nstep": DELAY_NSTEP, "T_end": ITERATIONS}
    settings |= {"delta": DELTA, "policy_noise": 0.2 * max_action, "noise_clip": 0.5 * max_action, "policy_freq": 2}
    policy = released_rlx2["TD3"](their_args(env, **settings), NoWriter())
    result = replay_against_theirs(policy, released_rlx2["ReplayBuffer"], calls, final, BATCH_SIZE)
    print(
        f"\nRLx2-TD3, {len(calls) - 1} iterations, topology updates {result['updates']}: |ours - theirs| <= {result['largest']}"
    )
    assert result["updates"]["critic"] >= 8 and result["updates"]["actor"] >= 4  # both networks' RigL, several times


def test_rlx2_sac_update_equals_the_released_one(run_script, released_rlx2):
    calls, final = run_recorded(run_script, "rlx2_sac.py", SHORT_RUN, snapshot)
    check_run(calls)
    settings = {"actor_sparsity": 0.98, "critic_sparsity": 0.95, "delay_nstep": DELAY_NSTEP, "T_end": ITERATIONS}
    settings |= {"delta": DELTA, "lr": 3e-4, "actor_update_frequency": 1, "critic_target_update_frequency": 1}
    settings |= {"log_std_bounds": [-5, 2]}
    policy = released_rlx2["SAC"](their_args(final["env"], **settings), NoWriter())
    result = replay_against_theirs(policy, released_rlx2["ReplayBuffer"], calls, final, BATCH_SIZE)
    print(
        f"\nRLx2-SAC, {len(calls) - 1} iterations, topology updates {result['updates']}: |ours - theirs| <= {result['largest']}"
    )
    assert result["updates"]["critic"] >= 8 and result["updates"]["actor"] >= 8


def test_a_seed_starts_ours_and_theirs_from_the_same_networks(run_script, released_rlx2):
    """Their TD3 train.py seeds torch with --seed and builds its networks and masks before anything else draws from it,
    as rlx2_td3.py does: for one seed, a run of ours and a run of theirs start from equal weights and masks and part at
    the first update's random draws (other generators on each side). So a seed of ours beside the same seed of theirs
    is one start trained twice. (Not so for SAC: their SAC builds its critic before its actor, rlx2_sac.py the actor
    first, as CleanRL does.)"""
    calls, final = run_recorded(run_script, "rlx2_td3.py", SHORT_RUN, snapshot)
    seed = int(SHORT_RUN[SHORT_RUN.index("--seed") + 1])
    torch.manual_seed(seed)  # train.py: env.seed, env.action_space.seed, torch.manual_seed, np.random.seed, then TD3
    np.random.seed(seed)
    env = final["env"]
    settings = {"actor_sparsity": 0.98, "critic_sparsity": 0.95, "delay_nstep": DELAY_NSTEP, "T_end": ITERATIONS}
    settings |= {"delta": DELTA, "policy_noise": 0.2, "noise_clip": 0.5, "policy_freq": 2}
    policy = released_rlx2["TD3"](their_args(env, **settings), NoWriter())
    first = calls[0]["before"]  # before the first update: the networks as built (the warm-up steps train nothing)
    for name in ("actor", "critic"):
        for key, value in ours_as_theirs(first)[name].items():
            assert torch.equal(getattr(policy, name).state_dict()[key], value), f"{name} {key}"
        masks = our_masks_as_theirs(first)[name]
        for theirs, ours in zip(getattr(policy, f"{name}_pruner").backward_masks, masks, strict=True):
            assert torch.equal(theirs, ours.bool())
