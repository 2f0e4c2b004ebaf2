"""Tests of the probabilistic ensemble dynamics model and its trainer."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch as th
import torch.nn.functional as F

from sb3_pmac.dynamics import InputNormalizer, ModelTrainer, ModelTrainingInfo, ProbabilisticEnsemble


@pytest.fixture(autouse=True)
def _single_thread():
    # Tiny networks: one thread is faster and avoids oversubscription when tests run in parallel workers
    n_threads = th.get_num_threads()
    th.set_num_threads(1)
    yield
    th.set_num_threads(n_threads)


def small_ensemble(obs_dim: int = 3, action_dim: int = 2, ensemble_size: int = 4, n_elites: int = 2, **kwargs):
    kwargs.setdefault("hidden_sizes", (16, 16))
    kwargs.setdefault("weight_decays", (1e-4, 2e-4, 3e-4))
    return ProbabilisticEnsemble(obs_dim, action_dim, ensemble_size=ensemble_size, n_elites=n_elites, **kwargs)


def manual_member_forward(model: ProbabilisticEnsemble, x: th.Tensor, member: int) -> tuple[th.Tensor, th.Tensor]:
    """Reference implementation: one member at a time, plain matmuls."""
    h = (x - model.input_normalizer.mean) / model.input_normalizer.std
    for layer in model.hidden_layers:
        h = F.silu(h @ layer.weight[member] + layer.bias[member])
    out = h @ model.output_layer.weight[member] + model.output_layer.bias[member]
    mean, raw = out[:, : model.output_dim], out[:, model.output_dim :]
    logvar = model.max_logvar - F.softplus(model.max_logvar - raw)
    logvar = model.min_logvar + F.softplus(logvar - model.min_logvar)
    return mean, logvar


# ---------------------------------------------------------------------- ensemble


def test_default_architecture():
    model = ProbabilisticEnsemble(11, 3)
    assert (model.obs_dim, model.action_dim, model.ensemble_size, model.n_elites) == (11, 3, 7, 5)
    assert [tuple(layer.weight.shape) for layer in model.layers] == [
        (7, 14, 200),
        (7, 200, 200),
        (7, 200, 200),
        (7, 200, 200),
        (7, 200, 24),
    ]
    assert [layer.weight_decay for layer in model.layers] == [2.5e-5, 5e-5, 7.5e-5, 7.5e-5, 1e-4]
    assert tuple(model.layers[0].bias.shape) == (7, 1, 200)
    assert th.equal(model.elite_indices, th.arange(5))
    assert th.allclose(model.max_logvar, th.full((1, 12), 0.5))
    assert th.allclose(model.min_logvar, th.full((1, 12), -10.0))
    # Members are initialized independently: no two members share a weight matrix
    w = model.layers[0].weight.detach()
    assert all(not th.allclose(w[i], w[j]) for i in range(7) for j in range(i + 1, 7))
    # Truncated normal with std 1 / (2 sqrt(in)): bounded by 2 std
    assert w.abs().max() <= 2 / (2 * 14**0.5) + 1e-6


def test_forward_matches_per_member_loop():
    th.manual_seed(0)
    model = small_ensemble()
    model.input_normalizer.fit(th.randn(100, 5) * 2 + 1)
    x = th.randn(10, 5)
    mean, logvar = model(x)
    assert mean.shape == logvar.shape == (4, 10, 4)
    for member in range(4):
        ref_mean, ref_logvar = manual_member_forward(model, x, member)
        assert th.allclose(mean[member], ref_mean, atol=1e-5)
        assert th.allclose(logvar[member], ref_logvar, atol=1e-5)
    # Per-member data [E, N, in]
    x_per_member = th.randn(4, 6, 5)
    mean, logvar = model(x_per_member)
    assert mean.shape == logvar.shape == (4, 6, 4)
    for member in range(4):
        ref_mean, ref_logvar = manual_member_forward(model, x_per_member[member], member)
        assert th.allclose(mean[member], ref_mean, atol=1e-5)
        assert th.allclose(logvar[member], ref_logvar, atol=1e-5)
    with pytest.raises(ValueError):
        model(th.randn(3, 6, 5))  # wrong ensemble dimension
    with pytest.raises(ValueError):
        model(th.randn(6, 4))  # wrong feature dimension


def test_loss_hand_computed():
    # obs_dim 1, action_dim 1 -> output (delta_s, r); hidden layer weights are constant (only enter the weight decay),
    # the output layer weight is zero, so mean and raw log-variance are the output bias for every input.
    model = ProbabilisticEnsemble(
        1, 1, ensemble_size=2, n_elites=1, hidden_sizes=(3,), weight_decays=(0.1, 0.2), logvar_bound_penalty=0.01
    )
    with th.no_grad():
        model.hidden_layers[0].weight.fill_(0.5)  # ||W||^2 = 2 members * 2 * 3 * 0.25 = 3
        model.output_layer.weight.zero_()  # ||W||^2 = 0
        model.output_layer.bias.copy_(th.tensor([[[1.0, -2.0, 0.0, 0.2]], [[0.0, 0.5, -1.0, -20.0]]]))
        model.max_logvar.copy_(th.tensor([[0.5, 1.0]]))
        model.min_logvar.copy_(th.tensor([[-10.0, -5.0]]))
    inputs = th.randn(2, 2, 2)
    targets = th.tensor([[[0.0, -1.0], [2.0, -2.0]], [[1.0, 0.0], [0.0, 1.0]]])

    def bounded(raw: float, lo: float, hi: float) -> float:
        softplus = lambda v: np.log1p(np.exp(v))  # noqa: E731
        v = hi - softplus(hi - raw)
        return lo + softplus(v - lo)

    expected_nll = []
    for member, (mu, raw) in enumerate([((1.0, -2.0), (0.0, 0.2)), ((0.0, 0.5), (-1.0, -20.0))]):
        logvar = [bounded(raw[0], -10.0, 0.5), bounded(raw[1], -5.0, 1.0)]
        terms = [
            (mu[d] - targets[member, t, d].item()) ** 2 * np.exp(-logvar[d]) + logvar[d] for t in range(2) for d in range(2)
        ]
        expected_nll.append(np.mean(terms))
    penalty = 0.01 * ((0.5 + 1.0) - (-10.0 - 5.0))
    weight_decay = 0.1 * 0.5 * 3.0 + 0.2 * 0.5 * 0.0
    total, nll = model.loss(inputs, targets)
    assert nll.shape == (2,)
    assert np.allclose(nll.detach().numpy(), expected_nll, rtol=1e-5)
    assert total.item() == pytest.approx(sum(expected_nll) + penalty + weight_decay, rel=1e-5)
    # Gradients reach the weights and the learned log-variance bounds
    total.backward()
    assert model.max_logvar.grad is not None and model.hidden_layers[0].weight.grad is not None
    # mse: per-member squared error of the mean only
    expected_mse = [
        np.mean([(m - targets[b, t, d].item()) ** 2 for t in range(2) for d, m in enumerate(mu)])
        for b, mu in enumerate([(1.0, -2.0), (0.0, 0.5)])
    ]
    assert np.allclose(model.mse(inputs, targets).numpy(), expected_mse, rtol=1e-5)


def test_logvar_bounds_for_huge_inputs():
    th.manual_seed(1)
    model = small_ensemble()
    x = th.randn(200, 5) * 1e6
    _, logvar = model(x)
    assert th.isfinite(logvar).all()
    # The raw log-variance is huge in both directions, so both bounds are active
    assert (logvar > model.max_logvar - 1e-3).any() and (logvar < model.min_logvar + 1e-3).any()
    # Soft bounds: logvar in [min, max + log(1 + exp(min - max))] (excess < 3e-5 with the default bounds)
    assert (logvar >= model.min_logvar - 1e-6).all()
    assert (logvar <= model.max_logvar + 3e-5).all()


def test_normalizer_and_state_dict_round_trip():
    th.manual_seed(2)
    data = th.randn(2000, 5) * th.tensor([3.0, 0.1, 1.0, 10.0, 1.0]) + th.tensor([5.0, -1.0, 0.0, 2.0, 0.0])
    data[:, 4] = 7.0  # constant feature -> std replaced by 1
    normalizer = InputNormalizer(5)
    normalizer.fit(data)
    normalized = normalizer(data)
    assert th.allclose(normalized[:, :4].mean(0), th.zeros(4), atol=1e-4)
    assert th.allclose(normalized[:, :4].std(0, correction=0), th.ones(4), atol=1e-4)
    assert normalizer.std[0, 4].item() == 1.0 and th.allclose(normalized[:, 4], th.zeros(2000))

    model = small_ensemble()
    model.input_normalizer.fit(data)
    model.set_elites([3, 1])
    with th.no_grad():
        model.max_logvar.fill_(0.3)
    state = model.state_dict()
    for key in ("input_normalizer.mean", "input_normalizer.std", "elite_indices", "max_logvar", "min_logvar"):
        assert key in state
    fresh = small_ensemble()
    assert not th.equal(fresh(data[:20])[0], model(data[:20])[0])
    fresh.load_state_dict(state)
    assert th.equal(fresh.elite_indices, th.tensor([3, 1]))
    for a, b in zip(fresh(data[:20]), model(data[:20]), strict=True):
        assert th.equal(a, b)


def test_normalizer_treats_round_off_spread_as_constant():
    rng = np.random.default_rng(0)
    columns = {
        "jitter 1e-8 at 0.1": 0.1 + 1e-8 * rng.standard_normal(2000),  # float32 round-off: constant
        "exactly 0.1": np.full(2000, 0.1),  # (float32 sums left it a std of ~1e-9)
        "spread 1e-4 at 1": 1.0 + 1e-4 * rng.standard_normal(2000),  # a thousand float32 steps: scaled
        "spread 1e-6 at 0": 1e-6 * rng.standard_normal(2000),  # small scale, not round-off: scaled
    }
    for name, column in columns.items():
        normalizer = InputNormalizer(1)
        normalizer.fit(th.as_tensor(column, dtype=th.float32).reshape(-1, 1))
        expected = 1.0 if name.startswith(("jitter", "exactly")) else float(np.float32(column).std())
        assert normalizer.std.item() == pytest.approx(expected, rel=1e-3), name
    # a float64 normalizer resolves far smaller spreads: 1e-8 at 0.1 is data there
    normalizer = InputNormalizer(1).double()
    normalizer.fit(th.as_tensor(columns["jitter 1e-8 at 0.1"]).reshape(-1, 1))
    assert normalizer.std.item() == pytest.approx(1e-8, rel=0.1)


def test_rollouts_of_a_model_fitted_on_a_round_off_constant_feature_stay_finite():
    """The model's noise on a feature 0.1 +- 1e-8 used to be scaled by its 1e-8 std at the next step: state error 5e9
    at step 2, 7e20 at step 3."""
    rng = np.random.default_rng(0)
    n = 2000

    def step(obs, act):
        nxt = obs.copy()
        nxt[:, :3] = 0.9 * obs[:, :3] + 0.3 * act[:, :1]
        return nxt, obs[:, 0]

    obs = np.concatenate([rng.standard_normal((n, 3)), 0.1 + 1e-8 * rng.standard_normal((n, 1))], 1).astype(np.float32)
    act = rng.uniform(-1, 1, (n, 1)).astype(np.float32)
    nxt, rew = step(obs, act)
    nxt[:, 3] = (0.1 + 1e-8 * rng.standard_normal(n)).astype(np.float32)
    th.manual_seed(0)
    model = ProbabilisticEnsemble(4, 1, ensemble_size=3, n_elites=2, hidden_sizes=(64, 64))
    ModelTrainer(model, max_grad_steps=600, max_epochs=None, seed=0).train(obs, act, rew, nxt)
    state, truth = th.as_tensor(obs[:500]), obs[:500]
    generator = th.Generator().manual_seed(0)
    for _ in range(3):
        action = th.rand(500, 1, generator=generator) * 2 - 1
        state, _, _ = model.sample(state, action, generator=generator)
        truth, _ = step(truth, action.numpy())
        assert ((state.numpy()[:, :3] - truth[:, :3]) ** 2).mean() < 1e-2


def test_set_elites_validation():
    model = small_ensemble()
    for bad in ([0], [0, 0], [0, 4], [-1, 2]):
        with pytest.raises(ValueError):
            model.set_elites(bad)
    model.set_elites(th.tensor([2, 0]))
    assert model.elite_indices.tolist() == [2, 0]


def test_sample_member_choice_restricted_to_elites():
    th.manual_seed(3)
    model = small_ensemble(ensemble_size=7, n_elites=3, hidden_sizes=(8,), weight_decays=None)
    model.set_elites([5, 1, 3])
    n = 30_000
    obs, act = th.randn(n, 3), th.rand(n, 2) * 2 - 1
    _, _, members = model.sample(obs, act, generator=th.Generator().manual_seed(0))
    counts = th.bincount(members, minlength=7).numpy()
    assert counts[[0, 2, 4, 6]].sum() == 0
    # Uniform over the elites: each count ~ Binomial(n, 1/3), std ~ 82; allow 5 std
    assert np.all(np.abs(counts[[5, 1, 3]] - n / 3) < 5 * np.sqrt(n * (1 / 3) * (2 / 3)))


def test_sample_matches_chosen_member_forward():
    th.manual_seed(4)
    model = small_ensemble(ensemble_size=5, n_elites=3)
    model.input_normalizer.fit(th.randn(100, 5))
    model.set_elites([4, 0, 2])
    n = 500
    obs, act = th.randn(n, 3), th.rand(n, 2) * 2 - 1
    mean, logvar = model(th.cat([obs, act], dim=1))
    rows = th.arange(n)

    next_obs, rewards, members = model.sample(obs, act, deterministic=True, generator=th.Generator().manual_seed(1))
    assert next_obs.shape == (n, 3) and rewards.shape == (n,) and members.shape == (n,)
    assert set(members.tolist()) == {4, 0, 2}
    chosen_mean = mean[members, rows]
    assert th.allclose(next_obs, obs + chosen_mean[:, :3], atol=1e-5)
    assert th.allclose(rewards, chosen_mean[:, 3], atol=1e-5)

    # Stochastic: the same generator seed gives the same members, and the noise is standard normal
    next_obs_s, rewards_s, members_s = model.sample(obs, act, generator=th.Generator().manual_seed(1))
    assert th.equal(members_s, members)
    std = th.exp(0.5 * logvar[members, rows])
    z = (th.cat([next_obs_s - obs, rewards_s[:, None]], dim=1) - chosen_mean) / std
    assert abs(z.mean().item()) < 0.1 and abs(z.std().item() - 1.0) < 0.1
    again = model.sample(obs, act, generator=th.Generator().manual_seed(1))
    assert th.equal(again[0], next_obs_s) and th.equal(again[1], rewards_s)


def test_sample_cost_is_grouped(monkeypatch):
    # The network must run on n_elites groups padded to the largest group (~N / n_elites rows each), not on E x N rows
    model = small_ensemble(ensemble_size=7, n_elites=5)
    shapes = []
    original = model._network

    def recording_network(x, members=None):
        shapes.append((tuple(x.shape), None if members is None else members.tolist()))
        return original(x, members)

    monkeypatch.setattr(model, "_network", recording_network)
    n = 1000
    _, _, members = model.sample(th.randn(n, 3), th.randn(n, 2), generator=th.Generator().manual_seed(0))
    assert len(shapes) == 1
    (n_groups, rows, _), called_members = shapes[0]
    assert n_groups == 5 and called_members == model.elite_indices.tolist()
    assert rows == th.bincount(members).max().item() and rows < 0.3 * n
    # Edge cases: a single sample (empty groups) and an empty batch
    next_obs, rewards, members = model.sample(th.randn(1, 3), th.randn(1, 2))
    assert next_obs.shape == (1, 3) and rewards.shape == (1,) and members.item() in model.elite_indices.tolist()
    next_obs, rewards, members = model.sample(th.randn(0, 3), th.randn(0, 2))
    assert next_obs.shape == (0, 3) and rewards.shape == (0,) and members.shape == (0,)


def test_predict_elites():
    model = small_ensemble(ensemble_size=4, n_elites=2)
    model.set_elites([3, 1])
    obs, act = th.randn(7, 3), th.randn(7, 2)
    mean, logvar = model.predict(obs, act)
    full_mean, full_logvar = model(th.cat([obs, act], dim=1))
    assert mean.shape == (2, 7, 4)
    assert th.allclose(mean, full_mean[[3, 1]], atol=1e-6) and th.allclose(logvar, full_logvar[[3, 1]], atol=1e-6)


@pytest.mark.parametrize(
    "kwargs",
    [
        dict(obs_dim=0),
        dict(action_dim=-1),
        dict(ensemble_size=0),
        dict(n_elites=0),
        dict(n_elites=8),
        dict(hidden_sizes=(200, 0)),
        dict(weight_decays=(1e-4, 1e-4)),
        dict(weight_decays=(-1.0, 0, 0, 0, 0)),
        dict(activation="tanhh"),
        dict(min_logvar=1.0, max_logvar=0.5),
        dict(logvar_bound_penalty=-0.1),
    ],
)
def test_ensemble_bad_hyperparameters(kwargs):
    args = dict(obs_dim=3, action_dim=2)
    args.update(kwargs)
    with pytest.raises(ValueError):
        ProbabilisticEnsemble(**args)


def test_activation_choices():
    relu_model = ProbabilisticEnsemble(2, 1, hidden_sizes=(4,), weight_decays=None, activation="relu")
    assert isinstance(relu_model.activation, th.nn.ReLU)
    tanh_model = ProbabilisticEnsemble(2, 1, hidden_sizes=(4,), weight_decays=None, activation=th.nn.Tanh)
    assert isinstance(tanh_model.activation, th.nn.Tanh)


# ---------------------------------------------------------------------- trainer


def linear_dataset(n: int, seed: int = 0, noise_std: float = 0.05):
    """s' = A s + B a + noise, r = c.s + noise (obs_dim 4, action_dim 2)."""
    rng = np.random.default_rng(seed)
    a_matrix = np.eye(4) + 0.1 * rng.standard_normal((4, 4))
    b_matrix = 0.5 * rng.standard_normal((2, 4))
    c = rng.standard_normal(4)
    obs = rng.standard_normal((n, 4)).astype(np.float32)
    actions = rng.uniform(-1, 1, (n, 2)).astype(np.float32)
    next_obs = (obs @ a_matrix.T + actions @ b_matrix + noise_std * rng.standard_normal((n, 4))).astype(np.float32)
    rewards = (obs @ c + noise_std * rng.standard_normal(n)).astype(np.float32)
    return obs, actions, rewards, next_obs


def test_trainer_learns_linear_dynamics():
    th.manual_seed(0)
    obs, actions, rewards, next_obs = linear_dataset(3000)
    # Drawn with replacement from a "buffer" of 2000 transitions, as the algorithm does
    rng = np.random.default_rng(1)
    ids = rng.integers(0, 2000, size=3000)
    obs, actions, rewards, next_obs = obs[ids], actions[ids], rewards[ids], next_obs[ids]
    model = ProbabilisticEnsemble(4, 2, ensemble_size=5, n_elites=3, hidden_sizes=(64, 64), weight_decays=None)
    trainer = ModelTrainer(model, batch_size=256, max_epochs=200)
    info = trainer.train(obs, actions, rewards, next_obs, sample_ids=ids, rng=123)

    assert isinstance(info, ModelTrainingInfo)
    targets = np.concatenate([next_obs - obs, rewards[:, None]], axis=1)
    target_variance = targets.var(axis=0).mean()  # ~0.5
    # Noise variance 0.05^2 = 0.0025 per dim (the best achievable MSE); we measure 0.0025-0.0027 after early stopping
    # (3 seeds).
    # 10x the noise variance (0.025) is far above that and ~20x below the target variance.
    assert target_variance > 0.3
    assert info.holdout_mse < 0.025
    # Early stopping on an easy problem happens well before max_epochs
    assert 5 < info.epochs < 200
    assert info.n_train + info.n_holdout == 3000 and info.n_holdout > 0
    assert np.isfinite(info.train_loss) and np.isfinite(info.holdout_nll) and info.seconds > 0

    # Elites are exactly the n_elites members with the lowest holdout MSE of the final (restored) model
    train_idx, holdout_idx = trainer.split(3000, ids, np.random.default_rng(123))  # same split as in train()
    assert len(holdout_idx) == info.n_holdout
    assert not set(ids[train_idx]) & set(ids[holdout_idx])
    inputs = th.as_tensor(np.concatenate([obs, actions], axis=1))
    holdout_mse = model.mse(inputs[holdout_idx], th.as_tensor(targets[holdout_idx])).numpy()
    assert np.allclose(holdout_mse, info.holdout_mse_per_member, rtol=1e-4)
    assert sorted(info.elite_indices.tolist()) == sorted(np.argsort(holdout_mse)[:3].tolist())
    assert model.elite_indices.tolist() == info.elite_indices.tolist()
    assert info.holdout_mse == pytest.approx(np.sort(holdout_mse)[:3].mean(), rel=1e-4)
    # The normalizer was fitted on the training inputs
    assert th.allclose(model.input_normalizer.mean[0], inputs[train_idx].mean(0), atol=1e-4)

    # A rollout step with the trained model is accurate too (deterministic -> mean of the chosen elite)
    next_pred, reward_pred, _ = model.sample(th.as_tensor(obs[:500]), th.as_tensor(actions[:500]), deterministic=True)
    assert np.mean((next_pred.numpy() - next_obs[:500]) ** 2) < 0.025
    assert np.mean((reward_pred.numpy() - rewards[:500]) ** 2) < 0.025


def test_holdout_split_never_leaks():
    model = small_ensemble()
    trainer = ModelTrainer(model, holdout_ratio=0.25, max_holdout_size=10_000)
    rng = np.random.default_rng(0)
    ids = rng.integers(0, 400, size=3000)  # many duplicates
    train_idx, holdout_idx = trainer.split(3000, ids, rng)
    assert len(train_idx) + len(holdout_idx) == 3000
    assert len(np.intersect1d(train_idx, holdout_idx)) == 0
    train_ids, holdout_ids = set(ids[train_idx]), set(ids[holdout_idx])
    assert not train_ids & holdout_ids
    assert len(holdout_ids) == int(len(np.unique(ids)) * 0.25)
    # Multiplicities are kept: every copy of a held-out transition is in the holdout
    assert len(holdout_idx) == np.isin(ids, list(holdout_ids)).sum()
    # Row cap
    capped = ModelTrainer(model, holdout_ratio=0.25, max_holdout_size=100)
    train_idx, holdout_idx = capped.split(3000, ids, np.random.default_rng(0))
    assert 0 < len(holdout_idx) <= 100 and not set(ids[train_idx]) & set(ids[holdout_idx])
    # Without ids: rows split independently
    train_idx, holdout_idx = trainer.split(1000, None, np.random.default_rng(0))
    assert len(holdout_idx) == 250 and len(np.union1d(train_idx, holdout_idx)) == 1000


def test_max_epochs_and_max_train_size():
    th.manual_seed(5)
    obs, actions, rewards, next_obs = linear_dataset(600, seed=3)
    model = ProbabilisticEnsemble(4, 2, ensemble_size=3, n_elites=2, hidden_sizes=(16,), weight_decays=None)
    trainer = ModelTrainer(model, max_epochs=3, patience=100, max_train_size=200, batch_size=64)
    info = trainer.train(th.as_tensor(obs), th.as_tensor(actions), th.as_tensor(rewards), th.as_tensor(next_obs), rng=0)
    assert info.epochs == 3
    assert info.n_train == 200 and info.n_holdout == 120
    assert info.holdout_mse_per_member.shape == (3,) and info.elite_indices.shape == (2,)
    # The optimizer (and its state) is kept across calls
    optimizer = trainer.optimizer
    assert len(optimizer.state) > 0
    # No holdout: evaluation falls back to training rows
    trainer.holdout_ratio = 0.0
    info = trainer.train(obs, actions, rewards[:, None], next_obs, rng=1)
    assert trainer.optimizer is optimizer
    assert info.n_holdout == 0 and info.n_train == 200 and np.isfinite(info.holdout_mse)


def test_early_stopping_restores_best_member_parameters(monkeypatch):
    # Scripted holdout MSE per epoch (rows: epochs, columns: members). Member 0 is best at epoch 2, member 1 at epoch 1,
    # member 2 at epoch 4 (its last >1% improvement). With patience 2, training stops at epoch 6.
    scripted = np.array(
        [
            [1.00, 1.00, 1.00],
            [0.50, 2.00, 0.90],
            [0.60, 2.00, 0.895],  # member 2: 0.55% better than 0.90 -> not an improvement (threshold 1%)
            [0.55, 1.50, 0.80],
            [0.70, 3.00, 0.85],
            [0.70, 3.00, 0.85],
            [0.01, 0.01, 0.01],  # never reached
        ]
    )
    obs, actions, rewards, next_obs = linear_dataset(200)
    model = ProbabilisticEnsemble(4, 2, ensemble_size=3, n_elites=2, hidden_sizes=(8,), weight_decays=None)
    trainer = ModelTrainer(model, max_epochs=50, patience=2, batch_size=50)
    calls = []

    def scripted_evaluate(inputs, targets, chunk_size=8192):
        epoch = len(calls)
        calls.append([p.detach().clone() for p in model.member_parameters()])
        mse = scripted[epoch] if epoch < 6 else np.array([9.0, 9.0, 9.0])  # final call after the restore
        return mse.astype(np.float32), np.zeros(3, dtype=np.float32)

    monkeypatch.setattr(trainer, "evaluate", scripted_evaluate)
    info = trainer.train(obs, actions, rewards, next_obs, rng=0)
    # epoch 1 improves all, 2: members 0 and 2, 3: none, 4: member 2 (0.80 < 0.9*0.99), 5, 6: none -> stop after epoch 6
    assert info.epochs == 6
    best_epoch = {0: 2, 1: 1, 2: 4}
    for member, epoch in best_epoch.items():
        for param, recorded in zip(model.member_parameters(), calls[epoch - 1], strict=True):
            assert th.equal(param.detach()[member], recorded[member])
        # and differs from the last epoch's parameters
        assert not th.equal(model.member_parameters()[0].detach()[member], calls[5][0][member])


def test_decreases_below_the_improvement_threshold_do_not_reset_patience(monkeypatch):
    # Both members' holdout MSE keeps falling after epoch 1, but by less than the 1 % threshold: with patience 2,
    # epochs 2 and 3 are not improvements, training stops after epoch 3 and both members go back to their epoch-1
    # parameters. A trainer that counted any decrease would train on (in the test above a real improvement follows
    # the sub-threshold one, so it cannot tell).
    scripted = np.array(
        [
            [1.000, 1.000],
            [0.995, 0.999],  # 0.5 % and 0.1 % better: below the threshold
            [0.991, 0.998],  # 0.9 % and 0.2 % better than epoch 1: still below
            [0.500, 0.500],  # never reached
        ]
    )
    obs, actions, rewards, next_obs = linear_dataset(200)
    model = ProbabilisticEnsemble(4, 2, ensemble_size=2, n_elites=1, hidden_sizes=(8,), weight_decays=None)
    trainer = ModelTrainer(model, max_epochs=50, patience=2, batch_size=50, improvement_threshold=0.01)
    calls = []

    def scripted_evaluate(inputs, targets, chunk_size=8192):
        epoch = len(calls)
        calls.append([p.detach().clone() for p in model.member_parameters()])
        mse = scripted[epoch] if epoch < len(scripted) else np.array([9.0, 9.0])  # the call after the restore
        return mse.astype(np.float32), np.zeros(2, dtype=np.float32)

    monkeypatch.setattr(trainer, "evaluate", scripted_evaluate)
    info = trainer.train(obs, actions, rewards, next_obs, rng=0)
    assert info.epochs == 3
    for param, recorded in zip(model.member_parameters(), calls[0], strict=True):
        assert th.equal(param.detach(), recorded)  # both members: their epoch-1 parameters
    assert not th.equal(model.member_parameters()[0].detach(), calls[2][0])  # not the last epoch's


@pytest.mark.parametrize(
    "kwargs",
    [
        dict(learning_rate=0.0),
        dict(batch_size=0),
        dict(holdout_ratio=1.0),
        dict(holdout_ratio=-0.1),
        dict(max_holdout_size=0),
        dict(max_epochs=0),
        dict(max_train_size=0),
        dict(patience=0),
        dict(improvement_threshold=1.0),
        dict(improvement_threshold=-0.01),
    ],
)
def test_trainer_bad_hyperparameters(kwargs):
    with pytest.raises(ValueError):
        ModelTrainer(small_ensemble(), **kwargs)


def test_trainer_bad_data():
    model = small_ensemble()
    trainer = ModelTrainer(model)
    obs, act, rew = np.zeros((10, 3)), np.zeros((10, 2)), np.zeros(10)
    with pytest.raises(ValueError):
        trainer.train(obs, np.zeros((10, 1)), rew, obs)
    with pytest.raises(ValueError):
        trainer.train(obs, act, np.zeros(9), obs)
    with pytest.raises(ValueError):
        trainer.train(obs, act, rew, obs, sample_ids=np.arange(9))


@pytest.mark.skipif(not th.cuda.is_available(), reason="requires CUDA")
def test_cuda():
    obs, actions, rewards, next_obs = linear_dataset(300)
    model = ProbabilisticEnsemble(4, 2, ensemble_size=3, n_elites=2, hidden_sizes=(16,), weight_decays=None, device="cuda")
    info = ModelTrainer(model, max_epochs=2).train(obs, actions, rewards, next_obs, sample_ids=np.arange(300))
    assert info.epochs == 2
    obs_t, act_t = th.as_tensor(obs, device="cuda"), th.as_tensor(actions, device="cuda")
    next_pred, reward_pred, members = model.sample(obs_t, act_t, generator=th.Generator().manual_seed(0))
    assert next_pred.device.type == reward_pred.device.type == members.device.type == "cuda"
    next_pred, _, _ = model.sample(obs_t, act_t, generator=th.Generator(device="cuda").manual_seed(0))
    assert next_pred.is_cuda


def test_trainer_trains_at_its_learning_rate_whatever_rate_a_loaded_optimizer_state_holds():
    # An agent's load restores the optimizer's state with the rate it was saved with; the trainer's rate decides
    obs, actions, rewards, next_obs = linear_dataset(300, seed=4)
    th.manual_seed(6)
    template = ProbabilisticEnsemble(4, 2, ensemble_size=2, n_elites=1, hidden_sizes=(16,), weight_decays=None)
    models = [copy.deepcopy(template) for _ in range(2)]
    loaded = ModelTrainer(models[0], learning_rate=1e-4, max_epochs=2, seed=0)
    loaded.optimizer.load_state_dict(ModelTrainer(copy.deepcopy(template), learning_rate=1e-2).optimizer.state_dict())
    assert loaded.optimizer.param_groups[0]["lr"] == 1e-2
    loaded.train(obs, actions, rewards, next_obs)
    ModelTrainer(models[1], learning_rate=1e-4, max_epochs=2, seed=0).train(obs, actions, rewards, next_obs)
    for key, value in models[1].state_dict().items():
        assert th.equal(models[0].state_dict()[key], value), key
    assert any(not th.equal(value, template.state_dict()[key]) for key, value in models[0].state_dict().items())
    loaded.learning_rate = 3e-4  # a new rate applies from the next call
    loaded.train(obs, actions, rewards, next_obs)
    assert loaded.optimizer.param_groups[0]["lr"] == 3e-4


def test_max_grad_steps_caps_the_optimizer_steps_per_call():
    th.manual_seed(5)
    obs, actions, rewards, next_obs = linear_dataset(600, seed=3)
    model = ProbabilisticEnsemble(4, 2, ensemble_size=3, n_elites=2, hidden_sizes=(16,), weight_decays=None)
    # 480 training rows / batch 64 = 8 steps per epoch: 20 steps stop inside the third epoch
    trainer = ModelTrainer(model, max_epochs=None, max_grad_steps=20, patience=100, batch_size=64)
    info = trainer.train(obs, actions, rewards, next_obs, rng=0)
    adam_steps = {float(state["step"]) for state in trainer.optimizer.state.values()}
    assert info.grad_steps == 20 and adam_steps == {20.0} and info.epochs == 3
    info = trainer.train(obs, actions, rewards, next_obs, rng=1)  # the budget is per call
    assert info.grad_steps == 20 and {float(s["step"]) for s in trainer.optimizer.state.values()} == {40.0}
    # early stopping still ends a call before the cap
    info = ModelTrainer(model, max_epochs=None, max_grad_steps=10_000, patience=1, batch_size=64).train(
        obs, actions, rewards, next_obs, rng=2
    )
    assert info.grad_steps < 10_000 and info.grad_steps == 8 * info.epochs
    with pytest.raises(ValueError, match="max_grad_steps"):
        ModelTrainer(model, max_grad_steps=0)


def test_bootstrap_gives_each_member_its_own_resample(monkeypatch):
    th.manual_seed(0)
    obs, actions, rewards, next_obs = linear_dataset(400, seed=1)
    model = ProbabilisticEnsemble(4, 2, ensemble_size=4, n_elites=2, hidden_sizes=(16,), weight_decays=None)
    seen = []
    original_loss = model.loss

    def spy_loss(inputs, targets):
        seen.append(inputs.detach().clone())
        return original_loss(inputs, targets)

    monkeypatch.setattr(model, "loss", spy_loss)
    for bootstrap in (False, True):
        seen.clear()
        trainer = ModelTrainer(model, max_epochs=1, batch_size=1000, holdout_ratio=0.0, bootstrap=bootstrap)
        trainer.train(obs, actions, rewards, next_obs, rng=0)
        rows = seen[0]  # [members, 400, in]: one minibatch holds each member's whole epoch
        distinct = [len(th.unique(rows[m], dim=0)) for m in range(4)]
        if bootstrap:  # a bootstrap resample of n rows holds ~63% distinct rows, another set per member
            assert all(200 < d < 300 for d in distinct)
            assert not th.equal(th.unique(rows[0], dim=0), th.unique(rows[1], dim=0))
        else:
            assert distinct == [400] * 4


# ---------------------------------------------------------------------- non-finite data
def test_trainer_drops_nonfinite_rows_and_trains_on_the_rest():
    th.manual_seed(0)
    obs, actions, rewards, next_obs = linear_dataset(400)
    obs[3, 1], next_obs[10, 0], rewards[20], actions[30, 1] = np.nan, np.inf, np.nan, -np.inf
    model = small_ensemble(obs_dim=4, action_dim=2)
    trainer = ModelTrainer(model, max_epochs=5, seed=0)
    info = trainer.train(obs, actions, rewards, next_obs, sample_ids=np.arange(400))
    assert info.n_nonfinite == 4 and not info.reverted and info.n_train + info.n_holdout == 396
    assert all(th.isfinite(p).all() for p in model.parameters()) and np.isfinite(info.holdout_mse)
    assert th.isfinite(model.input_normalizer.mean).all() and trainer.n_trained == 1


def test_trainer_keeps_the_previous_model_when_nothing_usable_comes_out():
    th.manual_seed(0)
    obs, actions, rewards, next_obs = linear_dataset(200)
    model = small_ensemble(obs_dim=4, action_dim=2)
    trainer = ModelTrainer(model, max_epochs=3, seed=0)
    trainer.train(obs, actions, rewards, next_obs)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    adam_before = {k: v.clone() for k, v in trainer.optimizer.state[model.output_layer.weight].items()}

    info = trainer.train(np.full_like(obs, np.nan), actions, rewards, next_obs)  # no finite row at all
    assert info.reverted and info.n_nonfinite == 200 and info.grad_steps == 0

    evaluate = trainer.evaluate
    trainer.evaluate = lambda *args: tuple(np.full_like(x, np.nan) for x in evaluate(*args))  # every round diverges
    info = trainer.train(obs, actions, 1e3 * rewards, next_obs)
    assert info.reverted and info.grad_steps > 0 and trainer.n_trained == 1
    for key, value in model.state_dict().items():
        assert th.equal(value, before[key]), key  # parameters, normalizer and elites as before the two calls
    for key, value in trainer.optimizer.state[model.output_layer.weight].items():
        assert th.equal(value, adam_before[key]), key


def test_default_weight_decays_follow_the_depth():
    from sb3_pmac.dynamics.ensemble import MBPO_WEIGHT_DECAYS, mbpo_weight_decays

    def decays(model):
        return [layer.weight_decay for layer in [*model.hidden_layers, model.output_layer]]

    # MBPO's 4 hidden layers: MBPO's values exactly
    assert decays(ProbabilisticEnsemble(obs_dim=3, action_dim=1)) == list(MBPO_WEIGHT_DECAYS)
    # other depths: the same profile over the relative depth, from 2.5e-5 (first layer) to 1e-4 (output layer)
    assert decays(ProbabilisticEnsemble(obs_dim=3, action_dim=1, hidden_sizes=(32, 32))) == pytest.approx(
        [2.5e-5, 7.5e-5, 1e-4]
    )
    assert mbpo_weight_decays(1) == pytest.approx([1e-4]) and mbpo_weight_decays(9)[::2] == pytest.approx(
        list(MBPO_WEIGHT_DECAYS)
    )
    # an explicit sequence of the wrong length still says what to pass
    with pytest.raises(ValueError, match=r"got 5: .*'mbpo', the default, fits any depth; None: no weight decay"):
        ProbabilisticEnsemble(obs_dim=3, action_dim=1, hidden_sizes=(32, 32), weight_decays=MBPO_WEIGHT_DECAYS)
    with pytest.raises(ValueError, match="'mbpo'"):
        ProbabilisticEnsemble(obs_dim=3, action_dim=1, weight_decays="pets")


# ---------------------------------------------------------------------- float64 observations
def large_magnitude_dataset(dtype: type) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Observations of magnitude 1e4 (a position, an odometer) that change by 1e-3: below float32's spacing there."""
    obs = np.array([[1.0e4, 0.5], [2.0e4, -0.25], [5.0e4, 3.0]], dtype=dtype)
    next_obs = obs + np.array([[1e-3, 0.1], [2e-3, 0.2], [1e-3, -0.3]], dtype=dtype)
    actions = np.array([[0.5], [-0.5], [0.25]], dtype=np.float32)
    rewards = np.array([1.0, -2.0, 0.5], dtype=dtype)
    return obs, actions, rewards, next_obs


@pytest.mark.parametrize("as_tensor", [False, True])  # numpy arrays, or tensors as the replay buffer gives them
def test_targets_of_float64_observations_keep_small_changes(as_tensor):
    obs, actions, rewards, next_obs = large_magnitude_dataset(np.float64)
    trainer = ModelTrainer(small_ensemble(obs_dim=2, action_dim=1))
    data = [th.as_tensor(x) if as_tensor else x for x in (obs, actions, rewards, next_obs)]
    inputs, targets, _ = trainer._prepare(*data, sample_ids=None)
    assert inputs.dtype == targets.dtype == th.float32
    # the differences in float64, then rounded once to float32 (float32 observations give 0.00097656 and 0)
    expected = np.concatenate([(next_obs - obs), rewards[:, None]], axis=1).astype(np.float32)
    np.testing.assert_array_equal(targets.numpy(), expected)
    np.testing.assert_array_equal(inputs.numpy(), np.concatenate([obs.astype(np.float32), actions], axis=1))


@pytest.mark.parametrize("reward_dtype", [np.float32, np.float64])
def test_targets_of_float32_observations_are_unchanged(reward_dtype):
    obs, actions, rewards, next_obs = large_magnitude_dataset(np.float32)
    rng = np.random.default_rng(0)
    obs = np.concatenate([obs, rng.normal(scale=100, size=(50, 2)).astype(np.float32)])
    next_obs = np.concatenate([next_obs, obs[3:] + rng.normal(size=(50, 2)).astype(np.float32)])
    actions = np.concatenate([actions, rng.uniform(-1, 1, (50, 1)).astype(np.float32)])
    rewards = np.concatenate([rewards, rng.normal(size=50).astype(np.float32)]).astype(reward_dtype)
    inputs, targets, _ = ModelTrainer(small_ensemble(obs_dim=2, action_dim=1))._prepare(
        obs, actions, rewards, next_obs, sample_ids=None
    )
    # what _prepare computed before float64 observations were handled: everything cast to float32 first
    obs_t, act_t, rew_t, next_t = (th.as_tensor(x).to(dtype=th.float32) for x in (obs, actions, rewards, next_obs))
    assert th.equal(targets, th.cat([next_t - obs_t, rew_t.reshape(-1, 1)], dim=-1))
    assert th.equal(inputs, th.cat([obs_t, act_t], dim=-1))
    assert targets[0, 0] == np.float32(1.0e4 + 1e-3) - np.float32(1.0e4)  # (0.00097656: float32's own rounding)


def constant_change_model(monkeypatch, change: float) -> ProbabilisticEnsemble:
    """A model whose every member predicts the change ``change`` for each observation and reward, with no noise."""
    model = small_ensemble(obs_dim=2, action_dim=1)

    def network(x, members=None):
        return th.full((*x.shape[:-1], model.output_dim), change), th.zeros(*x.shape[:-1], model.output_dim)

    monkeypatch.setattr(model, "_network", network)
    return model


def test_sample_adds_the_change_in_the_observations_precision(monkeypatch):
    model = constant_change_model(monkeypatch, 1e-3)
    obs, actions, _, _ = large_magnitude_dataset(np.float64)
    change = th.tensor(1e-3, dtype=th.float32).double()  # the model's float32 prediction
    next_obs, rewards, _ = model.sample(th.as_tensor(obs), th.as_tensor(actions), deterministic=True)
    assert next_obs.dtype == th.float64 and rewards.dtype == th.float32
    assert th.equal(next_obs, th.as_tensor(obs) + change)  # float32 states: 1e4 + 1e-3 = 10000.0009765625
    # a rollout of 10 steps moves 1e4 by 0.01 (float32 states would not move at all from 5e4)
    states = th.as_tensor(obs)
    for _ in range(10):
        states, _, _ = model.sample(states, th.as_tensor(actions), deterministic=True)
    np.testing.assert_allclose((states - th.as_tensor(obs)).numpy(), 1e-2, rtol=1e-6)
    empty, _, _ = model.sample(th.zeros(0, 2, dtype=th.float64), th.zeros(0, 1))
    assert empty.dtype == th.float64 and empty.shape == (0, 2)


def test_sample_of_float32_observations_is_unchanged(monkeypatch):
    model = constant_change_model(monkeypatch, 1e-3)
    obs, actions, _, _ = large_magnitude_dataset(np.float32)
    obs_t = th.as_tensor(obs)
    next_obs, rewards, _ = model.sample(obs_t, th.as_tensor(actions), deterministic=True)
    assert next_obs.dtype == rewards.dtype == th.float32
    assert th.equal(next_obs, obs_t + th.tensor(1e-3, dtype=th.float32))  # the float32 sum, as before


# ---------------------------------------------------------------------- standardized targets


def test_standardized_targets_convert_back_to_the_targets_units():
    th.manual_seed(0)
    model = small_ensemble(normalize_targets=True)
    assert model.normalize_targets and not small_ensemble().normalize_targets
    assert {"target_normalizer.mean", "target_normalizer.std"} <= set(model.state_dict())
    assert not any(key.startswith("target_normalizer") for key in small_ensemble().state_dict())  # old models load
    model.target_normalizer.fit(th.randn(500, 4) * th.tensor([1e-3, 1.0, 50.0, 1e4]) + 3.0)
    mu, std = model.target_normalizer.mean, model.target_normalizer.std
    x = th.randn(6, 5)
    fitted_mean, fitted_logvar = model.fitted_outputs(x)
    mean, logvar = model(x)
    th.testing.assert_close(mean, fitted_mean * std + mu)
    th.testing.assert_close(logvar, fitted_logvar + 2 * th.log(std))
    # the loss and mse compare in standardized units: a target of mu + std * m has the fitted output's error m
    targets = th.randn(6, 4) * std + mu
    expected = (fitted_mean - (targets - mu) / std).pow(2).mean(dim=(1, 2))
    th.testing.assert_close(model.mse(x, targets), expected)
    # predict and a deterministic rollout step give the targets' units too (computed by other batched paths: float32
    # round-off of a few 1e-6 relative on targets of scale 1e4, hence rtol 1e-5)
    close = dict(rtol=1e-5, atol=1e-5)
    elite_mean, elite_logvar = model.predict(x[:, :3], x[:, 3:])
    th.testing.assert_close(elite_mean, mean[model.elite_indices], **close)
    th.testing.assert_close(elite_logvar, logvar[model.elite_indices], **close)
    next_obs, rewards, members = model.sample(x[:, :3], x[:, 3:], deterministic=True)
    chosen = mean[members, th.arange(6)]
    th.testing.assert_close(next_obs, x[:, :3] + chosen[:, :3], **close)
    th.testing.assert_close(rewards, chosen[:, 3], **close)


def pendulum_like_dataset(n: int = 1500):
    """Random-action transitions of Pendulum's dynamics, without gymnasium (obs: cos, sin, angular velocity)."""
    rng = np.random.default_rng(0)
    theta, omega = rng.uniform(-np.pi, np.pi, n), rng.uniform(-8, 8, n)
    actions = rng.uniform(-1, 1, (n, 1))
    new_omega = np.clip(omega + (3 * 10 / 2 * np.sin(theta) + 3.0 * 2 * actions[:, 0]) * 0.05, -8, 8)
    new_theta = theta + new_omega * 0.05
    rewards = -(((theta + np.pi) % (2 * np.pi) - np.pi) ** 2 + 0.1 * omega**2 + 0.001 * (2 * actions[:, 0]) ** 2)
    obs = np.stack([np.cos(theta), np.sin(theta), omega], axis=1)
    next_obs = np.stack([np.cos(new_theta), np.sin(new_theta), new_omega], axis=1)
    return obs, actions, rewards, next_obs


def relative_errors(normalize_targets: bool, obs_scale: float, reward_scale: float) -> np.ndarray:
    """Per output dimension: the elites' mean squared error over the target's variance, after 150 gradient steps."""
    obs, actions, rewards, next_obs = pendulum_like_dataset()
    obs, next_obs, rewards = obs * obs_scale, next_obs * obs_scale, rewards * reward_scale
    th.manual_seed(0)
    model = ProbabilisticEnsemble(3, 1, ensemble_size=3, n_elites=2, hidden_sizes=(64, 64),
                                  normalize_targets=normalize_targets)  # fmt: skip
    ModelTrainer(model, max_grad_steps=150, max_epochs=None, seed=0).train(obs, actions, rewards, next_obs)
    inputs = th.as_tensor(np.concatenate([obs, actions], axis=1), dtype=th.float32)
    targets = th.as_tensor(np.concatenate([next_obs - obs, rewards[:, None]], axis=1), dtype=th.float32)
    with th.no_grad():
        mean, _ = model(inputs)
    errors = (mean[model.elite_indices] - targets).pow(2).mean(dim=(0, 1)) / targets.var(dim=0)
    return errors.numpy()


def test_standardized_targets_make_the_fit_independent_of_the_scales():
    natural = relative_errors(True, 1.0, 1.0)
    assert natural.max() < 0.1
    # observations 1e-4 times smaller and rewards 1e3 times larger: the same fit, up to float32 rounding
    np.testing.assert_allclose(relative_errors(True, 1e-4, 1e3), natural, rtol=0.05, atol=1e-3)
    # raw targets (MBPO's): the absolute log-variance bounds ruin the state dimensions' fit at these scales
    assert relative_errors(False, 1e-4, 1e3)[:3].min() > 10 * natural[:3].max()


def test_predict_forward_sample_and_evaluate_take_arrays_and_float64_and_check_shapes():
    """Gymnasium's MuJoCo observations are float64 arrays: the model takes them as sample() always did."""
    model = small_ensemble()
    model.set_elites(list(range(model.n_elites)))
    rng = np.random.default_rng(0)
    obs = rng.standard_normal((6, model.obs_dim))
    act = rng.uniform(-1, 1, (6, model.action_dim))
    obs32, act32 = th.as_tensor(obs, dtype=th.float32), th.as_tensor(act, dtype=th.float32)
    expected = model.predict(obs32, act32)
    for o, a in ((obs, act), (th.as_tensor(obs), th.as_tensor(act))):  # numpy float64, torch float64
        for actual, wanted in zip(model.predict(o, a), expected, strict=True):
            assert actual.dtype == th.float32 and th.equal(actual, wanted)
    inputs = np.concatenate([obs, act], 1)
    with th.no_grad():
        for actual, wanted in zip(model(inputs), model(th.as_tensor(inputs, dtype=th.float32)), strict=True):
            assert th.equal(actual, wanted)
    generator_states = [th.Generator().manual_seed(3) for _ in range(2)]
    from_array = model.sample(obs32.numpy(), act32.numpy(), generator=generator_states[0])
    from_tensor = model.sample(obs32, act32, generator=generator_states[1])
    for actual, wanted in zip(from_array, from_tensor, strict=True):
        assert th.equal(actual, wanted)
    # shapes are checked as sample() checks them (an [N, 4] observation used to be split silently)
    for bad_obs, bad_act in ((obs[:, :-1], np.c_[act, act[:, :1]]), (obs[0], act[0]), (obs, act[:5])):
        with pytest.raises(ValueError, match="must have shape"):
            model.predict(bad_obs, bad_act)
    trainer = ModelTrainer(model, seed=0)
    targets = rng.standard_normal((6, model.output_dim))
    mse, _ = trainer.evaluate(inputs, targets)
    assert mse.shape == (model.ensemble_size,) and np.isfinite(mse).all()
    with pytest.raises(ValueError, match="targets must have shape"):
        trainer.evaluate(inputs, targets[:, :1])  # used to broadcast into a wrong MSE
    for method in (model.mse, model.loss):
        with pytest.raises(ValueError, match="targets have 1 rows, the inputs 6"):
            method(inputs, targets[:1])


def test_empty_data_and_a_moved_model_are_clear_errors():
    model = small_ensemble()
    trainer = ModelTrainer(model, max_epochs=2, seed=0)
    with pytest.raises(ValueError, match="evaluate: no rows"):  # it reported a perfect 0
        trainer.evaluate(th.zeros(0, 5), th.zeros(0, 4))
    empty = th.zeros(0, 3), th.zeros(0, 2), th.zeros(0), th.zeros(0, 3)
    with pytest.raises(ValueError, match="train: no transitions"):  # it reported non-finite rows, kept the model
        trainer.train(*empty)
    g = th.Generator().manual_seed(0)
    data = th.randn(64, 3, generator=g), th.rand(64, 2, generator=g), th.randn(64, generator=g), th.randn(64, 3, generator=g)
    trainer.train(*data)
    model.double()  # the trainer's Adam state stays float32: Adam failed inside its kernel
    with pytest.raises(ValueError, match="build a new ModelTrainer after moving the model"):
        trainer.train(*(column.double() for column in data))
    assert not ModelTrainer(model, max_epochs=2, seed=0).train(*(column.double() for column in data)).reverted
