"""ddpg.py is one self-contained file: copied alone into an empty folder, it trains, resumes and evaluates a run."""

import os
import shutil
import subprocess
import sys

from tests.test_cli import SCRIPT
from tests.test_resume_settings import TINY


def test_ddpg_py_alone_trains_resumes_and_evaluates_a_run_and_names_what_seeds_need(tmp_path):
    shutil.copy(SCRIPT, tmp_path / "ddpg.py")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}  # nothing of the repository is importable

    def ddpg(*options):
        return subprocess.run([sys.executable, "ddpg.py", *options], cwd=tmp_path, env=env, capture_output=True,
                              text=True)  # fmt: skip

    trained = ddpg(*TINY, "--total-timesteps", "400", "--checkpoint-frequency", "200")
    assert trained.returncode == 0, trained.stderr
    (name,) = os.listdir(tmp_path / "runs")
    run_dir = os.path.join("runs", name)
    resumed = ddpg("--resume", run_dir, "--total-timesteps", "600")  # extended from its checkpoint at step 400
    assert resumed.returncode == 0, resumed.stderr
    assert f"resuming {run_dir} at step 400/600" in resumed.stdout and "final evaluation: " in resumed.stdout
    evaluated = ddpg("--eval-checkpoint", run_dir, "--eval-episodes", "2", "--no-cuda")
    assert evaluated.returncode == 0 and evaluated.stdout.startswith("Pendulum-v1: "), evaluated.stderr
    refusals = {  # what needs population.py, which is not there: said in one line, as any bad input
        ("--seeds", "1", "2"): "--seeds: many seeds in one process: python population.py --seeds ...",
        ("--resume", run_dir, run_dir): "--resume needs one run directory (several run directories together are a "
        "population's: python population.py --resume DIR ...)",
    }
    for command, message in refusals.items():
        refused = ddpg(*command)
        assert refused.returncode == 2 and refused.stdout == ""
        (line,) = refused.stderr.splitlines()
        assert line.startswith("ddpg.py: error: ") and message in line, line
    assert sorted(os.listdir(tmp_path)) == ["ddpg.py", "runs"]
