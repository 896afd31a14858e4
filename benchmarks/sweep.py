"""Run ddpg.py for a list of environments x seeds, in a local process pool or on Ray, and say how each run ended.

    python benchmarks/sweep.py --envs HalfCheetah-v5 Hopper-v5 --seeds 1 2 3 --jobs 2 --preset mujoco \
        -- --total-timesteps 300000
    python benchmarks/sweep.py --envs HalfCheetah-v5 Hopper-v5 --seeds 1 2 3 --ray --preset mujoco -- ...

Every run is an ordinary `python ddpg.py` process writing its usual run directory under `--runs-dir` (default `runs`;
named with `--exp-name`, default `sweep`) with `--save-model`. Before anything starts, the arguments saved in each
existing run directory are compared with those the sweep would run (`first_conflict`): a run trained with
other settings stops the sweep with one line naming it and the first option that differs (exit status 2). A run whose
directory already holds `model.pt` is finished and skipped, unless the sweep's --total-timesteps is larger: then it is
extended from its checkpoint; one that holds `checkpoint.pt` (interrupted, or stopped with the machine) is continued
with `--resume` (and the sweep's options, its budget among them); one that holds neither (its process died before its
first checkpoint) is removed and the run starts again, so that each seed keeps one directory. A run directory is written
by one process at a time (ddpg.py holds a lock on it): an attempt that finds it in use waits for that process to end, at
most LOCK_WAIT_S. A run that fails does not stop the others; the summary at the end names it and shows its last lines.
Console output of each run goes to `<runs-dir>/sweep-logs/`. Every run gets `WANDB_RUN_GROUP=<exp-name>` in its
environment, so that runs logging to Weights & Biases share one group. A run's process gets SIGTERM (and writes its
checkpoint) when the process that started it ends (Linux).

With `--seeds-per-process K`, each environment's seeds are taken K at a time, in order (the last group may be
smaller), and each group is one `python population.py --seeds ...` process: a population, whose seeds each write
their own run directory. What follows holds for a population as for a run, with all its seeds at once: it is skipped
when all have finished, resumed with `--resume` of all their directories when all hold checkpoints, else started again
(a population resumes only as a whole); it takes one of --jobs, one GPU, one Ray task with --cpus-per-run and
--gpus-per-run for the whole process; it is retried, interrupted and reported as one.

Local pool (default): `--jobs` runs at once, each with cores / jobs torch threads and, for runs that use CUDA, one of
the visible GPUs (CUDA_VISIBLE_DEVICES, else nvidia-smi's list) in CUDA_VISIBLE_DEVICES. Ctrl-C reaches the runs too:
each writes its checkpoint and exits, no further run starts (nor after any run is interrupted), and the same command
resumes them all.

Ray (`--ray` starts a local Ray instance without its dashboard and with token authentication; `--ray-address
ADDRESS`, or `auto`, joins a running cluster): every run is a Ray task that starts the same `ddpg.py` process with
`--cpus-per-run` CPUs (and as many torch threads) and `--gpus-per-run` GPUs (a fraction shares a GPU; by default one
for runs that use CUDA where the cluster has GPUs). A run whose process is killed (SIGKILL, out of memory) or whose
worker or node is lost is submitted again, at most `--max-retries` times, and resumes from its last checkpoint; the
sweep keeps its own state on its own node, and watches the nodes its runs are on. A run that exits with an error or is
interrupted on purpose (SIGINT, SIGTERM) is not retried. Ctrl-C interrupts every run, which writes its checkpoint.
"""

import argparse
import contextlib
import ctypes
import dataclasses
import datetime
import fcntl
import functools
import glob
import io
import itertools
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import time

from machine import available_cores, describe, nvidia_smi
from report import run_state

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
import ddpg  # noqa: E402 (its run directories, locks, exit statuses and checks: the conventions of the runs it writes)

PRESETS = {
    "none": [],
    # CleanRL's DDPG settings for MuJoCo (its defaults, its 1M-step budget among them), evaluations every 10k steps
    "mujoco": ["--total-timesteps", "1000000", "--learning-rate", "3e-4", "--learning-starts", "25000",
               "--noise-type", "gaussian", "--exploration-noise", "0.1", "--policy-frequency", "2",
               "--hidden-size", "256", "--batch-size", "256", "--tau", "0.005", "--gamma", "0.99",
               "--buffer-size", "1000000", "--eval-frequency", "10000"],
}  # fmt: skip
SET_BY_THE_SWEEP = ("env-id", "seed", "seeds", "exp-name", "resume", "save-model", "no-save-model", "eval-checkpoint")
LONGEST_LOG_NAME = 200  # bytes; a population of many seeds names its log by its first and last seeds beyond this
ABANDONED_PREFIX = ".abandoned__"  # a run directory being removed, out of sight of the sweep's and report's globs
# A run on a node cut off from a Ray cluster stops once that node gives up on the head: with Ray's default settings
# after gRPC's keepalive (5 min) and its timeout (2 min), then 60 s of reconnecting. Its retry waits for it.
LOCK_WAIT_S = 15 * 60
POLL_S = 1.0
TAIL_LINES = 5
CONNECT_TIMEOUT_S = 3.0  # a Ray address that does not accept a connection in this time is refused
DEFAULT_MAX_RETRIES = 3
DEFAULT_GPUS_PER_RUN = 1  # on Ray, for CUDA runs where the cluster has GPUs (docs/sweeps.md: one run keeps a GPU busy)
# how a run ended, from its exit status
FINISHED, INTERRUPTED, KILLED, FAILED = "finished", "interrupted", "killed", "failed"
INTERRUPTING_SIGNALS = (signal.SIGINT, signal.SIGTERM)  # ddpg.py writes a checkpoint, exits EXIT_SIGNAL + signum
PR_SET_PDEATHSIG = 1  # <linux/prctl.h>: the signal a process gets when the thread that started it ends


class OneLineParser(argparse.ArgumentParser):
    def error(self, message):
        refuse(message)


def refuse(message: str):
    """Bad input: one line on stderr, exit status 2, before any work."""
    print(f"sweep.py: error: {message}", file=sys.stderr)
    sys.exit(2)


def check(ddpg_check, *values) -> None:
    """One of ddpg.py's checks of what its runs get (`ddpg.check_seed`, ...); what it refuses, refused in one line."""
    try:
        ddpg_check(*values)
    except ddpg.UsageError as e:
        refuse(str(e))


# ----------------------------------------------------------------------------------------------------------------
# Run directories: finished, resumable, in use, abandoned


def run_dirs(runs_dir: str, env_id: str, exp_name: str, seed: int) -> list[str]:
    prefix = glob.escape(str(ddpg.RunName(env_id, exp_name, seed)))  # [ ] in a name are not a pattern
    return sorted(glob.glob(os.path.join(glob.escape(runs_dir), f"{prefix}*")))


def groups(seeds: list[int], k: int) -> list[tuple[int, ...]]:
    """The seeds, k at a time, in their order: the populations of one environment (the last may be smaller)."""
    return [tuple(seeds[i : i + k]) for i in range(0, len(seeds), k)]


def seeds_name(env_id: str, seeds: tuple[int, ...]) -> str:
    """'Pendulum-v1 seed 1' for a run, 'Pendulum-v1 seeds 1 2' for a population."""
    return f"{env_id} seed {seeds[0]}" if len(seeds) == 1 else f"{env_id} seeds {' '.join(map(str, seeds))}"


def count_runs(keys) -> int:
    """The runs of some (env_id, seeds) keys: one per seed."""
    return sum(len(seeds) for _, seeds in keys)


def holds(run_dir: str, name: str) -> bool:
    return os.path.exists(os.path.join(run_dir, name))


def check_flock(runs_dir: str) -> None:
    """Refuse, in one line, a --runs-dir on a file system that refuses flock locks (Lustre without -o flock, NFS
    without a lock manager may): ddpg.py locks each run directory, and the sweep looks at those locks."""
    probe = os.path.join(runs_dir, "sweep-logs", ddpg.LOCK_FILE)
    fd = os.open(probe, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)  # shared: several sweeps may probe at once
    except OSError as e:
        refuse(f"--runs-dir {runs_dir}: its file system refuses flock locks ({e.strerror}), which ddpg.py holds on "
               "each run directory; mount it with locking (NFS: its lock manager; Lustre: -o flock)")  # fmt: skip
    finally:
        os.close(fd)


def lock_holder(run_dir: str) -> str | None:
    """Who holds the run directory's lock ("process PID on HOST", as ddpg.py's `lock_run_dir` writes it), or None if
    nobody does: a shared lock taken and dropped at once fails while a run holds its exclusive one (a run locking it
    in that instant is refused, in use)."""
    try:
        fd = os.open(os.path.join(run_dir, ddpg.LOCK_FILE), os.O_RDONLY)
    except FileNotFoundError:  # no process ever locked it
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        return None
    except BlockingIOError:
        return os.read(fd, ddpg.HOLDER_BYTES).decode().strip() or "another process"
    finally:
        os.close(fd)  # and with it the shared lock


def take_up(run_dir: str) -> bool:
    """Remove a run directory whose run died before its first checkpoint: it has nothing to resume, and the run starts
    again in a new one. Under the directory's lock, so no ddpg.py can take it meanwhile; False if one holds it."""
    try:
        fd = ddpg.lock_run_dir(run_dir)  # as ddpg.py takes it: the lock file names the sweep's process meanwhile
    except ddpg.RunInUse:
        return False
    # renamed out of sight while locked, removed once unlocked (NFS keeps a file that is open when removed)
    trash = os.path.join(os.path.dirname(run_dir), ABANDONED_PREFIX + os.path.basename(run_dir))
    try:
        os.rename(run_dir, trash)
    finally:
        os.close(fd)
    shutil.rmtree(trash)
    return True


def start_command(env_id: str, seeds: tuple[int, ...], exp_name: str, options: list[str]) -> list[str]:
    """The options for a new run of these seeds (one seed: ddpg.py's run; several: population.py's population)."""
    chosen = ["--seed", str(seeds[0])] if len(seeds) == 1 else ["--seeds", *map(str, seeds)]
    return ["--env-id", env_id, *chosen, "--exp-name", exp_name, "--save-model", *options]


def run_settings(env_id: str, seed: int, exp_name: str, options: tuple[str, ...]):
    """The arguments (ddpg.Args) this sweep starts a run of `seed` with; options ddpg.py refuses, in one line."""
    try:
        with contextlib.redirect_stderr(io.StringIO()):  # tyro's boxed message
            return ddpg.tyro.cli(ddpg.Args, args=start_command(env_id, (seed,), exp_name, list(options)))
    except SystemExit:
        refuse(f"ddpg.py refuses the options {' '.join(options)} (python ddpg.py --help lists its options)")


def check_settings(runs_dir: str, envs: list[str], seeds: list[int], exp_name: str, options: list[str]) -> None:
    """Refuse, in one line and before any run starts, a sweep that finds one of its runs (its name, environment and
    seed) trained with other settings than it would run (`first_conflict`): that run is neither finished nor resumed
    as this sweep's. A larger --total-timesteps is no other setting: the run is extended, from its checkpoint."""
    for env_id, seed in itertools.product(envs, seeds):
        for run_dir in run_dirs(runs_dir, env_id, exp_name, seed):
            if not (holds(run_dir, ddpg.CHECKPOINT_FILE) or holds(run_dir, ddpg.MODEL_FILE)):
                continue  # ended before its first checkpoint: removed when its seed starts again
            state = run_state(run_dir)
            if state is None:  # unreadable: ddpg.py refuses it in one line when the sweep resumes it
                continue
            (saved, step), wanted = state, run_settings(env_id, seed, exp_name, tuple(options))
            name, where = first_conflict(saved, wanted), relative(runs_dir, run_dir)
            if name:
                option = f"--{name.replace('_', '-')}"
                refuse(f"{where} was trained with {option} {getattr(saved, name)}, this sweep's runs with "
                       f"{getattr(wanted, name)}: it is not one of them; give this sweep another --exp-name, or move "
                       "that run out of the way")  # fmt: skip
            if step < wanted.total_timesteps and not holds(run_dir, ddpg.CHECKPOINT_FILE):
                refuse(f"{where} ended at step {step}, before this sweep's --total-timesteps "
                       f"{wanted.total_timesteps}, and holds no {ddpg.CHECKPOINT_FILE} to extend it from; move that "
                       "run out of the way")  # fmt: skip


def first_conflict(saved_args: ddpg.Args, args: ddpg.Args) -> str | None:
    """The first option (an Args field) in which a run trained with `saved_args` is not a run of `args`, or None."""
    names = [field.name for field in dataclasses.fields(ddpg.Args)]
    return next((n for n in names if ddpg.conflicting(n, getattr(saved_args, n), getattr(args, n))), None)


def finished(run_dirs: list[str], settings, seed: int) -> bool:
    """Whether a run of `seed` (its directories: `run_dirs`) has finished as this sweep runs it (`settings(seed)`, asked
    only where there is a model.pt): a directory holds model.pt, written at a run's end, and reached the sweep's
    --total-timesteps (else the run is extended); a model.pt that cannot be read counts, as ddpg.py's resume says."""
    done = [d for d in run_dirs if holds(d, ddpg.MODEL_FILE)]
    states = [run_state(d) for d in done]
    return any(state is None or state[1] >= settings(seed).total_timesteps for state in states)


def relative(runs_dir: str, run_dir: str) -> str:
    """A run directory as ddpg.py names it: from the directory it runs in, above --runs-dir."""
    return os.path.relpath(run_dir, os.path.dirname(runs_dir))


def log_path(runs_dir: str, env_id: str, exp_name: str, seeds: tuple[int, ...]) -> str:
    """One log per process, named as its first seed's run directories but for their time, then the other seeds:
    `..._1.log` for a run, `..._1_2.log` for a population of seeds 1 and 2."""
    first = str(ddpg.RunName(env_id, exp_name, seeds[0])).removesuffix(ddpg.NAME_SEPARATOR)  # ENV__EXP-NAME__SEED
    name = "_".join([first, *map(str, seeds[1:])]) + ".log"
    if len(name.encode()) > LONGEST_LOG_NAME:  # a population's seeds are apart from every other's: its first names it
        name = f"{first}_to_{seeds[-1]}.log"
    return os.path.join(runs_dir, "sweep-logs", name)


def tail(path: str, lines: int) -> str:
    """The last lines of a run's log, on one line."""
    with open(path, errors="replace") as f:  # a run may print bytes that are not UTF-8
        return " | ".join(line.strip() for line in f.readlines()[-lines:])


# ----------------------------------------------------------------------------------------------------------------
# One attempt at one run or population, the same on the local pool and in a Ray task


def run_environment(exp_name: str, gpu: str | None = None) -> dict:
    """The environment of every run: this process's, plus the W&B group named after the sweep and, where the sweep
    chose one, the run's GPU."""
    return dict(os.environ, WANDB_RUN_GROUP=exp_name, **({} if gpu is None else {"CUDA_VISIBLE_DEVICES": gpu}))


def die_with_starter(prctl, starter: int) -> None:
    """In a run's process, before it becomes ddpg.py: SIGTERM (ddpg.py then writes its checkpoint and exits) when the
    thread that started it ends. The sweep and Ray's workers start runs from their main thread, which lives as long as
    their process: so a run stops when the sweep is killed, or when its Ray worker is (Ray itself kills the children
    of a worker that exits in order, not of one that is killed), instead of training on beside its retry."""
    prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    if os.getppid() != starter:  # the starter ended before prctl: no signal would come
        os.kill(os.getpid(), signal.SIGTERM)


def program(seeds: tuple[int, ...]) -> str:
    """The script that trains these seeds in one process: ddpg.py for one, population.py (beside it) for several."""
    return os.path.join(ROOT, "ddpg.py" if len(seeds) == 1 else "population.py")


def start_run(runs_dir: str, command: list[str], script: str, threads: int, env: dict, log_file) -> subprocess.Popen:
    """`python SCRIPT COMMAND --threads THREADS` in the directory above runs_dir, its output to log_file."""
    # a child inherits its parent's mask of blocked signals, and a Ray worker runs its tasks with SIGINT blocked:
    # unblocked for the child, or ddpg.py could never be interrupted and write its checkpoint
    blocked = signal.pthread_sigmask(signal.SIG_UNBLOCK, INTERRUPTING_SIGNALS)
    # libc's prctl looked up here: the child, forked from a process that may run threads, only calls it
    linux = sys.platform == "linux"
    die_with_me = functools.partial(die_with_starter, ctypes.CDLL(None).prctl, os.getpid()) if linux else None
    try:
        return subprocess.Popen([sys.executable, script, *command, "--threads", str(threads)],
                                env=env, cwd=os.path.dirname(runs_dir), stdout=log_file, stderr=subprocess.STDOUT,
                                preexec_fn=die_with_me)  # fmt: skip
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, blocked)


class StillInUse(Exception):
    """A run's directory stayed in use by another process for LOCK_WAIT_S."""


class Attempt:
    """One attempt at one run (one seed) or population (several seeds, one process), on this machine: once no process
    holds the seeds' run directories, start or resume ddpg.py as they say (or find the runs finished), and follow it
    to its end. It says each step through `say`."""

    def __init__(self, runs_dir: str, exp_name: str, env_id: str, seeds: tuple[int, ...], options: list[str],
                 threads: int, env: dict, where: str, say):  # fmt: skip
        self.runs_dir, self.exp_name, self.env_id, self.seeds, self.options = runs_dir, exp_name, env_id, seeds, options
        self.threads, self.env, self.where, self.say = threads, env, where, say
        self.name = seeds_name(env_id, seeds)
        self.path = log_path(runs_dir, env_id, exp_name, seeds)
        self.proc, self.action, self.started, self.waiting_since = None, None, None, None

    def poll(self) -> int | None:
        """The process's exit status once it ended (0 if its runs were found finished), else None: ask again later.
        Raises StillInUse once a run directory stayed in use for LOCK_WAIT_S."""
        if self.proc is None:
            return self.try_start()
        status = self.proc.poll()
        if status is None:
            return None
        self.log.close()
        if status == ddpg.EXIT_IN_USE:  # another process locked a directory between the sweep's look and ddpg.py's
            self.say(f"{self.name}: {tail(self.path, 1).removeprefix('ddpg.py: error: ')}: trying again")
            self.proc = None
            return None
        return status

    def try_start(self) -> int | None:
        action, detail, seeds = self.look()
        if action == "busy":
            if self.waiting_since is None:
                self.waiting_since = time.time()
                self.say(f"{self.name}: {detail}; waiting for it to end (at most {LOCK_WAIT_S // 60} min)")
            elif time.time() - self.waiting_since > LOCK_WAIT_S:
                raise StillInUse(f"{detail}, still after {LOCK_WAIT_S // 60} min")
            return None
        self.action, self.waiting_since = action, None
        if action == "done":  # finished meanwhile, by an earlier attempt or another process
            return 0
        self.log = open(self.path, "a")
        self.proc = start_run(self.runs_dir, detail, program(seeds), self.threads, self.env, self.log)
        self.started = time.time()
        self.say(f"{action} {seeds_name(self.env_id, seeds)}{self.where} (log: {self.path})")
        return None

    def look(self) -> tuple[str, list[str] | str | None, tuple[int, ...]]:
        """('busy', who holds a directory), ('done', None) or ('resume' / 'start', command), and the seeds it is for:
        those not finished. A population resumes only as a whole (each checkpoint names its members): with all its
        runs' checkpoints, else it starts again."""
        dirs = {seed: run_dirs(self.runs_dir, self.env_id, self.exp_name, seed) for seed in self.seeds}
        # locks first: a process that holds one may yet write model.pt or a checkpoint
        for run_dir in itertools.chain(*dirs.values()):
            holder = lock_holder(run_dir)
            if holder:
                return "busy", f"{self.relative(run_dir)} is in use by {holder}", self.seeds
        settings = functools.partial(run_settings, self.env_id, exp_name=self.exp_name, options=tuple(self.options))
        seeds = tuple(seed for seed in self.seeds if not finished(dirs[seed], settings, seed))
        if not seeds:
            return "done", None, self.seeds
        for run_dir in sorted(d for seed in seeds for d in dirs[seed] if not holds(d, ddpg.CHECKPOINT_FILE)
                              and not holds(d, ddpg.MODEL_FILE)):  # fmt: skip
            if not take_up(run_dir):
                return "busy", f"{self.relative(run_dir)} is in use by another process", self.seeds
            self.say(f"{self.name}: removed {self.relative(run_dir)}: its run ended before its first checkpoint")
        resumable = [[d for d in dirs[seed] if holds(d, ddpg.CHECKPOINT_FILE)] for seed in seeds]
        if all(resumable):  # with the sweep's options (ddpg.py refuses other settings) and its budget, which extends
            total = settings(seeds[0]).total_timesteps  # a run that finished short of it
            return "resume", ["--resume", *(self.relative(ds[-1]) for ds in resumable), *self.options,
                              "--total-timesteps", str(total)], seeds  # fmt: skip
        if any(resumable):
            kept = ", ".join(self.relative(ds[-1]) for ds in resumable if ds)
            self.say(f"{self.name}: {kept} left as they are: the other seeds have no checkpoint to resume with them")
        return "start", start_command(self.env_id, seeds, self.exp_name, self.options), seeds

    def relative(self, run_dir: str) -> str:
        return relative(self.runs_dir, run_dir)

    def seconds(self) -> float:
        return time.time() - self.started if self.started else 0.0

    def interrupt(self) -> int:
        """Pass Ctrl-C on to the run, which writes its checkpoint; its exit status."""
        self.proc.send_signal(signal.SIGINT)
        status = self.proc.wait()
        self.log.close()
        return status


def exit_signal(returncode: int) -> int | None:
    """The signal that ended a run: ddpg.py exits with EXIT_SIGNAL + signum after writing its checkpoint; a process
    killed outright (SIGKILL, or before ddpg.py set its handler) has the status -signum."""
    if returncode > ddpg.EXIT_SIGNAL:
        return returncode - ddpg.EXIT_SIGNAL
    return -returncode if returncode < 0 else None


def ending(returncode: int) -> str:
    """FINISHED, INTERRUPTED (on purpose: checkpoint kept), KILLED (by any other signal: worth a retry), FAILED."""
    if returncode == 0:
        return FINISHED
    signum = exit_signal(returncode)
    if signum in INTERRUPTING_SIGNALS:
        return INTERRUPTED
    return KILLED if returncode < 0 else FAILED


def plural(n: int, word: str, words: str) -> str:
    return f"{n} {word if n == 1 else words}"


def outcome(returncode: int, action: str, minutes: float, log_path: str, retries: int = 0) -> str:
    """How a run ended, in words: finished, interrupted by a signal (its checkpoint is kept), or failed."""
    after = f", resumed after {plural(retries, 'retry', 'retries')}" if retries else ""
    end = ending(returncode)
    if end == FINISHED:
        how = "by an earlier process" if action == "done" else f"{action}, {minutes:.1f} min"
        return f"finished ({how}){after}"
    if end == INTERRUPTED:
        name = signal.Signals(exit_signal(returncode)).name
        return f"interrupted by {name} after {minutes:.1f} min, checkpoint kept{after}"
    return f"FAILED with exit status {returncode} after {minutes:.1f} min{after}: {tail(log_path, TAIL_LINES)}"


class Progress:
    """Lines saying how many runs of how many are done, and the time left at the pace of the runs ended so far."""

    def __init__(self, total: int, done: int):
        self.total, self.done, self.ended, self.start = total, done, 0, time.time()

    def say(self, message: str) -> None:
        left = ""
        if self.ended and self.done < self.total:
            seconds = (time.time() - self.start) / self.ended * (self.total - self.done)
            left = f", about {datetime.timedelta(seconds=round(seconds))} left"
        print(f"[{self.done}/{self.total} done{left}] {message}", flush=True)

    def end(self, results: dict, env_id: str, seeds: tuple[int, ...], result: str) -> None:
        """Record how a run or population ended in `results`, and say so."""
        results[(env_id, seeds)] = result
        self.done += len(seeds)
        self.ended += len(seeds)
        self.say(f"{seeds_name(env_id, seeds)}: {result}")


# ----------------------------------------------------------------------------------------------------------------
# Local pool


def uses_cuda(options: list[str]) -> bool:
    """Whether runs with these ddpg.py options use a GPU where there is one: of --cuda and --no-cuda the last one
    counts, and without either ddpg.py's default (Args.cuda)."""
    flags = [option for option in options if option in ("--cuda", "--no-cuda")]
    return flags[-1] == "--cuda" if flags else ddpg.Args.cuda


def visible_gpus() -> tuple[list[str], str]:
    """The GPUs runs may use, and where that list comes from: CUDA_VISIBLE_DEVICES where it is set (CUDA reads it up
    to its first entry that names no device, such as -1), else every GPU that nvidia-smi lists."""
    if "CUDA_VISIBLE_DEVICES" in os.environ:
        entries = [entry.strip() for entry in os.environ["CUDA_VISIBLE_DEVICES"].split(",")]
        return list(itertools.takewhile(lambda e: e and not e.startswith("-"), entries)), "CUDA_VISIBLE_DEVICES"
    return nvidia_smi("index"), "nvidia-smi"


def run_local(queue: list, results: dict, progress: Progress, args, runs_dir: str) -> None:
    """Run the queued (env_id, seeds) `--jobs` processes at a time until all ended or the sweep is stopped."""
    threads = max(1, available_cores() // args.jobs)  # the cores the affinity and a CPU quota allow
    gpus, source = visible_gpus() if uses_cuda(args.options_all) else ([], None)
    if gpus:
        print(f"GPUs: {', '.join(gpus)} (from {source}); each run gets the one that the fewest running runs use, in "
              f"CUDA_VISIBLE_DEVICES", flush=True)  # fmt: skip
    elif source:
        print(f"no GPU found ({source}): the runs train on the CPU", flush=True)
    running = {}  # Attempt -> its GPU or None
    while queue or running:
        try:
            while queue and len(running) < args.jobs:
                env_id, seeds = queue.pop(0)
                gpu = min(gpus, key=list(running.values()).count) if gpus else None  # ties: the first in the list
                running[Attempt(runs_dir, args.exp_name, env_id, seeds, args.options_all, threads,
                                run_environment(args.exp_name, gpu), f" on GPU {gpu}" if gpus else "",
                                progress.say)] = gpu  # fmt: skip
            for attempt in list(running):
                try:
                    status = attempt.poll()
                except StillInUse as e:
                    status, result = None, f"FAILED: {e}"
                else:
                    if status is None:
                        continue
                    result = outcome(status, attempt.action, attempt.seconds() / 60, attempt.path)
                running.pop(attempt)
                progress.end(results, attempt.env_id, attempt.seeds, result)
            time.sleep(POLL_S if running else 0)
            stop = any(result.startswith("interrupted") for result in results.values())
        except KeyboardInterrupt:  # Ctrl-C reached the runs too: they write their checkpoints and exit
            stop = True
        waiting = [attempt for attempt in running if attempt.proc is None]
        if stop and (queue or waiting):  # someone is stopping the sweep: start nothing more
            print("interrupted: starting no more runs, waiting for the running ones to write checkpoints", flush=True)
            for env_id, seeds in queue + [(attempt.env_id, attempt.seeds) for attempt in waiting]:
                results[(env_id, seeds)] = "interrupted before it started"
            queue.clear()
            for attempt in waiting:
                running.pop(attempt)


# ----------------------------------------------------------------------------------------------------------------
# Ray


def ray_attempt(env_id: str, seeds: tuple[int, ...], retries: int, exp_name: str, options: list[str], runs_dir: str,
                threads: int, events):  # fmt: skip
    """One attempt at one run or population, as a Ray task; returns (exit status, 'start' / 'resume' / 'done',
    seconds, log path).

    It tells the Events actor `events` first on which node it runs, then what the Attempt says. `ray.cancel` (the
    sweep's Ctrl-C) raises KeyboardInterrupt here; it is passed on to ddpg.py as SIGINT, which writes its checkpoint
    before it exits.

    Ray sends this function by value (it is the sweep's `__main__`), with what it names of this file: not the Attempt,
    whose ddpg module the worker could not import (Ray puts the sweep's folder on the worker's path, not ddpg.py's).
    The worker imports this file instead, as the module `sweep`, which puts ddpg.py on its path as it does here.
    """
    import ray
    import sweep

    context = ray.get_runtime_context()
    node, gpus = context.get_node_id(), context.get_accelerator_ids().get("GPU")
    key = (env_id, seeds, retries)
    events.tell.remote(key, node, None)  # not waited for: a task waiting in ray.get lends its CPUs to the next task,
    # and more runs than CPUs would run at once
    where = f" on {socket.gethostname()}" + (f", GPU {','.join(gpus)}" if gpus else "")
    attempt = sweep.Attempt(runs_dir, exp_name, env_id, seeds, options, threads, run_environment(exp_name), where,
                            lambda message: events.tell.remote(key, node, message))  # fmt: skip
    try:
        while (status := attempt.poll()) is None:
            time.sleep(POLL_S)
    except KeyboardInterrupt:
        if attempt.proc is None:  # nothing started: the sweep hears 'cancelled'
            raise
        status = attempt.interrupt()
    return status, attempt.action, attempt.seconds(), attempt.path


class Events:
    """A Ray actor on the sweep's node: the runs' tasks tell it where they run and what they do; the sweep takes the
    news now and then."""

    def __init__(self):
        self.news = []

    def tell(self, key: tuple, node: str, message: str | None) -> None:
        self.news.append((key, node, message))

    def take(self) -> list[tuple]:
        news, self.news = self.news, []
        return news


def connect_ray(address: str | None):
    """Start a local Ray instance (address None) or join the cluster at `address`; refuse in one line if neither."""
    if address is None:
        # a local instance's ports listen on all interfaces, so a token guards them (read when ray is imported)
        os.environ["RAY_AUTH_MODE"] = "token"
    try:
        import ray
    except ImportError:
        refuse("--ray needs ray, which is not installed: pip install -r benchmarks/requirements.txt")
    if address is None:  # without the dashboard, nor its jobs API
        ray.init(address="local", include_dashboard=False, log_to_driver=False, logging_level=logging.WARNING)
        return ray
    if address != "auto":
        host, _, port = address.split("://")[-1].rpartition(":")
        if not port.isdigit():
            refuse(f"--ray-address {address}: expected HOST:PORT (the head node's GCS port, 6379 by default) or auto")
        try:
            socket.create_connection((host, int(port)), timeout=CONNECT_TIMEOUT_S).close()
        except OSError as e:
            refuse(f"--ray-address {address}: no Ray cluster answers there ({e.strerror or e})")
    try:
        ray.init(address=address, log_to_driver=False, logging_level=logging.WARNING)
    except (ConnectionError, RuntimeError, ValueError, ray.exceptions.RayError) as e:  # none there, or no token
        refuse(f"--ray-address {address}: {str(e).splitlines()[0]}")
    return ray


def ray_resources(ray, args) -> str:
    """Settle --gpus-per-run from the cluster (refusing what would hide its GPUs from CUDA runs, or fit no node);
    returns a line saying what each run gets."""
    gpus, cuda = ray.cluster_resources().get("GPU", 0), uses_cuda(args.options_all)
    if args.gpus_per_run is None:
        args.gpus_per_run = float(DEFAULT_GPUS_PER_RUN) if cuda and gpus else 0.0
    elif args.gpus_per_run == 0 and cuda and gpus:
        # Ray 2.60 leaves such a task's CUDA_VISIBLE_DEVICES as it was (RAY_ACCEL_ENV_VAR_OVERRIDE_ON_ZERO=1: empty)
        refuse(f"--gpus-per-run 0: the runs use CUDA (ddpg.py's default --cuda) and the Ray cluster has {gpus:g} GPUs, "
               "but Ray would reserve none for them: they would crowd onto a node's first GPU (or, where Ray hides "
               "the GPUs, train on the CPU); give each run a share, or pass --no-cuda after --")  # fmt: skip
    nodes = [node["Resources"] for node in ray.nodes() if node["Alive"]]
    if not any(r.get("CPU", 0) >= args.cpus_per_run and r.get("GPU", 0) >= args.gpus_per_run for r in nodes):
        sizes = ", ".join(f"{r.get('CPU', 0):g} CPUs and {r.get('GPU', 0):g} GPUs" for r in nodes)
        refuse(f"--cpus-per-run {args.cpus_per_run} --gpus-per-run {args.gpus_per_run:g}: no node of the Ray cluster "
               f"has that much (its nodes: {sizes}); such a run would wait forever")  # fmt: skip
    if args.gpus_per_run:
        return f"GPUs: {args.gpus_per_run:g} per run, of {gpus:g} in the cluster, in each run's CUDA_VISIBLE_DEVICES"
    return "no GPU in the Ray cluster: the runs train on the CPU" if cuda else ""


def run_ray(ray, queue: list, results: dict, progress: Progress, args, runs_dir: str) -> None:
    """Submit every queued run or population as a Ray task; submit again those killed or lost (with their worker or
    node), until all ended."""
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    if not queue:  # every run finished: no actor to make (Ray would log its cancelled creation at exit)
        return
    # the sweep's own state stays on the sweep's node: losing another node loses none of it
    here = NodeAffinitySchedulingStrategy(ray.get_runtime_context().get_node_id(), soft=False)
    events = ray.remote(Events).options(num_cpus=0, scheduling_strategy=here).remote()
    # max_retries=0: the sweep itself submits a lost run again, so that it counts the retries and says so
    task = ray.remote(ray_attempt).options(num_cpus=args.cpus_per_run, num_gpus=args.gpus_per_run, max_retries=0)
    pending, nodes = {}, {}  # ObjectRef -> (env_id, seeds, retries so far); that key -> the node its task runs on
    stopping = False

    def submit(env_id, seeds, retries):
        pending[task.remote(env_id, seeds, retries, args.exp_name, args.options_all, runs_dir, args.cpus_per_run,
                            events)] = (env_id, seeds, retries)  # fmt: skip

    def settle(ref, lost, result):
        """Submit a lost or killed run again if it may be; else record how it ended."""
        env_id, seeds, retries = pending.pop(ref)
        if lost and retries < args.max_retries and not stopping:
            progress.say(f"{seeds_name(env_id, seeds)} was {lost}: retry {retries + 1} of {args.max_retries}, "
                         f"from its last checkpoint if it wrote one")  # fmt: skip
            submit(env_id, seeds, retries + 1)
        else:
            result = result or f"FAILED: {lost} after {plural(retries, 'retry', 'retries')}"
            progress.end(results, env_id, seeds, result)

    for env_id, seeds in queue:
        submit(env_id, seeds, 0)
        progress.say(f"{seeds_name(env_id, seeds)}: queued on Ray")
    while pending:
        try:
            ready, _ = ray.wait(list(pending), num_returns=1, timeout=POLL_S)
            current = set(pending.values())
            for key, node, message in ray.get(events.take.remote()):
                if key in current:  # not from an attempt given up for lost
                    nodes[key] = node
                    if message:
                        progress.say(message)
            dead = {node["NodeID"]: node["NodeManagerAddress"] for node in ray.nodes() if not node["Alive"]}
        except KeyboardInterrupt:  # the runs are Ray's processes, out of reach of Ctrl-C: pass it on
            if stopping:
                raise  # a second Ctrl-C stops at once; the runs' last periodic checkpoints are kept
            stopping = True
            print("interrupted: stopping every run, waiting for them to write checkpoints", flush=True)
            for ref in pending:
                ray.cancel(ref)
            continue
        for ref in ready:
            try:
                returncode, action, seconds, path = ray.get(ref)
                lost = ending(returncode) == KILLED and f"killed by {signal.Signals(exit_signal(returncode)).name}"
                settle(ref, lost, outcome(returncode, action, seconds / 60, path, pending[ref][2]))
            except ray.exceptions.TaskCancelledError:
                settle(ref, False, "interrupted before it started")
            except ray.exceptions.RayTaskError as e:  # the task itself raised: no retry would do better
                settle(ref, False, f"FAILED: {type(e.cause).__name__}: {e.cause}")
            except ray.exceptions.RayError as e:  # its worker or node was lost (the error says which)
                settle(ref, f"lost with its worker ({type(e).__name__})", None)
        # Ray marks a node dead within seconds of its last health check, but fails the tasks that ran there only once
        # gRPC gives up on their connections (minutes): the sweep retries them as soon as their node is dead
        for ref in [ref for ref, key in pending.items() if nodes.get(key) in dead]:
            settle(ref, f"lost with its node {dead[nodes[pending[ref]]]}, which Ray marked dead", None)


# ----------------------------------------------------------------------------------------------------------------


def parse_args() -> argparse.Namespace:
    parser = OneLineParser(description=__doc__.splitlines()[0])
    parser.add_argument("--envs", nargs="+", required=True, help="gymnasium ids")
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument(
        "--seeds-per-process",
        type=int,
        default=1,
        metavar="K",
        help="train an environment's seeds K at a time, each K in one process (population.py --seeds: a population, "
        "batched on a GPU); default 1: a process per seed",
    )
    parser.add_argument("--exp-name", default="sweep", help="--exp-name of every run: names the sweep, its W&B group")
    parser.add_argument(
        "--preset",
        choices=sorted(PRESETS),
        default="none",
        help="settings added to every run, before the options after -- (mujoco: CleanRL's, with 1M steps)",
    )
    parser.add_argument(
        "--runs-dir",
        default=ddpg.RUNS_DIR,
        help="where the run directories are (and are written); on a cluster, a path all nodes share",
    )
    local = parser.add_argument_group("local pool")
    local.add_argument("--jobs", type=int, help="processes at once (each gets cores / jobs torch threads; default 1)")
    on_ray = parser.add_argument_group("Ray")
    on_ray.add_argument("--ray", action="store_true", help="run on a local Ray instance started for the sweep")
    on_ray.add_argument("--ray-address", help="join the Ray cluster at HOST:PORT, or `auto` (implies --ray)")
    on_ray.add_argument(
        "--cpus-per-run",
        type=int,
        help="CPUs (and torch threads) of each process, shared by a population's seeds (default 1)",
    )
    on_ray.add_argument(
        "--gpus-per-run",
        type=float,
        help=f"GPUs of each process, shared by a population's seeds; 0.25 puts four on a GPU (default "
        f"{DEFAULT_GPUS_PER_RUN} for runs that use CUDA where the cluster has GPUs, else 0)",
    )
    on_ray.add_argument(
        "--max-retries",
        type=int,
        help=f"times a killed or lost run (or population) is submitted again (default {DEFAULT_MAX_RETRIES})",
    )
    parser.add_argument("options", nargs="*", help="more ddpg.py options for every run, after --")
    args = parser.parse_args()

    args.ray = args.ray or args.ray_address is not None
    ray_only = {"--cpus-per-run": args.cpus_per_run, "--gpus-per-run": args.gpus_per_run,
                "--max-retries": args.max_retries}  # fmt: skip
    if args.ray and args.jobs is not None:
        refuse("--jobs is for the local pool; on Ray, --cpus-per-run and --gpus-per-run decide how many runs fit")
    if not args.ray and any(value is not None for value in ray_only.values()):
        refuse(f"{', '.join(k for k, v in ray_only.items() if v is not None)}: only with --ray or --ray-address")
    args.jobs = 1 if args.jobs is None else args.jobs
    args.cpus_per_run = 1 if args.cpus_per_run is None else args.cpus_per_run
    args.max_retries = DEFAULT_MAX_RETRIES if args.max_retries is None else args.max_retries
    minimum = {"--seeds-per-process": (args.seeds_per_process, 1), "--jobs": (args.jobs, 1),
               "--cpus-per-run": (args.cpus_per_run, 1),
               "--gpus-per-run": (args.gpus_per_run or 0, 0), "--max-retries": (args.max_retries, 0)}  # fmt: skip
    for name, (value, least) in minimum.items():
        if value < least:
            refuse(f"{name} must be at least {least}, got {value:g}")
    twice = [seed for seed in args.seeds if args.seeds.count(seed) > 1]
    if twice:
        refuse(f"--seeds: seed {twice[0]} is given twice")
    for seed in args.seeds:
        check(ddpg.check_seed, seed, "--seeds")
    names = [str(ddpg.RunName(env_id, args.exp_name, args.seeds[0])) for env_id in args.envs]  # their run directories
    twice = [env_id for env_id, name in zip(args.envs, names) if names.count(name) > 1]
    if twice:
        refuse(f"--envs: {twice[0]} is given twice")
    check(ddpg.check_exp_name, args.exp_name)
    for option in args.options:
        name = option[2:].split("=")[0].replace("_", "-") if option.startswith("--") else None
        if name in SET_BY_THE_SWEEP:
            refuse(f"{option} after --: the sweep sets --{name} itself for each run (its own --envs, --seeds, "
                   "--exp-name; every run saves its model, which marks it finished)")  # fmt: skip
    if os.path.basename(os.path.abspath(args.runs_dir)) != ddpg.RUNS_DIR:
        refuse(f"--runs-dir {args.runs_dir}: must be a directory named {ddpg.RUNS_DIR}, where ddpg.py writes its runs")
    args.options_all = PRESETS[args.preset] + args.options
    return args


def main() -> int:
    args = parse_args()
    # a Ray that is missing or does not answer, or cannot fit a run, is refused here, before anything is written
    ray = connect_ray(args.ray_address) if args.ray else None
    resources = ray_resources(ray, args) if ray else ""

    runs_dir = os.path.abspath(args.runs_dir)
    try:
        os.makedirs(os.path.join(runs_dir, "sweep-logs"), exist_ok=True)
        check_flock(runs_dir)
    except OSError as e:  # a file in the way, a place this process cannot write
        refuse(f"--runs-dir {args.runs_dir}: cannot write there ({e.strerror}: {e.filename})")
    machine = describe()
    if ray is not None:
        cluster = ray.cluster_resources()
        nodes = sum(node["Alive"] for node in ray.nodes())
        machine = (
            f"Ray, {plural(nodes, 'node', 'nodes')} with {cluster.get('CPU', 0):.0f} CPUs and "
            f"{cluster.get('GPU', 0):.0f} GPUs in all; the sweep ran on {machine}"
        )
    machine_path = os.path.join(runs_dir, "sweep-logs", f"{args.exp_name}.machine.txt")
    with open(f"{machine_path}.tmp", "w") as f:
        f.write(machine + "\n")
    os.replace(f"{machine_path}.tmp", machine_path)
    if resources:
        print(resources, flush=True)
    outer_group = os.environ.get("WANDB_RUN_GROUP")
    if outer_group not in (None, args.exp_name):
        print(f"WANDB_RUN_GROUP={outer_group} in the environment: the runs get the sweep's group instead, "
              f"{args.exp_name} (--exp-name names it)", flush=True)  # fmt: skip

    check_settings(runs_dir, args.envs, args.seeds, args.exp_name, args.options_all)
    queue, results = [], {}  # (env_id, seeds): a run, or a population of several seeds in one process
    for env_id in args.envs:
        for seeds in groups(args.seeds, args.seeds_per_process):
            settings = functools.partial(run_settings, env_id, exp_name=args.exp_name, options=tuple(args.options_all))
            if all(finished(run_dirs(runs_dir, env_id, args.exp_name, seed), settings, seed) for seed in seeds):
                results[(env_id, seeds)] = "already finished"
            else:
                queue.append((env_id, seeds))
    progress = Progress(count_runs(results) + count_runs(queue), count_runs(results))
    if ray is None:
        run_local(queue, results, progress, args, runs_dir)
    else:
        run_ray(ray, queue, results, progress, args, runs_dir)

    print("\nsweep summary:")
    for (env_id, seeds), result in sorted(results.items()):
        print(f"  {seeds_name(env_id, seeds)}: {result}")
    failed = count_runs(key for key, result in results.items() if result.startswith("FAILED"))
    stopped = count_runs(key for key, result in results.items() if result.startswith("interrupted"))
    print(f"{count_runs(results) - failed - stopped} of {count_runs(results)} runs finished"
          + (f", {stopped} interrupted (run the same command again to resume them)" if stopped else "")
          + (f", {failed} failed" if failed else ""))  # fmt: skip
    return 1 if failed or stopped else 0


if __name__ == "__main__":
    sys.exit(main())
