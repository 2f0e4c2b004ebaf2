"""MBPO (Janner et al., 2019): PMAC with uniform data selection, the baseline of the paper and of its ablations."""

from typing import ClassVar, TypeVar

from stable_baselines3.common.type_aliases import MaybeCallback

from sb3_pmac.pmac import PMAC

SelfMBPO = TypeVar("SelfMBPO", bound="MBPO")


class MBPO(PMAC):
    """
    Model-Based Policy Optimization (Janner et al., 2019): :class:`~sb3_pmac.pmac.PMAC` with uniform data selection
    (every real transition equally likely for model training and rollout starts), the baseline PMAC improves on.
    All parameters are those of :class:`~sb3_pmac.pmac.PMAC`; ``adapt_model_training`` and ``adapt_rollout_starts``
    default to False.
    """

    _adapt_by_default: ClassVar[bool] = False

    def learn(
        self: SelfMBPO,
        total_timesteps: int,
        callback: MaybeCallback = None,
        log_interval: int = 4,
        tb_log_name: str = "MBPO",
        reset_num_timesteps: bool = True,
        progress_bar: bool = False,
    ) -> SelfMBPO:
        return super().learn(total_timesteps, callback, log_interval, tb_log_name, reset_num_timesteps, progress_bar)
