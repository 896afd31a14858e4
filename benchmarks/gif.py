"""A picture of a trained agent: film one evaluation episode of a saved agent with ddpg.py's own `--eval-checkpoint
RUN --capture-video`, and turn that mp4 into a small animated GIF. Without --run it trains the agent first.

    python benchmarks/gif.py                        # train `python ddpg.py` (Pendulum-v1, seed 1), film it
    python benchmarks/gif.py --run runs/RUN         # film a run that exists (its model.pt, else checkpoint.pt)
    python benchmarks/gif.py --run runs/RUN --out benchmarks/results/pendulum.gif   # the README's picture
    python benchmarks/gif.py -- --env-id HalfCheetah-v5 --total-timesteps 50000     # more ddpg.py training options

Training runs ddpg.py as `--exp-name gif`, with its progress lines on this console, and writes its run directory
under ./runs as usual. The GIF goes into the filmed run's directory (GIF_FILE), the committed one only where --out
names it.
"""

import argparse
import glob
import os
import subprocess
import sys

from moviepy import VideoFileClip  # a core requirement: ddpg.py's --capture-video writes its mp4s with it

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
import ddpg  # noqa: E402  (for where its runs and their files go)

SCRIPT = os.path.join(ROOT, "ddpg.py")
SCALE = 0.6  # of the rendered frame's width and height (Pendulum renders 500x500)
EXP_NAME = "gif"
GIF_FILE = "agent.gif"  # in the filmed run's directory, unless --out says where


def run_ddpg(*options: str) -> None:
    """Run ddpg.py with `options`, its output on this console; stop with its exit status if it failed (its own error
    line is on the console already)."""
    command = " ".join(["ddpg.py", *options])
    print(f"gif.py: {command}", flush=True)
    status = subprocess.run([sys.executable, SCRIPT, *options]).returncode
    if status != 0:
        sys.exit(f"gif.py: error: {command} ended with exit status {status}")


def train(options: list[str]) -> str:
    """Train a new run with ddpg.py; returns its run directory."""
    before = set(os.listdir(ddpg.RUNS_DIR)) if os.path.isdir(ddpg.RUNS_DIR) else set()
    run_ddpg("--exp-name", EXP_NAME, *options)
    (name,) = set(os.listdir(ddpg.RUNS_DIR)) - before  # the run just made, whatever its --exp-name
    return os.path.join(ddpg.RUNS_DIR, name)


def film(saved: str) -> str:
    """One evaluation episode of the agent in `saved` (a run directory or a saved file), recorded by ddpg.py; returns
    the mp4's path."""
    video_dir = os.path.join(os.path.dirname(os.path.abspath(ddpg.saved_file(saved))), ddpg.VIDEO_DIR)
    run_ddpg("--eval-checkpoint", saved, "--eval-episodes", "1", "--capture-video")
    return max(glob.glob(os.path.join(video_dir, "checkpoint-eval*.mp4")), key=os.path.getmtime)  # the one just made


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", metavar="PATH", help="film this run directory or saved model instead of training")
    parser.add_argument("--out", help=f"where to write the GIF (default: {GIF_FILE} in the filmed run's directory)")
    parser.add_argument("extra", nargs="*", help="more ddpg.py training options, after --")
    args = parser.parse_args()
    if args.run and args.extra:
        parser.error("ddpg.py training options are for a run to train, not with --run")
    try:
        saved = args.run or train(args.extra)
        out = args.out or os.path.join(os.path.dirname(os.path.abspath(ddpg.saved_file(saved))), GIF_FILE)
    except ddpg.UsageError as e:
        sys.exit(f"gif.py: error: {e}")
    video = film(saved)
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    tmp = f"{out}.tmp.gif"  # written whole, then renamed over the old one
    with VideoFileClip(video) as clip:
        clip.resized(SCALE).write_gif(tmp, fps=clip.fps, logger=None)  # every frame, at the env's own rate
    os.replace(tmp, out)
    print(f"{out}: {os.path.getsize(out) / 1024:.0f} KiB, from {video}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
