"""Small environments whose right answers are known, registered on import.

`gym.make("tests.envs:Counter-v0")` imports this module and so registers them; the CLI accepts the same ids.
"""

import os
import time

import gymnasium as gym
import numpy as np

HORIZON = 5  # Counter-v0 is cut by its time limit after this many steps
NAN_AFTER = 350  # NanReward-v0 returns NaN rewards after this many steps
TERMINAL_STEP = 4  # TerminatingCounter-v0 reaches a terminal state after this many steps
PAUSE_AT, PAUSE_S = 350, 60  # Pause-v0 stops for PAUSE_S seconds in its PAUSE_AT-th step, once (see PauseEnv)
PAUSE_FILE = "DDPG_TEST_PAUSE_FILE"  # the environment variable naming the file Pause-v0 creates as it pauses
BREAK_AT = 250  # Break-v0 raises in this step of its life, once (see BreakEnv)
BREAK_FILE = "DDPG_TEST_BREAK_FILE"  # the environment variable naming the file Break-v0 creates as it raises
# Asymmetric bounds on purpose: an actor that assumed [-1, 1] or symmetric ranges would leave them.
ACTION_LOW = np.array([0.0, -3.0], dtype=np.float32)
ACTION_HIGH = np.array([2.0, -1.0], dtype=np.float32)


class CounterEnv(gym.Env):
    """Observation [t / HORIZON] after t steps; reward 1 at every step, whatever the action.

    With `terminal_step` set, the episode terminates (a real terminal state) after that many steps. Every action
    must lie inside the action box: one outside raises, so a test that trains on this env checks the clipping.
    """

    def __init__(self, terminal_step: int | None = None):
        self.terminal_step = terminal_step
        self.observation_space = gym.spaces.Box(0.0, np.inf, shape=(1,), dtype=np.float32)
        self.action_space = gym.spaces.Box(ACTION_LOW, ACTION_HIGH, dtype=np.float32)
        self.t = 0

    def _obs(self) -> np.ndarray:
        return np.array([self.t / HORIZON], dtype=np.float32)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.t = 0
        return self._obs(), {}

    def step(self, action):
        if not self.action_space.contains(np.asarray(action, dtype=np.float32)):
            raise ValueError(f"action {action} outside {self.action_space}")
        self.t += 1
        terminated = self.terminal_step is not None and self.t >= self.terminal_step
        return self._obs(), 1.0, terminated, False, {}


class ImageObsEnv(CounterEnv):
    """An observation that is not flat: DDPG's MLPs cannot take it."""

    def __init__(self):
        super().__init__()
        self.observation_space = gym.spaces.Box(0, 255, shape=(8, 8, 3), dtype=np.uint8)


class UnboundedActionEnv(CounterEnv):
    """Actions without finite bounds: tanh cannot be mapped onto them."""

    def __init__(self):
        super().__init__()
        self.action_space = gym.spaces.Box(-np.inf, np.inf, shape=(2,), dtype=np.float32)


class NanRewardEnv(CounterEnv):
    """Rewards turn to NaN after NAN_AFTER steps of this env's life: the losses trained on them follow."""

    def __init__(self):
        super().__init__()
        self.life_steps = 0

    def step(self, action):
        obs, reward, terminated, truncated, info = super().step(action)
        self.life_steps += 1
        return obs, (float("nan") if self.life_steps > NAN_AFTER else reward), terminated, truncated, info


class AnnouncedEnv(CounterEnv):
    """Says so when it is made: a command refused before any environment is made never prints it."""

    def __init__(self):
        super().__init__()
        print("made an environment")


class OnceEnv(CounterEnv):
    """A Counter-v0 that does something once, at a known step: in its `at`-th step (of this env's life), if the
    environment variable `marker` names a file that does not exist yet, it creates that file and calls `once`. A
    resumed run finds the file and goes on."""

    at, marker = 0, ""

    def __init__(self):
        super().__init__()
        self.life_steps = 0

    def step(self, action):
        self.life_steps += 1
        marker = os.environ.get(self.marker)
        if self.life_steps == self.at and marker and not os.path.exists(marker):
            open(marker, "w").close()
            self.once()
        return super().step(action)

    def once(self) -> None:
        raise NotImplementedError


class PauseEnv(OnceEnv):
    """Stops mid-step for PAUSE_S seconds, so that a test can signal or kill a run at a known step."""

    at, marker = PAUSE_AT, PAUSE_FILE

    def once(self) -> None:
        time.sleep(PAUSE_S)


class BreakEnv(OnceEnv):
    """Its simulator fails, as a user's environment may: it raises RuntimeError."""

    at, marker = BREAK_AT, BREAK_FILE

    def once(self) -> None:
        raise RuntimeError("the simulator broke")


gym.register("Counter-v0", entry_point=CounterEnv, max_episode_steps=HORIZON)
gym.register("Announced-v0", entry_point=AnnouncedEnv, max_episode_steps=HORIZON)
gym.register(
    "TerminatingCounter-v0", entry_point=CounterEnv, kwargs={"terminal_step": TERMINAL_STEP}, max_episode_steps=50
)
gym.register("NanReward-v0", entry_point=NanRewardEnv, max_episode_steps=HORIZON)
gym.register("ImageObs-v0", entry_point=ImageObsEnv, max_episode_steps=HORIZON)
gym.register("UnboundedAction-v0", entry_point=UnboundedActionEnv, max_episode_steps=HORIZON)
gym.register("Pause-v0", entry_point=PauseEnv, max_episode_steps=HORIZON)
gym.register("Break-v0", entry_point=BreakEnv, max_episode_steps=HORIZON)
