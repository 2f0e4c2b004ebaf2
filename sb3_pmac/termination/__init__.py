"""
Termination functions for model rollouts.

PMAC, like MBPO, trains the policy on short *model rollouts*: starting from real states, the learned dynamics model
predicts ``next_obs`` (and the reward) for the current policy's action, step after step. The model does not predict
``done``; instead, as in MBPO's "static" functions, ``done`` is computed from the predicted transition by a known,
hand-written *termination function* that mirrors the real environment's ``terminated`` flag (e.g. "the hopper fell").
A rollout branch stops at the first predicted termination, and the critic targets of the generated transitions are
not bootstrapped past it. A wrong termination function therefore biases the value estimates, so the functions here
read every relevant parameter from the env instance itself (``healthy_z_range``, ``terminate_when_unhealthy``,
``exclude_current_positions_from_observation``, the pole lengths of the MuJoCo model, ...) instead of copying the
default constants: envs made with custom kwargs are honoured.

A termination function has the signature :data:`~sb3_pmac.termination.rules.TerminationFn`:
``fn(obs, action, next_obs) -> done`` on batches ``[N, obs_dim]``, ``[N, action_dim]``, ``[N, obs_dim]``, returning a
boolean ``[N]``. The functions below accept torch tensors (on any device; the result is a ``torch.bool`` tensor on
the same device) and numpy arrays (the result is then a numpy ``bool`` array). They only look at ``next_obs``. They
are small picklable classes (not closures), because they are saved with the agent.

Covered: the gymnasium MuJoCo ``v4`` and ``v5`` envs: Hopper, Walker2d, Ant, Humanoid (healthy ranges),
InvertedPendulum, InvertedDoublePendulum (pole-tip height) and HalfCheetah, Swimmer, Pusher, Reacher,
HumanoidStandup (never terminate); and the classic-control Pendulum (never terminates). :func:`get_termination_fn`
looks the function up by the env's base name (the id without ``-vN``; ``ns/Name`` first for a namespaced id);
:func:`register_termination_fn` adds your own (a :data:`~sb3_pmac.termination.rules.TerminationFactory`). For an
unknown env it warns and returns :class:`NeverTerminate`. Anywhere a
:data:`~sb3_pmac.termination.rules.TerminationFn` is expected, any callable with that signature may be used.
"""

from sb3_pmac.termination.registry import (
    env_base_name,
    get_termination_fn,
    observation_wrappers,
    register_termination_fn,
    registered_termination_envs,
    registry_keys,
    termination_fn_from_env_id,
)
from sb3_pmac.termination.rules import (
    AntTermination,
    HopperTermination,
    HumanoidTermination,
    InvertedDoublePendulumTermination,
    InvertedPendulumTermination,
    NeverTerminate,
    TerminationFactory,
    TerminationFn,
    Walker2dTermination,
)

__all__ = [
    "AntTermination",
    "HopperTermination",
    "HumanoidTermination",
    "InvertedDoublePendulumTermination",
    "InvertedPendulumTermination",
    "NeverTerminate",
    "TerminationFactory",
    "TerminationFn",
    "Walker2dTermination",
    "env_base_name",
    "get_termination_fn",
    "observation_wrappers",
    "register_termination_fn",
    "registered_termination_envs",
    "registry_keys",
    "termination_fn_from_env_id",
]
