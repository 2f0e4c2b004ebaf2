"""
Fast SAC updates: the updates of Stable-Baselines3's ``SAC.train`` with the same math and less overhead (batches
drawn once per call, fused Adam, twin critics batched, hand-written backward passes for ReLU MLPs). PMAC's
``train`` calls :func:`~sb3_pmac.fast_sac.train`. How and why: ``docs/algorithm.md``, section "Fast SAC updates".
"""

from sb3_pmac.fast_sac.kernels import fast_path_available, fused_adam_supported, kernel_error, use_fused_adam
from sb3_pmac.fast_sac.training import fast_path_declines, reference_sac_train, sample_batches, train
from sb3_pmac.fast_sac.updates import SACUpdateStats, sac_updates
from sb3_pmac.mixed_sampler import stack_batches

__all__ = [
    "SACUpdateStats",
    "fast_path_available",
    "fast_path_declines",
    "fused_adam_supported",
    "kernel_error",
    "reference_sac_train",
    "sac_updates",
    "sample_batches",
    "stack_batches",
    "train",
    "use_fused_adam",
]
