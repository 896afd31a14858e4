"""Learning: the default command solves Pendulum-v1.

--compile is checked where it is cheap: its update and actions equal the eager ones within float tolerance
(tests/test_fast_paths.py). A compiled run of its own here would spend most of its time compiling.
"""

import numpy as np

import ddpg

SOLVED = -200.0  # mean return of the final deterministic evaluation (10 episodes) that counts as solved


def test_default_settings_solve_pendulum(in_tmp):
    out = ddpg.train(ddpg.Args(cuda=False))  # `python ddpg.py`: Pendulum-v1, seed 1
    assert out["status"] == 0
    assert len(out["eval_returns"]) == 10
    assert np.mean(out["eval_returns"]) >= SOLVED, out["eval_returns"]
