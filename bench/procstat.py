"""CPU and memory of groups of processes, and of the whole machine, read from /proc.

A group is a function from the current process table to a set of pids (a process tree, the
PostgreSQL backends of one database, ...). Sampling every ~0.5 s gives each group's peak RSS
(summed over its processes; forked children share pages, so this overstates a little) and its
CPU over the window: for every process, the last CPU seen minus the CPU it had when the window
opened (zero if it was born inside the window). A process that dies loses at most its last
half second. The machine's busy time comes from /proc/stat, so whatever no group explains (the
test suite sharing this machine, the kernel) shows up as "rest". When the window opens each
group's PSS is read too (/proc/PID/smaps_rollup: a page shared by n processes counts 1/n), the
fair figure for forked processes, whose shared pages RSS counts once per process.
"""

import os
from collections.abc import Callable
from dataclasses import dataclass, field

TICK = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")


@dataclass(frozen=True)
class Proc:
    pid: int
    ppid: int
    cpu_ticks: int  # utime + stime
    start_ticks: int  # since boot
    rss_bytes: int


def processes() -> dict[int, Proc]:
    table = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat") as f:
                raw = f.read()
        except OSError:  # exited while we looked
            continue
        rest = raw[raw.rindex(")") + 2 :].split()  # the command name may contain spaces
        table[int(name)] = Proc(
            int(name), int(rest[1]), int(rest[11]) + int(rest[12]), int(rest[19]), int(rest[21]) * PAGE
        )
    return table


def tree(root: int) -> Callable[[dict[int, Proc]], set[int]]:
    """The group of `root` and all its descendants."""

    def pids(table: dict[int, Proc]) -> set[int]:
        children: dict[int, list[int]] = {}
        for proc in table.values():
            children.setdefault(proc.ppid, []).append(proc.pid)
        found, todo = set(), [root] if root in table else []
        while todo:
            pid = todo.pop()
            found.add(pid)
            todo.extend(children.get(pid, []))
        return found

    return pids


def pss_bytes(pid: int) -> int:
    """Proportional set size of one process; 0 if it exited or is not ours to read."""
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                if line.startswith("Pss:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def machine_busy_ticks() -> int:
    with open("/proc/stat") as f:
        user, nice, system, _idle, _iowait, irq, softirq, steal = (int(v) for v in f.readline().split()[1:9])
    return user + nice + system + irq + softirq + steal


def uptime_ticks() -> int:
    with open("/proc/uptime") as f:
        return int(float(f.read().split()[0]) * TICK)


@dataclass
class _GroupState:
    first: dict[tuple[int, int], int] = field(default_factory=dict)  # (pid, start) -> CPU when first seen
    last: dict[tuple[int, int], int] = field(default_factory=dict)
    rss_first: int | None = None
    rss_peak: int = 0
    pss_first: int = 0


class Sampler:
    """Call `sample()` every ~0.5 s between `open()` and `close()`."""

    def __init__(self, groups: dict[str, Callable[[dict[int, Proc]], set[int]]]):
        self.groups = groups
        self._state = {name: _GroupState() for name in groups}
        self._opened_at = 0
        self._busy_start = 0

    def open(self) -> None:
        self._opened_at = uptime_ticks()
        self._busy_start = machine_busy_ticks()
        self.sample()
        table = processes()
        for name, select in self.groups.items():
            self._state[name].pss_first = sum(pss_bytes(pid) for pid in select(table))

    def sample(self) -> None:
        table = processes()
        for name, select in self.groups.items():
            state = self._state[name]
            rss = 0
            for pid in select(table):
                proc = table.get(pid)
                if proc is None:
                    continue
                rss += proc.rss_bytes
                key = (pid, proc.start_ticks)
                if key not in state.first:
                    state.first[key] = proc.cpu_ticks if proc.start_ticks < self._opened_at else 0
                state.last[key] = proc.cpu_ticks
            state.rss_peak = max(state.rss_peak, rss)
            if state.rss_first is None:
                state.rss_first = rss

    def close(self) -> dict:
        """Per group: cpu_s, rss_peak_mib, rss_start_mib, pss_start_mib; the window and the machine's busy CPU, in s."""
        self.sample()
        out = {
            "machine_busy_s": (machine_busy_ticks() - self._busy_start) / TICK,
            "window_s": (uptime_ticks() - self._opened_at) / TICK,
            "groups": {},
        }
        for name, state in self._state.items():
            cpu = sum(last - state.first[key] for key, last in state.last.items())
            out["groups"][name] = {
                "cpu_s": cpu / TICK,
                "rss_peak_mib": state.rss_peak / 2**20,
                "rss_start_mib": (state.rss_first or 0) / 2**20,
                "pss_start_mib": state.pss_first / 2**20,
            }
        return out
