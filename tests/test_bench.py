import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_bench_runs_on_a_tiny_size_and_writes_json(tmp_path):
    out = tmp_path / "bench.json"
    proc = subprocess.run(
        [sys.executable, "scripts/bench.py", "--preset", "demo", "--set", "model.channels=4",
         "--set", "model.encoder_blocks=[1,1,1]", "--sizes", "24x40", "--train-size", "32",
         "--repeats", "1", "--threads", "1", "--device", "cpu", "--out", str(out)],
        cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    results = {r["kind"]: r for r in json.loads(out.read_text())["results"]}
    assert set(results) == {"forward", "train", "complexity"}
    assert all("error" not in r for r in results.values()), results
    assert results["forward"]["size"] == "24x40" and results["forward"]["median_s"] > 0
    assert results["forward"]["peak_rss_mib"] > 50  # a real process measured its own memory
    assert results["train"]["patches_per_s"] > 0
    assert results["complexity"]["params"] > 0 and results["complexity"]["gmacs"] > 0
    assert "| forward | 24x40 |" in proc.stdout


def test_bench_rejects_bad_size():
    proc = subprocess.run([sys.executable, "scripts/bench.py", "--sizes", "12by4"], cwd=ROOT,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode != 0 and "HxW" in proc.stderr


def test_eval_overlap_without_the_sequential_pass(tmp_path):
    out = tmp_path / "bench.json"
    proc = subprocess.run([sys.executable, "scripts/bench.py", "--eval-overlap", "--preset", "demo", "--images", "2",
                           "--size", "32x48", "--no-sequential", "--threads", "1", "--out", str(out)],
                          capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "eval.py (read, derain, score; overlapped)" in proc.stdout
    assert "--sequential" not in proc.stdout
    result = json.loads(out.read_text())["results"][0]
    assert result["images"] == 2 and result["eval_s"] > 0 and "sequential_s" not in result
