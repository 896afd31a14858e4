import os
import sys

import pytest
import torch
import torch._dynamo

# torch.compile keeps at most `recompile_limit` compiled versions of a forward per process, shared by all instances;
# past it, it would silently run uncompiled. The suite compiles networks of several sizes in one process: allow
# more versions, and fail loudly rather than test an uncompiled network.
torch._dynamo.config.recompile_limit = 64
torch._dynamo.config.fail_on_recompile_limit_hit = True

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BENCHMARKS = os.path.join(ROOT, "benchmarks")
sys.path.insert(0, ROOT)
sys.path.insert(1, BENCHMARKS)  # the benchmark scripts' functions, imported by the tests of those scripts

os.environ.setdefault("SDL_VIDEODRIVER", "dummy")


def subprocess_env(*first_on_path: str, **variables) -> dict:
    """This process's environment for a child process, with the project's root (after `first_on_path`) put first on
    PYTHONPATH (so that `--env-id tests.envs:...` imports the test envs) and the caller's PYTHONPATH kept after it."""
    path = os.pathsep.join(p for p in (*first_on_path, ROOT, os.environ.get("PYTHONPATH")) if p)
    return dict(os.environ, PYTHONPATH=path, **variables)


@pytest.fixture
def in_tmp(tmp_path, monkeypatch):
    """Run in an empty directory, so that `runs/` is created there."""
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.fixture(autouse=True)
def keep_torch_threads():
    """ddpg.train sets torch's thread count for the whole process: put it back after each test."""
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)
