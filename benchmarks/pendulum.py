"""Run the default command `python ddpg.py` for several seeds and print the results as a markdown table.

    python benchmarks/pendulum.py --seeds 1 2 3 4 5

Each seed runs as its own process, one after the other (so that the wall times do not compete for cores), in a
temporary directory whose TensorBoard run is read back for the evaluations.
"""

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time

from machine import describe
from report import read_run
from seeds import failure

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
import ddpg  # noqa: E402 (where its runs go)

SOLVED = -200.0


def run(seed: int, extra: list[str]) -> dict:
    with tempfile.TemporaryDirectory() as cwd:
        start = time.perf_counter()
        done = subprocess.run([sys.executable, os.path.join(ROOT, "ddpg.py"), "--seed", str(seed), *extra], cwd=cwd,
                              capture_output=True, text=True)  # fmt: skip
        if done.returncode != 0:
            sys.exit(failure(done.returncode, done.stderr))
        wall = time.perf_counter() - start
        (run_name,) = os.listdir(os.path.join(cwd, ddpg.RUNS_DIR))
        evals = read_run(os.path.join(cwd, ddpg.RUNS_DIR, run_name))
    first_solved = next((int(s) for s, r in zip(evals["steps"], evals["returns"]) if r >= SOLVED), None)
    return {"seed": seed, "final": evals["returns"][-1], "steps": int(evals["steps"][-1]),
            "first_solved": first_solved, "wall": wall}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3, 4, 5])
    parser.add_argument("extra", nargs="*", help="more ddpg.py options, after --")
    args = parser.parse_args()
    rows = []
    for seed in args.seeds:
        rows.append(run(seed, args.extra))
        print(f"seed {seed} done", file=sys.stderr, flush=True)
    command = " ".join(["python ddpg.py", *args.extra])
    print(f"`{command}` (Pendulum-v1), final evaluation = mean return of 10 deterministic episodes; "
          f"'first >= {SOLVED:.0f}' = first evaluation (every --eval-frequency steps) at or above it.\n")  # fmt: skip
    print("| seed | final evaluation | env steps | first >= -200 at step | wall time (s) |")
    print("|---:|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['seed']} | {r['final']:.1f} | {r['steps']} | {r['first_solved']} | {r['wall']:.1f} |")
    finals = [r["final"] for r in rows]
    wall = statistics.median(r["wall"] for r in rows)
    print(
        f"\nmean final evaluation {sum(finals) / len(finals):.1f}, worst {min(finals):.1f}; "
        f"median wall time {wall:.1f} s (whole process: start-up, training, evaluations)"
    )
    print(f"\nMachine: {describe()}")


if __name__ == "__main__":
    main()
