"""sb3-pmac: PMAC (Policy-adaptation Model-based Actor-Critic) and MBPO for Stable-Baselines3."""

import os

from sb3_pmac.buffers import ModelReplayBuffer, PolicyVersionedReplayBuffer
from sb3_pmac.policy_mixture import PolicyMixture

# Read version from file
version_file = os.path.join(os.path.dirname(__file__), "version.txt")
with open(version_file) as file_handler:
    __version__ = file_handler.read().strip()

__all__ = [
    "ModelReplayBuffer",
    "PolicyMixture",
    "PolicyVersionedReplayBuffer",
    "__version__",
]
