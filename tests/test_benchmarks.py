import os
import sys

import pytest
from conftest import ROOT

sys.path.insert(0, str(ROOT / "benchmarks"))
from speed import interleaved_times  # noqa: E402

BUSY = "import sys, time\nstart = time.process_time()\nwhile time.process_time() - start < float(sys.argv[1]): pass"


def test_interleaved_times_count_each_process_own_turns():
    """CPU-bound processes of 0.3, 0.9 and 0.3 s of CPU work, interleaved: each one's time is the wall-clock time of
    its own turns (the others are stopped then), so the long one's exceeds the short ones' by about 0.6 s."""
    commands = [[sys.executable, "-c", BUSY, seconds] for seconds in ("0.3", "0.9", "0.3")]
    short, long, short_again = interleaved_times(commands, slice_=0.05)
    assert 0.29 < short < 0.7 and 0.29 < short_again < 0.7  # at least its 0.3 s of CPU; about 0.2 if not stopped
    assert 0.45 < long - short < 1.0 and 0.45 < long - short_again < 1.0


def test_interleaved_times_stops_everything_on_a_failed_command(tmp_path):
    pid_file = tmp_path / "sleeper.pid"
    sleeper = [sys.executable, "-c", f"import os, time; open({str(pid_file)!r}, 'w').write(str(os.getpid())); time.sleep(60)"]
    failing = [sys.executable, "-c", "import time; time.sleep(1); raise SystemExit(3)"]  # the sleeper gets turns first
    with pytest.raises(SystemExit, match="exit 3"):
        interleaved_times([sleeper, failing], slice_=0.05)
    with pytest.raises(ProcessLookupError):
        os.kill(int(pid_file.read_text()), 0)  # killed and reaped
