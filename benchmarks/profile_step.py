"""Where one training iteration's time goes, measured inside one run of a script with cProfile.

Whole-run timings on a shared 2-core machine drift by 20% between minutes; a profile of one run attributes time to
functions and is not fooled by that. The scripts' training loop is one flat block, so every call made directly from
it is a phase: the table gives each phase's time per training iteration (its calls' cumulative time, nested calls
included, divided by the number of iterations) and its share of the run. Runs the script for 1000 random steps and
3000 training iterations with topology updates active.

    python benchmarks/profile_step.py sparse_td3.py --topology-end 100000
    python benchmarks/profile_step.py rlx2_td3.py --topology-interval 1000 --sparse-backend kernel
    PYTHONPATH=PEER PEER/venv/bin/python benchmarks/profile_step.py PEER/td3_continuous_action.py  # CleanRL's, for comparison
"""

import cProfile
import pstats
import re
import runpy
import sys
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RANDOM_STEPS, ITERATIONS = 1000, 3000
# calls made from the training loop -> phase; network calls (acting and losses alike) are "forward"
PHASES = {
    "step": "env step", "reset": "env step", "add": "buffer add", "sample": "buffer sample",
    "_wrapped_call_impl": "forward (acting, losses)", "get_action": "forward (acting, losses)",
    "backward": "backward", "zero_grad": "optimizer", "wrapper": "optimizer",
    "_foreach_lerp_": "target update", "_foreach_mul_": "target update",
    "apply_": "mask work", "mask_gradients_": "mask work", "update_topology": "mask work",
    "reset_adam_moments": "mask work", "gradient_scores": "mask work", "random_scores": "mask work",
    "request_dense_gradients": "mask work", "add_scalar": "logging", "log_sparsity": "logging", "item": "logging",
    "evaluate": "evaluation",
    "decorate_context": "mask work",  # common/'s @torch.no_grad functions, the only ones the loop calls
    "inner": "optimizer",  # Optimizer.zero_grad, wrapped by torch
    "mse_loss": "forward (acting, losses)", "_find_and_load": "start-up", "_handle_fromlist": "start-up",
    "check_args": "start-up", "cli": "start-up", "__init__": "start-up", "sparsify": "start-up",
}  # fmt: skip


def phase_of(function: str) -> str:
    """cProfile names builtins "<built-in method torch.relu>" or "<method 'item' of ...>": keep the last name."""
    name = re.findall(r"[A-Za-z_]\w*", function.split(" of ")[0])[-1] if function.startswith("<") else function
    return PHASES.get(name, "other (tensor ops in the loop, noise, clipping)")


if __name__ == "__main__":
    if len(sys.argv) < 2:
        raise SystemExit(__doc__)
    script, extra = str(Path(sys.argv[1]).resolve()), sys.argv[2:]
    sys.path.insert(0, str(Path(script).parent))
    quiet = ["--eval-frequency", "100000", "--eval-episodes", "1"] if Path(script).parent == ROOT else []  # ours
    sys.argv = [script, "--total-timesteps", str(RANDOM_STEPS + ITERATIONS), "--learning-starts", str(RANDOM_STEPS),
                *quiet, *extra]  # fmt: skip
    profile = cProfile.Profile()
    profile.enable()
    runpy.run_path(script, run_name="__main__")
    profile.disable()
    stats = pstats.Stats(profile).stats  # {(file, line, function): (calls, calls, own, cumulative, {caller: ...})}
    loop = next(k for k in stats if k[0] == script and k[2] == "<module>")
    total, phases = stats[loop][3], defaultdict(float)
    for (_, _, function), (*_, callers) in stats.items():
        if loop in callers:
            phases[phase_of(function)] += callers[loop][3]
    phases["other (tensor ops in the loop, noise, clipping)"] += total - sum(phases.values())  # the loop's own time
    print(" ".join([Path(script).name, *extra]), f"- {RANDOM_STEPS} random steps, {ITERATIONS} training iterations")
    startup = phases.pop("start-up", 0.0)
    print(f"start-up (imports, env, networks): {startup:.1f} s; per training iteration, random steps included:")
    print("| phase | ms per iteration | share |\n|---|---|---|")
    for phase, seconds in sorted(phases.items(), key=lambda item: -item[1]):
        print(f"| {phase} | {1000 * seconds / ITERATIONS:.2f} | {100 * seconds / (total - startup):.1f}% |")
    print(f"| total | {1000 * (total - startup) / ITERATIONS:.2f} | 100% |")
