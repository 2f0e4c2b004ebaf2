"""Buffer files (sb3_pmac.buffer_files): .npz round trips of the real and model buffers, suffixes, pickles refused."""

import io
import pathlib
import pickle
import warnings

import numpy as np
import pytest
import torch as th
from conftest import TINY_PMAC_KWARGS
from gymnasium import spaces
from stable_baselines3 import SAC
from stable_baselines3.common.buffers import DictReplayBuffer, ReplayBuffer
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.save_util import save_to_pkl

from sb3_pmac import PMAC
from sb3_pmac.buffer_files import FORMAT, find_buffer_file, load_buffers, save_buffers, save_path
from sb3_pmac.buffers import PolicyVersionedReplayBuffer
from sb3_pmac.model_buffer import ModelReplayBuffer
from sb3_pmac.policy_mixture import PolicyMixture

OBS_SPACE = spaces.Box(-2.0, 3.0, (3,), np.float32)
ACTION_SPACE = spaces.Box(-1.0, 1.0, (2,), np.float32)
ZIP_MAGIC = b"PK\x03\x04"
DATA = pathlib.Path(__file__).parent / "data"


def filled_buffer(
    buffer_size: int,
    n_envs: int,
    n_steps: int,
    store_policy_params: bool = False,
    steps_per_version: int = 4,
    observation_space: spaces.Box = OBS_SPACE,
) -> PolicyVersionedReplayBuffer:
    """``n_steps`` adds of random transitions, a new policy version every ``steps_per_version`` steps."""
    buffer = PolicyVersionedReplayBuffer(
        buffer_size, observation_space, ACTION_SPACE, device="cpu", n_envs=n_envs, store_policy_params=store_policy_params
    )
    add_random_transitions(buffer, n_steps, steps_per_version)
    return buffer


def add_random_transitions(buffer: ReplayBuffer, n_steps: int, steps_per_version: int = 4) -> None:
    """
    ``n_steps`` adds of random transitions (the same ones for any buffer of the same size); a versioned buffer gets a
    new policy version every ``steps_per_version`` steps.
    """
    rng = np.random.default_rng(0)
    n_envs, versioned = buffer.n_envs, isinstance(buffer, PolicyVersionedReplayBuffer)
    for step in range(n_steps):
        if versioned and step > 0 and step % steps_per_version == 0:
            buffer.start_new_version()
        if step % 3 != 1:  # some transitions without the collecting policy's parameters (stored as NaN)
            params = rng.normal(size=(n_envs, 2)), rng.normal(size=(n_envs, 2))
            if versioned:
                buffer.set_policy_params(*params)
        done = rng.random(n_envs) < 0.2
        infos = [{"TimeLimit.truncated": bool(rng.random() < 0.5)} for _ in range(n_envs)]
        buffer.add(
            rng.normal(size=(n_envs, 3)), rng.normal(size=(n_envs, 3)), rng.uniform(-1, 1, (n_envs, 2)),
            rng.normal(size=n_envs), done, infos,
        )  # fmt: skip


def observables(buffer: PolicyVersionedReplayBuffer, seed: int = 1) -> dict:
    """What sampling and the version bookkeeping return (numpy's global generator seeded before each draw)."""
    mixture = PolicyMixture(0.5)
    values: dict = {
        "n_written": buffer.n_written,
        "current_version": buffer.current_version,
        "oldest_version": buffer.oldest_version,
        "version_counts": buffer.version_counts(),
        "version_ranges": buffer.version_ranges(),
        "size": buffer.size(),
        "pos": buffer.pos,
        "full": buffer.full,
    }
    np.random.seed(seed)
    values["sample"] = buffer.sample(64)
    np.random.seed(seed)
    values["sample_by_mixture"] = buffer.sample_by_mixture(64, mixture)
    np.random.seed(seed)
    values["sample_by_uniform_mixture"] = buffer.sample_by_mixture(64, PolicyMixture(mode="uniform"))
    np.random.seed(seed)
    values["select_indices_by_mixture"] = buffer.select_indices_by_mixture(3 * buffer.size() * buffer.n_envs, mixture)
    names = ["observations", "next_observations", "actions", "rewards", "dones", "timeouts", "policy_versions"]
    values.update({name: getattr(buffer, name) for name in names})
    values["policy_means"], values["policy_log_stds"] = buffer.policy_means, buffer.policy_log_stds
    return values


def assert_same(first, second, name: str = "") -> None:
    if isinstance(first, dict):
        assert first.keys() == second.keys(), name
        for key in first:
            assert_same(first[key], second[key], f"{name}.{key}")
    elif isinstance(first, tuple | list):
        assert type(first) is type(second) and len(first) == len(second), name
        for index, (a, b) in enumerate(zip(first, second, strict=True)):
            assert_same(a, b, f"{name}[{index}]")
    elif isinstance(first, th.Tensor):
        assert first.dtype == second.dtype, name
        np.testing.assert_array_equal(first.numpy(), second.numpy(), err_msg=name)
    elif isinstance(first, np.ndarray):
        assert first.dtype == second.dtype and first.shape == second.shape, name
        np.testing.assert_array_equal(first, second, err_msg=name)  # NaN == NaN here
    else:
        assert first == second, name


def filled_model_buffer(capacity: int = 50, n: int = 70) -> ModelReplayBuffer:
    generator = th.Generator().manual_seed(0)
    model_buffer = ModelReplayBuffer(capacity, obs_dim=3, action_dim=2, device="cpu")
    for rows in (n // 2, n - n // 2):  # two batches: the second one wraps around
        model_buffer.add(
            th.randn(rows, 3, generator=generator), th.randn(rows, 2, generator=generator),
            th.randn(rows, generator=generator), th.randn(rows, 3, generator=generator),
            (th.rand(rows, generator=generator) < 0.3).float(),
        )  # fmt: skip
    return model_buffer


# ------------------------------------------------------------------------------------------------------ round trips
@pytest.mark.parametrize(
    "buffer_size, n_envs, n_steps, store_policy_params",
    [
        (40, 1, 13, False),  # partly filled
        (40, 1, 40, True),  # exactly full
        (40, 1, 97, False),  # wrapped around twice: the oldest versions are gone
        (40, 2, 53, True),  # 20 positions of 2 envs, wrapped around, with the policy parameters
        (40, 2, 7, True),
    ],
)
def test_round_trip_keeps_everything_sampling_depends_on(tmp_path, buffer_size, n_envs, n_steps, store_policy_params):
    buffer = filled_buffer(buffer_size, n_envs, n_steps, store_policy_params)
    assert buffer.full == (n_steps >= buffer_size // n_envs)
    if n_steps > 2 * buffer_size // n_envs:
        assert buffer.oldest_version > 0  # versions overwritten: the segments were dropped
    expected = observables(buffer)
    written = save_buffers(tmp_path / "buffer", buffer)
    assert written == tmp_path / "buffer.npz"
    assert written.read_bytes()[:4] == ZIP_MAGIC
    loaded, model_state = load_buffers(tmp_path / "buffer", OBS_SPACE, ACTION_SPACE, device="cpu")
    assert model_state is None
    assert type(loaded) is PolicyVersionedReplayBuffer
    assert loaded.buffer_size == buffer.buffer_size == buffer_size // n_envs and loaded.n_envs == n_envs
    assert loaded.store_policy_params == store_policy_params
    assert loaded.handle_timeout_termination and loaded.device == th.device("cpu")
    assert_same(observables(loaded), expected)
    if store_policy_params:
        assert np.isnan(loaded.policy_means[: loaded.size()]).any() and np.isfinite(loaded.policy_means).any()
    # and both go on identically: new version, more transitions
    for copy in (buffer, loaded):
        copy.start_new_version()
        copy.add(np.ones((n_envs, 3)), np.ones((n_envs, 3)), np.zeros((n_envs, 2)), np.ones(n_envs),
                 np.zeros(n_envs), [{}] * n_envs)  # fmt: skip
    assert_same(observables(loaded, seed=2), observables(buffer, seed=2))


def test_a_buffer_that_keeps_timeouts_as_dones_loads_so(tmp_path):
    """``handle_timeout_termination=False`` (time-limit ends are terminal for SAC's targets) survives the file."""
    buffer = PolicyVersionedReplayBuffer(40, OBS_SPACE, ACTION_SPACE, device="cpu", handle_timeout_termination=False)
    add_random_transitions(buffer, 10)
    loaded, _ = load_buffers(save_buffers(tmp_path / "buffer", buffer))
    assert not loaded.handle_timeout_termination and not loaded.timeouts.any()
    np.testing.assert_array_equal(loaded.dones[:10], buffer.dones[:10])


def test_a_file_whose_version_bookkeeping_does_not_add_up_is_refused(tmp_path):
    """A damaged or hand-edited file would mis-weight the policy mixture: its counts must agree before it loads."""
    with np.load(save_buffers(tmp_path / "buffer", filled_buffer(40, 1, 10))) as file:
        arrays = dict(file)
    for key, value in (("n_written", arrays["n_written"] + 1), ("segment_ends", arrays["segment_ends"][:-1])):
        np.savez(tmp_path / "damaged.npz", **{**arrays, key: value})
        with pytest.raises(ValueError, match="Inconsistent buffer file"):
            load_buffers(tmp_path / "damaged.npz")
    np.savez(tmp_path / "intact.npz", **arrays)
    assert load_buffers(tmp_path / "intact.npz")[0].n_written == 10  # (the rewritten file itself is fine)


@pytest.mark.parametrize("observation_space", [OBS_SPACE, spaces.Box(-np.inf, np.inf, (3,), np.float64)])
def test_spaces_default_to_the_saved_boxes(tmp_path, observation_space):
    buffer = filled_buffer(40, 2, 30, store_policy_params=True, observation_space=observation_space)
    save_buffers(tmp_path / "b.npz", buffer)
    loaded, _ = load_buffers(tmp_path / "b.npz")
    assert loaded.observation_space == observation_space and loaded.action_space == ACTION_SPACE
    assert loaded.observations.dtype == observation_space.dtype
    assert_same(observables(loaded), observables(buffer))


def test_model_buffer_round_trip(tmp_path):
    buffer = filled_buffer(40, 1, 50)
    model_buffer = filled_model_buffer()
    assert model_buffer.full and model_buffer.pos == 20
    save_buffers(tmp_path / "buffer.npz", buffer, model_buffer)
    loaded, state = load_buffers(tmp_path / "buffer.npz", OBS_SPACE, ACTION_SPACE)
    assert state is not None
    assert_same(state, model_buffer.state_dict())
    restored = ModelReplayBuffer(1, obs_dim=3, action_dim=2)
    restored.load_state_dict(state)
    assert (restored.capacity, restored.pos, restored.full) == (50, 20, True)
    for name in ModelReplayBuffer._COLUMNS:
        assert th.equal(getattr(restored, name), getattr(model_buffer, name)), name
    first = model_buffer.sample(32, generator=th.Generator().manual_seed(3))
    second = restored.sample(32, generator=th.Generator().manual_seed(3))
    assert_same(tuple(first), tuple(second))
    assert_same(observables(loaded), observables(buffer))
    # an empty model buffer travels too
    save_buffers(tmp_path / "empty.npz", buffer, ModelReplayBuffer(10, obs_dim=3, action_dim=2))
    _, state = load_buffers(tmp_path / "empty.npz")
    assert state is not None and (state["capacity"], state["pos"], state["full"]) == (10, 0, False)
    assert state["observations"].shape == (0, 3)


def test_file_holds_plain_arrays_only(tmp_path):
    buffer = filled_buffer(40, 2, 15, store_policy_params=True)
    save_buffers(tmp_path / "buffer.npz", buffer, filled_model_buffer())
    with np.load(tmp_path / "buffer.npz", allow_pickle=False) as archive:
        arrays = {key: archive[key] for key in archive.files}  # would raise on an object array
    assert str(arrays["format"]) == FORMAT
    assert all(array.dtype.kind != "O" for array in arrays.values())
    # only the written positions are stored (15 of 20)
    assert arrays["observations"].shape == (15, 2, 3) and arrays["policy_means"].shape == (15, 2, 2)


# ------------------------------------------------------------------------------------------------------ paths
def test_suffixes_and_open_files(tmp_path):
    buffer = filled_buffer(40, 1, 10)
    assert save_path("dir/buffer") == pathlib.Path("dir/buffer.npz")
    assert save_path("dir/replay_buffer.pkl") == pathlib.Path("dir/replay_buffer.pkl")
    # a name with a suffix is written as given (SB3's CheckpointCallback and rl-zoo3 save replay_buffer.pkl)
    assert save_buffers(tmp_path / "sub" / "replay_buffer.pkl", buffer) == tmp_path / "sub" / "replay_buffer.pkl"
    assert (tmp_path / "sub" / "replay_buffer.pkl").read_bytes()[:4] == ZIP_MAGIC
    assert not (tmp_path / "sub" / "replay_buffer.pkl.npz").exists()
    loaded, _ = load_buffers(tmp_path / "sub" / "replay_buffer.pkl")
    assert_same(observables(loaded), observables(buffer))
    # no suffix: .npz appended, and found again from the same path; a file of that exact name comes first
    save_buffers(str(tmp_path / "plain"), buffer)
    assert find_buffer_file(tmp_path / "plain") == tmp_path / "plain.npz"
    (tmp_path / "old.pkl").write_bytes(b"x")
    assert find_buffer_file(tmp_path / "old") == tmp_path / "old.pkl"  # earlier releases appended .pkl
    with pytest.raises(FileNotFoundError, match=r"missing\.npz"):
        load_buffers(tmp_path / "missing")
    assert sorted(path.name for path in tmp_path.iterdir()) == ["old.pkl", "plain.npz", "sub"]  # no temporary files
    # open binary files
    stream = io.BytesIO()
    assert save_buffers(stream, buffer) is None
    stream.seek(0)
    loaded, _ = load_buffers(stream)
    assert_same(observables(loaded), observables(buffer))


def test_a_failed_save_keeps_the_previous_file(tmp_path, monkeypatch):
    path = tmp_path / "buffer.npz"
    save_buffers(path, filled_buffer(40, 1, 10))
    before = path.read_bytes()

    def fail(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(np, "savez", fail)
    with pytest.raises(OSError, match="disk full"):
        save_buffers(path, filled_buffer(40, 1, 30))
    assert path.read_bytes() == before and [p.name for p in tmp_path.iterdir()] == ["buffer.npz"]


# ------------------------------------------------------------------------------------------------------ refused files
class WritesAFile:
    """Unpickling it opens (creates) ``path``: the code a pickle runs when read."""

    def __init__(self, path: pathlib.Path) -> None:
        self.path = path

    def __reduce__(self):
        return open, (str(self.path), "w")


@pytest.mark.parametrize("name", ["evil.pkl", "evil.npz", "evil"])
def test_a_pickle_is_refused_without_running_its_code(tmp_path, name):
    marker = tmp_path / "marker"
    path = tmp_path / name
    path.write_bytes(pickle.dumps(WritesAFile(marker)))
    with pytest.raises(ValueError, match=r"pickle.*executes the code.*allow_pickle=True"):
        load_buffers(path)
    with pytest.raises(ValueError, match="allow_pickle=True"):
        load_buffers(io.BytesIO(path.read_bytes()))
    agent = PMAC("MlpPolicy", "Pendulum-v1", buffer_size=100, learning_starts=10)
    with pytest.raises(ValueError, match="allow_pickle=True"):
        agent.load_replay_buffer(path)
    assert not marker.exists()
    # what allow_pickle=True means: the file's code runs (here, before the type check refuses the object)
    with pytest.raises(TypeError, match="TextIOWrapper"):
        load_buffers(path, allow_pickle=True)
    assert marker.exists()


def test_other_files_are_refused(tmp_path):
    np.savez(tmp_path / "other.npz", a=np.zeros(3))
    with pytest.raises(ValueError, match="not a PMAC replay buffer file"):
        load_buffers(tmp_path / "other.npz")
    arrays = dict(np.load(save_buffers(tmp_path / "b.npz", filled_buffer(40, 1, 10))))
    del arrays["segment_ends"]
    np.savez(tmp_path / "incomplete.npz", **arrays)
    with pytest.raises(ValueError, match=r"incomplete\.npz: not a complete PMAC replay buffer file: it has no segment_ends"):
        load_buffers(tmp_path / "incomplete.npz")
    arrays = dict(np.load(save_buffers(tmp_path / "tv.npz", filled_buffer(40, 1, 10, store_policy_params=True))))
    del arrays["policy_log_stds"]
    np.savez(tmp_path / "no_params.npz", **arrays)
    with pytest.raises(ValueError, match="it has no policy_log_stds"):
        load_buffers(tmp_path / "no_params.npz")
    arrays = dict(np.load(tmp_path / "b.npz"))
    arrays["format_version"] = np.array(99)
    np.savez(tmp_path / "newer.npz", **arrays)
    with pytest.raises(ValueError, match="format version 99"):
        load_buffers(tmp_path / "newer.npz")


def test_spaces_must_match_the_file(tmp_path):
    save_buffers(tmp_path / "b.npz", filled_buffer(40, 1, 10))
    with pytest.raises(ValueError, match=r"observations have shape \(10, 1, 3\).*needs shape \(10, 1, 4\)"):
        load_buffers(tmp_path / "b.npz", spaces.Box(-1, 1, (4,), np.float32), ACTION_SPACE)
    with pytest.raises(ValueError, match=r"dtype float32.*dtype float64"):
        load_buffers(tmp_path / "b.npz", spaces.Box(-1, 1, (3,), np.float64), ACTION_SPACE)
    with pytest.raises(ValueError, match="actions have shape"):
        load_buffers(tmp_path / "b.npz", OBS_SPACE, spaces.Box(-1, 1, (3,), np.float32))


# ------------------------------------------------------------------------------------------------------ earlier files
def old_save_buffers(path, buffer, model_buffer=None) -> None:
    """What save_buffers wrote before: the pickled buffer, the model buffer's state as an attribute."""
    if model_buffer is not None:
        buffer.model_buffer_state = model_buffer.state_dict()
    try:
        save_to_pkl(path, buffer)
    finally:
        buffer.__dict__.pop("model_buffer_state", None)


def test_pickles_of_earlier_releases_load_with_allow_pickle(tmp_path):
    buffer, model_buffer = filled_buffer(40, 2, 33, store_policy_params=True), filled_model_buffer()
    old_save_buffers(tmp_path / "old.pkl", buffer, model_buffer)
    with pytest.raises(ValueError, match="allow_pickle=True"):
        load_buffers(tmp_path / "old.pkl")
    loaded, state = load_buffers(tmp_path / "old", allow_pickle=True)  # found as SB3 named it
    assert_same(observables(loaded), observables(buffer))
    assert_same(state, model_buffer.state_dict())
    # written again as .npz: the same buffer, read without pickle
    save_buffers(tmp_path / "new", loaded, model_buffer)
    again, state = load_buffers(tmp_path / "new")
    assert_same(observables(again), observables(buffer))
    assert_same(state, model_buffer.state_dict())


def test_a_pickle_of_other_spaces_is_refused_and_the_agent_left_as_it_was(tmp_path):
    """An earlier release's Hopper buffer loaded into a Pendulum agent: the spaces are checked as for .npz files."""
    from conftest import TINY_PMAC_KWARGS

    from sb3_pmac import PMAC

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        agent = PMAC("MlpPolicy", "Pendulum-v1", **{**TINY_PMAC_KWARGS, "seed": 0})
        agent.learn(160)
    buffer, model_size = agent.replay_buffer, agent.model_buffer.size()
    with pytest.raises(ValueError, match=r"legacy_pmac_buffer.pkl: .*observations have shape .*11.*needs shape .*3"):
        agent.load_replay_buffer(DATA / "legacy_pmac_buffer.pkl", allow_pickle=True)
    assert agent.replay_buffer is buffer and agent.model_buffer.size() == model_size > 0
    agent.learn(40, reset_num_timesteps=False)  # goes on
    # a model buffer state of other sizes is refused before the model buffer changes
    state = agent.model_buffer.state_dict()
    other = ModelReplayBuffer(1, obs_dim=4, action_dim=1)
    with pytest.raises(ValueError, match="model buffer state's observations have shape"):
        other.load_state_dict(state)
    assert other.capacity == 1 and other.observations.shape == (1, 4)


@pytest.mark.parametrize("name", ["pmac", "pmac_tv"])
def test_legacy_fixture_buffers_convert_to_npz(tmp_path, name):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(ValueError, match="allow_pickle=True"):
            load_buffers(DATA / f"legacy_{name}_buffer.pkl")
        legacy, state = load_buffers(DATA / f"legacy_{name}_buffer.pkl", allow_pickle=True)
    assert legacy.store_policy_params == (name == "pmac_tv") and state is not None
    model_buffer = ModelReplayBuffer(1, obs_dim=legacy.obs_shape[0], action_dim=legacy.action_dim)
    model_buffer.load_state_dict(state)
    save_buffers(tmp_path / "converted", legacy, model_buffer)
    converted, converted_state = load_buffers(tmp_path / "converted", legacy.observation_space, legacy.action_space)
    assert_same(observables(converted), observables(legacy))
    assert_same(converted_state, model_buffer.state_dict())


# ------------------------------------------------------------------------------------------------------ SB3's files
@pytest.mark.parametrize(
    "buffer_size, n_envs, n_steps",
    [(40, 1, 0), (40, 1, 13), (40, 1, 40), (40, 1, 97), (40, 2, 53)],  # empty, partly filled, full, wrapped around
)
def test_sb3_replay_buffers_load_as_one_policy_version(tmp_path, buffer_size, n_envs, n_steps):
    sb3_buffer = ReplayBuffer(buffer_size, OBS_SPACE, ACTION_SPACE, device="cpu", n_envs=n_envs)
    add_random_transitions(sb3_buffer, n_steps)
    save_to_pkl(tmp_path / "sac_buffer.pkl", sb3_buffer)
    with pytest.raises(ValueError, match=r"of SB3.*allow_pickle=True"):
        load_buffers(tmp_path / "sac_buffer")
    loaded, model_state = load_buffers(tmp_path / "sac_buffer", allow_pickle=True)  # found as SB3 named it
    assert type(loaded) is PolicyVersionedReplayBuffer and model_state is None and not loaded.store_policy_params
    assert (loaded.buffer_size, loaded.n_envs, loaded.pos, loaded.full) == (
        sb3_buffer.buffer_size, sb3_buffer.n_envs, sb3_buffer.pos, sb3_buffer.full,
    )  # fmt: skip
    for name in ("observations", "next_observations", "actions", "rewards", "dones", "timeouts"):
        assert_same(getattr(loaded, name), getattr(sb3_buffer, name), name)
    # one policy version, 0, holding every stored transition
    stored = sb3_buffer.size() * n_envs
    assert loaded.current_version == loaded.oldest_version == 0 and not loaded.policy_versions.any()
    assert loaded.n_written % loaded.buffer_size == loaded.pos and (loaded.n_written >= loaded.buffer_size) == loaded.full
    if stored == 0:
        assert_same(loaded.version_counts(), (np.zeros(0, np.int64), np.zeros(0, np.int64)))
        return
    assert_same(loaded.version_counts(), (np.array([0]), np.array([stored])))
    # the bookkeeping fits the data: a training set of the buffer's size holds every transition once
    batch_inds, env_inds = loaded.select_indices_by_mixture(stored, PolicyMixture(0.9))
    assert sorted((batch_inds * n_envs + env_inds).tolist()) == list(range(stored))
    # it samples as a PMAC buffer that collected the same transitions with one version
    reference = filled_buffer(buffer_size, n_envs, n_steps, steps_per_version=n_steps + 1)
    expected, got = observables(reference), observables(loaded)
    for values in (expected, got):
        versions, starts, lengths = values.pop("version_ranges")
        values["version_ranges"] = (versions, starts % loaded.buffer_size, lengths)  # (absolute positions differ)
        del values["n_written"]
    assert_same(got, expected)
    # and goes on as one: a new version, then written again as .npz
    loaded.start_new_version()
    add_random_transitions(loaded, 3)
    assert_same(loaded.version_counts()[0], np.array([0, 1]))
    save_buffers(tmp_path / "again", loaded)
    assert_same(observables(load_buffers(tmp_path / "again")[0]), observables(loaded))


def test_sb3_buffers_pmac_cannot_hold_are_refused(tmp_path):
    dict_space = spaces.Dict({"a": OBS_SPACE})
    save_to_pkl(tmp_path / "dict.pkl", DictReplayBuffer(10, dict_space, ACTION_SPACE, device="cpu"))
    with pytest.raises(TypeError, match=r"dict\.pkl holds SB3's DictReplayBuffer.*dict observations"):
        load_buffers(tmp_path / "dict.pkl", allow_pickle=True)
    compact = ReplayBuffer(10, OBS_SPACE, ACTION_SPACE, "cpu", optimize_memory_usage=True, handle_timeout_termination=False)
    save_to_pkl(tmp_path / "compact.pkl", compact)
    with pytest.raises(ValueError, match="optimize_memory_usage=True"):
        load_buffers(tmp_path / "compact.pkl", allow_pickle=True)
    save_to_pkl(tmp_path / "other.pkl", ReplayBuffer(10, OBS_SPACE, ACTION_SPACE, "cpu"))
    with pytest.raises(ValueError, match=r"other\.pkl holds SB3's ReplayBuffer: .*observations have shape"):
        load_buffers(tmp_path / "other.pkl", spaces.Box(-1, 1, (4,), np.float32), ACTION_SPACE, allow_pickle=True)


def test_agent_warm_starts_from_a_sac_buffer(tmp_path):
    sac = SAC("MlpPolicy", "Pendulum-v1", buffer_size=1000, learning_starts=100, policy_kwargs=dict(net_arch=[32]), seed=0)
    sac.learn(300)
    sac.save_replay_buffer(tmp_path / "sac_buffer")
    kwargs = {**TINY_PMAC_KWARGS, "learning_starts": 0, "model_training": "full"}  # a model step on all the rows
    agent = PMAC("MlpPolicy", "Pendulum-v1", **kwargs, seed=0)
    agent.load_replay_buffer(tmp_path / "sac_buffer", allow_pickle=True)
    buffer, sac_buffer = agent.replay_buffer, sac.replay_buffer
    assert type(buffer) is PolicyVersionedReplayBuffer
    assert buffer.buffer_size == 1000 and (buffer.pos, buffer.full) == (300, False)  # the file's size, as for PMAC's
    for name in ("observations", "next_observations", "actions", "rewards", "dones", "timeouts"):
        assert_same(getattr(buffer, name), getattr(sac_buffer, name), name)
    assert_same(buffer.version_counts(), (np.array([0]), np.array([300])))
    assert agent.policy_version == buffer.current_version == 0
    trained: list[np.ndarray] = []
    train = agent.model_trainer.train

    def recording_train(observations, *args, **kwargs):
        trained.append(observations.cpu().numpy())
        return train(observations, *args, **kwargs)

    agent.model_trainer.train = recording_train
    agent.learn(60, reset_num_timesteps=False)
    assert agent.num_timesteps == 60 and agent.n_model_steps == 2 and agent.model_rounds_trained == 2
    # the first model step (after one step) trained on the SAC run's 300 transitions and the new one
    assert len(trained[0]) == 301
    assert_same(np.unique(trained[0], axis=0), np.unique(buffer.observations[:301, 0], axis=0))
    assert_same(buffer.observations[:300], sac_buffer.observations[:300])
    assert_same(buffer.version_counts(), (np.array([0, 1, 2]), np.array([301, 50, 9])))


# ------------------------------------------------------------------------------------------------------ the agent
def test_agent_round_trip_with_two_envs(tmp_path):
    agent = PMAC(
        "MlpPolicy", make_vec_env("Pendulum-v1", n_envs=2, seed=0), buffer_size=60, learning_starts=1000, seed=0, mixture="tv"
    )
    agent.learn(45)  # 23 positions of 2 envs in a buffer of 30 positions: not full yet
    agent.replay_buffer.start_new_version()
    agent.learn(20, reset_num_timesteps=False)  # wraps around
    assert agent.replay_buffer.full and len(agent.replay_buffer.version_counts()[0]) == 2
    agent.save_replay_buffer(tmp_path / "buffer")
    assert (tmp_path / "buffer.npz").read_bytes()[:4] == ZIP_MAGIC
    other = PMAC("MlpPolicy", make_vec_env("Pendulum-v1", n_envs=2), buffer_size=10, mixture="tv")
    other.load_replay_buffer(tmp_path / "buffer")
    assert other.replay_buffer.buffer_size == 30 and other.replay_buffer.store_policy_params
    assert other.policy_version == agent.replay_buffer.current_version == 1
    assert_same(observables(other.replay_buffer), observables(agent.replay_buffer))
    assert_same(other.model_buffer.state_dict(), agent.model_buffer.state_dict())
    one_env = PMAC("MlpPolicy", "Pendulum-v1", buffer_size=10, mixture="tv")
    with pytest.raises(ValueError, match="2 envs, the agent has 1"):
        one_env.load_replay_buffer(tmp_path / "buffer")


class CustomBuffer(PolicyVersionedReplayBuffer):
    def __init__(self, *args, tag: str = "", **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.tag = tag


def test_agent_keeps_its_buffer_class(tmp_path):
    kwargs = dict(buffer_size=50, learning_starts=1000, replay_buffer_class=CustomBuffer)
    agent = PMAC("MlpPolicy", "Pendulum-v1", replay_buffer_kwargs={"tag": "a"}, **kwargs)
    agent.learn(20)
    agent.save_replay_buffer(tmp_path / "buffer")
    other = PMAC("MlpPolicy", "Pendulum-v1", replay_buffer_kwargs={"tag": "b"}, **kwargs)
    other.load_replay_buffer(tmp_path / "buffer")
    assert type(other.replay_buffer) is CustomBuffer and other.replay_buffer.tag == "b"
    assert_same(observables(other.replay_buffer), observables(agent.replay_buffer))
