"""Learning: the default command solves Pendulum-v1."""

import numpy as np

import ddpg

SOLVED = -200.0  # mean return of the final deterministic evaluation (10 episodes) that counts as solved


def test_default_settings_solve_pendulum(in_tmp):
    out = ddpg.train(ddpg.Args(cuda=False))  # `python ddpg.py`: Pendulum-v1, seed 1
    assert out["status"] == 0
    assert len(out["eval_returns"]) == 10
    assert np.mean(out["eval_returns"]) >= SOLVED, out["eval_returns"]
