"""
Does a termination function agree with the env on the real data? Model rollouts end where the termination function
says so, and the env's own terminations are in the real replay buffer: a rule that misses most of them (no rule known
for the env, a rule reading observations through a wrapper, a custom rule with a bug) makes every model transition
after a fall bootstrap as if the episode went on, with no error anywhere. :func:`termination_agreement` measures it on
a sample of the buffer; :class:`~sb3_pmac.pmac.PMAC` warns once when the two disagree.
"""

from dataclasses import dataclass

import numpy as np
import torch as th

from sb3_pmac.buffers import PolicyVersionedReplayBuffer
from sb3_pmac.termination.rules import TerminationFn, terminations

#: Real terminations a rule may miss, and real non-terminal transitions it may end, before PMAC warns (observations
#: are stored in float32 while envs decide in float64, so a transition at the boundary can flip)
MAX_MISSED_TERMINATIONS = 0.5
MAX_FALSE_TERMINATIONS = 0.05


@dataclass(frozen=True)
class TerminationAgreement:
    """The termination function on a sample of real transitions."""

    n_terminal: int  #: real transitions the env terminated (time-limit truncations excluded)
    n_missed: int  #: of those, the ones the function does not end
    n_nonterminal: int  #: real transitions that did not end the episode (neither terminated nor truncated)
    n_false: int  #: of those, the ones the function ends

    @property
    def missed_rate(self) -> float:
        """Share of the env's terminations the function misses (0 when there are none)."""
        return self.n_missed / self.n_terminal if self.n_terminal else 0.0

    @property
    def false_rate(self) -> float:
        """Share of the non-terminal transitions the function ends (0 when there are none)."""
        return self.n_false / self.n_nonterminal if self.n_nonterminal else 0.0

    def disagrees(self, min_terminal: int = 5, min_nonterminal: int = 50) -> bool:
        """Whether the function disagrees with the env beyond the float32 margin, on enough transitions to tell."""
        missed = self.n_terminal >= min_terminal and self.missed_rate > MAX_MISSED_TERMINATIONS
        false = self.n_nonterminal >= min_nonterminal and self.false_rate > MAX_FALSE_TERMINATIONS
        return missed or false


def termination_agreement(
    termination_fn: TerminationFn,
    buffer: PolicyVersionedReplayBuffer,
    n_samples: int = 256,
    seed: int = 0,
) -> TerminationAgreement:
    """
    Apply ``termination_fn`` to up to ``n_samples`` terminal and ``n_samples`` non-terminal transitions of the real
    buffer (raw observations, actions in the buffer's [-1, 1] scale, as in model rollouts) and count where it differs
    from the env.

    :param termination_fn: ``(obs, actions, next_obs) -> done``
    :param buffer: the real replay buffer. One made with ``handle_timeout_termination=False`` does not tell time-limit
        truncations from terminations: only its non-terminal transitions are checked (``n_terminal`` is 0)
    :param n_samples: transitions of each kind to check at most (drawn without replacement)
    :param seed: seed of the draw (a generator of its own: the global ones are left alone)
    :return: the counts
    """
    n = buffer.size()
    done = buffer.dones[:n] > 0.5  # [n, n_envs]
    terminal = done & (buffer.timeouts[:n] < 0.5)
    rng = np.random.default_rng(seed)
    counts = []
    known_terminal = terminal if buffer.handle_timeout_termination else np.zeros_like(terminal)
    for mask in (known_terminal, ~done):
        batch_inds, env_inds = np.nonzero(mask)
        if len(batch_inds) > n_samples:
            keep = np.sort(rng.choice(len(batch_inds), n_samples, replace=False))
            batch_inds, env_inds = batch_inds[keep], env_inds[keep]
        if len(batch_inds) == 0:
            counts.append((0, 0))
            continue
        data = buffer.get_transitions(batch_inds, env_inds)
        with th.no_grad():
            ended = terminations(termination_fn, data.observations, data.actions, data.next_observations)
        n_ended = int(ended.sum())
        counts.append((len(batch_inds), n_ended))
    (n_terminal, n_ended_terminal), (n_nonterminal, n_false) = counts
    return TerminationAgreement(n_terminal, n_terminal - n_ended_terminal, n_nonterminal, n_false)
