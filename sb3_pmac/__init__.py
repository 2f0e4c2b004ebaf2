"""sb3-pmac: PMAC (Policy-adaptation Model-based Actor-Critic) and MBPO for Stable-Baselines3."""

import os

from sb3_pmac.buffers import PolicyVersionedReplayBuffer
from sb3_pmac.dynamics import ModelTrainer, ProbabilisticEnsemble
from sb3_pmac.mbpo import MBPO
from sb3_pmac.mixed_sampler import MixedReplaySampler
from sb3_pmac.model_buffer import ModelReplayBuffer
from sb3_pmac.pmac import PMAC
from sb3_pmac.policy_mixture import PolicyMixture
from sb3_pmac.termination import get_termination_fn, register_termination_fn

# Read version from file
version_file = os.path.join(os.path.dirname(__file__), "version.txt")
with open(version_file) as file_handler:
    __version__ = file_handler.read().strip()

__all__ = [
    "MBPO",
    "PMAC",
    "MixedReplaySampler",
    "ModelReplayBuffer",
    "ModelTrainer",
    "PolicyMixture",
    "PolicyVersionedReplayBuffer",
    "ProbabilisticEnsemble",
    "__version__",
    "get_termination_fn",
    "register_termination_fn",
]
