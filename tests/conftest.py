import os
import runpy
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


@pytest.fixture
def run_script(tmp_path, monkeypatch):
    """Run a top-level script as `python script.py ARGS` inside a temporary directory and return its globals,
    so a test can inspect the networks, masks and buffer the training loop left behind."""
    monkeypatch.chdir(tmp_path)

    def run(script: str, *args: str) -> dict:
        monkeypatch.setattr(sys, "argv", [script, *args])
        return runpy.run_path(str(ROOT / script), run_name="__main__")

    os.environ.setdefault("MUJOCO_GL", "egl")
    return run
