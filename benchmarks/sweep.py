"""Run ddpg.py for a list of environments x seeds, in a local process pool or on Ray, and say how each run ended.

    python benchmarks/sweep.py --envs HalfCheetah-v5 Hopper-v5 --seeds 1 2 3 --jobs 2 --preset mujoco \
        -- --total-timesteps 300000
    python benchmarks/sweep.py --envs HalfCheetah-v5 Hopper-v5 --seeds 1 2 3 --ray --preset mujoco -- ...

Every run is an ordinary `python ddpg.py` process writing its usual run directory under `--runs-dir` (default
`runs`; named with `--exp-name`, default `sweep`) with `--save-model`. A run whose directory already holds
`model.pt` is finished and skipped; one that holds only `checkpoint.pt` (interrupted, or stopped with the machine) is
continued with `--resume`. A run that fails does not stop the others; the summary at the end names it and shows its
last lines. Console output of each run goes to `<runs-dir>/sweep-logs/`. Every run gets `WANDB_RUN_GROUP=<exp-name>`
in its environment, so that runs logging to Weights & Biases share one group.

Local pool (default): `--jobs` runs at once, each with cores / jobs torch threads. Ctrl-C reaches the runs too:
each writes its checkpoint and exits, no further run starts (nor after any run is interrupted), and the same
command resumes them all later.

Ray (`--ray` starts a local Ray instance without its dashboard and with token authentication; `--ray-address
ADDRESS`, or `auto`, joins a running cluster): every run is a Ray task that starts the same `ddpg.py` process with
`--cpus-per-run` CPUs (and as many torch threads) and `--gpus-per-run` GPUs (a fraction shares a GPU). A run whose
process is killed (SIGKILL, out of memory) or whose worker or node is lost is submitted again, at most
`--max-retries` times, and resumes from its last checkpoint. A run that exits with an error or is interrupted on
purpose (SIGINT, SIGTERM) is not retried. Ctrl-C interrupts every run, which writes its checkpoint.
"""

import argparse
import datetime
import glob
import logging
import os
import signal
import socket
import subprocess
import sys
import time

from machine import describe

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PRESETS = {
    "none": [],
    # CleanRL's DDPG settings for MuJoCo (its defaults, its 1M-step budget among them), evaluations every 10k steps
    "mujoco": ["--total-timesteps", "1000000", "--learning-rate", "3e-4", "--learning-starts", "25000",
               "--noise-type", "gaussian", "--exploration-noise", "0.1", "--policy-frequency", "2",
               "--hidden-size", "256", "--batch-size", "256", "--tau", "0.005", "--gamma", "0.99",
               "--buffer-size", "1000000", "--eval-frequency", "10000"],
}  # fmt: skip
RUNS_DIR_NAME = "runs"  # ddpg.py writes its run directories to ./runs of the directory it starts in
POLL_S = 1.0
TAIL_LINES = 5
CONNECT_TIMEOUT_S = 3.0  # a Ray address that does not accept a connection in this time is refused
DEFAULT_MAX_RETRIES = 3
# how a run ended, from its exit status
FINISHED, INTERRUPTED, KILLED, FAILED = "finished", "interrupted", "killed", "failed"
INTERRUPTING_SIGNALS = (signal.SIGINT, signal.SIGTERM)  # ddpg.py writes a checkpoint and exits 128 + signum


class OneLineParser(argparse.ArgumentParser):
    def error(self, message):
        refuse(message)


def refuse(message: str):
    """Bad input: one line on stderr, exit status 2, before any work."""
    print(f"sweep.py: error: {message}", file=sys.stderr)
    sys.exit(2)


def run_dirs(runs_dir: str, env_id: str, exp_name: str, seed: int) -> list[str]:
    return sorted(glob.glob(os.path.join(runs_dir, f"{env_id.replace('/', '_')}__{exp_name}__{seed}__*")))


def plan(runs_dir: str, env_id: str, exp_name: str, seed: int, options: list[str]) -> tuple[str, list[str] | None]:
    """('done', None), ('resume', command) or ('start', command) for one env and seed."""
    dirs = run_dirs(runs_dir, env_id, exp_name, seed)
    if any(os.path.exists(os.path.join(d, "model.pt")) for d in dirs):
        return "done", None
    resumable = [d for d in dirs if os.path.exists(os.path.join(d, "checkpoint.pt"))]
    if resumable:
        return "resume", ["--resume", os.path.relpath(resumable[-1], os.path.dirname(runs_dir))]
    return "start", ["--env-id", env_id, "--seed", str(seed), "--exp-name", exp_name, "--save-model", *options]


def log_path(runs_dir: str, env_id: str, exp_name: str, seed: int) -> str:
    return os.path.join(runs_dir, "sweep-logs", f"{env_id.replace('/', '_')}__{exp_name}__{seed}.log")


def run_environment(exp_name: str) -> dict:
    """The environment of every run: this process's, plus the W&B group named after the sweep."""
    return dict(os.environ, WANDB_RUN_GROUP=exp_name)


def start_run(runs_dir: str, exp_name: str, command: list[str], threads: int, log_file) -> subprocess.Popen:
    """`python ddpg.py COMMAND --threads THREADS` in the directory above runs_dir, its output to log_file."""
    # a child inherits its parent's mask of blocked signals, and a Ray worker runs its tasks with SIGINT blocked:
    # unblocked for the child, or ddpg.py could never be interrupted and write its checkpoint
    blocked = signal.pthread_sigmask(signal.SIG_UNBLOCK, INTERRUPTING_SIGNALS)
    try:
        return subprocess.Popen([sys.executable, os.path.join(ROOT, "ddpg.py"), *command, "--threads", str(threads)],
                                env=run_environment(exp_name), cwd=os.path.dirname(runs_dir), stdout=log_file,
                                stderr=subprocess.STDOUT)  # fmt: skip
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, blocked)


def exit_signal(returncode: int) -> int | None:
    """The signal that ended a run: ddpg.py exits with 128 + signum after writing its checkpoint; a process killed
    outright (SIGKILL, or before ddpg.py set its handler) has the status -signum."""
    if returncode > 128:
        return returncode - 128
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
        return f"finished ({action}, {minutes:.1f} min){after}"
    if end == INTERRUPTED:
        name = signal.Signals(exit_signal(returncode)).name
        return f"interrupted by {name} after {minutes:.1f} min, checkpoint kept{after}"
    with open(log_path) as f:
        tail = " | ".join(line.strip() for line in f.readlines()[-TAIL_LINES:])
    return f"FAILED with exit status {returncode} after {minutes:.1f} min{after}: {tail}"


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

    def end(self, results: dict, env_id: str, seed: int, result: str) -> None:
        """Record how a run ended in `results`, and say so."""
        results[(env_id, seed)] = result
        self.done += 1
        self.ended += 1
        self.say(f"{env_id} seed {seed}: {result}")


# ----------------------------------------------------------------------------------------------------------------
# Local pool


def run_local(queue: list, results: dict, progress: Progress, args, runs_dir: str) -> None:
    """Run the queued (env_id, seed, action, command) `--jobs` at a time until all ended or the sweep is stopped."""
    threads = max(1, len(os.sched_getaffinity(0)) // args.jobs)
    running = {}
    while queue or running:
        try:
            while queue and len(running) < args.jobs:
                env_id, seed, action, command = queue.pop(0)
                path = log_path(runs_dir, env_id, args.exp_name, seed)
                log = open(path, "a")
                running[start_run(runs_dir, args.exp_name, command, threads, log)] = (env_id, seed, action, log,
                                                                                      path, time.time())  # fmt: skip
                progress.say(f"{action} {env_id} seed {seed} (log: {path})")
            for proc in [p for p in running if p.poll() is not None]:
                env_id, seed, action, log, path, start = running.pop(proc)
                log.close()
                progress.end(results, env_id, seed, outcome(proc.returncode, action, (time.time() - start) / 60, path))
            time.sleep(POLL_S if running else 0)
            stop = any(result.startswith("interrupted") for result in results.values())
        except KeyboardInterrupt:  # Ctrl-C reached the runs too: they write their checkpoints and exit
            stop = True
        if stop and queue:  # someone is stopping the sweep: start nothing more
            print("interrupted: starting no more runs, waiting for the running ones to write checkpoints", flush=True)
            for env_id, seed, _, _ in queue:
                results[(env_id, seed)] = "interrupted before it started"
            queue.clear()


# ----------------------------------------------------------------------------------------------------------------
# Ray


def ray_attempt(env_id: str, seed: int, exp_name: str, options: list[str], runs_dir: str, threads: int, starts):
    """One attempt at one run, as a Ray task: start or resume ddpg.py, as the run directory says, and wait for it.

    Tells the StartLog actor `starts` when it starts. Returns (exit status, 'start' / 'resume' / 'done', seconds,
    log path). `ray.cancel` (the sweep's Ctrl-C) raises KeyboardInterrupt here; it is passed on to ddpg.py as SIGINT,
    which writes its checkpoint before it exits.
    """
    action, command = plan(runs_dir, env_id, exp_name, seed, options)
    path = log_path(runs_dir, env_id, exp_name, seed)
    if action == "done":  # an earlier attempt finished the run, and its worker was lost before it could say so
        return 0, action, 0.0, path
    starts.started.remote(env_id, seed, action, socket.gethostname())  # not waited for: a task waiting in ray.get
    # lends its CPUs to the next task, and more runs than CPUs would run at once
    start = time.time()
    with open(path, "a") as log:
        proc = start_run(runs_dir, exp_name, command, threads, log)
        try:
            while proc.poll() is None:
                time.sleep(POLL_S)
        except KeyboardInterrupt:
            proc.send_signal(signal.SIGINT)
            proc.wait()
    return proc.returncode, action, time.time() - start, path


class StartLog:
    """A Ray actor: the runs' tasks tell it when they start, the sweep asks it now and then."""

    def __init__(self):
        self.starts = []

    def started(self, env_id: str, seed: int, action: str, host: str) -> None:
        self.starts.append((env_id, seed, action, host))

    def take(self) -> list[tuple]:
        starts, self.starts = self.starts, []
        return starts


def connect_ray(address: str | None, cpus_per_run: int):
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
        cpus = ray.cluster_resources().get("CPU", 0)
        if cpus_per_run > cpus:  # such a task would wait forever
            refuse(f"--cpus-per-run {cpus_per_run}: this machine has {cpus:.0f} CPUs")
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


def run_ray(ray, queue: list, results: dict, progress: Progress, args, runs_dir: str) -> None:
    """Submit every queued run as a Ray task; submit again those killed or lost, until all ended."""
    starts = ray.remote(StartLog).options(num_cpus=0).remote()
    # max_retries=0: the sweep itself submits a lost run again, so that it counts the retries and says so
    task = ray.remote(ray_attempt).options(num_cpus=args.cpus_per_run, num_gpus=args.gpus_per_run, max_retries=0)
    pending = {}  # ObjectRef -> (env_id, seed, retries so far)

    def submit(env_id, seed, retries):
        ref = task.remote(env_id, seed, args.exp_name, args.options_all, runs_dir, args.cpus_per_run, starts)
        pending[ref] = (env_id, seed, retries)

    for env_id, seed, _, _ in queue:
        submit(env_id, seed, 0)
        progress.say(f"{env_id} seed {seed}: queued on Ray")
    stopping = False
    while pending:
        try:
            ready, _ = ray.wait(list(pending), num_returns=1, timeout=POLL_S)
            for env_id, seed, action, host in ray.get(starts.take.remote()):
                progress.say(f"{action} {env_id} seed {seed} on {host} (log: "
                             f"{log_path(runs_dir, env_id, args.exp_name, seed)})")  # fmt: skip
        except KeyboardInterrupt:  # the runs are Ray's processes, out of reach of Ctrl-C: pass it on
            if stopping:
                raise  # a second Ctrl-C stops at once; the runs' last periodic checkpoints are kept
            stopping = True
            print("interrupted: stopping every run, waiting for them to write checkpoints", flush=True)
            for ref in pending:
                ray.cancel(ref)
            continue
        for ref in ready:
            env_id, seed, retries = pending.pop(ref)
            try:
                returncode, action, seconds, path = ray.get(ref)
                lost = ending(returncode) == KILLED and f"killed by {signal.Signals(exit_signal(returncode)).name}"
            except ray.exceptions.TaskCancelledError:
                progress.end(results, env_id, seed, "interrupted before it started")
                continue
            except ray.exceptions.RayTaskError as e:  # the task itself raised: no retry would do better
                progress.end(results, env_id, seed, f"FAILED: {type(e.cause).__name__}: {e.cause}")
                continue
            except ray.exceptions.RayError as e:  # its worker or node was lost (the error says which)
                returncode, lost = None, f"lost with its worker ({type(e).__name__})"
            if lost and retries < args.max_retries and not stopping:
                progress.say(f"{env_id} seed {seed} was {lost}: retry {retries + 1} of {args.max_retries}, "
                             f"from its last checkpoint if it wrote one")  # fmt: skip
                submit(env_id, seed, retries + 1)
                continue
            if returncode is None:
                result = f"FAILED: {lost} after {plural(retries, 'retry', 'retries')}"
            else:
                result = outcome(returncode, action, seconds / 60, path, retries)
            progress.end(results, env_id, seed, result)


# ----------------------------------------------------------------------------------------------------------------


def parse_args() -> argparse.Namespace:
    parser = OneLineParser(description=__doc__.splitlines()[0])
    parser.add_argument("--envs", nargs="+", required=True, help="gymnasium ids")
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument("--exp-name", default="sweep", help="--exp-name of every run: names the sweep")
    parser.add_argument("--preset", choices=sorted(PRESETS), default="none", help="settings added to every run")
    parser.add_argument(
        "--runs-dir",
        default=RUNS_DIR_NAME,
        help="where the run directories are (and are written); on a cluster, a path all nodes share",
    )
    local = parser.add_argument_group("local pool")
    local.add_argument("--jobs", type=int, help="runs at once (each gets cores / jobs torch threads; default 1)")
    on_ray = parser.add_argument_group("Ray")
    on_ray.add_argument("--ray", action="store_true", help="run on a local Ray instance started for the sweep")
    on_ray.add_argument("--ray-address", help="join the Ray cluster at HOST:PORT, or `auto` (implies --ray)")
    on_ray.add_argument("--cpus-per-run", type=int, help="CPUs (and torch threads) of each run (default 1)")
    on_ray.add_argument("--gpus-per-run", type=float, help="GPUs of each run, 0.25 puts four on a GPU (default 0)")
    on_ray.add_argument(
        "--max-retries", type=int, help=f"times a killed or lost run is submitted again (default {DEFAULT_MAX_RETRIES})"
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
    args.gpus_per_run = 0.0 if args.gpus_per_run is None else args.gpus_per_run
    args.max_retries = DEFAULT_MAX_RETRIES if args.max_retries is None else args.max_retries
    minimum = {"--jobs": (args.jobs, 1), "--cpus-per-run": (args.cpus_per_run, 1),
             "--gpus-per-run": (args.gpus_per_run, 0), "--max-retries": (args.max_retries, 0)}  # fmt: skip
    for name, (value, least) in minimum.items():
        if value < least:
            refuse(f"{name} must be at least {least}, got {value:g}")
    if os.path.basename(os.path.abspath(args.runs_dir)) != RUNS_DIR_NAME:
        refuse(f"--runs-dir {args.runs_dir}: must be a directory named {RUNS_DIR_NAME}, where ddpg.py writes its runs")
    args.options_all = PRESETS[args.preset] + args.options
    return args


def main() -> int:
    args = parse_args()
    # a Ray that is missing or does not answer is refused here, before anything is written
    ray = connect_ray(args.ray_address, args.cpus_per_run) if args.ray else None

    runs_dir = os.path.abspath(args.runs_dir)
    os.makedirs(os.path.join(runs_dir, "sweep-logs"), exist_ok=True)
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

    queue, results = [], {}
    for env_id in args.envs:
        for seed in args.seeds:
            action, command = plan(runs_dir, env_id, args.exp_name, seed, args.options_all)
            if action == "done":
                results[(env_id, seed)] = "already finished"
            else:
                queue.append((env_id, seed, action, command))
    progress = Progress(len(results) + len(queue), len(results))
    if ray is None:
        run_local(queue, results, progress, args, runs_dir)
    else:
        run_ray(ray, queue, results, progress, args, runs_dir)

    print("\nsweep summary:")
    for (env_id, seed), result in sorted(results.items()):
        print(f"  {env_id} seed {seed}: {result}")
    failed = sum(result.startswith("FAILED") for result in results.values())
    stopped = sum(result.startswith("interrupted") for result in results.values())
    print(f"{len(results) - failed - stopped} of {len(results)} runs finished"
          + (f", {stopped} interrupted (run the same command again to resume them)" if stopped else "")
          + (f", {failed} failed" if failed else ""))  # fmt: skip
    return 1 if failed or stopped else 0


if __name__ == "__main__":
    sys.exit(main())
