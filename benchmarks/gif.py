"""The README's picture of a trained agent: train with ddpg.py, film one evaluation episode of the saved agent with
ddpg.py's own `--eval-checkpoint RUN --capture-video`, and turn that mp4 into a small animated GIF.

    python benchmarks/gif.py [--out benchmarks/results/pendulum.gif] [-- more ddpg.py training options]

With no options it trains the README's first command (`python ddpg.py`: Pendulum-v1, seed 1) as `--exp-name gif`,
writing its run directory under ./runs as usual.
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
DEFAULT_OUT = os.path.join(ROOT, "benchmarks", "results", "pendulum.gif")
SCALE = 0.6  # of the rendered frame's width and height (Pendulum renders 500x500)
FPS = 30  # Pendulum's own frame rate: every frame is kept
EXP_NAME = "gif"


def run_ddpg(*options: str) -> str:
    """Run ddpg.py with `options`; returns its console output, or stops with its error if it failed."""
    result = subprocess.run([sys.executable, SCRIPT, *options], capture_output=True, text=True)
    if result.returncode != 0:
        sys.exit(f"gif.py: error: ddpg.py {' '.join(options)} failed: {result.stderr.strip()}")
    return result.stdout


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=DEFAULT_OUT, help="where to write the GIF")
    parser.add_argument("extra", nargs="*", help="more ddpg.py training options, after --")
    args = parser.parse_args()
    before = set(os.listdir(ddpg.RUNS_DIR)) if os.path.isdir(ddpg.RUNS_DIR) else set()
    trained = run_ddpg("--exp-name", EXP_NAME, *args.extra)
    print(trained.strip().splitlines()[-1])
    (name,) = set(os.listdir(ddpg.RUNS_DIR)) - before  # the run just made, whatever its --exp-name
    run_dir = os.path.join(ddpg.RUNS_DIR, name)
    if not os.path.isfile(os.path.join(run_dir, ddpg.MODEL_FILE)):
        sys.exit(f"gif.py: error: the run saved no {ddpg.MODEL_FILE} (--no-save-model?): there is nothing to film")
    print(run_ddpg("--eval-checkpoint", run_dir, "--eval-episodes", "1", "--capture-video").strip())
    (video,) = glob.glob(os.path.join(run_dir, ddpg.VIDEO_DIR, "checkpoint-eval*.mp4"))
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    tmp = f"{args.out}.tmp.gif"  # written whole, then renamed over the old one
    with VideoFileClip(video) as clip:
        clip.resized(SCALE).write_gif(tmp, fps=FPS, logger=None)
    os.replace(tmp, args.out)
    print(f"{args.out}: {os.path.getsize(args.out) / 1024:.0f} KiB, from {video}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
