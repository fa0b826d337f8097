"""How many CPU threads torch uses: the count the user names, or as many as there are free CPUs.

On a CPU that other processes keep busy, torch's default (one OpenMP thread per core) stalls:
libgomp's threads spin-wait for each other at every parallel region, and a thread that the
kernel has descheduled for another process keeps its partners spinning. Measured on the
2-core machine of docs/performance.md: the paper preset's 224x224 forward took 17.9 s next to
one busy process against 1.56 s idle, and a tiny demo-model forward 8.6 s at 2 threads
against 0.7 s at 1 thread. So every script picks its thread count at the start of `main()`
(`apply_threads`), in this order:

1. `--threads N` (N >= 1): N threads, whatever the machine is doing;
2. the environment variable OMP_NUM_THREADS, when set (and no --threads);
3. otherwise, and for `--threads auto` / `--threads 0`, as many threads as there are free
   CPUs: /proc/stat is read twice, `SAMPLE_SECONDS` apart; the CPUs this process may run on
   (os.sched_getaffinity) minus the share of them that was busy, not counting this process's
   own CPU time (/proc/self/stat), rounded half down, at least 1. Never more than a cgroup CPU
   quota allows, nor than torch's own default (one per core) when the environment does not
   set it, and divided among the processes of a torchrun node (LOCAL_WORLD_SIZE).

The parsers are pure functions of the files' text, so the policy is tested on injected
/proc/stat texts. Where /proc is missing (macOS, Windows), auto keeps torch's default.

Wait policy (OMP_WAIT_POLICY=PASSIVE, GOMP_SPINCOUNT) is deliberately NOT changed. libgomp
reads both when it is loaded, i.e. at `import torch`, so setting them in `main()` does
nothing; doing it before the import would take either an import-time side effect in a
module or re-executing every script (another torch import, 1-2 s per start). Measured on a
busy 2-core machine (two other processes running, tiny demo model at 128x128, median of 5):
2 threads with the default wait policy 8.6 s, 2 threads with PASSIVE 0.66 s, 1 thread 0.69 s.
So passive waiting buys, under load, what choosing 1 thread buys, and the thread count
choice alone removes the stall whenever the load is there when the script starts. What it
does not cover is load that starts later during a long run; a user expecting that can export
OMP_WAIT_POLICY=PASSIVE before starting the script, or pass --threads 1. What PASSIVE costs
on an idle machine is measured by `python scripts/bench.py --load-test` (rows "passive"), to decide
on data rather than guesses whether it should become the default.

Bit-identical results (resume, metrics) hold for one thread count: pass --threads N to
reproduce a run exactly on another day's load.
"""
from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Mapping, Optional

import torch

from utils import logs

log = logs.get("threads")

SAMPLE_SECONDS = 0.15
ENV_VAR = "OMP_NUM_THREADS"
AUTO = 0  # --threads 0 and --threads auto: the load-aware choice

# /proc/stat columns: user nice system idle iowait irq softirq steal guest guest_nice.
# guest and guest_nice are already counted in user and nice; steal (time the hypervisor gave
# to someone else) is time this CPU was not ours, so it counts as busy.
_IDLE_COLUMNS = (3, 4)  # idle, iowait
_TOTAL_COLUMNS = 8


# ----------------------------------------------------------------------------- parsing (pure)
def parse_proc_stat(text: str) -> dict[str, tuple[int, int]]:
    """{"cpu": (busy, total), "cpu0": (busy, total), ...} in clock ticks from /proc/stat text."""
    out = {}
    for line in text.splitlines():
        fields = line.split()
        if not fields or not fields[0].startswith("cpu"):
            continue
        try:
            values = [int(v) for v in fields[1:1 + _TOTAL_COLUMNS]]
        except ValueError:
            continue
        if len(values) < 4:
            continue
        total = sum(values)
        idle = sum(values[i] for i in _IDLE_COLUMNS if i < len(values))
        out[fields[0]] = (total - idle, total)
    return out


def parse_own_ticks(text: str) -> int:
    """utime + stime (clock ticks) from /proc/<pid>/stat text: the process's CPU time so far,
    all its threads included. The command name may hold spaces and parentheses: fields are
    counted after its last ')'."""
    fields = text[text.rindex(")") + 2:].split()
    return int(fields[11]) + int(fields[12])  # fields 14 and 15 of proc(5)


def parse_cpu_max(text: str) -> Optional[float]:
    """CPUs a cgroup v2 `cpu.max` ("QUOTA PERIOD" or "max PERIOD") allows; None without a quota."""
    parts = text.split()
    if len(parts) != 2 or parts[0] == "max":
        return None
    try:
        quota, period = int(parts[0]), int(parts[1])
    except ValueError:
        return None
    return quota / period if quota > 0 and period > 0 else None


def busy_cpus(before: Mapping[str, tuple[int, int]], after: Mapping[str, tuple[int, int]],
              cpus: set[int], own_ticks: int = 0) -> float:
    """How many of `cpus` were busy between two parse_proc_stat() samples, in CPUs, less
    `own_ticks` (this process's CPU time in the same interval). Falls back to the aggregate
    "cpu" line (scaled to len(cpus)) when per-CPU lines are missing."""
    names = [f"cpu{i}" for i in sorted(cpus)]
    if not all(n in before and n in after for n in names):
        names = ["cpu"]
    busy, elapsed = 0.0, []
    for name in names:
        d_busy = after[name][0] - before[name][0]
        d_total = after[name][1] - before[name][1]
        if d_total <= 0:
            continue
        busy += d_busy / d_total
        elapsed.append(d_total)
    if not elapsed:
        return 0.0
    if names == ["cpu"]:  # one line for all CPUs of the machine: its fraction, of ours
        busy *= len(cpus)
        per_cpu_ticks = elapsed[0] / max(1, len(cpus))
    else:
        per_cpu_ticks = sum(elapsed) / len(elapsed)
    busy -= own_ticks / per_cpu_ticks
    return min(float(len(cpus)), max(0.0, busy))


def threads_for(free: float, cap: int) -> int:
    """Free CPUs -> threads: rounded half down (a CPU half used by someone else is not ours:
    an OpenMP team that shares a core stalls, one thread too few only costs its share), at
    least 1, at most `cap`."""
    return max(1, min(cap, math.ceil(free - 0.5)))


def parse_count(text: str | int | None) -> Optional[int]:
    """A thread count from a flag or the environment: "auto"/"0" -> AUTO, "N" -> N, None ->
    None. OMP_NUM_THREADS may be a list ("4,2", nested levels): its first value counts.
    ValueError for anything else."""
    if text is None:
        return None
    if isinstance(text, int):
        value = text
    else:
        text = text.strip().lower()
        if text == "auto":
            return AUTO
        value = int(text.split(",")[0])
    if value < 0:
        raise ValueError(f"a thread count must be >= 0 (0 or auto: as many as CPUs are free), got {value}")
    return value


# ----------------------------------------------------------------------------- the machine
@dataclass(frozen=True)
class Load:
    """What auto saw: CPUs this process may use, how many of them others kept busy, the cap."""
    allowed: int
    busy: float
    cap: int

    @property
    def free(self) -> float:
        return self.allowed - self.busy


def _read(path: str) -> Optional[str]:
    try:
        return Path(path).read_text()
    except OSError:
        return None


def allowed_cpus() -> set[int]:
    try:
        return set(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return set(range(os.cpu_count() or 1))


def cgroup_cpus(read: Callable[[str], Optional[str]] = _read) -> Optional[float]:
    """The CPU quota of this process's cgroup (v2 cpu.max, else v1 cfs quota/period), or None."""
    text = read("/sys/fs/cgroup/cpu.max")
    if text is not None:
        return parse_cpu_max(text)
    quota, period = read("/sys/fs/cgroup/cpu/cpu.cfs_quota_us"), read("/sys/fs/cgroup/cpu/cpu.cfs_period_us")
    if quota is not None and period is not None:
        return parse_cpu_max(f"{quota.strip()} {period.strip()}")
    return None


def measure_load(default_cap: int, seconds: float = SAMPLE_SECONDS,
                 read: Callable[[str], Optional[str]] = _read,
                 sleep: Callable[[float], None] = time.sleep) -> Optional[Load]:
    """Sample /proc/stat and /proc/self/stat `seconds` apart; None where /proc is unreadable."""
    cpus = allowed_cpus()
    first, own_first = read("/proc/stat"), read("/proc/self/stat")
    if first is None or own_first is None:
        return None
    sleep(seconds)
    second, own_second = read("/proc/stat"), read("/proc/self/stat")
    if second is None or own_second is None:
        return None
    try:
        own = parse_own_ticks(own_second) - parse_own_ticks(own_first)
    except (ValueError, IndexError):
        own = 0
    busy = busy_cpus(parse_proc_stat(first), parse_proc_stat(second), cpus, own_ticks=own)
    cap = min(len(cpus), default_cap)
    quota = cgroup_cpus(read)
    if quota is not None:
        cap = min(cap, max(1, math.floor(quota)))
    try:
        local = parse_count(os.environ.get("LOCAL_WORLD_SIZE"))
    except ValueError:
        local = None
    if local and local > 1:  # torchrun: the node's processes share its CPUs
        cap = max(1, cap // local)
    return Load(allowed=len(cpus), busy=busy, cap=cap)


# ----------------------------------------------------------------------------- the choice
@dataclass(frozen=True)
class ThreadChoice:
    count: int
    source: str  # "--threads", "OMP_NUM_THREADS", "auto"
    detail: str = ""

    def __str__(self) -> str:
        plural = "" if self.count == 1 else "s"
        return f"{self.count} CPU thread{plural} ({self.source}{': ' + self.detail if self.detail else ''})"

    def as_dict(self) -> dict:
        return {"count": self.count, "source": self.source, "detail": self.detail}


def choose_threads(flag: Optional[int], env: Mapping[str, str],
                   load: Callable[[], Optional[Load]], fallback: int) -> ThreadChoice:
    """The policy of the module docstring. `flag`: parse_count(--threads) (None when not
    given); `env`: the environment; `load`: measures the machine (called only for auto);
    `fallback`: torch's current count, kept where the load cannot be measured."""
    if flag is not None and flag != AUTO:
        return ThreadChoice(flag, "--threads")
    if flag is None and env.get(ENV_VAR, "").strip():
        try:
            value = parse_count(env[ENV_VAR])
        except ValueError:
            value = None
        if value:  # OMP_NUM_THREADS=0 or garbage: libgomp ignores it, so does auto
            return ThreadChoice(value, ENV_VAR)
        log.warning(f"{ENV_VAR}={env[ENV_VAR]!r} is not a thread count; choosing from the load")
    seen = load()
    if seen is None:
        return ThreadChoice(fallback, "auto", "no /proc/stat here: torch's default")
    return ThreadChoice(threads_for(seen.free, seen.cap), "auto",
                        f"{seen.allowed} CPUs, {seen.busy:.1f} busy with other processes"
                        + (f", at most {seen.cap}" if seen.cap < seen.allowed else ""))


_applied: Optional[ThreadChoice] = None


def apply_threads(flag: str | int | None = None) -> ThreadChoice:
    """Choose (choose_threads) and set torch's intra-op thread count. Call it
    at the start of a script's main(), before any torch work (which would count as load)."""
    global _applied
    env_set = bool(os.environ.get(ENV_VAR, "").strip())
    fallback = torch.get_num_threads()
    # torch's own default (one thread per core) caps auto, unless the environment set it.
    default_cap = fallback if not env_set else len(allowed_cpus())
    choice = choose_threads(parse_count(flag), os.environ, lambda: measure_load(default_cap), fallback)
    torch.set_num_threads(choice.count)
    _applied = choice
    # Debug only: stderr stays one `error:` line on a usage error; the scripts record the
    # choice where they record their settings (run log, settings.json, show_runs.jsonl).
    log.debug(f"threads: {choice}")
    return choice


def in_use() -> ThreadChoice:
    """The thread count torch uses now and how it was chosen (for run logs and settings
    files: str() or .as_dict())."""
    count = torch.get_num_threads()
    if _applied is not None and _applied.count == count:
        return _applied
    return ThreadChoice(count, "set in-process")
