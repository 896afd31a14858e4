import glob
import json
import os
import sys

import pytest


def share_the_cores() -> set[int] | None:
    """Under pytest-xdist, give each worker its own share of this process's cores, before torch starts its threads:
    the runs a test makes, in-process or as child processes (which inherit the share), then take their default
    thread count from it, and two workers' threads never compete for one core (small networks slow down many times
    over when they do). Returns every core, or None where nothing was shared."""
    worker, count = os.environ.get("PYTEST_XDIST_WORKER"), os.environ.get("PYTEST_XDIST_WORKER_COUNT")
    if not (worker and count and hasattr(os, "sched_setaffinity")):
        return None
    cores = sorted(os.sched_getaffinity(0))  # the modulo gives a core to a worker numbered past them (a restarted one)
    os.sched_setaffinity(0, cores[int(worker.removeprefix("gw")) % len(cores) :: int(count)])
    return set(cores)


MAX_WORKERS = 4  # pytest-xdist workers at most: each imports torch, and the suite gains little past a few


def pytest_xdist_auto_num_workers(config) -> int:
    """`--numprocesses auto`: a worker per core this process may use (xdist's own count would take every physical
    core of the machine, ignoring CPU affinity), at most MAX_WORKERS."""
    return min(MAX_WORKERS, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1)


ALL_CORES = share_the_cores()

import torch  # noqa: E402 (after the cores are shared)
import torch._dynamo  # noqa: E402

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


@pytest.fixture(scope="session")
def whole_run(tmp_path_factory):
    """The directory of test_checkpoints' RUN left alone: one for every test that compares a disturbed run with it."""
    from tests.test_checkpoints import RUN
    from tests.test_cli import run_cli

    cwd = tmp_path_factory.mktemp("whole")
    result = run_cli(cwd, *RUN, "--exp-name", "whole")
    assert result.returncode == 0, result.stderr
    (run_dir,) = glob.glob(str(cwd / "runs" / "*"))
    return run_dir


@pytest.fixture
def in_tmp(tmp_path, monkeypatch):
    """Run in an empty directory, so that `runs/` is created there."""
    monkeypatch.chdir(tmp_path)
    return tmp_path


# Imported first by every Python process whose PYTHONPATH starts with its folder; in a process started as ddpg.py (or
# population.py), it
# records what the process received and exits (at once, or after STAND_IN_LINGER seconds), training nothing and
# importing no torch.
STAND_IN = """
import glob, json, os, sys, time

if os.path.basename(sys.argv[0]) in ("ddpg.py", "population.py"):
    records = os.environ["STAND_IN_RECORDS"]
    earlier = [json.load(open(path)) for path in glob.glob(os.path.join(records, "*.json"))]
    # with STAND_IN_REFUSE_RESUME_ONCE, the first --resume is refused, as ddpg.py refuses a run directory in use
    # (its line on stderr, exit status EXIT_IN_USE: EX_TEMPFAIL)
    refused = "--resume" in sys.argv and "STAND_IN_REFUSE_RESUME_ONCE" in os.environ
    refused = refused and not any(record["refused"] for record in earlier)
    record = {"program": os.path.basename(sys.argv[0]), "argv": sys.argv[1:], "pid": os.getpid(),
              "time": time.time(), "refused": refused,
              "CUDA_VISIBLE_DEVICES": os.environ.get("CUDA_VISIBLE_DEVICES"),
              "WANDB_RUN_GROUP": os.environ.get("WANDB_RUN_GROUP")}
    path = os.path.join(records, f"{os.getpid()}.json")
    with open(f"{path}.tmp", "w") as f:
        json.dump(record, f)
    os.replace(f"{path}.tmp", path)
    if refused:
        run_dir = sys.argv[sys.argv.index("--resume") + 1]
        sys.stderr.write(f"ddpg.py: error: {run_dir} is in use by process 1 on elsewhere; one process writes a run "
                         "at a time\\n")
        sys.stderr.flush()
        os._exit(os.EX_TEMPFAIL)
    if "STAND_IN_LINGER" in os.environ:  # as a run that trains for that many seconds; SIGTERM is recorded
        import signal

        def stop(signum, frame):
            open(f"{path}.sigterm", "w").close()
            os._exit(128 + signum)

        signal.signal(signal.SIGTERM, stop)
        time.sleep(float(os.environ["STAND_IN_LINGER"]))
    os._exit(0)
"""


class StandIn:
    """A stand-in for ddpg.py's process (see STAND_IN): `env(**variables)` is a child environment in which every
    `python ddpg.py` records what it received; `records()` reads the records back, in order of time."""

    def __init__(self, root):
        self.site, self.dir = root / "stand-in-site", root / "stand-in-records"
        os.makedirs(self.site)
        os.makedirs(self.dir)
        (self.site / "sitecustomize.py").write_text(STAND_IN)

    def env(self, *first_on_path: str, **variables) -> dict:
        return subprocess_env(str(self.site), *first_on_path, STAND_IN_RECORDS=str(self.dir), **variables)

    def records(self) -> list[dict]:
        records = [json.loads(path.read_text()) for path in self.dir.glob("*.json")]
        return sorted(records, key=lambda record: record["time"])


@pytest.fixture
def stand_in(tmp_path):
    return StandIn(tmp_path)


@pytest.fixture(autouse=True)
def ray_tests_use_every_core(request):
    """A test that starts Ray (marked with xdist's group "ray") runs its processes on every core: Ray's own processes
    and the runs of a sweep, one thread each, mostly wait on each other, and squeezed onto one core they crawl."""
    group = request.node.get_closest_marker("xdist_group")
    if ALL_CORES is None or group is None or group.args != ("ray",):
        yield
        return
    share = os.sched_getaffinity(0)
    os.sched_setaffinity(0, ALL_CORES)
    yield
    os.sched_setaffinity(0, share)


@pytest.fixture(autouse=True)
def keep_torch_threads():
    """ddpg.train sets torch's thread count for the whole process: put it back after each test."""
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)
