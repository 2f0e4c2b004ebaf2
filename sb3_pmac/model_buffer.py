"""
The model sample buffer :math:`\\mathbb{D}_m` of PMAC and MBPO (Algorithm 2, line 9): a fixed-capacity ring buffer of
torch tensors (on the algorithm's device) filled in bulk by model rollouts, resized as MBPO does when the rollout
horizon grows.
"""

from typing import Any

import torch as th
from stable_baselines3.common.type_aliases import ReplayBufferSamples


class ModelReplayBuffer:
    """
    Model sample buffer :math:`\\mathbb{D}_m`: a ring buffer of torch tensors filled with model rollouts.

    Stored on ``device`` so that on CUDA rollouts and SAC batches never leave the GPU. :meth:`sample` returns
    SB3's ``ReplayBufferSamples`` (``rewards`` and ``dones`` of shape ``[batch, 1]``), ready to be concatenated
    with real samples.

    :param capacity: maximum number of transitions (oldest are overwritten first)
    :param obs_dim: observation size
    :param action_dim: action size
    :param device: PyTorch device
    """

    def __init__(self, capacity: int, obs_dim: int, action_dim: int, device: th.device | str = "cpu") -> None:
        if capacity <= 0:
            raise ValueError(f"capacity must be positive, got {capacity}")
        self.capacity = int(capacity)
        self.obs_dim = int(obs_dim)
        self.action_dim = int(action_dim)
        self.device = th.device(device)
        self._allocate(self.capacity)
        self.pos = 0
        self.full = False

    def _allocate(self, capacity: int) -> None:
        kwargs: dict[str, Any] = {"device": self.device, "dtype": th.float32}
        self.observations = th.zeros((capacity, self.obs_dim), **kwargs)
        self.actions = th.zeros((capacity, self.action_dim), **kwargs)
        self.next_observations = th.zeros((capacity, self.obs_dim), **kwargs)
        self.rewards = th.zeros((capacity,), **kwargs)
        self.dones = th.zeros((capacity,), **kwargs)

    def size(self) -> int:
        """Number of transitions stored."""
        return self.capacity if self.full else self.pos

    def reset(self) -> None:
        """Forget all transitions (keeps the memory)."""
        self.pos = 0
        self.full = False

    def add(
        self,
        observations: th.Tensor,
        actions: th.Tensor,
        rewards: th.Tensor,
        next_observations: th.Tensor,
        dones: th.Tensor,
    ) -> None:
        """
        Append a batch of transitions (any batch size; only the newest ``capacity`` are kept).

        :param observations: ``[N, obs_dim]``
        :param actions: ``[N, action_dim]``
        :param rewards: ``[N]`` (or ``[N, 1]``)
        :param next_observations: ``[N, obs_dim]``
        :param dones: ``[N]`` or ``[N, 1]`` (1.0 where the model rollout terminated)
        :raises ValueError: for other shapes
        """
        n = observations.shape[0]

        def as_column(values: th.Tensor) -> th.Tensor:  # [N, 1] taken as [N]
            return values.squeeze(-1) if values.dim() == 2 and values.shape[-1] == 1 else values

        rewards, dones = as_column(rewards), as_column(dones)
        shapes = {"observations": (observations, (n, self.obs_dim)), "actions": (actions, (n, self.action_dim)),
                  "rewards": (rewards, (n,)), "next_observations": (next_observations, (n, self.obs_dim)),
                  "dones": (dones, (n,))}  # fmt: skip
        for name, (values, shape) in shapes.items():
            if tuple(values.shape) != shape:  # (a [1] reward would be broadcast onto every row)
                raise ValueError(f"ModelReplayBuffer.add: {name} of shape {tuple(values.shape)}, expected {shape}")
        if n == 0:
            return
        columns = (observations, actions, rewards, next_observations, dones.float())  # (rewards, dones: [N] by now)
        if n >= self.capacity:
            columns = tuple(column[n - self.capacity :] for column in columns)  # type: ignore[assignment]
            n = self.capacity
        indices = (th.arange(n, device=self.device) + self.pos) % self.capacity
        for storage, column in zip(self._storages(), columns, strict=True):
            storage[indices] = column.to(device=self.device, dtype=th.float32)
        self.full = self.full or self.pos + n >= self.capacity
        self.pos = (self.pos + n) % self.capacity

    _COLUMNS = ("observations", "actions", "rewards", "next_observations", "dones")

    def _storages(self) -> tuple[th.Tensor, ...]:
        return tuple(getattr(self, name) for name in self._COLUMNS)

    def _ordered(self) -> tuple[th.Tensor, ...]:
        """Stored transitions, oldest first."""
        if not self.full:
            return tuple(storage[: self.pos] for storage in self._storages())
        order = (th.arange(self.capacity, device=self.device) + self.pos) % self.capacity
        return tuple(storage[order] for storage in self._storages())

    def resize(self, capacity: int) -> None:
        """
        Change the capacity, keeping the newest transitions (MBPO grows the model buffer with the rollout horizon).

        :param capacity: new maximum number of transitions
        """
        if capacity <= 0:
            raise ValueError(f"capacity must be positive, got {capacity}")
        if capacity == self.capacity:
            return
        kept = self._ordered()
        self.capacity = int(capacity)
        self._allocate(self.capacity)
        self.pos, self.full = 0, False
        self.add(kept[0], kept[1], kept[2], kept[3], kept[4])

    def sample(self, batch_size: int, generator: th.Generator | None = None) -> ReplayBufferSamples:
        """
        Uniform sample (with replacement) of stored transitions.

        :param batch_size: number of transitions
        :param generator: optional torch random generator (on the buffer's device)
        """
        size = self.size()
        if size == 0:
            raise ValueError("Cannot sample from an empty model buffer")
        indices = th.randint(0, size, (batch_size,), device=self.device, generator=generator)
        return self.get_transitions(indices)

    def get_transitions(self, indices: th.Tensor) -> ReplayBufferSamples:
        """The transitions at ``indices`` as ``ReplayBufferSamples``."""
        return ReplayBufferSamples(
            observations=self.observations[indices],
            actions=self.actions[indices],
            next_observations=self.next_observations[indices],
            dones=self.dones[indices].unsqueeze(1),
            rewards=self.rewards[indices].unsqueeze(1),
        )

    def state_dict(self) -> dict[str, Any]:
        """The stored transitions in storage order, the write position and the capacity (CPU tensors)."""
        size = self.size()
        state: dict[str, Any] = {"capacity": self.capacity, "pos": self.pos, "full": self.full}
        for name in self._COLUMNS:
            state[name] = getattr(self, name)[:size].cpu().clone()
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """
        Restore a state produced by :meth:`state_dict` (same storage layout, so sampling continues identically).

        :raises ValueError: for a state of other observation or action sizes (checked before anything changes)
        """
        capacity = int(state["capacity"])
        widths = {"observations": self.obs_dim, "actions": self.action_dim, "next_observations": self.obs_dim}
        for name in self._COLUMNS:
            column = state[name]
            expected = (widths[name],) if name in widths else ()
            if tuple(column.shape[1:]) != expected or len(column) > capacity:
                raise ValueError(
                    f"The model buffer state's {name} have shape {tuple(column.shape)}, this model buffer needs (at most "
                    f"{capacity}, {', '.join(map(str, expected))}): was it saved with other spaces?"
                )
        self.capacity = capacity
        self._allocate(self.capacity)
        for name in self._COLUMNS:
            column = state[name]
            getattr(self, name)[: len(column)] = column.to(self.device)
        self.pos, self.full = int(state["pos"]), bool(state["full"])
