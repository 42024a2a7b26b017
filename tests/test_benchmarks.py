import os
import re
import subprocess
import sys
import time

import pytest
import torch
from conftest import ROOT, signal_at

from common.resume import STATE_FILE

sys.path.insert(0, str(ROOT / "benchmarks"))
from speed import interleaved_times  # noqa: E402

BUSY = "import sys, time\nstart = time.process_time()\nwhile time.process_time() - start < float(sys.argv[1]): pass"


def test_interleaved_times_count_each_process_own_turns():
    """CPU-bound processes of 0.3, 0.9 and 0.3 s of CPU work, interleaved: each one's time is the wall-clock time of
    its own turns (the others are stopped then): at least its own CPU work, and the three add up to no more than the
    whole call's time. No upper bound on one of them: a busy machine (a test beside this one) stretches the turns."""
    commands = [[sys.executable, "-c", BUSY, seconds] for seconds in ("0.3", "0.9", "0.3")]
    start = time.perf_counter()
    short, long, short_again = interleaved_times(commands, slice_=0.05)
    elapsed = time.perf_counter() - start
    assert short > 0.29 and short_again > 0.29 and long > 0.89  # at least its CPU work; far less if it ran in others' turns
    assert short + long + short_again <= elapsed  # the turns do not overlap: no time is counted twice


def test_interleaved_times_stops_everything_on_a_failed_command(tmp_path):
    pid_file = tmp_path / "sleeper.pid"
    sleeper = [sys.executable, "-c", f"import os, time; open({str(pid_file)!r}, 'w').write(str(os.getpid())); time.sleep(60)"]
    failing = [sys.executable, "-c", "import time; time.sleep(1); raise SystemExit(3)"]  # the sleeper gets turns first
    with pytest.raises(SystemExit, match="exit 3"):
        interleaved_times([sleeper, failing], slice_=0.05)
    with pytest.raises(ProcessLookupError):
        os.kill(int(pid_file.read_text()), 0)  # killed and reaped


def test_denormals_counts_a_saved_runs_denormal_weights_and_times_its_update_both_ways(run_script, monkeypatch, tmp_path):
    """A dense run stopped by SIGTERM leaves its state; seven weights set into float32's denormal range there are the
    seven the benchmark counts, and the saved update runs with them as they are and flushed."""
    signal_at(monkeypatch, 700)  # the evaluation env (200 steps, at step 0 only) never reaches it
    with pytest.raises(SystemExit):
        run_script("sparse_td3.py", "--env-id", "Pendulum-v1", "--sparsity", "0", "--total-timesteps", "1000",
                   "--learning-starts", "500", "--batch-size", "32", "--eval-episodes", "1", "--eval-frequency", "5000")  # fmt: skip
    (run_dir,) = (tmp_path / "runs").iterdir()
    state = torch.load(run_dir / STATE_FILE, weights_only=True)
    torch.set_flush_denormal(False)  # the script flushed them in this process: 1e-39 would be stored as 0
    state["networks"]["qfs"]["qf1.fc2.weight"][3, :7] = 1e-39
    torch.save(state, run_dir / STATE_FILE)
    command = [sys.executable, str(ROOT / "benchmarks/denormals.py"), str(run_dir), "--rounds", "1", "--iterations", "3"]
    result = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "qfs.qf1.fc2.weight (256, 256): 7 of 65536" in result.stdout
    assert "qfs.qf2.fc2.weight (256, 256): 0 of 65536" in result.stdout
    assert re.search(r"as IEEE says / flushed: x\d+\.\d\d$", result.stdout.strip())
