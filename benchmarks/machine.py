"""One line describing the machine a benchmark or a sweep ran on, and its GPUs as nvidia-smi lists them; neither
imports torch."""

import importlib.metadata
import os
import platform
import subprocess

NVIDIA_SMI_TIMEOUT_S = 10  # nvidia-smi answers within a second or two; a hung driver should not hang the caller


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
