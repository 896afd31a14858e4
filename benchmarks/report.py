"""Learning curves and a results table from the TensorBoard runs of a sweep.

    python benchmarks/report.py --exp-name sweep            # reads runs/, writes runs/reports/

For every environment among the runs named `<env_id>__<exp_name>__<seed>__<time>`, it writes a PNG with the mean
and the spread (min to max) over seeds of `eval/episodic_return` against environment steps and against wall time,
and one markdown table: the evaluation at the last step every seed reached (mean +- std over seeds), seeds, that
step, median wall time to it, machine. Where the runs logged them, a second PNG per environment shows on one chart the
critic's estimate Q(s_1, mu(s_1)) of the evaluation episodes and the discounted return they earned (mean over seeds).
The files go beside the runs, never over the committed benchmarks/results/ unless --out names it; a figure left in
--out by an earlier report, of an environment this one has no runs of, is named on the console. A row holds runs of
one set of settings (the arguments saved in their checkpoint.pt or model.pt, but for the seed and the options of the
machine and the records): where an environment's runs were trained with several, the set most runs share is kept (on
a tie, that of the newest run), and the others are named as left out, with the first option that differs, on the
console and under the table.
Needs matplotlib (`pip install -r benchmarks/requirements.txt`).
"""

import argparse
import contextlib
import glob
import os
import sys
from collections import defaultdict

import numpy as np
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.backend.event_processing.event_file_loader import EventFileLoader

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import ddpg  # noqa: E402 (the names of its run directories, its tags, the settings its runs saved)

EVAL_TAG = "eval/episodic_return"
REPORTS_DIR = "reports"  # the default --out, under --runs-dir
CRITIC_TAGS = {"q_estimate": ddpg.EVAL_Q_TAG, "discounted_return": ddpg.EVAL_DISCOUNTED_TAG}
CRITIC_LABELS = {
    "q_estimate": r"critic's estimate $Q(s_1, \mu(s_1))$",
    "discounted_return": r"$\sum_t \gamma^t r_t$ earned",
}
WALL_GRID_POINTS = 200  # points of the common wall-time axis the seeds' curves are interpolated onto


def read_run(run_dir: str) -> dict:
    """The evaluations of one run: steps, seconds of the run's processes up to each, returns; and under "critic", the
    (steps, values) of each of CRITIC_TAGS it logged."""
    events = EventAccumulator(run_dir, size_guidance={"scalars": 0})
    events.Reload()
    logged = events.Tags()["scalars"]
    evals = events.Scalars(EVAL_TAG) if EVAL_TAG in logged else []  # none yet: a run just begun
    return {
        "steps": np.array([e.step for e in evals]),
        "seconds": running_seconds(run_dir, [e.wall_time for e in evals]),
        "returns": np.array([e.value for e in evals]),
        "critic": {name: steps_and_values(events.Scalars(tag)) for name, tag in CRITIC_TAGS.items() if tag in logged},
    }


def steps_and_values(scalars: list) -> tuple[np.ndarray, np.ndarray]:
    return np.array([e.step for e in scalars]), np.array([e.value for e in scalars])


def running_seconds(run_dir: str, wall_times: list[float]) -> np.ndarray:
    """Seconds the run's processes had been running at each wall time, counted from each process's first logged
    value to its last (the seconds before a process logs anything are not counted).

    Every process of a run (the first, and each `--resume`) writes its own events file, so the time between one
    file's last logged value and the next file's first, when no process ran, is left out.
    """
    spans = []
    for path in glob.glob(os.path.join(glob.escape(run_dir), "events.out.tfevents.*")):
        times = [event.wall_time for event in EventFileLoader(path).Load() if event.HasField("summary")]
        if times:
            spans.append((min(times), max(times)))
    return np.array([sum(max(0.0, min(t, end) - begin) for begin, end in spans) for t in wall_times])


def find_runs(runs_dir: str, exp_name: str) -> dict[str, dict[int, dict]]:
    """{env_id: {seed: run}} for the runs of `exp_name` that logged an evaluation."""
    runs = defaultdict(dict)
    for run_dir in sorted(glob.glob(os.path.join(glob.escape(runs_dir), "*"))):
        name = run_name(run_dir)
        if name is None or name.exp_name != exp_name or not os.path.isdir(run_dir):
            continue
        run = read_run(run_dir)
        if len(run["steps"]):
            runs[name.env][name.seed] = run | {"dir": run_dir}
    return dict(runs)


def run_name(run_dir: str) -> ddpg.RunName | None:
    """The fields of a run directory's name (ddpg.py's `RunName`); None for a name ddpg.py does not make."""
    fields = os.path.basename(os.path.normpath(run_dir)).rsplit(ddpg.NAME_SEPARATOR, 3)
    if len(fields) != 4 or not fields[2].isdigit():
        return None
    return ddpg.RunName(fields[0], fields[1], int(fields[2]), fields[3])


def run_state(run_dir: str) -> tuple[ddpg.Args, int] | None:
    """How far a run directory's run went: its latest arguments and step, from its checkpoint, else from its model.pt
    (written at its last step); None where neither can be read. Reads no tensor (mmap), so a sweep looks at many."""
    for name in (ddpg.CHECKPOINT_FILE, ddpg.MODEL_FILE):
        with contextlib.suppress(Exception):  # missing, damaged or not ours: as ddpg.py's `load_checkpoint` refuses it
            state = torch.load(os.path.join(run_dir, name), map_location="cpu", weights_only=True, mmap=True)
            args = ddpg.saved_args(state["args"])
            return args, state.get("global_step", args.total_timesteps)
    return None


def one_setting(seeds: dict[int, dict]) -> tuple[dict[int, dict], list[str]]:
    """The runs of an environment trained with one set of settings (`settings_key`): the set most runs share, on a tie
    that of the newest run (a run directory's name ends in its start time); and a line for each run left out."""
    states = {seed: run_state(run["dir"]) for seed, run in seeds.items()}
    keys = {seed: settings_key(state[0]) for seed, state in states.items() if state}
    if not keys:  # no run has saved its settings yet (none has reached a checkpoint): nothing to tell apart
        return seeds, []
    started = {seed: run_name(run["dir"]).started for seed, run in seeds.items()}
    ranked = sorted(keys, key=lambda seed: (list(keys.values()).count(keys[seed]), started[seed]))
    kept, left_out = {}, []
    for seed, run in sorted(seeds.items()):
        if seed not in keys:
            left_out.append(f"{run['dir']}: no checkpoint.pt or model.pt to read its settings from")
        elif keys[seed] == keys[ranked[-1]]:
            kept[seed] = run
        else:
            row = dict(keys[ranked[-1]])
            name, value = next((name, value) for name, value in keys[seed] if value != row[name])
            left_out.append(f"{run['dir']}: trained with --{name.replace('_', '-')} {value}, the row's runs with "
                            f"{row[name]}")  # fmt: skip
    return kept, left_out


def settings_key(args) -> tuple:
    """What the runs of a row share: every saved option but the seed and those of the machine, records and command."""
    apart = ("seed", *ddpg.MACHINE_OPTIONS, *ddpg.COMMAND_OPTIONS)
    return tuple((name, value) for name, value in vars(args).items() if name not in apart)


def evaluation_returns(run: dict) -> tuple[np.ndarray, np.ndarray]:
    return run["steps"], run["returns"]


def by_steps(seeds: dict[int, dict], series=evaluation_returns):
    """Mean, min and max over seeds at the steps all seeds reached, of `series(run)`: (steps, values)."""
    pairs = [series(run) for run in seeds.values()]
    common = sorted(set.intersection(*(set(steps.tolist()) for steps, _ in pairs)))
    table = np.array([[values[steps == s][0] for s in common] for steps, values in pairs])
    return np.array(common), table.mean(0), table.min(0), table.max(0)


def critic_series(name: str):
    """`by_steps`'s series of one of CRITIC_TAGS."""
    return lambda run: run["critic"][name]


def has_critic(seeds: dict[int, dict]) -> bool:
    """Whether every seed logged the critic's estimates and the discounted returns, at some steps in common."""
    if any(run["critic"].keys() != CRITIC_TAGS.keys() for run in seeds.values()):
        return False  # runs of a ddpg.py from before these were logged
    return all(len(by_steps(seeds, critic_series(name))[0]) for name in CRITIC_TAGS)


def by_seconds(seeds: dict[int, dict]):
    """Mean, min and max over seeds on a wall-time grid that every seed covers (linear interpolation)."""
    end = min(run["seconds"][-1] for run in seeds.values())
    grid = np.linspace(max(run["seconds"][0] for run in seeds.values()), end, WALL_GRID_POINTS)
    table = np.array([np.interp(grid, run["seconds"], run["returns"]) for run in seeds.values()])
    return grid, table.mean(0), table.min(0), table.max(0)


def pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save(fig, path: str) -> None:
    fig.tight_layout()
    tmp = f"{path}.tmp.png"
    fig.savefig(tmp, dpi=100)
    pyplot().close(fig)
    os.replace(tmp, path)


def plot(env_id: str, seeds: dict[int, dict], path: str) -> None:
    fig, axes = pyplot().subplots(1, 2, figsize=(11, 4), sharey=True)
    for ax, (x, mean, low, high), label in ((axes[0], by_steps(seeds), "environment steps"),
                                             (axes[1], by_seconds(seeds), "wall time (s)")):  # fmt: skip
        one_point = np.ptp(x) == 0  # one evaluation so far: a line through it would draw nothing
        ax.plot(x, mean, marker="o" if one_point else None, label=f"mean of {len(seeds)} seeds")
        if one_point:
            ax.errorbar(x[:1], mean[:1], yerr=[mean[:1] - low[:1], high[:1] - mean[:1]], fmt="none", alpha=0.3,
                        elinewidth=6, label="min to max")  # fmt: skip
        else:
            ax.fill_between(x, low, high, alpha=0.3, label="min to max")
        ax.set_xlabel(label)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("evaluation return (deterministic policy)")
    axes[0].legend()
    fig.suptitle(f"ddpg.py on {env_id}")
    save(fig, path)


def plot_critic(env_id: str, seeds: dict[int, dict], path: str) -> None:
    """The critic's estimate of the evaluation episodes' start and the discounted return they earned, on one chart."""
    fig, ax = pyplot().subplots(figsize=(7, 4))
    several = f", mean of {len(seeds)} seeds" if len(seeds) > 1 else ""
    for name, label in CRITIC_LABELS.items():
        steps, mean, low, high = by_steps(seeds, critic_series(name))
        (line,) = ax.plot(steps, mean, marker=".", label=label + several)
        if several:
            ax.fill_between(steps, low, high, alpha=0.3, color=line.get_color())
    ax.set_xlabel("environment steps")
    ax.set_ylabel("mean over the evaluation's episodes")
    ax.grid(alpha=0.3)
    ax.legend()
    ax.set_title(f"ddpg.py on {env_id}: the critic's estimate and the discounted return", fontsize=11)
    save(fig, path)


def final_row(env_id: str, seeds: dict[int, dict]) -> dict:
    """Evaluation at the last step every seed reached (the end of the runs, unless some are still going)."""
    last = by_steps(seeds)[0][-1]
    at_last = [run["steps"] == last for run in seeds.values()]
    finals = np.array([run["returns"][mask][0] for run, mask in zip(seeds.values(), at_last)])
    return {
        "env_id": env_id,
        "seeds": sorted(seeds),
        "steps": int(last),
        "mean": float(finals.mean()),
        "std": float(finals.std()),
        "wall_minutes": float(np.median([run["seconds"][mask][0] for run, mask in zip(seeds.values(), at_last)]) / 60),
    }


def markdown(rows: list[dict], machine: str, left_out: list[str] = ()) -> str:
    lines = [
        "| environment | seeds | env steps | evaluation there (mean +- std over seeds) | wall time to there (median) |",
        "|---|---|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(f"| {r['env_id']} | {', '.join(map(str, r['seeds']))} | {r['steps']} | "
                     f"{r['mean']:.1f} +- {r['std']:.1f} | {r['wall_minutes']:.1f} min |")  # fmt: skip
    apart = "".join(f"\n- {line}" for line in left_out)
    return "\n".join(lines) + f"\n\nMachine: {machine}\n" + (f"\nLeft out (other settings):{apart}\n" if apart else "")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--exp-name", default="sweep",
                        help="the experiment to report: runs named ENV__EXP-NAME__SEED__TIME (default: %(default)s, "
                             "benchmarks/sweep.py's default --exp-name)")  # fmt: skip
    parser.add_argument("--runs-dir", default=ddpg.RUNS_DIR, help="where the runs are (default: %(default)s)")
    parser.add_argument("--out", help="where the PNGs (EXP-NAME__ENV.png) and the table (EXP-NAME.md) go, replacing "
                                      f"files of the same names (default: RUNS_DIR/{REPORTS_DIR})")  # fmt: skip
    args = parser.parse_args()
    args.out = args.out or os.path.join(args.runs_dir, REPORTS_DIR)
    runs = find_runs(args.runs_dir, args.exp_name)
    if not runs:
        raise SystemExit(f"report.py: error: no runs named *__{args.exp_name}__* with evaluations in {args.runs_dir}")
    os.makedirs(args.out, exist_ok=True)
    machine_file = os.path.join(args.runs_dir, "sweep-logs", f"{args.exp_name}.machine.txt")
    machine = open(machine_file).read().strip() if os.path.exists(machine_file) else "not recorded"
    rows, left_out = [], []
    for env_id, seeds in sorted(runs.items()):
        seeds, apart = one_setting(seeds)
        left_out += apart
        for line in apart:
            print(f"left out {line}")
        if not seeds:
            continue
        png = os.path.join(args.out, f"{args.exp_name}__{env_id}.png")
        plot(env_id, seeds, png)
        rows.append(final_row(env_id, seeds))
        print(f"wrote {png}")
        if has_critic(seeds):
            png = os.path.join(args.out, f"{args.exp_name}__{env_id}__critic.png")
            plot_critic(env_id, seeds, png)
            print(f"wrote {png}")
    for png in sorted(glob.glob(os.path.join(glob.escape(args.out), f"{glob.escape(args.exp_name)}__*.png"))):
        if os.path.basename(png)[len(args.exp_name) + 2 : -len(".png")].removesuffix("__critic") not in runs:
            print(f"note: {png} is from an earlier report: there are no runs of its environment now")
    table_path = os.path.join(args.out, f"{args.exp_name}.md")
    with open(f"{table_path}.tmp", "w") as f:
        f.write(markdown(rows, machine, left_out))
    os.replace(f"{table_path}.tmp", table_path)
    print(open(table_path).read())
    print(f"wrote {table_path}")


if __name__ == "__main__":
    main()
