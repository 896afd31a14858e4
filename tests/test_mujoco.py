"""MuJoCo runs: what they leave on the console and in the working directory, and video without a display."""

import glob
import os

import ddpg
from tests.conftest import subprocess_env
from tests.test_cli import assert_refused_in_one_line, run_cli

TINY_MUJOCO = ["--env-id", "HalfCheetah-v5", "--total-timesteps", "120", "--learning-starts", "100", "--batch-size",
               "16", "--hidden-size", "8", "--eval-frequency", "120", "--eval-episodes", "2", "--no-cuda"]  # fmt: skip


def headless(**variables) -> dict:
    """The environment of a process on a machine without a display, with `variables` set (MUJOCO_GL unset unless
    named)."""
    env = {k: v for k, v in subprocess_env().items() if k not in (*ddpg.DISPLAYS, "MUJOCO_GL", "PYOPENGL_PLATFORM")}
    return env | variables


def test_a_mujoco_run_prints_no_deprecation_noise_and_leaves_only_its_run(tmp_path):
    result = run_cli(tmp_path, *TINY_MUJOCO)
    assert result.returncode == 0, result.stderr
    assert "WARNING" not in result.stdout + result.stderr and "deprecated" not in result.stdout + result.stderr
    assert os.listdir(tmp_path) == [ddpg.RUNS_DIR]  # no MUJOCO_LOG.TXT beside it


def test_video_of_a_mujoco_env_without_a_display_is_recorded(tmp_path):
    result = run_cli(tmp_path, *TINY_MUJOCO, "--capture-video", env=headless())
    assert result.returncode == 0, result.stderr
    assert "GLFW" not in result.stderr and "Traceback" not in result.stderr
    (video,) = glob.glob(str(tmp_path / ddpg.RUNS_DIR / "*" / ddpg.VIDEO_DIR / "*.mp4"))
    assert os.path.getsize(video) > 0


def test_a_renderer_that_cannot_draw_is_refused_before_training_naming_mujoco_gl(tmp_path):
    result = run_cli(tmp_path, *TINY_MUJOCO, "--capture-video", env=headless(MUJOCO_GL="glfw"))  # needs a display
    assert_refused_in_one_line(result, "--capture-video: HalfCheetah-v5 cannot draw a frame here", tmp_path)
    assert "MUJOCO_GL is glfw" in result.stderr


def test_a_mujoco_gl_that_mujoco_does_not_know_is_refused_in_one_line(tmp_path):
    result = run_cli(tmp_path, *TINY_MUJOCO, env=headless(MUJOCO_GL="nonsense"))
    assert_refused_in_one_line(result, "invalid value for environment variable MUJOCO_GL: nonsense", tmp_path)
