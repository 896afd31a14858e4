"""The machine a benchmark or a sweep runs on: one line describing it, its GPUs as nvidia-smi lists them, and the cores
this process may keep busy (`available_cores`); none of it imports torch."""

import importlib.metadata
import os
import platform
import subprocess

NVIDIA_SMI_TIMEOUT_S = 10  # nvidia-smi answers within a second or two; a hung driver should not hang the caller
CGROUP = "/sys/fs/cgroup"  # this process's control group, as a container sees it: its CPU quota (`cpu_quota`)
CPU_QUOTA_FILES = (("cpu.max",), ("cpu/cpu.cfs_quota_us", "cpu/cpu.cfs_period_us"))  # under CGROUP: v2, then v1
NO_CPU_QUOTA = ("max", "-1")  # the quota's value where none is set (v2, v1)


def nvidia_smi(query: str) -> list[str]:
    """One value per GPU, as `nvidia-smi --query-gpu=QUERY` prints it; none without nvidia-smi or a working driver."""
    try:
        result = subprocess.run(["nvidia-smi", f"--query-gpu={query}", "--format=csv,noheader"], capture_output=True,
                                text=True, timeout=NVIDIA_SMI_TIMEOUT_S)  # fmt: skip
    except (OSError, subprocess.TimeoutExpired):
        return []
    return [line.strip() for line in result.stdout.splitlines() if line.strip()] if result.returncode == 0 else []


def describe(torch_threads: int | None = None) -> str:
    """CPU, cores, torch's version (with its thread count, where the caller runs torch), GPUs, Python."""
    cpu = platform.processor() or "unknown CPU"
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    try:
        torch = f"torch {importlib.metadata.version('torch')}"
    except importlib.metadata.PackageNotFoundError:
        torch = "no torch"
    threads = f" with {torch_threads} threads" if torch_threads else ""
    gpu = f"GPU {', '.join(names)}" if (names := nvidia_smi("name")) else "no GPU"  # GPU NVIDIA H200, NVIDIA H200
    return f"{cpu}, {os.cpu_count()} cores, {torch}{threads}, {gpu}, Python {platform.python_version()}"


def available_cores(cgroup: str = CGROUP) -> int:
    """The cores this process may keep busy: those its CPU affinity allows (on Linux; else all the machine's), or
    fewer where a CPU quota grants fewer (whole cores, at least one)."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    quota = cpu_quota(cgroup)
    return cores if quota is None else max(1, min(cores, int(quota)))


def cpu_quota(cgroup: str = CGROUP) -> float | None:
    """The cores a CPU quota grants this process's control group (a container's `--cpus`, a job's CPU limit), from
    cgroup v2's cpu.max ("QUOTA PERIOD", or "max PERIOD": none), else cgroup v1's cpu.cfs_quota_us (-1: none) over
    cpu.cfs_period_us; None where no quota is set or none can be read."""
    for names in CPU_QUOTA_FILES:
        try:
            quota, period = [word for name in names for word in read_words(os.path.join(cgroup, name))]
            return None if quota in NO_CPU_QUOTA else int(quota) / int(period)
        except (OSError, ValueError, ZeroDivisionError):  # no such file (the other cgroup version), or not a quota
            continue
    return None


def read_words(path: str) -> list[str]:
    with open(path) as f:
        return f.read().split()
