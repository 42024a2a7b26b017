"""Share of a script's run spent in the mask machinery of common/, measured inside one run.

Whole-run timings on a shared 2-core machine drift by 20% between minutes; a profile of one run attributes time to
functions and is not fooled by that. Runs the script for 1000 random steps and 3000 training iterations with
topology updates active, and prints the time in each mask function and their share of the whole run.

    python benchmarks/mask_overhead.py sparse_td3.py --topology-end 100000
    python benchmarks/mask_overhead.py rlx2_td3.py --topology-interval 1000
"""

import cProfile
import pstats
import runpy
import sys
from pathlib import Path

MASK_FUNCTIONS = ("apply_", "mask_gradients_", "keep_top_k_", "update_topology", "reset_adam_moments")

if __name__ == "__main__":
    if len(sys.argv) < 2:
        raise SystemExit(__doc__)
    script, extra = str(Path(sys.argv[1]).resolve()), sys.argv[2:]
    sys.path.insert(0, str(Path(script).parent))
    steps = ["--total-timesteps", "4000", "--learning-starts", "1000", "--eval-frequency", "100000", "--eval-episodes", "1"]
    sys.argv = [script, *steps, *extra]
    profile = cProfile.Profile()
    profile.enable()
    runpy.run_path(script, run_name="__main__")
    profile.disable()
    stats = pstats.Stats(profile).stats  # {(file, line, function): (calls, calls, own time, cumulative time, callers)}
    total = sum(v[3] for k, v in stats.items() if k[0] == script and k[2] == "<module>")
    spent = {f: sum(v[3] for k, v in stats.items() if k[2] == f and "common" in k[0]) for f in MASK_FUNCTIONS}
    print(" ".join([Path(script).name, *extra]))
    for function, seconds in spent.items():
        print(f"  {function:>20}: {seconds:6.2f} s")
    print(f"  mask machinery: {100 * sum(spent.values()) / total:.1f}% of the {total:.1f} s run")
