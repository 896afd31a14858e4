"""Learning: the default command solves Pendulum-v1, with and without the compiled fast path."""

import numpy as np
import pytest

import ddpg
from tests.test_fast_paths import needs_compiler

SOLVED = -200.0  # mean return of the final deterministic evaluation (10 episodes) that counts as solved


@pytest.mark.parametrize("speed_options", [{}, pytest.param(dict(compile=True), marks=needs_compiler)], ids=str)
def test_default_settings_solve_pendulum(in_tmp, speed_options):
    out = ddpg.train(ddpg.Args(cuda=False, **speed_options))  # `python ddpg.py`: Pendulum-v1, seed 1
    assert out["status"] == 0
    assert len(out["eval_returns"]) == 10
    assert np.mean(out["eval_returns"]) >= SOLVED, out["eval_returns"]
