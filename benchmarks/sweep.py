"""Run ddpg.py for a list of environments x seeds, several processes at once, and say how each run ended.

    python benchmarks/sweep.py --envs HalfCheetah-v5 Hopper-v5 --seeds 1 2 3 --jobs 2 --preset mujoco \
        -- --total-timesteps 300000

Every run is an ordinary `python ddpg.py` process writing its usual run directory under `runs/` (named with
`--exp-name`, default `sweep`) with `--save-model`. A run whose directory already holds `model.pt` is finished and
skipped; one that holds only `checkpoint.pt` (interrupted, or stopped with the machine) is continued with
`--resume`. A run that fails does not stop the others; the summary at the end names it and shows its last lines.
Ctrl-C reaches the runs too: each writes its checkpoint and exits, no further run starts (nor after any run is
interrupted), and the same command resumes them all later. Console output of each run goes to `runs/sweep-logs/`.
"""

import argparse
import glob
import os
import signal
import subprocess
import sys
import time

from machine import describe

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PRESETS = {
    "none": [],
    # CleanRL's DDPG settings for MuJoCo (its defaults), with evaluations every 10k steps
    "mujoco": ["--learning-rate", "3e-4", "--learning-starts", "25000", "--noise-type", "gaussian",
               "--exploration-noise", "0.1", "--policy-frequency", "2", "--hidden-size", "256", "--batch-size", "256",
               "--tau", "0.005", "--gamma", "0.99", "--buffer-size", "1000000", "--eval-frequency", "10000"],
}  # fmt: skip
POLL_S = 1.0
TAIL_LINES = 5


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


def outcome(returncode: int, action: str, minutes: float, log_path: str) -> str:
    """How a run ended, in words: finished, interrupted by a signal (its checkpoint is kept), or failed."""
    if returncode == 0:
        return f"finished ({action}, {minutes:.1f} min)"
    # ddpg.py writes a checkpoint and exits with 128 + signum; killed before its handler was set (or by a second
    # signal) the status is -signum, and the last checkpoint is kept either way
    signum = returncode - 128 if returncode > 128 else -returncode
    if signum in (signal.SIGINT, signal.SIGTERM):
        return f"interrupted by {signal.Signals(signum).name} after {minutes:.1f} min, checkpoint kept"
    with open(log_path) as f:
        tail = " | ".join(line.strip() for line in f.readlines()[-TAIL_LINES:])
    return f"FAILED with exit status {returncode} after {minutes:.1f} min: {tail}"


def launch_and_poll(queue: list, running: dict, results: dict, jobs: int, runs_dir: str, exp_name: str, env: dict):
    """Start queued runs while fewer than `jobs` run, record the runs that ended, wait a moment."""
    log_dir = os.path.join(runs_dir, "sweep-logs")
    while queue and len(running) < jobs:
        env_id, seed, action, command = queue.pop(0)
        log_path = os.path.join(log_dir, f"{env_id.replace('/', '_')}__{exp_name}__{seed}.log")
        log = open(log_path, "a")
        proc = subprocess.Popen([sys.executable, os.path.join(ROOT, "ddpg.py"), *command], env=env,
                                cwd=os.path.dirname(runs_dir), stdout=log, stderr=subprocess.STDOUT)  # fmt: skip
        running[proc] = (env_id, seed, action, log, log_path, time.time())
        print(f"{action} {env_id} seed {seed} (log: {log_path})", flush=True)
    for proc in [p for p in running if p.poll() is not None]:
        env_id, seed, action, log, log_path, start = running.pop(proc)
        log.close()
        results[(env_id, seed)] = outcome(proc.returncode, action, (time.time() - start) / 60, log_path)
        print(f"{env_id} seed {seed}: {results[(env_id, seed)]}", flush=True)
    time.sleep(POLL_S if running else 0)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--envs", nargs="+", required=True, help="gymnasium ids")
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument("--jobs", type=int, default=1, help="runs at once (each gets cores / jobs torch threads)")
    parser.add_argument("--exp-name", default="sweep", help="--exp-name of every run: names the sweep")
    parser.add_argument("--preset", choices=sorted(PRESETS), default="none", help="settings added to every run")
    parser.add_argument("--runs-dir", default="runs", help="where the run directories are (and are written)")
    parser.add_argument("options", nargs="*", help="more ddpg.py options for every run, after --")
    args = parser.parse_args()
    if args.jobs < 1:
        parser.error(f"--jobs must be positive, got {args.jobs}")

    runs_dir = os.path.abspath(args.runs_dir)
    log_dir = os.path.join(runs_dir, "sweep-logs")
    os.makedirs(log_dir, exist_ok=True)
    with open(os.path.join(log_dir, f"{args.exp_name}.machine.txt"), "w") as f:
        f.write(describe() + "\n")
    options = PRESETS[args.preset] + args.options
    env = dict(os.environ, OMP_NUM_THREADS=str(max(1, (os.cpu_count() or 1) // args.jobs)))

    queue, results = [], {}
    for env_id in args.envs:
        for seed in args.seeds:
            action, command = plan(runs_dir, env_id, args.exp_name, seed, options)
            if action == "done":
                results[(env_id, seed)] = "already finished"
            else:
                queue.append((env_id, seed, action, command))
    running = {}
    while queue or running:
        try:
            launch_and_poll(queue, running, results, args.jobs, runs_dir, args.exp_name, env)
            stop = any(result.startswith("interrupted") for result in results.values())
        except KeyboardInterrupt:  # Ctrl-C reached the runs too: they write their checkpoints and exit
            stop = True
        if stop and queue:  # someone is stopping the sweep: start nothing more
            print("interrupted: starting no more runs, waiting for the running ones to write checkpoints", flush=True)
            for env_id, seed, _, _ in queue:
                results[(env_id, seed)] = "interrupted before it started"
            queue.clear()

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
