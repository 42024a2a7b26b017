"""One training update of sparse_td3.py equals one of the authors' released DS-TD3 on the same inputs (issue 29).

Runs only where DS_TD3_RELEASED_DIR names a clone of GhadaSokar/Dynamic-Sparse-Training-for-Deep-Reinforcement-Learning
(read at commit 0c8fa33): their `DS_TD3.py`, `sparse_utils.py` and `utils.py` are imported from it and called, unchanged.

Our script runs in-process for a tiny Hopper budget. A profiler records, at every `ReplayBuffer.sample`, the state the
previous iteration left (weights, target weights, masks, target masks), the rows the call drew and the torch generator
state right before the target-policy noise, and at each topology update the connections our drop kept. Their
`SETSparseTD3` then starts from our first state and replays the same iterations: the same rows (their `sample`'s one
numpy draw returns our indices), the same noise (the generator state restored), SET's random regrowth made to choose
the positions ours grew. After every iteration their weights, targets and masks are compared with our next state.

Run: DS_TD3_RELEASED_DIR=/path/to/clone OMP_NUM_THREADS=1 pytest -s tests/test_against_released_ds_td3.py
"""

import importlib.util
import os
import sys
from operator import attrgetter
from pathlib import Path

import numpy as np
import pytest
import torch

RELEASED_DIR = os.environ.get("DS_TD3_RELEASED_DIR")
pytestmark = pytest.mark.skipif(
    not RELEASED_DIR,
    reason="DS_TD3_RELEASED_DIR is not set: it names a clone of the released DS-TD3 code "
    "(GhadaSokar/Dynamic-Sparse-Training-for-Deep-Reinforcement-Learning)",
)

ENV_ID, BATCH, LEARNING_STARTS, ITERATIONS = "Hopper-v4", 32, 100, 200  # Hopper terminates: not_done 0 rows
INTERVAL = 30  # topology updates at iterations 30, 60, ..., 180: six of the critic and six of the actor
TOPOLOGY_END = 10_000  # past the run: every update regrows (the released last update prunes only, not reached here)
# float32, elementwise |theirs - ours| <= ATOL + RTOL |ours|. Both sides compute the same forward and backward, but
# ours steps torch's fused Adam (fused=True) and soft-updates with lerp, t + tau (p - t), where theirs steps the
# for-loop torch.optim.Adam and computes tau p + (1 - tau) t: each rounds differently in the last bit, and the
# iterations carry those bits on, a random walk. Weights are up to ~1 in size (one float32 ulp: 6e-8 in [0.5, 1)).
# Largest difference seen here (one thread): 4e-9 after the first iteration, 2.0e-7 online and 4.2e-7 in the targets
# (~7 ulps; they take 100 soft updates) after 200. rtol 1e-6 (8 ulps of the value) with atol 2e-7 is the tightest pair
# that holds, atol 1e-7 fails on 343 of the ~84M compared; atol 3e-7 leaves one step of headroom for other CPUs.
RTOL, ATOL = 1e-6, 3e-7
FLAGS = ["--env-id", ENV_ID, "--no-cuda", "--total-timesteps", str(LEARNING_STARTS + ITERATIONS),
         "--learning-starts", str(LEARNING_STARTS), "--batch-size", str(BATCH), "--topology-interval", str(INTERVAL),
         "--topology-end", str(TOPOLOGY_END), "--eval-frequency", "1000000", "--eval-episodes", "1"]  # fmt: skip

# their parameter -> (our network, our layer); their critic holds both Q-networks, l1-l3 our qf1 and l4-l6 our qf2
LAYERS = {
    "actor.l1": ("actor", "fc1"), "actor.l2": ("actor", "fc2"), "actor.l3": ("actor", "fc_mu"),
    "critic.l1": ("qf1", "fc1"), "critic.l2": ("qf1", "fc2"), "critic.l3": ("qf1", "fc3"),
    "critic.l4": ("qf2", "fc1"), "critic.l5": ("qf2", "fc2"), "critic.l6": ("qf2", "fc3"),
}  # fmt: skip
OUR_TARGETS = {"actor": "target_actor", "qf1": "qf1_target", "qf2": "qf2_target"}
# (their name, our network, our layer, weight or bias) of every online and target parameter
PARAMS = [
    (f"{net}{suffix}.{layer}.{param}", OUR_TARGETS[ours] if suffix else ours, our_layer, param)
    for theirs, (ours, our_layer) in LAYERS.items()
    for net, layer in [theirs.split(".")]
    for suffix in ("", "_target")
    for param in ("weight", "bias")
]
# the sparse layers in the order their train() rewires them, which is the order of our masks too: critic, then actor
SPARSE = ["critic.l1", "critic.l2", "critic.l4", "critic.l5", "actor.l1", "actor.l2"]


def our_state(g: dict) -> dict[str, torch.Tensor]:
    """Our networks and masks, under their names, copied: `mask:` the online masks, `target_mask:` the targets' own."""
    state = {name: getattr(getattr(g[net], layer), param).detach().clone() for name, net, layer, param in PARAMS}
    masks = g["critic_sparse"].masks + g["actor_sparse"].masks
    target_masks = g["critic_target_masks"] + g["actor_target_masks"]
    for name, mask, target_mask in zip(SPARSE, masks, target_masks, strict=True):
        state[f"mask:{name}"], state[f"target_mask:{name}"] = mask.bool(), target_mask.bool()
    return state


def their_state(policy) -> dict[str, torch.Tensor]:
    """The same of theirs: their masks live in the networks (`torchMask1`, ...), their targets' topology is where the
    target weights are not zero."""
    state = {name: attrgetter(name)(policy).detach().clone() for name, *_ in PARAMS}
    for name in SPARSE:
        net, layer = name.split(".")
        state[f"mask:{name}"] = getattr(getattr(policy, net), f"torchMask{layer[1:]}").bool()
        state[f"target_mask:{name}"] = attrgetter(f"{net}_target.{layer}.weight")(policy) != 0
    return state


def load_theirs(policy, state: dict[str, torch.Tensor]) -> None:
    """Our weights, targets and masks into their networks: a mask is kept there three ways (numpy `mask1`, torch
    `torchMask1`, and its count `noPar1`, the connections SET regrows up to)."""
    with torch.no_grad():
        for name, *_ in PARAMS:
            attrgetter(name)(policy).copy_(state[name])
    for name in SPARSE:
        net, layer = name.split(".")
        mask, network, i = state[f"mask:{name}"], getattr(policy, net), layer[1:]
        setattr(network, f"mask{i}", mask.double().numpy())
        setattr(network, f"torchMask{i}", mask.float())
        setattr(network, f"noPar{i}", float(mask.sum()))


def near_tie(what: str, ours_only: torch.Tensor, theirs_only: torch.Tensor) -> bool:
    """A ranking where ours kept the values `ours_only` and theirs `theirs_only` instead (their side's values, as
    ranked) flipped on a near-tie if their magnitudes are all within the tolerance of each other. Prints them."""
    size = torch.cat([ours_only, theirs_only]).abs()
    tie = bool(size.max() - size.min() <= ATOL + RTOL * size.max())
    print(
        f"{what}: ours kept {ours_only.tolist()}, theirs {theirs_only.tolist()}: {'a tie, re-synced' if tie else 'NOT a tie'}"
    )
    return tie


def capture(run) -> list[dict]:
    """Run our script under a profiler; one record per training iteration: `state` before it, `size` (rows in the
    buffer), `idx` (rows drawn), `rng` (the torch generator right before the target-policy noise), `kept` (at a
    topology update, the connections our drop kept, per sparse layer), and a last record with the final state."""
    records = []

    def profile(frame, event, arg):
        code = frame.f_code
        if code.co_name == "sample" and code.co_filename.endswith("sparse_td3.py"):
            if event == "call":  # the caller is the training loop, at module level: its globals are the script's
                g = frame.f_back.f_globals
                if not records:
                    kill_a_unit(g)
                state = our_state(g)
                records.append({"iteration": g["iteration"], "size": frame.f_locals["self"].size, "state": state, "kept": []})
            elif event == "return":
                records[-1]["idx"], records[-1]["rng"] = frame.f_locals["idx"].clone(), torch.get_rng_state()
        elif code.co_name == "grow_largest" and event == "call" and code.co_filename.endswith("topology.py"):
            records[-1]["kept"].append(frame.f_locals["mask"].clone())  # update_mask's kept connections

    previous = sys.getprofile()
    sys.setprofile(profile)
    try:
        g = run()
    finally:
        sys.setprofile(previous)
    records.append({"state": our_state(g), "buffer": g["rb"]})
    return records


def kill_a_unit(g: dict) -> None:
    """Active weights that are exactly zero, in our live run before its first update: the actor's first-layer unit with
    the most connections gets zero weights and bias -1. Its ReLU never fires, so its weights get zero gradient and, with
    Adam's moments still zero, stay exactly zero: zeros the SET drop and the target top-k both meet (until the first
    actor update drops them; weight decay moves its bias only ~1e-3 a step towards zero, under Adam)."""
    actor, mask = g["actor"], g["actor_sparse"].masks[0]
    unit = int(mask.sum(1).argmax())
    with torch.no_grad():
        actor.fc1.weight[unit] = 0.0
        actor.fc1.bias[unit] = -1.0


def load_released(monkeypatch, directory: Path) -> tuple:
    """Their modules from the clone, under their own names, removed from sys.modules after the test."""
    assert (directory / "DS_TD3.py").is_file(), f"DS_TD3_RELEASED_DIR={directory} holds no DS_TD3.py"
    modules = []
    for name in ("sparse_utils", "utils", "DS_TD3"):  # DS_TD3 imports sparse_utils
        spec = importlib.util.spec_from_file_location(name, directory / f"{name}.py")
        module = importlib.util.module_from_spec(spec)
        monkeypatch.setitem(sys.modules, name, module)
        spec.loader.exec_module(module)
        modules.append(module)
    monkeypatch.setattr(modules[2], "device", torch.device("cpu"))  # their networks follow this global
    return tuple(modules)


def test_one_update_equals_the_released_ds_td3(run_script, monkeypatch):
    sp, utils, ds = load_released(monkeypatch, Path(RELEASED_DIR))
    records = capture(lambda: run_script("sparse_td3.py", *FLAGS))
    steps, final = records[:-1], records[-1]
    assert [r["iteration"] for r in steps] == list(range(1, ITERATIONS + 1))
    topology = [r["iteration"] for r in steps if r["kept"]]
    assert topology == list(range(INTERVAL, ITERATIONS + 1, INTERVAL)) and all(len(r["kept"]) == 6 for r in steps if r["kept"])

    # their agent as their main.py builds it (Hopper: max_action 1, the paper's epsilons 7 / 64), then our first state.
    # Their update fires at total_it % period == 2, ours at iteration % interval == 0 (a documented offset): their
    # counter starts at 2 here, so total_it = our iteration + 2 (the same parity, so the delayed actor steps align too).
    rb = final["buffer"]
    obs_dim, act_dim = rb.obs.shape[1], rb.actions.shape[1]
    policy = ds.SETSparseTD3(
        state_dim=obs_dim, action_dim=act_dim, max_action=1.0, discount=0.99, tau=0.005, noHidNeurons=256,
        policy_noise=0.2 * 1.0, noise_clip=0.5 * 1.0, policy_freq=2, epsilonHid1=7, epsilonHid2=64, setZeta=0.05,
        ascTopologyChangePeriod=INTERVAL, earlyStopTopologyChangeIteration=TOPOLOGY_END + 2,
    )  # fmt: skip
    load_theirs(policy, steps[0]["state"])
    policy.total_it = 2
    # our transitions in the same rows; not_done as their main.py stores it, 1 - done, with done our `terminations`
    # (their time-limit exception never applies: the whole run is shorter than one Hopper episode's 1000 steps)
    assert LEARNING_STARTS + ITERATIONS < 1000
    buffer = utils.ReplayBuffer(obs_dim, act_dim, max_size=rb.size)
    buffer.device = torch.device("cpu")

    # their two random draws: the batch's rows in their sample, and SET's regrowth (a row, then a column, until an
    # empty position), which gets the positions our update grew, each empty after their drop so each is taken
    draws = {"rows": None, "grow": iter(())}

    def randint(low, high=None, size=None, dtype=int):
        if size is not None:
            assert (low, high, size) == (0, buffer.size, BATCH)
            return draws["rows"]
        position = next(draws["grow"], None)
        assert position is not None, "their regrowth wants more connections than ours grew: their drop kept fewer"
        assert low == 0 and position < high
        return position

    monkeypatch.setattr(np.random, "randint", randint)

    rewire_released, layers_to_rewire, ties = sp.changeConnectivitySET, [], []

    def rewire(weights, noWeights, initMask, zeta, lastTopologyChange, iteration):
        name, kept, new = layers_to_rewire.pop(0)
        # Released: the new mask is applied after the optimizer step already moved the inactive entries, so a grown
        # connection starts one Adam step from zero; ours starts it at zero (docs/ds-td3.md, "a grown connection's
        # first value"). `weights` is their parameter itself (`.data.cpu().numpy()` of a CPU tensor shares its memory):
        # the old mask zeroes its inactive entries in place, as our step does before our update.
        weights *= initMask
        # their drop alone (their own function, told it is the last update: no regrowth) against ours, exactly
        theirs_kept = torch.from_numpy(rewire_released(weights, noWeights, initMask, zeta, True, iteration)[0] != 0)
        if not torch.equal(theirs_kept, kept):
            value = torch.from_numpy(weights)
            assert near_tie(
                f"iteration {iteration - 2} {name} SET drop", value[kept & ~theirs_kept], value[theirs_kept & ~kept]
            )
            ties.append(iteration - 2)
            return new.double().numpy(), None  # re-synced: our topology for this layer
        draws["grow"] = iter((new & ~kept).nonzero().flatten().tolist())
        mask, stats = rewire_released(weights, noWeights, initMask, zeta, lastTopologyChange, iteration)
        assert next(draws["grow"], None) is None, f"{name}: their regrowth stopped short of ours: their drop kept more"
        return mask, stats

    monkeypatch.setattr(sp, "changeConnectivitySET", rewire)

    # The released target top-k keeps as many entries as the online layer has NONZERO weights, `(param != 0).sum()`,
    # ours as many as it has connections (its mask). They differ by the active weights that are exactly zero: the dead
    # unit's here, and after every topology update the grown connections, which start at zero on both sides in this test
    # (above) and in our runs; in their own runs a grown weight has taken an Adam step, so no active weight is exactly
    # zero there. Their function reads `param` only for that count: it gets the online mask, so it counts connections
    # as ours does; the count of their rule as released is taken on a copy, to show how many entries it would drop more.
    update_targets_released = policy.update_target_networks
    mask_of = {id(attrgetter(f"{name}.weight")(policy)): name for name in SPARSE}
    released_drops_more, ranked = {}, {}  # (iteration, layer) -> entries; layer -> their target before its top-k

    def update_targets(param, target_param, device):
        name = mask_of.get(id(param))
        if name is None:  # a dense layer
            return update_targets_released(param, target_param, device)
        net, layer = name.split(".")
        ranked[name] = target_param.detach().clone()
        as_released = target_param.detach().clone()
        update_targets_released(param, as_released, device)
        update_targets_released(getattr(getattr(policy, net), f"torchMask{layer[1:]}"), target_param, device)
        released_drops_more[policy.total_it - 2, name] = int((target_param != 0).sum() - (as_released != 0).sum())

    policy.update_target_networks = update_targets

    largest = dict.fromkeys(("actor", "critic", "actor_target", "critic_target"), 0.0)
    zeros, not_done_rows = {}, 0  # (iteration, layer) -> our active weights that are exactly zero after it
    for record, after in zip(steps, records[1:]):
        iteration, ours = record["iteration"], after["state"]
        while buffer.size < record["size"]:
            i = buffer.size
            buffer.add(rb.obs[i].numpy(), rb.actions[i].numpy(), rb.next_obs[i].numpy(), float(rb.rewards[i]),
                       float(rb.terminations[i]))  # fmt: skip
        draws["rows"] = record["idx"].numpy()
        not_done_rows += int(rb.terminations[record["idx"]].sum())
        if record["kept"]:
            layers_to_rewire[:] = [(n, k, ours[f"mask:{n}"]) for n, k in zip(SPARSE, record["kept"], strict=True)]
        torch.set_rng_state(record["rng"])
        policy.train(buffer, BATCH)
        assert not layers_to_rewire and policy.total_it == iteration + 2
        theirs = their_state(policy)
        for name in SPARSE:
            zeros[iteration, name] = int((ours[f"mask:{name}"] & (ours[f"{name}.weight"] == 0)).sum())
        resync = False
        for name in SPARSE:
            assert torch.equal(theirs[f"mask:{name}"], ours[f"mask:{name}"]), f"iteration {iteration}: {name} mask"
            mine, other = ours[f"target_mask:{name}"], theirs[f"target_mask:{name}"]
            if not torch.equal(mine, other):
                value, what = ranked[name], f"iteration {iteration} {name} target top-k"
                assert near_tie(what, value[mine & ~other], value[other & ~mine]), f"{what}: target masks differ"
                ties.append(iteration)
                resync = True
        for name, *_ in PARAMS:
            torch.testing.assert_close(
                theirs[name], ours[name], rtol=RTOL, atol=ATOL, msg=lambda m: f"iteration {iteration} {name}: {m}"
            )
            group = name.split(".")[0]
            largest[group] = max(largest[group], float((theirs[name] - ours[name]).abs().max()))
        if resync:
            load_theirs(policy, ours)

    assert not_done_rows > 0  # sampled terminal transitions: not_done 0 on their side
    # the zero-weight case happened: the dead unit's zeros before the first actor update, which our drop removed
    first = steps[INTERVAL - 1]
    dead = first["state"]["mask:actor.l1"] & (first["state"]["actor.l1.weight"] == 0)
    assert dead.sum() > 0 and not (first["kept"][SPARSE.index("actor.l1")] & dead).any()
    # at every soft update, the released count keeps exactly as many target entries fewer as the online layer has
    # active weights that are exactly zero (online weights do not change after the soft update in an iteration)
    assert released_drops_more == {key: zeros[key] for key in released_drops_more}
    assert len(released_drops_more) == len(SPARSE) * ITERATIONS // 2
    at_zero = {name: max(zeros[i, name] for i in range(1, ITERATIONS + 1)) for name in SPARSE}
    print(
        f"\nreleased DS-TD3 replayed {ITERATIONS} iterations, {len(topology)} topology updates of critic and actor "
        f"(iterations {topology}), near-ties re-synced: {ties or 'none'}\n"
        f"largest |theirs - ours| (rtol {RTOL}, atol {ATOL}): " + ", ".join(f"{k} {v:.3g}" for k, v in largest.items()) + "\n"
        f"most active weights exactly zero at a soft update, and so target entries the released (online != 0) count "
        f"would keep fewer than ours: {at_zero}; the dead unit's: {int(dead.sum())} (iterations 1-{INTERVAL})"
    )
