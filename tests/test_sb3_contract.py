"""What SB3 users rely on: PMAC behaves like SAC or refuses clearly (constructor arguments, spaces)."""

import gymnasium as gym
import numpy as np
import pytest
from gymnasium import spaces

from sb3_pmac import PMAC
from sb3_pmac.checks import UnsupportedSpaceError


class SpacesEnv(gym.Env):
    def __init__(self, observation_space, action_space):
        self.observation_space, self.action_space = observation_space, action_space

    def reset(self, seed=None, options=None):
        return self.observation_space.sample(), {}

    def step(self, action):
        return self.observation_space.sample(), 0.0, False, False, {}


BOX_OBS = spaces.Box(-1, 1, (3,), np.float32)
BOX_ACT = spaces.Box(-1, 1, (2,), np.float32)


@pytest.mark.parametrize(
    "observation_space, action_space, match",
    [
        (BOX_OBS, spaces.Discrete(3), "continuous"),
        (BOX_OBS, spaces.MultiDiscrete([2, 3]), "continuous"),
        (spaces.Dict({"a": BOX_OBS}), BOX_ACT, "flat Box"),
        (spaces.Discrete(4), BOX_ACT, "flat Box"),
        (spaces.Box(0, 255, (8, 8, 3), np.uint8), BOX_ACT, "1-D"),
        (spaces.Box(0, 10, (4,), np.int64), BOX_ACT, "float observations"),
    ],
)
def test_unsupported_spaces_raise_what_sb3_raises(observation_space, action_space, match):
    env = SpacesEnv(observation_space, action_space)
    for error in (AssertionError, ValueError):  # SB3 raises AssertionError for unsupported spaces
        with pytest.raises(error, match=match):
            PMAC("MlpPolicy", env)
    with pytest.raises(UnsupportedSpaceError) as info:
        PMAC("MlpPolicy", env)
    if match == "float observations":
        assert "image" not in str(info.value)


def test_n_steps_default_accepted_and_n_step_returns_refused():
    model = PMAC("MlpPolicy", SpacesEnv(BOX_OBS, BOX_ACT), n_steps=1, buffer_size=100)
    assert model.n_steps == 1
    with pytest.raises(ValueError, match="n-step"):
        PMAC("MlpPolicy", SpacesEnv(BOX_OBS, BOX_ACT), n_steps=3, buffer_size=100)
