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

    The model training is PMAC's default, ``model_training="bounded"`` (a training set of 4750 rows, here drawn
    uniformly from the whole buffer, at most 400 gradient steps per training), so that ``PMAC`` and ``MBPO`` differ only
    in data selection at a constant cost per step. MBPO's own code trains on the whole buffer every time: pass
    ``model_training="full"`` for that baseline. The bound costs MBPO's model more than PMAC's (its uniform data
    spans the whole history; docs/results.md, "Bounded model training over a long run"): comparisons of the bounded defaults
    favour PMAC slightly.
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
