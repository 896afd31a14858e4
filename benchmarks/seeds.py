"""Several seeds on one machine: `population.py --seeds ...` (one process) against the same seeds as separate processes.

    python benchmarks/seeds.py [--seeds 1 2] [--repeats 3] [--against OTHER/ddpg.py] [-- more ddpg.py options]

For each repeat, in turn (A B C A B C ...), in temporary directories: the population (`python population.py --seeds 1
2 ...`); the same seeds as single runs one after another (`--seed 1`, then `--seed 2`, ...); and the same single runs
side by side, all at once (each with cores / seeds torch threads, as `sweep.py --jobs` gives them). It prints the
whole-process wall time of each (start-up, training, evaluations) as medians with (min-max), the ratios to the
population's time measured in the same repeat, and every run's final evaluation read back from TensorBoard. With
`-- --cuda` on a GPU machine the processes share the GPU; add `--env-id`, `--total-timesteps` and the rest as needed.
With `--against SCRIPT`, another version's population (SCRIPT, the file that takes `--seeds` there: population.py, or
ddpg.py in versions before population.py, e.g. from `git worktree add /tmp/old REV`) is a fourth way, run alternately
with the others at this version's default thread count, so that only the code differs.
"""

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time

from machine import available_cores, describe
from report import read_run, run_name

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
import ddpg  # noqa: E402 (where its runs go, and their names)

WAYS = ("population (population.py --seeds)", "single runs one after another", "single runs side by side")
AGAINST = "population of --against"  # the fourth way, with --against


def ddpg_process(cwd: str, *options: str, script: str = "ddpg.py") -> subprocess.Popen:
    """`python SCRIPT OPTIONS` (ddpg.py, or population.py beside it) in `cwd`."""
    return subprocess.Popen([sys.executable, os.path.join(ROOT, script), *options], cwd=cwd,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)  # fmt: skip


def finish(procs: list[subprocess.Popen]) -> None:
    for proc in procs:
        _, stderr = proc.communicate()
        if proc.returncode != 0:
            sys.exit(failure(proc.returncode, stderr))


def failure(status: int, stderr: str) -> str:
    """This script's one line for a ddpg.py that failed: its exit status and its error line, where it wrote one (an
    interrupted run writes none)."""
    reason = next((line.strip() for line in stderr.splitlines() if "error" in line.lower()), "")
    said = f": {reason}" if reason else ""
    return f"{os.path.basename(sys.argv[0])}: error: ddpg.py ended with exit status {status}{said}"


def timed(way: str, seeds: list[int], extra: list[str], against: str | None = None) -> tuple[float, list[float]]:
    """Wall time of one way of training `seeds`, and each seed's final evaluation (in the order of `seeds`)."""
    threads = str(max(1, available_cores() // len(seeds)))
    with tempfile.TemporaryDirectory() as cwd:
        start = time.perf_counter()
        if way == WAYS[0]:
            finish([ddpg_process(cwd, "--seeds", *map(str, seeds), *extra, script="population.py")])
        elif way == AGAINST:  # this version's default threads: an earlier one may have chosen others
            default = ["--threads", str(ddpg.Args.threads)]
            finish([ddpg_process(cwd, "--seeds", *map(str, seeds), *default, *extra, script=os.path.abspath(against))])
        elif way == WAYS[1]:
            for seed in seeds:
                finish([ddpg_process(cwd, "--seed", str(seed), *extra)])
        else:
            finish([ddpg_process(cwd, "--seed", str(seed), "--threads", threads, *extra) for seed in seeds])
        wall = time.perf_counter() - start
        finals = [float(read_run(run_dir(os.path.join(cwd, ddpg.RUNS_DIR), seed))["returns"][-1]) for seed in seeds]
    return wall, finals


def run_dir(runs_dir: str, seed: int) -> str:
    """The run directory of `seed` in runs_dir, where each way trains each seed once."""
    (name,) = [name for name in os.listdir(runs_dir) if (run := run_name(name)) and run.seed == seed]
    return os.path.join(runs_dir, name)


def spread(values: list[float], unit: str = "") -> str:
    return f"{statistics.median(values):.2f}{unit} ({min(values):.2f}-{max(values):.2f})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--repeats", type=int, default=3, help="times each way runs, alternately")
    parser.add_argument("--against", metavar="SCRIPT", help="another version's population.py (or ddpg.py) to time too")
    parser.add_argument("extra", nargs="*", help="more ddpg.py options, after --")
    args = parser.parse_args()
    if len(args.seeds) < 2 or args.repeats < 1:
        parser.error("give two seeds or more, and --repeats of at least 1")
    if args.against and not os.path.isfile(args.against):
        print(f"{os.path.basename(sys.argv[0])}: error: --against {args.against}: no such file", file=sys.stderr)
        sys.exit(2)
    ways = WAYS[:1] + (AGAINST,) * bool(args.against) + WAYS[1:]
    walls, finals = {way: [] for way in ways}, {way: [] for way in ways}
    for _ in range(args.repeats):
        for way in ways:
            wall, final = timed(way, args.seeds, args.extra, args.against)
            walls[way].append(wall)
            finals[way].append(final)
            print(f"{way}: {wall:.1f} s, final evaluations {', '.join(f'{f:.1f}' for f in final)}", file=sys.stderr)
    command = " ".join(["python benchmarks/seeds.py", *sys.argv[1:]])
    print(f"Machine: {describe()}.\nCommand: `{command}`; medians over {args.repeats} alternating repeats, "
          "(min-max) after them.\n")  # fmt: skip
    print("| seeds " + " ".join(map(str, args.seeds)) + " | wall time (s) | its time / the population's | "
          "final evaluations |\n|---|---:|---:|---|")  # fmt: skip
    for way in ways:
        ratios = [mine / theirs for mine, theirs in zip(walls[way], walls[WAYS[0]])]
        evals = "; ".join(", ".join(f"{f:.1f}" for f in repeat) for repeat in finals[way])
        print(f"| {way} | {spread(walls[way])} | {spread(ratios, 'x')} | {evals} |")


if __name__ == "__main__":
    main()
