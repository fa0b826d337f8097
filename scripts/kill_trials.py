"""Kill -9 trials of train.py: kill a tiny training at a chosen point, `--resume auto` it, and
compare the result with an uninterrupted reference run. With `@SIGNAL`, a point sends that
stop signal to the run's whole process group (its DataLoader workers too) instead, and the
run goes on to save and exit by itself.

    python scripts/kill_trials.py                      # 20 random trials, prints the counts
    python scripts/kill_trials.py --points after_best:4,during_best:2,after_step:5 --json
    python scripts/kill_trials.py --workers 2 --points during_step:3@TERM,during_val:4@HUP,during_step:3@INT+INT

A kill point is `<where>:<step>`; the process SIGKILLs itself at the first such event at or
after that step:
  before_best    about to write best.pth (nothing of that checkpoint on disk)
  during_best    half of best.pth written into its temp file
  after_best     best.pth written, the latest.pth that refers to it not yet
  during_latest  half of latest.pth written into its temp file
  after_latest   latest.pth written
  after_step     right after an optimisation step (between steps)
  during_step    (signals) at the start of an optimisation step, its batch fetched
  during_val     (signals) as a validation starts
A signal point is `<where>:<step>@<SIG>` (TERM, INT, HUP); `@INT+INT` sends a second SIGINT
halfway through the write of the checkpoint that the first one asked for.
Each run is a forked child of this process (torch imported once, so a trial takes seconds),
the leader of its own process group; the hooks wrap `save_checkpoint`, `Trainer.train_step`
and the validation's `evaluate` in the child only, nothing in the
production code knows about them. A trial counts as corrupt (a .pth that does not load),
stale (best.pth missing or not the model of latest.pth's best_step), a failed resume
(non-zero exit), leftover temp files, or identical (latest.pth and best.pth equal to the
reference's: weights, EMA, Adam state, step, best step).
"""
from __future__ import annotations

import argparse
import io
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("OMP_NUM_THREADS", "1")

import torch  # noqa: E402

import train  # noqa: E402
from utils.cli import run_main  # noqa: E402
from utils.engine import trainer as trainer_module  # noqa: E402
from utils.engine import validation  # noqa: E402
from utils.io.checkpoints import CheckpointError, load_checkpoint  # noqa: E402
from utils.io.files import atomic_write  # noqa: E402

POINTS = ("before_best", "during_best", "after_best", "during_latest", "after_latest", "after_step")
SIGNAL_POINTS = POINTS + ("during_step", "during_val")
ITERATIONS = 8


def tiny_args(out_dir: Path, *extra: str) -> list[str]:
    sets = ["model.channels=4", "model.encoder_blocks=(1,1,1)", "data.patch_size=32",
            "data.synthetic_size=40", "data.synthetic_count=6", "data.synthetic_val_count=2",
            "data.synthetic_test_count=2", "data.num_workers=0", "train.batch_size=2",
            f"train.iterations={ITERATIONS}", f"train.out_dir={out_dir}", "train.name=tiny",
            "train.val_every=2", "train.ckpt_every=3", "train.log_every=1", "train.image_every=4",
            "train.ema_decay=0.9", "train.lr=3e-3"]
    argv = ["--preset", "demo"]
    for item in sets + list(extra):
        argv += ["--set", item]
    return argv


def _die():
    sys.stdout.flush()
    os.kill(os.getpid(), signal.SIGKILL)


class _Hit:
    """What a point does: SIGKILL this process, or have a process outside its group send the
    next stop signal of `signals` to the group, as a scheduler does (DataLoader workers treat
    a SIGTERM from their own parent differently: they exit quietly)."""

    def __init__(self, signals: list[str]):
        self.signals = [getattr(signal, f"SIG{name}") for name in signals]

    def __call__(self) -> None:
        if not self.signals:
            _die()
        sys.stdout.flush()
        code = f"import os; os.killpg({os.getpgrp()}, {int(self.signals.pop(0))})"
        subprocess.run([sys.executable, "-c", code], start_new_session=True, check=True)


def _half_write(state, path, hit) -> None:
    """Half of the checkpoint into its temp file, `hit()`, then the rest (if still alive)."""
    buffer = io.BytesIO()
    torch.save(state, buffer)
    data = buffer.getvalue()
    with atomic_write(path) as handle:
        handle.write(data[: len(data) // 2])
        handle.flush()
        os.fsync(handle.fileno())
        hit()
        handle.write(data[len(data) // 2:])


def _install_hooks(where: str, step: int, signals: list[str]) -> None:
    original_save = trainer_module.save_checkpoint
    original_step = trainer_module.Trainer.train_step
    original_evaluate = validation.evaluate
    hit = _Hit(signals)
    fired = []

    def once(condition: bool) -> bool:
        if condition and not fired:
            fired.append(True)
            return True
        return False

    def save(state, path):
        name = Path(path).name
        armed = int(state.get("step", -1)) >= step
        if once(armed and (where, name) == ("before_best", "best.pth")):
            hit()
        if once(armed and (where, name) in (("during_best", "best.pth"), ("during_latest", "latest.pth"))):
            return _half_write(state, path, hit)
        if fired and hit.signals and name == "latest.pth":  # the second signal, mid-save
            return _half_write(state, path, hit)
        original_save(state, path)
        if once(armed and (where, name) in (("after_best", "best.pth"), ("after_latest", "latest.pth"))):
            hit()

    steps_done = [0]

    def train_step(self, compute_loss):
        if once(where == "during_step" and self.step + 1 >= step):
            hit()
        result = original_step(self, compute_loss)
        steps_done[0] = self.step
        if once(where == "after_step" and self.step >= step):
            hit()
        return result

    def evaluate(model, *args, **kwargs):
        if once(where == "during_val" and steps_done[0] >= step):
            hit()
        return original_evaluate(model, *args, **kwargs)

    trainer_module.save_checkpoint = save
    trainer_module.Trainer.train_step = train_step
    validation.evaluate = evaluate


def parse_point(point: str) -> tuple[str, int, list[str]]:
    """'during_val:4@INT+INT' -> ('during_val', 4, ['INT', 'INT']); no '@': SIGKILL ([])."""
    place, _, signals = point.partition("@")
    where, step = place.split(":")
    if where not in (SIGNAL_POINTS if signals else POINTS):
        raise SystemExit(f"unknown point {where!r} (kill -9: {', '.join(POINTS)}; signals also "
                         f"during_step, during_val)")
    return where, int(step), signals.split("+") if signals else []


def run_child(argv: list[str], kill: str | None, log: Path) -> int:
    """train.main(argv) in a forked child, the leader of a new process group (SIGKILLed or
    signalled at `kill`); its exit code, -9 if killed."""
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid == 0:  # the child
        code = 70
        try:
            os.setsid()
            fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
            os.dup2(fd, 1)
            os.dup2(fd, 2)
            if kill:
                _install_hooks(*parse_point(kill))
            code = run_main(train.main, argv)
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 1
        except BaseException:
            import traceback
            traceback.print_exc()
            code = 1
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    return -os.WTERMSIG(status) if os.WIFSIGNALED(status) else os.WEXITSTATUS(status)


def _same(a, b) -> bool:
    if isinstance(a, torch.Tensor):
        return isinstance(b, torch.Tensor) and a.shape == b.shape and torch.equal(a, b)
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return isinstance(b, (list, tuple)) and len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    return a == b


def compare(run: Path, reference: Path) -> dict:
    """Flags of one finished trial against the reference run folder."""
    result = {"corrupt": False, "stale": False, "identical": False, "temps": 0}
    states = {}
    for path in sorted(run.glob("*.pth")):
        try:
            states[path.name] = load_checkpoint(path)
        except CheckpointError:
            result["corrupt"] = True
    result["temps"] = len([p for p in run.rglob(".*.tmp")])
    latest, best = states.get("latest.pth"), states.get("best.pth")
    if latest is None or best is None or best.get("step") != latest.get("best_step"):
        result["stale"] = True
    if latest is not None and best is not None:
        ref = {n: load_checkpoint(reference / n) for n in ("latest.pth", "best.pth")}
        keys = ("model", "ema", "optimizer", "step", "best_step", "best_metric")
        result["identical"] = all(_same(ref[n][k], s[k]) for n, s in (("latest.pth", latest),
                                                                      ("best.pth", best)) for k in keys)
        result["best_step"] = latest.get("best_step")
    return result


def trial(work: Path, reference: Path, kills: list[str], extra: list[str] = ()) -> dict:
    """Kill at each point of `kills` in turn (each on the resumed run), then resume to the end."""
    work.mkdir(parents=True, exist_ok=True)
    log = work / "trial.log"
    codes = []
    for i, kill in enumerate(kills):
        argv = tiny_args(work, *extra) + (["--resume", "auto"] if i else [])
        codes.append(run_child(argv, kill, log))
    final = run_child(tiny_args(work, *extra) + ["--resume", "auto"], None, log)
    result = compare(work / "tiny", reference)
    result.update(kills=kills, killed=[c == -signal.SIGKILL for c in codes], codes=codes,
                  resume_exit=final)
    # A kill after the last checkpoint (before the final report) leaves a finished run: the
    # resume then refuses to train further (exit 2, "this run is finished"), as it should.
    finished = final == 2 and "this run is finished" in log.read_text(errors="replace")
    result["failed_resume"] = final != 0 and not finished
    return result


def make_reference(base: Path, extra: list[str] = ()) -> Path:
    ref = base / "reference"
    ref.mkdir(parents=True, exist_ok=True)
    code = run_child(tiny_args(ref, *extra), None, base / "reference.log")
    if code != 0:
        raise SystemExit(f"the reference run failed ({code}); see {base / 'reference.log'}")
    return ref / "tiny"


def random_kills(rng: random.Random) -> list[str]:
    kills = [f"{rng.choice(POINTS)}:{rng.randint(1, ITERATIONS)}"]
    if rng.random() < 0.5:  # a second kill during the resumed run
        kills.append(f"{rng.choice(POINTS)}:{rng.randint(1, ITERATIONS)}")
    return kills


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trials", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--points", default=None,
                        help="comma-separated kill points, one trial each (instead of random ones)")
    parser.add_argument("--workdir", default=None, help="keep the runs here (default: a temp folder)")
    parser.add_argument("--json", action="store_true", help="print one JSON object per trial")
    parser.add_argument("--workers", type=int, default=0, help="DataLoader workers (data.num_workers)")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    torch.optim.Adam([torch.zeros(1, requires_grad=True)])  # warm lazy imports once, not per child
    base = Path(args.workdir or tempfile.mkdtemp(prefix="kill_trials_"))
    base.mkdir(parents=True, exist_ok=True)
    extra = ["data.num_workers=%d" % args.workers]
    reference = make_reference(base, extra)
    rng = random.Random(args.seed)
    plans = ([[p] for p in args.points.split(",")] if args.points
             else [random_kills(rng) for _ in range(args.trials)])
    totals = {"trials": 0, "corrupt": 0, "stale": 0, "failed_resumes": 0, "leftover_temps": 0,
              "identical": 0}
    for i, kills in enumerate(plans):
        result = trial(base / f"trial_{i:02d}", reference, kills, extra)
        totals["trials"] += 1
        totals["corrupt"] += result["corrupt"]
        totals["stale"] += result["stale"]
        totals["failed_resumes"] += result["failed_resume"]
        totals["leftover_temps"] += result["temps"] > 0
        totals["identical"] += result["identical"]
        print(json.dumps(result) if args.json else
              f"trial {i:2d}: kills {' then '.join(kills):32s} -> "
              + ("identical" if result["identical"] else "DIFFERENT")
              + (" CORRUPT" if result["corrupt"] else "") + (" STALE" if result["stale"] else "")
              + (f" resume exit {result['resume_exit']}" if result["failed_resume"] else ""), flush=True)
    print(json.dumps(totals) if args.json else
          "totals: " + ", ".join(f"{k} {v}" for k, v in totals.items()))
    return 0 if totals["identical"] == totals["trials"] else 1


if __name__ == "__main__":
    sys.exit(main())
