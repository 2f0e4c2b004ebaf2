"""
``PMAC.load(path, **kwargs)``: SB3 sets the keyword arguments on the loaded agent (rl-zoo3's ``-i`` passes the YAML's
hyperparameters and ``--seed`` this way). What PMAC derives from them must follow: the policy mixture's rate, the seed
of its own generators; what cannot change on a trained agent (the model's architecture, the kind of mixture) is refused
before anything is loaded; and an MBPO agent loaded by ``PMAC.load`` says that it stays MBPO.
"""

import warnings

import gymnasium as gym
import numpy as np
import pytest
import torch as th

from sb3_pmac import MBPO, PMAC
from sb3_pmac.tv_mixture import TVPolicyMixture


def _saved(tmp_path, cls=PMAC, learn=160, **kwargs):
    from conftest import TINY_PMAC_KWARGS

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        model = cls("MlpPolicy", "Pendulum-v1", seed=0, **{**TINY_PMAC_KWARGS, **kwargs})
        if learn:
            model.learn(learn)  # model steps at 101 and 151: versions 0, 1, 2
    path = tmp_path / f"{cls.__name__}_{kwargs.get('mixture', 'exponential')}"
    model.save(path)
    return path


def test_rate_overrides_reach_the_policy_mixture(tmp_path):
    path = _saved(tmp_path)
    loaded = PMAC.load(path, env=gym.make("Pendulum-v1"), adaptation_rate=0.5)
    assert loaded.adaptation_rate == 0.5 and loaded.policy_mixture.adaptation_rate == 0.5
    weights = loaded.policy_mixture.weights(np.array([1, 2, 3]))  # (version 0, the first, weighs alpha^k)
    np.testing.assert_allclose(weights / weights[-1], [0.25, 0.5, 1.0])
    assert PMAC.load(path).policy_mixture.adaptation_rate == 0.9  # without the override: the saved rate
    with pytest.raises(ValueError, match="adaptation_rate"):
        PMAC.load(path, adaptation_rate=1.5)

    tv_path = _saved(tmp_path, mixture="tv", max_rate=0.02)
    loaded = PMAC.load(tv_path, max_rate=0.05)
    assert isinstance(loaded.policy_mixture, TVPolicyMixture) and loaded.policy_mixture.max_rate == 0.05


@pytest.mark.parametrize(
    "override, match",
    [
        (dict(mixture="tv"), "mixture"),
        (dict(ensemble_size=3), "ensemble_size"),
        (dict(n_elites=1), "n_elites"),
        (dict(dynamics_kwargs=dict(hidden_sizes=(16, 16), weight_decays=None)), "dynamics_kwargs"),
        (dict(dynamics_kwargs=dict(hidden_sizes=(32, 32), weight_decays=None, activation="relu")), "dynamics_kwargs"),
    ],
)
def test_overrides_that_cannot_apply_to_a_trained_model_are_refused(tmp_path, override, match):
    path = _saved(tmp_path, learn=0)
    with pytest.raises(ValueError, match=f"{match}.*cannot change"):
        PMAC.load(path, **override)


def test_overrides_equal_to_the_saved_values_are_accepted(tmp_path):
    """rl-zoo3's ``-i`` passes the whole YAML entry again: unchanged values must load (lists for tuples included)."""
    path = _saved(tmp_path, learn=0)
    loaded = PMAC.load(path, ensemble_size=7, n_elites=5, mixture="exponential",
                       dynamics_kwargs=dict(hidden_sizes=[32, 32], weight_decays=None))  # fmt: skip
    assert loaded.ensemble_size == 7


def test_pmac_load_of_an_mbpo_agent_says_it_stays_mbpo(tmp_path):
    path = _saved(tmp_path, cls=MBPO, learn=0)
    with pytest.warns(UserWarning, match="uniformly.*adapt_model_training=True, adapt_rollout_starts=True"):
        loaded = PMAC.load(path)
    assert not loaded.uses_policy_mixture
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        as_pmac = PMAC.load(path, adapt_model_training=True, adapt_rollout_starts=True)
        assert as_pmac.uses_policy_mixture
        assert not MBPO.load(path).uses_policy_mixture  # MBPO.load of MBPO: nothing to say


def test_load_with_a_seed_seeds_as_sb3(tmp_path):
    """SB3's ``load(path, seed=s)`` seeds the agent: the warm-up actions and the model trainer follow the new seed."""
    path = _saved(tmp_path)

    def first_draws(**kwargs):
        model = PMAC.load(path, **kwargs)
        return model.action_space.sample(), model.model_trainer.rng.random(), th.rand(1).item()

    a, b, c = first_draws(seed=5), first_draws(seed=5), first_draws(seed=6)
    for x, y in zip(a, b, strict=True):
        np.testing.assert_array_equal(x, y)
    assert not np.array_equal(a[0], c[0]) and a[1] != c[1] and a[2] != c[2]
    # without a seed: the saved generators go on (the same draws whatever the load)
    d, e = first_draws(), first_draws()
    np.testing.assert_array_equal(d[0], e[0])
    assert d[1] == e[1] and not np.array_equal(d[0], a[0])


def test_tv_agents_keep_their_checks_and_their_buffer_data_on_load(tmp_path):
    tv_path = _saved(tmp_path, mixture="tv", learn=0)
    with pytest.raises(ValueError, match="adaptation_rate"):  # checked although the TV mixture does not use it
        PMAC.load(tv_path, adaptation_rate=1.5)
    # rl-zoo3's -i with replay_buffer_kwargs in the YAML: the TV mixture still gets the policies' parameters
    loaded = PMAC.load(tv_path, replay_buffer_kwargs={})
    assert loaded.replay_buffer.store_policy_params


def test_none_means_empty_for_the_kwargs_settings_and_old_agents_were_exponential(tmp_path):
    from sb3_pmac.checks import check_load_overrides

    path = _saved(tmp_path, learn=0, dynamics_kwargs=None, model_trainer_kwargs=None)
    loaded = PMAC.load(path, dynamics_kwargs=None, model_trainer_kwargs=None, replay_buffer_kwargs=None)
    assert loaded.dynamics_kwargs == {} and loaded.model_trainer_kwargs == {}
    check_load_overrides({}, {"mixture": "exponential"}, "PMAC")  # an agent saved before mixture="tv" existed
    with pytest.raises(ValueError, match="mixture cannot change"):
        check_load_overrides({}, {"mixture": "tv"}, "PMAC")


def test_an_assigned_buffer_never_takes_the_policy_version_back(tmp_path):
    from conftest import TINY_PMAC_KWARGS

    path = _saved(tmp_path)  # versions 0, 1, 2
    loaded = PMAC.load(path, env=gym.make("Pendulum-v1"))
    assert loaded.policy_version == 2
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        fresh = PMAC("MlpPolicy", "Pendulum-v1", **TINY_PMAC_KWARGS).replay_buffer  # its counter is at 0
    loaded.replay_buffer = fresh
    loaded.learn(60, reset_num_timesteps=False)  # a model step at 201
    versions, _ = fresh.version_counts()
    assert loaded.policy_version == 3 and versions.tolist() == [2, 3]


def test_diagnostics_load_agent_picks_the_saved_algorithm_without_a_warning(tmp_path):
    from sb3_pmac.diagnostics.checkpoints import load_agent

    mbpo_path, pmac_path = _saved(tmp_path, cls=MBPO, learn=0), _saved(tmp_path, learn=0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert type(load_agent(f"{mbpo_path}.zip")) is MBPO and type(load_agent(f"{pmac_path}.zip")) is PMAC


def test_load_without_a_seed_continues_the_saved_generators(tmp_path):
    """The loaded agent's warm-up actions and model trainer draw what the saved agent would have drawn next."""
    from conftest import TINY_PMAC_KWARGS

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        model = PMAC("MlpPolicy", "Pendulum-v1", seed=0, **TINY_PMAC_KWARGS)
        model.learn(160)  # 100 warm-up actions and two model trainings drawn from the two generators
    model.save(tmp_path / "agent")
    expected = model.action_space.sample(), model.model_trainer.rng.random()
    fresh = PMAC("MlpPolicy", "Pendulum-v1", seed=0, **TINY_PMAC_KWARGS)  # (not the seed's first draws)
    assert fresh.model_trainer.rng.random() != expected[1]
    loaded = PMAC.load(tmp_path / "agent")
    np.testing.assert_array_equal(loaded.action_space.sample(), expected[0])
    assert loaded.model_trainer.rng.random() == expected[1]


def test_load_with_a_seed_reseeds_a_trainer_seeded_by_its_kwargs(tmp_path):
    """A seed in ``model_trainer_kwargs`` does not win over ``load(seed=s)``: load seeds as ``set_random_seed(s)``."""
    path = _saved(tmp_path, learn=0, model_trainer_kwargs={"seed": 3})
    loaded = PMAC.load(path, seed=5)
    assert loaded.model_trainer.rng.random() == np.random.default_rng(5).random()
    loaded.set_random_seed(6)
    assert loaded.model_trainer.rng.random() == np.random.default_rng(6).random()
    # without a seed the saved generator goes on (it was seeded with 3 and never drawn from)
    assert PMAC.load(path).model_trainer.rng.random() == np.random.default_rng(3).random()


def test_model_training_can_change_at_load_and_brings_its_trainer_bounds(tmp_path):
    # TINY_PMAC_KWARGS cap model training at 3 epochs; without that cap the modes' own bounds show
    path = _saved(tmp_path, cls=MBPO, model_trainer_kwargs={})
    saved = MBPO.load(path)
    assert saved.model_training == "bounded" and saved.model_trainer.max_grad_steps == 400
    full = MBPO.load(path, model_training="full")  # the faithful MBPO training from now on (hyperparameters.md)
    assert full.model_trainer.max_grad_steps is None and full.model_trainer.max_epochs is None
    assert full.model_trainer.rng.bit_generator.state == saved.model_trainer.rng.bit_generator.state
    for key, value in saved.dynamics_model.state_dict().items():
        assert th.equal(full.dynamics_model.state_dict()[key], value), key
    capped = MBPO.load(path, model_training="full", model_trainer_kwargs=dict(max_epochs=7))
    assert capped.model_trainer.max_epochs == 7 and capped.model_trainer.max_grad_steps is None
    full.save(tmp_path / "full")
    back = MBPO.load(tmp_path / "full", model_training="bounded")
    assert back.model_trainer.max_grad_steps == 400


def test_a_model_learning_rate_given_at_load_is_the_rate_the_model_trains_with(tmp_path):
    # The saved optimizer state holds the rate it was saved with (1e-3): SB3's set_parameters brings it back with the
    # state, and the trainer's own rate must replace it, as SB3 re-applies SAC's rate before each update
    path = _saved(tmp_path)
    loaded = PMAC.load(path, env=gym.make("Pendulum-v1"), model_trainer_kwargs=dict(max_epochs=3, learning_rate=1e-5))
    assert loaded.model_trainer.learning_rate == 1e-5
    assert loaded.model_trainer.n_trained == loaded.model_rounds_trained == 2  # model steps at 101 and 151
    assert [group["lr"] for group in loaded.model_trainer.optimizer.param_groups] == [1e-5]  # already after load
    rounds = loaded._model_rounds_trained
    loaded.learn(60, reset_num_timesteps=False)  # model step at 201
    assert loaded._model_rounds_trained > rounds and loaded.model_trainer.n_trained == loaded._model_rounds_trained
    assert [group["lr"] for group in loaded.model_trainer.optimizer.param_groups] == [1e-5]

    from conftest import TINY_PMAC_KWARGS

    other = PMAC(
        "MlpPolicy",
        "Pendulum-v1",
        seed=1,
        **{**TINY_PMAC_KWARGS, "model_trainer_kwargs": dict(max_epochs=3, learning_rate=2e-4)},
    )
    other.set_parameters(path)  # the file's optimizer state, with its rate 1e-3
    assert [group["lr"] for group in other.model_trainer.optimizer.param_groups] == [2e-4]
    other.learn(160)
    assert [group["lr"] for group in other.model_trainer.optimizer.param_groups] == [2e-4]


def test_a_termination_function_given_at_load_replaces_the_saved_one_and_stays(tmp_path):
    from sb3_pmac.termination.rules import InvertedPendulumTermination, NeverTerminate

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        PMAC("InvertedPendulum-v5", buffer_size=100).save(tmp_path / "derived")  # the env's rule
    path = tmp_path / "derived"
    env = gym.make("InvertedPendulum-v5")
    assert isinstance(PMAC.load(path, env=env).termination_fn, InvertedPendulumTermination)
    assert isinstance(PMAC.load(path, env=env, termination_fn=NeverTerminate()).termination_fn, NeverTerminate)
    by_object = PMAC.load(path, env=env, custom_objects={"termination_fn": NeverTerminate()})
    assert isinstance(by_object.termination_fn, NeverTerminate)
    no_env = PMAC.load(path, termination_fn=NeverTerminate())
    no_env.set_env(gym.make("InvertedPendulum-v5"))
    assert isinstance(no_env.termination_fn, NeverTerminate)
    # None: derived from the env, as in the constructor (also for an agent saved with the user's function)
    mine = PMAC.load(path, env=env, termination_fn=NeverTerminate())
    mine.save(tmp_path / "mine")
    assert isinstance(PMAC.load(tmp_path / "mine", env=env).termination_fn, NeverTerminate)
    rederived = PMAC.load(tmp_path / "mine", env=env, termination_fn=None)
    assert isinstance(rederived.termination_fn, InvertedPendulumTermination)
    assert not rederived._user_termination_fn  # derived again from the next env (set_env), as in the constructor
    by_none = PMAC.load(tmp_path / "mine", env=env, custom_objects={"termination_fn": None})
    assert isinstance(by_none.termination_fn, InvertedPendulumTermination) and not by_none._user_termination_fn


@pytest.mark.parametrize(
    "override, match",
    [
        (dict(model_train_freq=0), "model_train_freq must be a positive int"),
        (dict(rollout_batch_size=2.5), "rollout_batch_size must be a positive int"),
        (dict(batch_size=-1), "batch_size must be a positive int"),
        (dict(real_ratio=2.0), r"real_ratio must be in \[0, 1\]"),
        (dict(rollout_horizon=[5, 1, 1, 3]), "epochs must satisfy"),
        (dict(rollout_horizon=0), "horizon must be >= 1"),
        (dict(gradient_steps=-2), "gradient_steps must be an int"),
        (dict(learning_starts=-1), "learning_starts must be >= 0"),
        (dict(model_training="full", model_train_size=1000), "model_train_size sets the bounded training set"),
        (dict(model_training="whole"), "model_training must be 'bounded' or 'full'"),
    ],
)
def test_load_refuses_what_the_constructor_refuses(tmp_path, override, match):
    path = _saved(tmp_path, learn=0)
    with pytest.raises(ValueError, match=match):
        PMAC("MlpPolicy", "Pendulum-v1", **override)
    with pytest.raises(ValueError, match=match):
        PMAC.load(path, **override)


def test_load_stores_checked_settings_as_the_constructor_does(tmp_path):
    path = _saved(tmp_path, learn=0)
    loaded = PMAC.load(path, rollout_horizon=[1, 3, 1, 4], model_train_freq=np.int64(25), real_ratio=1)
    assert loaded.rollout_horizon == (1, 3, 1, 4)
    assert type(loaded.model_train_freq) is int and loaded.model_train_freq == 25
    assert type(loaded.real_ratio) is float and loaded.real_ratio == 1.0
    tv = PMAC.load(_saved(tmp_path, learn=0, mixture="tv", max_rate=0.02), max_rate=np.float32(0.25))
    assert type(tv.max_rate) is float and type(tv.policy_mixture.max_rate) is float and tv.max_rate == 0.25
    full = _saved(tmp_path, cls=MBPO, learn=0, model_training="full")
    with pytest.raises(ValueError, match="model_train_size"):  # checked with the saved mode
        MBPO.load(full, model_train_size=1000)
    assert MBPO.load(full, model_training="bounded", model_train_size=1000).model_train_size == 1000
