"""
Which termination rule an env gets: the factories that build a rule from an env's parameters, the registry by env base
name, and the lookup from an env id, a gymnasium env or a VecEnv
(:func:`~sb3_pmac.termination.get_termination_fn`).
"""

import importlib
import inspect
import pickle
import re
import sys
import warnings
from collections.abc import Callable
from types import SimpleNamespace
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces
from gymnasium.wrappers import DtypeObservation, FlattenObservation, MaxAndSkipObservation
from stable_baselines3.common.vec_env import (
    DummyVecEnv,
    VecCheckNan,
    VecEnv,
    VecEnvWrapper,
    VecFrameStack,
    VecMonitor,
    VecNormalize,
    VecVideoRecorder,
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


# ---------------------------------------------------------------------------------------------------- factories
def _range(env: gym.Env, name: str) -> tuple[float, float]:
    low, high = getattr(env, name)
    return float(low), float(high)


def _exclude_positions(env: gym.Env) -> bool:
    return bool(getattr(env, "_exclude_current_positions_from_observation", True))


def _terminate_when_unhealthy(env: gym.Env) -> bool:
    return bool(getattr(env, "_terminate_when_unhealthy", True))


def _make_hopper(env: gym.Env) -> TerminationFn:
    model = env.model  # type: ignore[attr-defined]
    return HopperTermination(
        healthy_z_range=_range(env, "_healthy_z_range"),
        healthy_angle_range=_range(env, "_healthy_angle_range"),
        healthy_state_range=_range(env, "_healthy_state_range"),
        exclude_current_positions_from_observation=_exclude_positions(env),
        state_dim=int(model.nq - 2 + model.nv),
        terminate_when_unhealthy=_terminate_when_unhealthy(env),
    )


def _make_walker2d(env: gym.Env) -> TerminationFn:
    return Walker2dTermination(
        healthy_z_range=_range(env, "_healthy_z_range"),
        healthy_angle_range=_range(env, "_healthy_angle_range"),
        exclude_current_positions_from_observation=_exclude_positions(env),
        terminate_when_unhealthy=_terminate_when_unhealthy(env),
    )


def _make_ant(env: gym.Env) -> TerminationFn:
    # The contact forces (v4: `_use_contact_forces`, v5: `_include_cfrc_ext_in_observation`) come after the state,
    # so only the size of the state part matters.
    model = env.model  # type: ignore[attr-defined]
    exclude = _exclude_positions(env)
    return AntTermination(
        healthy_z_range=_range(env, "_healthy_z_range"),
        exclude_current_positions_from_observation=exclude,
        state_dim=int(model.nq + model.nv - 2 * exclude),
        terminate_when_unhealthy=_terminate_when_unhealthy(env),
    )


def _make_humanoid(env: gym.Env) -> TerminationFn:
    return HumanoidTermination(
        healthy_z_range=_range(env, "_healthy_z_range"),
        exclude_current_positions_from_observation=_exclude_positions(env),
        terminate_when_unhealthy=_terminate_when_unhealthy(env),
    )


def _make_inverted_pendulum(env: gym.Env) -> TerminationFn:
    return InvertedPendulumTermination()


def _xz(vec: Any) -> tuple[float, float]:
    return float(vec[0]), float(vec[2])


def _planar_chain_problem(model: Any, pole_body: int, pole2_body: int) -> str | None:
    """
    What keeps InvertedDoublePendulum's rule from reading the model's geometry (None: nothing): it assumes each pole
    body turns about +y on one hinge at its body's origin, unrotated bodies, and a cart that slides along x.
    """
    for body in (pole_body, pole2_body):
        if int(model.body_jntnum[body]) != 1:
            return f"body {body} with {int(model.body_jntnum[body])} joints"
        joint = int(model.body_jntadr[body])
        if not np.allclose(model.jnt_axis[joint], (0.0, 1.0, 0.0)):
            return f"a hinge axis {tuple(np.round(model.jnt_axis[joint], 3))} other than +y"
        if not np.allclose(model.jnt_pos[joint], 0.0):
            return f"a hinge at {tuple(np.round(model.jnt_pos[joint], 3))} in its body's frame, not at its origin"
    body = pole2_body
    while body != 0:
        if not np.allclose(model.body_quat[body], (1.0, 0.0, 0.0, 0.0)):
            return f"a rotated body ({body}, quaternion {tuple(np.round(model.body_quat[body], 3))})"
        if body not in (pole_body, pole2_body):  # the cart and above: fixed, or sliding along x
            for joint in range(int(model.body_jntadr[body]), int(model.body_jntadr[body]) + int(model.body_jntnum[body])):
                if not np.allclose(model.jnt_axis[joint], (1.0, 0.0, 0.0)):
                    return f"a cart joint along {tuple(np.round(model.jnt_axis[joint], 3))}, not x"
        body = int(model.body_parentid[body])
    return None


def _make_inverted_double_pendulum(env: gym.Env) -> TerminationFn:
    model = getattr(env, "model", None)
    if model is None or model.nq != 3 or model.nsite < 1:
        warnings.warn(
            f"Unexpected InvertedDoublePendulum model in {env}; using the standard geometry for the termination function"
        )
        return InvertedDoublePendulumTermination()
    # Kinematic chain world -> cart (slider) -> pole (hinge) -> pole2 (hinge2) -> tip site (the env's site 0)
    tip_body = int(model.site_bodyid[0])
    pole2_body = tip_body
    pole_body = int(model.body_parentid[pole2_body])
    problem = _planar_chain_problem(model, pole_body, pole2_body)
    if problem is not None:
        warnings.warn(
            f"InvertedDoublePendulum model in {env} with {problem}: the termination rule reads the pole lengths and "
            "heights from the model but assumes hinges about +y at their bodies' origins, unrotated bodies and a cart "
            "along x, so it can disagree with the env; pass termination_fn=... for this model",
            UserWarning,
            stacklevel=2,
        )
    base_height = 0.0
    body = pole_body
    while body != 0:  # the slider only moves along x: the hinge height is the sum of the body z offsets
        base_height += float(model.body_pos[body][2])
        body = int(model.body_parentid[body])
    return InvertedDoublePendulumTermination(
        base_height=base_height,
        pole2_offset=_xz(model.body_pos[pole2_body]),
        tip_offset=_xz(model.site_pos[0]),
    )


def _make_never(env: gym.Env) -> TerminationFn:
    return NeverTerminate()


_REGISTRY: dict[str, TerminationFactory] = {
    "Hopper": _make_hopper,
    "Walker2d": _make_walker2d,
    "Ant": _make_ant,
    "Humanoid": _make_humanoid,
    "InvertedPendulum": _make_inverted_pendulum,
    "InvertedDoublePendulum": _make_inverted_double_pendulum,
    "Pendulum": _make_never,
    "HalfCheetah": _make_never,
    "Swimmer": _make_never,
    "Pusher": _make_never,
    "Reacher": _make_never,
    "HumanoidStandup": _make_never,
}


# ---------------------------------------------------------------------------------------------------- lookup
def env_base_name(env_id: str) -> str:
    """
    The name of an env id without namespace and version, e.g. ``"Hopper-v5" -> "Hopper"``, ``"ns/Name-v0" -> "Name"``
    (the last of its :func:`registry_keys`).

    :param env_id: A gymnasium env id (``"Hopper-v4"``, ``"ns/Name-v0"``) or a base name
    :return: The base name
    """
    return registry_keys(env_id)[-1]


def registry_keys(env_id: str) -> list[str]:
    """
    The registry keys an env id is looked up by, the most specific first: ``"ns/Name"`` when the id has a namespace,
    then the base name ``"Name"``; e.g. ``"my_ns/Hopper-v0" -> ["my_ns/Hopper", "Hopper"]``, ``"Hopper-v5" ->
    ["Hopper"]``.

    :param env_id: A gymnasium env id or a (namespaced) base name
    :return: The keys, most specific first
    """
    try:
        namespace, name, _ = gym.envs.registration.parse_env_id(env_id)
    except gym.error.Error:
        namespace, _, name = env_id.rpartition("/")
    return [f"{namespace}/{name}", name] if namespace else [name]


def register_termination_fn(env_name: str, factory: TerminationFactory) -> None:
    """
    Register (or replace) the termination function of an env.

    :param env_name: The env's base name (``"MyEnv"``); a full id (``"MyEnv-v1"``) is reduced to its base name, so the
        function applies to every version. A namespaced name (``"my_ns/Hopper"`` or ``"my_ns/Hopper-v0"``) applies to
        that namespace only and wins there over the rule of the bare name; the bare name's rule (``"Hopper"``) stays
        as it is and still applies to namespaced ids without a rule of their own (if its factory can be built from
        their env: else they count as unknown, see :func:`get_termination_fn`).
    :param factory: Called with the *unwrapped* env instance, returns the
        :data:`~sb3_pmac.termination.rules.TerminationFn` (read the env's parameters there). The returned callable
        should be picklable (a module-level class, not a closure) if the agent is to be saved.
    """
    if not callable(factory):
        raise TypeError(f"factory must be callable (env -> termination function), got {factory!r}")
    if _required_positional(factory) >= 3:
        raise TypeError(
            f"register_termination_fn takes a factory env -> termination function, got {factory!r}, which needs "
            f"{_required_positional(factory)} arguments (a termination function itself?): pass lambda env: rule, "
            "or a class whose __init__ reads the env"
        )
    _REGISTRY[registry_keys(env_name)[0]] = factory


def _required_positional(function: Callable[..., Any]) -> int:
    """The number of positional parameters ``function`` requires (0 when its signature cannot be read)."""
    try:
        parameters = inspect.signature(function).parameters.values()
    except (TypeError, ValueError):
        return 0
    kinds = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    return sum(p.kind in kinds and p.default is inspect.Parameter.empty for p in parameters)


def registered_termination_envs() -> list[str]:
    """:return: The (namespaced) base names of the envs with a registered termination function"""
    return sorted(_REGISTRY)


def _unknown(name: str, warn: bool, reason: str = "", stacklevel: int = 3) -> NeverTerminate:
    """:class:`NeverTerminate` for an env without a rule, with a warning (``reason`` added) if ``warn``."""
    if warn:
        warnings.warn(
            f"No termination function known for {name!r}; model rollouts will never terminate. {reason}"
            "Pass termination_fn=... (a callable (obs, action, next_obs) -> bool [N]) or register one with "
            "sb3_pmac.termination.register_termination_fn().",
            UserWarning,
            stacklevel=stacklevel,
        )
    return NeverTerminate()


def _registered_key(names: list[str]) -> str | None:
    """The first of ``names`` (most specific first) a rule is registered under, None if none."""
    return next((name for name in names if name in _REGISTRY), None)


def _factory_name(factory: TerminationFactory) -> str:
    """The factory as a message names it: ``module.qualname`` where it has one, else its repr."""
    qualname = getattr(factory, "__qualname__", None)
    return f"{factory.__module__}.{qualname}" if qualname and getattr(factory, "__module__", None) else repr(factory)


def _fallback_origin(names: list[str]) -> str:
    """How a key other than ``names[0]`` was reached (see :func:`_env_names`), for messages."""
    if "/" in names[0]:
        return f"the bare name of the namespaced {names[0]!r}"
    return f"the class name {names[0]!r} without its 'Env' suffix"


def _build_rule(key: str, names: list[str], env: gym.Env, warn: bool, label: str) -> TerminationFn:
    """
    The rule registered under ``key`` built from the unwrapped ``env``, which was looked up by ``names`` (most specific
    first, :func:`_env_names`); ``label`` names the env in the unknown-env warning.

    A rule found under the env's own key (``names[0]``: ``"ns/Name"`` or ``"Name"`` of its id, or its class name)
    whose factory raises is an error, which names the key. A rule found only through a fallback, the bare name of a
    namespaced id (``"my_ns/Hopper"`` -> ``"Hopper"``) or the class name without its ``Env`` suffix (``HopperEnv`` ->
    ``"Hopper"``), is meant for another env of that name (MuJoCo's Hopper rule reads ``env.model``): if its factory
    raises, the env counts as unknown (:class:`NeverTerminate`, with a warning that says which rule did not fit).
    A warning the factory emits as an error (``-W error``) passes through as it is.

    :raises ValueError: If the factory of the rule registered under ``names[0]`` raises (chained to its exception)
    """
    factory = _REGISTRY[key]
    try:
        return factory(env)
    except Warning:
        raise
    except Exception as error:
        problem = f"{type(error).__name__}: {error}"
        if key == names[0]:
            raise ValueError(
                f"Building the termination rule registered under {key!r} ({_factory_name(factory)}) from the env "
                f"({type(env).__name__}) failed with {problem}. Pass termination_fn=... (a callable (obs, action, "
                "next_obs) -> bool [N]) for this env, or register a factory that fits it with "
                f"sb3_pmac.termination.register_termination_fn({key!r}, ...)."
            ) from error
        reason = (
            f"The termination rule for {key!r} ({_factory_name(factory)}), found under the key {key!r} "
            f"({_fallback_origin(names)}), does not fit this env ({type(env).__name__}: an env that only shares the "
            f"name?): building it failed with {problem}. A rule registered under {names[0]!r} is looked up first. "
        )
        return _unknown(label, warn, reason, stacklevel=4)


def _env_names(env: gym.Env, spec: Any = None) -> list[str]:
    """
    Names to look the env up by: the registry keys of its spec id (:func:`registry_keys`), else its class name as it
    is and without an ``Env`` suffix (``HopperEnv`` -> ``Hopper``), so that an env made without ``gym.make`` is found
    under either. The first is the env's own key; a rule found under a later one may be meant for another env that
    shares the name (:func:`_build_rule`).
    """
    for candidate in (spec, getattr(env, "spec", None), getattr(env.unwrapped, "spec", None)):
        if candidate is not None and getattr(candidate, "id", None):
            return registry_keys(candidate.id)
    return _class_names(type(env.unwrapped).__name__)


def _class_names(cls_name: str) -> list[str]:
    """An env class's name as it is and without an ``Env`` suffix (``HopperEnv`` -> ``["HopperEnv", "Hopper"]``)."""
    return [cls_name, cls_name[: -len("Env")]] if cls_name.endswith("Env") and len(cls_name) > 3 else [cls_name]


# ---------------------------------------------------------------------------------------------------- wrappers
# A rule reads the unwrapped env's raw observations: a wrapper that changes them makes the rule misread the model's
# predictions. A wrapper that keeps the entries the rules read can say so with the class attribute
# ``keeps_termination_inputs = True`` (like the presets' truncation).
#: VecEnv wrappers that keep the stored observations as the env made them (VecNormalize: PMAC stores the raw ones)
_VEC_WRAPPERS_KEEPING_INPUTS = (VecNormalize, VecMonitor, VecCheckNan, VecVideoRecorder)
#: Wrappers that are not ``ObservationWrapper``s and keep the observation space, yet return other values than the env
#: (the elementwise maximum of the last frames): the check cannot see it from the spaces
_WRAPPERS_CHANGING_VALUES = (MaxAndSkipObservation,)


def _keeps_termination_inputs(wrapper: Any) -> bool:
    """
    Whether the wrapper itself (its class or instance) sets ``keeps_termination_inputs``: a ``VecEnvWrapper`` forwards
    unknown attributes to the VecEnvs it wraps, whose flags must not count.
    """
    own = getattr(wrapper, "__dict__", {})
    return bool(own.get("keeps_termination_inputs", getattr(type(wrapper), "keeps_termination_inputs", False)))


def _cast_keeps_values(source: np.dtype, target: np.dtype) -> bool:
    """Whether casting ``source`` to ``target`` keeps the values (float64 -> float32 rounding counts as keeping)."""
    if np.issubdtype(target, np.floating):
        return bool(np.issubdtype(source, np.floating) or np.issubdtype(source, np.integer) or source == np.bool_)
    return bool(np.can_cast(source, target, casting="safe"))


def _changes_termination_inputs(wrapper: Any) -> bool:
    """
    Whether ``wrapper`` itself (not the envs it wraps) changes the observations a rule reads: an observation wrapper,
    ``MaxAndSkipObservation`` (the maximum of the last frames), or any other wrapper that changes the observation
    space (``FrameStackObservation``, ...), unless it sets
    ``keeps_termination_inputs`` or keeps the values (``DtypeObservation`` of a ``Box`` to a float dtype or by a safe
    cast, ``FlattenObservation`` of a 1-D ``Box``). The one predicate of every wrapper check.
    """
    if not isinstance(wrapper, gym.Wrapper) or _keeps_termination_inputs(wrapper):
        return False
    if isinstance(wrapper, _WRAPPERS_CHANGING_VALUES):
        return True
    if not isinstance(wrapper, gym.ObservationWrapper):
        return wrapper.observation_space != wrapper.env.observation_space
    source, target = wrapper.env.observation_space, wrapper.observation_space
    # exact types: a subclass may transform the values
    if type(wrapper) is DtypeObservation and isinstance(source, spaces.Box) and isinstance(target, spaces.Box):
        return not _cast_keeps_values(np.dtype(source.dtype), np.dtype(target.dtype))
    if type(wrapper) is FlattenObservation:
        return not (isinstance(source, spaces.Box) and len(source.shape) == 1)
    return True


def _spec_does_not_pickle(wrapper: Any) -> bool:
    """Whether the wrapper's spec (which holds the constructor arguments of the wrappers, e.g. lambdas) fails to pickle."""
    try:
        pickle.dumps(wrapper.spec)
    except Exception:
        return True
    return False


class _WrapperCheckMeta(type):
    """
    ``isinstance(wrapper, cls)`` is ``cls.check(wrapper)``: ``VecEnv.env_is_wrapped(cls)`` then runs the check where
    the sub-env lives (a ``SubprocVecEnv`` worker gets the class by reference and walks its wrapper chain), so nothing
    is pickled out of the worker; an exception, which would kill the worker, counts as True.
    """

    check: Callable[[Any], bool]

    def __instancecheck__(cls, instance: Any) -> bool:
        try:
            return bool(cls.check(instance))
        except Exception:
            return True


class _ChangesTerminationInputs(gym.Wrapper, metaclass=_WrapperCheckMeta):
    """Never instantiated: a wrapper "is" one when :func:`_changes_termination_inputs` holds."""

    check = staticmethod(_changes_termination_inputs)


class _SpecDoesNotPickle(gym.Wrapper, metaclass=_WrapperCheckMeta):
    """Never instantiated: a wrapper "is" one when :func:`_spec_does_not_pickle` holds."""

    check = staticmethod(_spec_does_not_pickle)


def _unwrapped_does_not_pickle(wrapper: Any) -> bool:
    """Whether the unwrapped env fails to pickle (a class the process cannot import, e.g. one defined in a script run
    with SubprocVecEnv's default start method, or a lock or simulator handle among its attributes)."""
    try:
        pickle.dumps(wrapper.unwrapped)
    except Exception:
        return True
    return False


class _UnwrappedDoesNotPickle(gym.Wrapper, metaclass=_WrapperCheckMeta):
    """Never instantiated: a wrapper "is" one when :func:`_unwrapped_does_not_pickle` holds."""

    check = staticmethod(_unwrapped_does_not_pickle)


def _is_a_wrapper(wrapper: Any) -> bool:
    """True: ``env_is_wrapped`` of a class with this check tells whether the env has any wrapper at all."""
    return True


class _AnyWrapper(gym.Wrapper, metaclass=_WrapperCheckMeta):
    """Never instantiated: every wrapper "is" one."""

    check = staticmethod(_is_a_wrapper)


#: ``object.__repr__`` of an env: ``<module.qualname object at 0x...>``
_OBJECT_REPR = re.compile(r"^<(.+) object at 0x[0-9a-fA-F]+>$")


def _class_found_by_name(path: str) -> bool:
    """Whether ``module.qualname`` names a class this process finds (imports): how pickle sends a class by reference."""
    parts = path.split(".")
    for i in range(len(parts) - 1, 0, -1):
        module_name = ".".join(parts[:i])
        try:
            obj: Any = sys.modules.get(module_name) or importlib.import_module(module_name)
        except Exception:
            continue
        try:
            for attr in parts[i:]:
                obj = getattr(obj, attr)
        except AttributeError:
            return False
        return isinstance(obj, type)
    return False


def _worker_env_has_wrapper(base: VecEnv) -> bool:
    """Whether the first sub-env of a VecEnv of worker processes has any wrapper (asked in the worker)."""
    return bool(base.env_is_wrapped(_AnyWrapper, indices=[0])[0])


def _worker_env_does_not_pickle(base: VecEnv, wrapped: bool) -> bool:
    """
    Whether the unwrapped env of a worker process's first sub-env would fail to be sent to this process, found without
    sending it (a failed pickle kills the worker). With a wrapper the worker checks it itself (``env_is_wrapped``). An env
    without any wrapper (the worker adds none) leaves no place to run that check: it counts as sendable only when its
    default ``repr`` names a class this process finds by name (a local class, or one of a script's ``__main__`` under
    the spawn or forkserver start method, is not found). Such an env with an attribute that does not pickle (a lock)
    still cannot be checked: wrap it (e.g. in ``Monitor``) or pass ``termination_fn``. ``wrapped``:
    :func:`_worker_env_has_wrapper`.
    """
    if wrapped:
        return bool(base.env_is_wrapped(_UnwrappedDoesNotPickle, indices=[0])[0])
    match = _OBJECT_REPR.match(str(base.env_method("__repr__", indices=[0])[0]))
    return match is None or not _class_found_by_name(match[1])


#: An env without wrappers that has a spec, as gymnasium prints it: ``<Name<Id-v0>>``
_BARE_ENV_WITH_ID = re.compile(r"^<(\w+)<([^<>]+)>>$")

#: The innermost env of a wrapper chain as gymnasium prints it: ``<Name instance>`` or ``<Name<Id-v0>>``
_INNERMOST_ENV = re.compile(r".*<(\w+)(?: instance|<[^<>]*>)>+$", re.DOTALL)


def _sub_env_names(base: VecEnv, wrapped: bool) -> tuple[list[str], Any]:
    """
    The names to look the first sub-env of a VecEnv of worker processes up by (:func:`_env_names`) and its spec, read
    without pickling the env out of its worker: its spec if that pickles, else its class name as the worker prints its
    wrapper chain (``[chain]`` if that cannot be read, e.g. an env with its own ``__str__``). An env without any wrapper
    leaves nowhere to check the spec's pickle in: its spec id is read from how it prints itself (``<Name<Id>>``) and
    stands for the spec (only the id is read). ``wrapped``: :func:`_worker_env_has_wrapper`.
    """
    spec = None
    if wrapped and not base.env_is_wrapped(_SpecDoesNotPickle, indices=[0])[0]:
        spec = base.get_attr("spec", indices=[0])[0]
        if spec is not None and getattr(spec, "id", None):
            return registry_keys(spec.id), spec
    chain = str(base.env_method("__str__", indices=[0])[0])
    bare_with_id = None if wrapped else _BARE_ENV_WITH_ID.match(chain)
    if bare_with_id is not None:
        return registry_keys(bare_with_id[2]), SimpleNamespace(id=bare_with_id[2])
    match = _INNERMOST_ENV.match(chain)
    return (_class_names(match[1]) if match is not None else [chain]), spec


def observation_wrappers(env: gym.Env) -> list[str]:
    """
    The observation wrappers between ``env`` and its unwrapped env that change what a termination rule reads (a
    termination function reads the unwrapped env's raw observations). Left out: wrappers marked
    ``keeps_termination_inputs``, like the presets' truncation, and those that keep the values:
    ``DtypeObservation`` to a float dtype, ``FlattenObservation`` of a 1-D ``Box``.

    :param env: A gymnasium env, possibly wrapped
    :return: The class names of those wrappers, outermost first
    """
    found = []
    while isinstance(env, gym.Wrapper):
        if _changes_termination_inputs(env):
            found.append(type(env).__name__)
        env = env.env
    return found


def _vec_observation_wrappers(venv: VecEnv) -> list[str]:
    """
    The ``VecEnvWrapper`` classes around ``venv`` that change what a rule reads, outermost first: ``VecFrameStack``
    and any other that changes the observation space, except VecNormalize (PMAC keeps its raw observations),
    VecMonitor, VecCheckNan, VecVideoRecorder and wrappers marked ``keeps_termination_inputs``.
    """
    found = []
    while isinstance(venv, VecEnvWrapper):
        if not (_keeps_termination_inputs(venv) or isinstance(venv, _VEC_WRAPPERS_KEEPING_INPUTS)) and (
            isinstance(venv, VecFrameStack) or venv.observation_space != venv.venv.observation_space
        ):
            found.append(type(venv).__name__)
        venv = venv.venv
    return found


def _wrapped_error(name: str, wrappers: str) -> ValueError:
    return ValueError(
        f"The {name} env is wrapped in {wrappers}: its termination rule reads raw observations, so model rollouts "
        "would terminate on transformed ones. Pass termination_fn=... that works on the wrapped observations (e.g. "
        "sb3_pmac.termination.NeverTerminate()), or normalize with VecNormalize, whose raw observations PMAC keeps for "
        "the model. A wrapper that keeps the observation entries the rule reads can say so with the class attribute "
        "keeps_termination_inputs = True."
    )


# ---------------------------------------------------------------------------------------------------- lookup from envs
def _registered_rule(env: gym.Env, warn: bool, spec: Any = None) -> tuple[str, TerminationFn]:
    """The env's name and the rule registered for it, built from the unwrapped env (NeverTerminate if unknown)."""
    names = _env_names(env, spec)
    name = _registered_key(names)
    if name is None:
        return names[0], _unknown(names[0], warn)
    return name, _build_rule(name, names, env.unwrapped, warn, names[0])


def _reads_observations(rule: TerminationFn) -> bool:
    """False for NeverTerminate (exactly: a subclass may read them): no wrapper can make it misread anything."""
    return type(rule) is not NeverTerminate


def _from_gym_env(env: gym.Env, warn: bool) -> TerminationFn:
    name, rule = _registered_rule(env, warn)
    wrappers = observation_wrappers(env) if _reads_observations(rule) else []
    if wrappers:
        raise _wrapped_error(name, f"observation wrappers ({', '.join(wrappers)})")
    return rule


def _from_vec_env(venv: VecEnv, warn: bool) -> TerminationFn:
    base = venv.unwrapped
    if isinstance(base, DummyVecEnv):
        name, rule = _registered_rule(base.envs[0], warn)
    else:
        # e.g. SubprocVecEnv: the names come from the worker without the env (a failed pickle would kill the worker);
        # only an env with a registered rule, which reads its parameters, is pickled out (MuJoCo envs are re-created
        # from their constructor kwargs) once the worker has checked that it pickles. Its wrappers stay in the worker,
        # which checks them itself (env_is_wrapped).
        wrapped = _worker_env_has_wrapper(base)
        names, spec = _sub_env_names(base, wrapped)
        name = _registered_key(names) or names[0]
        if name not in _REGISTRY:
            rule = _unknown(name, warn)
        elif (does_not_pickle := _worker_env_does_not_pickle(base, wrapped)) and name != names[0]:
            # found only through a name the env shares (class HopperEnv of its own): the rule cannot be tried on an env
            # that stays in the worker, and one of another env's name fits rarely; as for a DummyVecEnv whose rule fails
            reason = (
                f"The termination rule for {name!r}, found under the key {name!r} ({_fallback_origin(names)}), reads "
                f"the env's parameters, but the env of the {type(base).__name__}'s first worker cannot be sent to this "
                "process to build it (it does not pickle): an env that only shares the name? "
            )
            rule = _unknown(names[0], warn, reason)
        elif does_not_pickle:
            raise ValueError(
                f"The termination rule registered for {name!r} reads the env's parameters, but the env of the "
                f"{type(base).__name__}'s first worker cannot be sent to this process (it does not pickle: e.g. a class "
                "defined in the script run with the forkserver or spawn start method, or an attribute such as a lock; "
                "an env without any wrapper is sent only if its class is found by name here). "
                f"Pass termination_fn=... (the rule built for the env's parameters, e.g. from a DummyVecEnv of the same "
                "env), or make the env class importable."
            )
        else:
            sub_env = base.get_attr("unwrapped", indices=[0])[0]
            try:
                name, rule = _registered_rule(sub_env, warn, spec)
            finally:
                sub_env.close()  # (the copy: the worker's env lives on)
    if not _reads_observations(rule):
        return rule
    vec_wrappers = _vec_observation_wrappers(venv)
    if vec_wrappers:
        raise _wrapped_error(name, f"VecEnv wrappers that change its observations ({', '.join(vec_wrappers)})")
    if isinstance(base, DummyVecEnv):
        wrappers = observation_wrappers(base.envs[0])
        if wrappers:
            raise _wrapped_error(name, f"observation wrappers ({', '.join(wrappers)})")
    elif base.env_is_wrapped(_ChangesTerminationInputs, indices=[0])[0]:
        chain = base.env_method("__str__", indices=[0])[0]
        raise _wrapped_error(name, f"observation wrappers (its first sub-env is {chain})")
    return rule


def termination_fn_from_env_id(env_id: str, env_kwargs: dict[str, Any] | None = None, warn: bool = True) -> TerminationFn:
    """
    Termination function of a registered env id: the env is built with ``gym.make(env_id, **env_kwargs)`` to read its
    parameters, then closed. Unknown names warn and return :class:`NeverTerminate` without building the env; so does
    (after building it) a rule found through the bare name of a namespaced id whose factory cannot be built from it.

    :param env_id: A gymnasium env id, e.g. ``"Hopper-v5"``
    :param env_kwargs: Keyword arguments of the env (``healthy_z_range``, ``terminate_when_unhealthy``, ...)
    :param warn: Emit a ``UserWarning`` for unknown envs
    :return: The termination function
    :raises ValueError: If the factory of the rule registered under the id's own key (``"ns/Name"`` or ``"Name"``)
        raises
    """
    keys = registry_keys(env_id)
    name = _registered_key(keys)
    if name is None:
        return _unknown(env_id, warn)
    env = gym.make(env_id, **(env_kwargs or {}))
    try:
        return _build_rule(name, keys, env.unwrapped, warn, env_id)
    finally:
        env.close()


def get_termination_fn(
    env: str | gym.Env | VecEnv,
    env_kwargs: dict[str, Any] | None = None,
    warn: bool = True,
) -> TerminationFn:
    """
    Termination function of an env, for model rollouts (see the module docstring).

    Looked up in the registry by the env's base name (id without ``-vN``: ``"Hopper-v4"`` and ``"Hopper-v5"`` both map
    to ``"Hopper"``; a namespaced id ``"ns/Name-vN"`` by ``"ns/Name"`` first, then ``"Name"``), then built from the
    *unwrapped* env instance, whose parameters it reads. A rule found only through the bare name of a namespaced id, or
    through an env class's name without its ``Env`` suffix (``HopperEnv`` -> ``"Hopper"``), may be meant for another
    env of that name: if its factory cannot be built from this env (it raises, e.g. MuJoCo's Hopper rule reading
    ``env.model``), the env counts as unknown, with a warning that names the rule that did not fit.

    :param env: An env id (the env is made with ``env_kwargs`` and closed again), a gymnasium env (possibly wrapped)
        or a Stable-Baselines3 ``VecEnv`` (its first sub-env is used; with ``SubprocVecEnv`` a pickled copy of the
        unwrapped sub-env, whose wrappers are checked in the worker).
    :param env_kwargs: Env keyword arguments, only used when ``env`` is an id
    :param warn: Emit a ``UserWarning`` when no termination function is known
    :return: The termination function; :class:`NeverTerminate` (with a warning) for unknown envs
    :raises ValueError: If the factory of the rule registered under the env's own key (its id's ``"ns/Name"`` or
        ``"Name"``, or its class name) raises (chained to its exception), or if the rule reads observations (it is
        not :class:`NeverTerminate`) and a wrapper changes them: a gymnasium observation wrapper (see
        :func:`observation_wrappers`) or a ``VecEnvWrapper`` that changes the observation space, or ``VecFrameStack``
        (``VecNormalize`` is fine: PMAC keeps its raw observations)
    """
    if isinstance(env, str):
        return termination_fn_from_env_id(env, env_kwargs, warn)
    if isinstance(env, VecEnv):
        return _from_vec_env(env, warn)
    if isinstance(env, gym.Env):
        return _from_gym_env(env, warn)
    raise TypeError(f"Expected an env id, a gymnasium.Env or a VecEnv, got {type(env).__name__}")
