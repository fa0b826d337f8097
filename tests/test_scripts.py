"""The entry points in scripts/ run from any folder, as `python /path/to/scripts/NAME.py`: each
finds the project's modules and prints its help."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# The entry points (bench_worker.py is bench.py's measurements, imported, not run).
SCRIPTS = sorted(p for p in (ROOT / "scripts").glob("*.py")
                 if 'if __name__ == "__main__":' in p.read_text())


def test_scripts_are_found():
    assert {"bench.py", "export_weights.py", "make_gallery.py", "error_analysis.py",
            "kill_trials.py"} <= {p.name for p in SCRIPTS}


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.name)
def test_script_runs_from_another_folder(script, tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    env.pop("PYTHONPATH", None)
    proc = subprocess.run([sys.executable, str(script), "--help"], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and "usage:" in proc.stdout, proc.stderr
    assert list(tmp_path.iterdir()) == []  # --help writes nothing
