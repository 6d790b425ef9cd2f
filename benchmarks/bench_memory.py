"""Peak resident memory of a pipeline run: the runner process plus every kernel it starts.

Usage (from the repository root)::

    python benchmarks/bench_memory.py PROJECT [--limit 2G] [-- extra nbtools run arguments]

It runs ``nbtools run --project PROJECT --profile smoke --force`` (every stage executes) and
samples, every 0.1 s, the resident set size (RSS) of the run's process and all its descendants
(stage kernels), reporting the peak of their sum, the peak number of kernels alive at once and
the wall time. ``--limit`` sets ``NBTOOLS_MEMORY_LIMIT`` for the run, as if the machine (or its
cgroup) had that much memory. RSS counts shared library pages once per process, so the sum is
what a cgroup would be charged at most, not less.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

import psutil


def sample(process: psutil.Process) -> tuple[int, list[int]]:
    """Return the RSS of ``process`` and its descendants, and that of each kernel among them."""
    total, kernels = 0, []
    try:
        family = [process, *process.children(recursive=True)]
    except psutil.NoSuchProcess:
        return 0, []
    for member in family:
        try:
            rss = member.memory_info().rss
            total += rss
            if "ipykernel" in " ".join(member.cmdline()):
                kernels.append(rss)
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    return total, kernels


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("project", type=Path)
    parser.add_argument("--limit", default=None, help="NBTOOLS_MEMORY_LIMIT for the run")
    parser.add_argument("extra", nargs="*", help="more arguments of nbtools run")
    args = parser.parse_args()
    env = dict(os.environ)
    if args.limit:
        env["NBTOOLS_MEMORY_LIMIT"] = args.limit
    else:
        env.pop("NBTOOLS_MEMORY_LIMIT", None)
    nbtools = Path(sys.executable).with_name("nbtools")
    command = [str(nbtools), "run", "--project", str(args.project), "--profile", "smoke"]
    command += ["--force", *args.extra]
    started = time.perf_counter()
    child = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    process = psutil.Process(child.pid)
    peak, peak_kernels, at_peak = 0, 0, []
    while child.poll() is None:
        total, kernels = sample(process)
        if total > peak:
            peak, at_peak = total, kernels
        peak_kernels = max(peak_kernels, len(kernels))
        time.sleep(0.1)
    output = child.stdout.read().decode() if child.stdout else ""
    seconds = time.perf_counter() - started
    print(output.strip().splitlines()[-4:] if child.returncode else "run succeeded")
    print(
        f"limit={args.limit or 'machine'} exit={child.returncode} peak_rss={peak / 2**20:.0f} MiB "
        f"peak_kernels={peak_kernels} wall={seconds:.0f} s"
    )
    kernels = ", ".join(f"{rss / 2**20:.0f}" for rss in at_peak) or "none"
    print(f"at the peak: runner {(peak - sum(at_peak)) / 2**20:.0f} MiB, kernels {kernels} MiB")


if __name__ == "__main__":
    main()
