"""Argument checks of PMAC and its diagnostics: every check once, with a message that says what to do."""

import json
import math
import os
import warnings
from collections.abc import Collection
from numbers import Integral
from typing import Any, Literal

import gymnasium as gym
import numpy as np
from gymnasium import spaces
from stable_baselines3.common.save_util import json_to_data
from stable_baselines3.common.vec_env import VecEnv
from stable_baselines3.sac import SAC

from sb3_pmac.buffers import PolicyVersionedReplayBuffer
from sb3_pmac.horizon import validate_horizon_schedule
from sb3_pmac.policy_mixture import check_adaptation_rate
from sb3_pmac.tv_mixture import check_max_rate

#: The policy mixtures of ``PMAC(mixture=...)``: Algorithm 1's alpha-decay, or PDML's inverse TV distance
MixtureName = Literal["exponential", "tv"]
#: ``PMAC(model_training=...)``: a bounded training set per model training, or the whole buffer
ModelTrainingMode = Literal["bounded", "full"]
#: The constructor defaults that :func:`warn_unused_mixture_arguments` compares with
DEFAULT_ADAPTATION_RATE = 0.9
DEFAULT_MIXTURE: MixtureName = "exponential"
DEFAULT_MAX_RATE = 0.02


def check_positive(**values: int | None) -> None:
    """
    Raise ``ValueError`` unless every value given by keyword is a positive int (``None`` is allowed: "not set").

    :param values: ``name=value`` pairs; the name is used in the message
    """
    for name, value in values.items():
        if value is not None and (not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value <= 0):
            raise ValueError(f"{name} must be a positive int, got {value!r}")


class UnsupportedSpaceError(ValueError, AssertionError):
    """
    A space PMAC cannot model. Also an ``AssertionError``, which SB3 raises for spaces outside an algorithm's
    ``supported_action_spaces``, so code that catches either keeps working.
    """


def check_pmac_arguments(
    optimize_memory_usage: bool,
    n_steps: int,
    replay_buffer_class: Any,
    learning_starts: int,
    gradient_steps: int,
    real_ratio: float,
    adaptation_rate: float,
    mixture: str,
    max_rate: float,
    model_training: str,
    **positive: int | None,
) -> None:
    """The constructor arguments of :class:`~sb3_pmac.pmac.PMAC` that SB3's ``SAC`` does not check itself."""
    if optimize_memory_usage:
        raise ValueError("PMAC does not support optimize_memory_usage=True (the versioned buffer stores next_obs)")
    if n_steps != 1:
        raise ValueError(
            f"PMAC does not support n-step returns (n_steps={n_steps!r}): its SAC batches are mostly model transitions, "
            "which are one-step; use n_steps=1"
        )
    if replay_buffer_class is not None and not issubclass(replay_buffer_class, PolicyVersionedReplayBuffer):
        raise ValueError(f"replay_buffer_class must subclass PolicyVersionedReplayBuffer, got {replay_buffer_class}")
    check_positive(**positive)
    check_learning_starts(learning_starts)
    check_gradient_steps(gradient_steps)
    n_elites, ensemble_size = positive.get("n_elites"), positive.get("ensemble_size")
    if n_elites is not None and ensemble_size is not None and n_elites > ensemble_size:
        raise ValueError(f"n_elites ({n_elites}) cannot exceed ensemble_size ({ensemble_size})")
    check_real_ratio(real_ratio)
    check_adaptation_rate(adaptation_rate)
    check_mixture(mixture, max_rate)
    check_model_training(model_training, positive.get("model_train_size"))


def check_learning_starts(learning_starts: int) -> None:
    """SAC's ``learning_starts`` (the random warm-up, in env steps)."""
    if learning_starts < 0:
        raise ValueError(f"learning_starts must be >= 0, got {learning_starts}")


def check_gradient_steps(gradient_steps: int) -> None:
    """SAC's ``gradient_steps`` (SAC updates per env step; -1: as many as env steps were taken)."""
    if isinstance(gradient_steps, (bool, np.bool_)) or not isinstance(gradient_steps, Integral) or gradient_steps < -1:
        raise ValueError(f"gradient_steps must be an int >= 0 (or -1), got {gradient_steps!r}")


def check_real_ratio(real_ratio: float) -> None:
    """The share of real transitions in SAC's batches."""
    if not 0.0 <= real_ratio <= 1.0:
        raise ValueError(f"real_ratio must be in [0, 1], got {real_ratio}")


def check_mixture(mixture: str, max_rate: float) -> None:
    """PMAC's ``mixture`` (and ``max_rate`` of the TV mixture)."""
    if mixture not in ("exponential", "tv"):
        raise ValueError(
            f"mixture must be 'exponential' (Algorithm 1) or 'tv' (PDML's inverse TV distance), got {mixture!r}; "
            "for MBPO's uniform data use MBPO or adapt_model_training=adapt_rollout_starts=False"
        )
    check_max_rate(max_rate)


def check_model_training(model_training: str, model_train_size: int | None) -> None:
    """PMAC's ``model_training`` mode and ``model_train_size``."""
    if model_training not in ("bounded", "full"):
        raise ValueError(f"model_training must be 'bounded' or 'full', got {model_training!r}")
    if model_training == "full" and model_train_size is not None:
        raise ValueError("model_train_size sets the bounded training set: it cannot be used with model_training='full'")


#: Arguments PMAC passes to the ensemble and its trainer itself: set with PMAC's own arguments, not in the kwargs dicts
SET_BY_PMAC = {
    "dynamics_kwargs": {"obs_dim": "the env", "action_dim": "the env", "ensemble_size": "ensemble_size",
                        "n_elites": "n_elites", "device": "device"},
    "model_trainer_kwargs": {"model": "the dynamics model"},
}  # fmt: skip


def check_component_kwargs(**kwargs: dict[str, Any] | None) -> None:
    """
    ``ValueError`` for a key of ``dynamics_kwargs`` / ``model_trainer_kwargs`` that PMAC sets itself (the ensemble's
    size, elites and device come from PMAC's own arguments), instead of a ``TypeError`` from deep in the constructor.

    :param kwargs: the dicts by argument name (``dynamics_kwargs=...``, ``model_trainer_kwargs=...``)
    """
    for name, given in kwargs.items():
        clashes = sorted(set(given or {}) & set(SET_BY_PMAC[name]))
        if clashes:
            sources = ", ".join(f"{key} (set from {SET_BY_PMAC[name][key]})" for key in clashes)
            hint = "; pass ensemble_size, n_elites and device to PMAC itself" if name == "dynamics_kwargs" else ""
            raise ValueError(f"{name} cannot hold {sources}: PMAC sets {'them' if len(clashes) > 1 else 'it'}{hint}")


def check_policy_name(policy: object, algo: str, supported: Collection[str]) -> None:
    """
    PMAC's policy given by name: one of ``supported`` (its ``policy_aliases``: ``"MlpPolicy"``). SAC's other policies
    (``CnnPolicy``, ``MultiInputPolicy``) are for image and dict observations, which the dynamics model cannot predict:
    refused with that reason instead of the error SAC's policy would raise on a flat observation space.

    :param policy: the ``policy`` argument (a name or a class; classes are SB3's to check)
    :param algo: the algorithm's name, for the message
    :param supported: the policy names the algorithm accepts
    """
    if isinstance(policy, str) and policy in SAC.policy_aliases and policy not in supported:
        raise ValueError(
            f"{algo} supports policy='MlpPolicy' only, got {policy!r}: its dynamics model predicts flat vector "
            "observations (image and dict observations are not supported; flatten them with a wrapper and use "
            "'MlpPolicy', with policy_kwargs=dict(features_extractor_class=...) for a custom feature extractor)"
        )


def check_spaces(env: gym.Env | VecEnv, algo: str = "PMAC") -> None:
    """
    PMAC models flat continuous states and actions: reject everything else with a clear message.

    :param env: the env given to the constructor
    :param algo: the class name, for the message
    """
    action_space, observation_space = env.action_space, env.observation_space
    if not isinstance(action_space, spaces.Box):
        raise UnsupportedSpaceError(
            f"{algo} needs a continuous (Box) action space, got {type(action_space).__name__}: "
            "discrete and multi-discrete actions are not supported"
        )
    if isinstance(observation_space, spaces.Dict) or not isinstance(observation_space, spaces.Box):
        raise UnsupportedSpaceError(
            f"{algo} needs a flat Box observation space, got {observation_space}: Dict, Tuple and discrete observations "
            "are not supported (the dynamics model predicts a vector state); flatten them with a wrapper"
        )
    if len(observation_space.shape) != 1:
        raise UnsupportedSpaceError(
            f"{algo} needs a 1-D observation space, got shape {observation_space.shape}: image and other "
            "multi-dimensional observations are not supported; flatten them with a wrapper"
        )
    if np.issubdtype(observation_space.dtype, np.integer) or np.issubdtype(observation_space.dtype, np.bool_):
        raise UnsupportedSpaceError(
            f"{algo} needs float observations, got dtype {observation_space.dtype}: the dynamics model predicts "
            "continuous states; cast them with a wrapper (e.g. gymnasium.wrappers.DtypeObservation(env, np.float32))"
        )
    if not np.all(np.isfinite(action_space.low)) or not np.all(np.isfinite(action_space.high)):
        raise UnsupportedSpaceError(
            f"{algo} needs a bounded action space, got low={action_space.low}, high={action_space.high}: its SAC squashes "
            "actions to [-1, 1] and rescales them to the bounds; give the env's action space finite bounds (the range "
            "the env really accepts) with a wrapper"
        )


def unused_mixture_arguments(
    adaptive: bool,
    adaptation_rate: float,
    mixture: MixtureName,
    max_rate: float,
    model_training: ModelTrainingMode,
    model_train_size: int | None,
) -> list[str]:
    """
    The mixture arguments set to other values than their defaults that have no effect with the other settings.

    :param adaptive: whether the model training data or the rollout starts are drawn per the mixture
    :return: the names of the arguments without effect (empty when all are used or at their defaults)
    """
    sets_train_size = model_training == "bounded" and model_train_size is None  # alpha sizes the bounded training set
    unused = []
    if adaptation_rate != DEFAULT_ADAPTATION_RATE and not sets_train_size and not (adaptive and mixture == "exponential"):
        unused.append("adaptation_rate")
    if mixture != DEFAULT_MIXTURE and not adaptive:
        unused.append("mixture")
    if max_rate != DEFAULT_MAX_RATE and not (adaptive and mixture == "tv"):
        unused.append("max_rate")
    return unused


def warn_unused_mixture_arguments(algorithm: str, adaptive: bool, **arguments: Any) -> None:
    """
    Warn when mixture arguments are set but have no effect (e.g. ``MBPO(mixture="tv")``: MBPO draws uniformly).

    :param algorithm: the class name, for the message
    :param adaptive: whether the model training data or the rollout starts are drawn per the mixture
    :param arguments: the arguments of :func:`unused_mixture_arguments`
    """
    unused = unused_mixture_arguments(adaptive, **arguments)
    if unused:
        why = (
            "neither the model's training data nor the rollout starts are drawn per the policy mixture "
            "(adapt_model_training=adapt_rollout_starts=False)"
            if not adaptive
            else f"mixture={arguments['mixture']!r} does not use them"
        )
        if "adaptation_rate" in unused:
            why += "; adaptation_rate also sizes the bounded model training set, which model_train_size or "
            why += "model_training='full' replaces here"
        if "mixture" in unused and arguments["mixture"] == "tv":
            why += "; mixture='tv' still stores the collecting policy's Gaussian with every real transition"
        warnings.warn(f"{algorithm}: {', '.join(unused)} set but without effect: {why}", UserWarning, stacklevel=3)


def warn_unused_sac_arguments(algorithm: str, ent_coef: str | float, target_entropy: str | float) -> None:
    """
    Warn when ``target_entropy`` is set but ``ent_coef`` is fixed (PMAC's default 0.2), so that nothing uses it.

    :param algorithm: the class name, for the message
    :param ent_coef: the entropy coefficient (learned when a string starting with ``"auto"``)
    :param target_entropy: the target entropy of the learned coefficient
    """
    learned = isinstance(ent_coef, str) and ent_coef.startswith("auto")
    if not learned and target_entropy != "auto":
        warnings.warn(
            f"{algorithm}: target_entropy={target_entropy!r} set but without effect: ent_coef={ent_coef!r} is fixed "
            "(the default 0.2 of the paper's base code); pass ent_coef='auto' to learn it towards target_entropy",
            UserWarning,
            stacklevel=3,
        )


def smallest_unwrapped_buffer(model_train_freq: int, adaptation_rate: float, learning_starts: int = 0) -> int:
    """
    The smallest real replay buffer below which :func:`warn_questionable_settings` warns for Algorithm 1's weights:
    twice the policy mixture's support (``model_train_freq * (1 + alpha) / (1 - alpha)`` transitions) and the
    ``learning_starts`` warm-up transitions. 0 for ``alpha >= 1`` (no finite support).

    :param model_train_freq: env steps (of all envs) per interaction epoch (policy version)
    :param adaptation_rate: Algorithm 1's alpha
    :param learning_starts: the random warm-up's steps (policy version 0)
    """
    if adaptation_rate >= 1.0:
        return 0
    support = model_train_freq * (1 + adaptation_rate) / (1 - adaptation_rate)
    return math.ceil(round(2 * support, 6)) + max(int(learning_starts), 0)  # (round: 950.0000000000001)


def warn_questionable_settings(
    algorithm: str,
    real_ratio: float,
    buffer_size: int,
    model_train_freq: int,
    adaptation_rate: float,
    adaptive: bool,
    learning_starts: int = 0,
    batch_size: int | None = None,
) -> None:
    """
    Warn about settings that run but do not do what they look like: ``real_ratio=1`` (the model is trained and rolled
    out, and never used), and, with Algorithm 1's weights, a replay buffer too small for the mixture's support (when it
    wraps around, a partly overwritten version keeps its whole policy weight: its few remaining transitions are drawn
    more often than the newer ones). The warm-up version (``learning_starts`` transitions) is overwritten first and
    weighs ``1 / (1 - alpha)`` times a later version of its age (it starts with weight 1), so the buffer must hold it
    besides twice the support.

    :param algorithm: the class name, for the message
    :param real_ratio: share of real transitions in SAC's batches
    :param buffer_size: the real replay buffer's size (transitions of all envs)
    :param model_train_freq: env steps (of all envs) per interaction epoch (policy version)
    :param adaptation_rate: Algorithm 1's alpha
    :param adaptive: whether a data selection uses the mixture
    :param learning_starts: the random warm-up's steps (policy version 0)
    :param batch_size: SAC's batch size (``real_ratio`` of it, rounded down as MBPO does, is real)
    """
    if batch_size is not None and 0.0 < real_ratio < 1.0 and math.floor(round(batch_size * real_ratio, 9)) == 0:
        warnings.warn(
            f"{algorithm}: real_ratio={real_ratio} of batch_size={batch_size} rounds down to no real transition per "
            "batch (as MBPO rounds): SAC trains on model transitions only, as with real_ratio=0; use "
            f"batch_size >= {math.ceil(round(1 / real_ratio, 9))} or a larger real_ratio",
            UserWarning,
            stacklevel=3,
        )
    if real_ratio == 1.0:
        warnings.warn(
            f"{algorithm}: real_ratio=1.0: SAC trains on real transitions only, so the model is trained and rolled out "
            "for nothing; use SB3's SAC, or real_ratio < 1",
            UserWarning,
            stacklevel=3,
        )
    if not adaptive or adaptation_rate >= 1.0:  # (alpha = 1: every policy weighs the same, no finite support)
        return
    support = model_train_freq * (1 + adaptation_rate) / (1 - adaptation_rate)
    needed = smallest_unwrapped_buffer(model_train_freq, adaptation_rate, learning_starts)
    if buffer_size < needed:
        warm_up = f" and the {learning_starts} warm-up transitions" if learning_starts > 0 else ""
        warnings.warn(
            f"{algorithm}: buffer_size={buffer_size} holds fewer than twice the policy mixture's support ({support:.0f} "
            f"transitions at adaptation_rate={adaptation_rate}, model_train_freq={model_train_freq}){warm_up}: once "
            "the buffer wraps around, a partly overwritten policy version keeps its whole weight (Algorithm 1 weighs "
            "policies, not transitions; the warm-up version, overwritten first, weighs most), so its remaining "
            f"transitions are drawn more often than newer ones; use buffer_size >= {needed} (the default is 10^6)",
            UserWarning,
            stacklevel=3,
        )


def physical_memory() -> int | None:
    """This machine's physical memory in bytes (None where the OS does not say)."""
    try:
        return int(os.sysconf("SC_PHYS_PAGES")) * int(os.sysconf("SC_PAGE_SIZE"))
    except (AttributeError, ValueError, OSError):
        return None


def warn_model_buffer_memory(
    algorithm: str, capacity: int, obs_dim: int, action_dim: int, horizon: int, fixed: bool = False
) -> None:
    """
    Warn at construction when the model buffer will need more than half of this machine's memory once the rollout
    horizon reaches its maximum (it is allocated then, possibly hours into a run), or at once for a fixed size.

    :param algorithm: the class name, for the message
    :param capacity: the model buffer's capacity at the largest horizon (transitions)
    :param obs_dim: observation size
    :param action_dim: action size
    :param horizon: the largest rollout horizon of the schedule
    :param fixed: the capacity is the user's ``model_buffer_size`` (allocated at the first rollout, whatever the horizon)
    """
    nbytes = capacity * (2 * obs_dim + action_dim + 2) * 4  # float32 observations, actions, next observations, r, done
    total = physical_memory()
    if total is not None and nbytes > total / 2 and fixed:
        warnings.warn(
            f"{algorithm}: model_buffer_size={capacity:,} transitions ({nbytes / 1e9:.1f} GB) is more than half of this "
            f"machine's {total / 1e9:.1f} GB; the model buffer is allocated at the first model rollout: lower "
            "model_buffer_size, or leave it None (MBPO's size, rollout_batch_size x horizon x (epoch_length / "
            "model_train_freq) x model_retain_epochs)",
            UserWarning,
            stacklevel=3,
        )
    elif total is not None and nbytes > total / 2:
        warnings.warn(
            f"{algorithm}: the model buffer will hold {capacity:,} transitions ({nbytes / 1e9:.1f} GB) at rollout horizon "
            f"{horizon}, more than half of this machine's {total / 1e9:.1f} GB; it is allocated when that horizon is "
            "reached. Its size is rollout_batch_size x horizon x (epoch_length / model_train_freq) x "
            "model_retain_epochs: lower one of them, or set model_buffer_size",
            UserWarning,
            stacklevel=3,
        )


#: Settings of a saved agent that ``load(path, **kwargs)`` cannot change: they shape the trained dynamics model (its
#: weights would not fit) or the kind of data its policy mixture keeps (the TV mixture needs every transition's policy
#: parameters in the replay buffer)
FIXED_AT_LOAD = ("ensemble_size", "n_elites", "dynamics_kwargs", "mixture")


def _comparable(value: Any) -> Any:
    """``value`` as JSON would store it (tuples as lists, numpy scalars and arrays as numbers and lists)."""

    def default(item: Any) -> Any:
        if isinstance(item, np.ndarray):
            return item.tolist()
        return item.item() if isinstance(item, np.generic) else repr(item)

    return json.loads(json.dumps(value, default=default, sort_keys=True))


def check_load_overrides(saved: dict[str, Any], overrides: dict[str, Any], algo: str) -> None:
    """
    Refuse ``load`` keyword arguments that would change :data:`FIXED_AT_LOAD` settings of the saved agent.

    :param saved: the agent file's ``data`` as stored (``sb3_pmac.compat.saved_data``)
    :param overrides: the keyword arguments given to ``load``
    :param algo: the class name, for the message
    :raises ValueError: naming the setting, its saved value and the value asked for
    """
    for key in FIXED_AT_LOAD:
        if key not in overrides:
            continue
        if key not in saved:  # an agent of an earlier release: only the mixture's default is known
            if key != "mixture":
                continue
            saved = {**saved, "mixture": DEFAULT_MIXTURE}
        stored = saved[key]
        if isinstance(stored, dict) and ":serialized:" in stored:
            stored = json_to_data(json.dumps({key: stored}))[key]
        if _comparable(stored) != _comparable(overrides[key]):
            raise ValueError(
                f"{key} cannot change when an agent is loaded: it was saved with {key}={stored!r}, load asked for "
                f"{overrides[key]!r}. The trained dynamics model or the replay data depend on it: train a new "
                f"{algo}(..., {key}=...) instead"
            )


#: ``load`` keyword arguments that must be positive ints (or None where the constructor allows it), as in the constructor
POSITIVE_AT_LOAD = (
    "model_train_freq", "rollout_batch_size", "epoch_length", "model_retain_epochs", "buffer_size", "batch_size",
    "model_buffer_size", "model_train_size", "max_train_repeat_per_step",
)  # fmt: skip


def check_load_values(saved: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    """
    The constructor's checks on the ``load`` keyword arguments it checks: SB3's ``load`` sets them on the agent as
    given, and a value the constructor refuses would otherwise fail late (a ``model_train_freq`` of 0 at the first
    model step, after the warm-up) or not at all.

    :param saved: the agent file's ``data`` as stored (``sb3_pmac.compat.saved_data``), for the settings checked together
        with one given (``model_training`` and ``model_train_size``)
    :param overrides: the keyword arguments given to ``load``
    :return: the keyword arguments, the checked ones as the constructor stores them (plain ints and floats, the horizon
        schedule in canonical form)
    :raises ValueError: with the constructor's message
    """
    checked = dict(overrides)
    positive = {key: checked[key] for key in POSITIVE_AT_LOAD if key in checked}
    check_positive(**positive)
    checked.update({key: int(value) for key, value in positive.items() if value is not None})
    if "learning_starts" in checked:
        check_learning_starts(checked["learning_starts"])
    if "gradient_steps" in checked:
        check_gradient_steps(checked["gradient_steps"])
        checked["gradient_steps"] = int(checked["gradient_steps"])
    if "real_ratio" in checked:
        check_real_ratio(checked["real_ratio"])
        checked["real_ratio"] = float(checked["real_ratio"])
    if "adaptation_rate" in checked:
        checked["adaptation_rate"] = check_adaptation_rate(checked["adaptation_rate"])
    if "max_rate" in checked:
        check_max_rate(checked["max_rate"])
        checked["max_rate"] = float(checked["max_rate"])
    if "rollout_horizon" in checked:
        checked["rollout_horizon"] = validate_horizon_schedule(checked["rollout_horizon"])
    if {"model_training", "model_train_size"} & checked.keys():
        check_model_training(
            checked.get("model_training", saved.get("model_training", "bounded")),
            checked.get("model_train_size", saved.get("model_train_size")),
        )
    return checked
