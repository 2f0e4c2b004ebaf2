"""
The diagnostics CSV format: column names, the row of one evaluation, appending rows to a file.

One row per evaluation of the dynamics model (the quantities of the paper's Fig. 1 and Fig. 3; ``docs/diagnostics.md``
says what each column measures). Plain Python without torch: :mod:`sb3_pmac.plot` reads the files with these names.
"""

from __future__ import annotations

import csv
import dataclasses
import os
import re
from collections.abc import Mapping, Sequence
from typing import Any

TIMESTEPS = "timesteps"
MIXTURE_EFFECTIVE_VERSIONS = "mixture_effective_versions"
#: The file name a run folder's diagnostics are looked for under (``python -m sb3_pmac.plot diagnostics``)
DIAGNOSTICS_CSV = "diagnostics.csv"
DEFAULT_NEWEST_K = (1, 5)
_COMPOUNDING = re.compile(r"^compounding_obs_mse_h(\d+)$")


def one_step_column(scope: str, kind: str) -> str:
    """``<scope>_<kind>_mse``: the one-step error on fresh transitions (local) or on the replay buffer (global)."""
    return f"{scope}_{kind}_mse"


def newest_share_column(k: int) -> str:
    """``mixture_newest_<k>_share``: the total probability of the ``k`` newest policy versions with data."""
    return f"mixture_newest_{k}_share"


def compounding_column(h: int) -> str:
    """``compounding_obs_mse_h<h>``: the observation error after ``h`` model steps."""
    return f"compounding_obs_mse_h{h}"


def compounding_horizon(column: str) -> int | None:
    """The ``h`` of a :func:`compounding_column` name, None for any other column."""
    match = _COMPOUNDING.match(column)
    return int(match[1]) if match else None


#: The columns every diagnostics row starts with (then the newest-k shares and the compounding errors).
BASE_COLUMNS = (
    TIMESTEPS,
    *(one_step_column(scope, kind) for scope in ("local", "global") for kind in ("obs", "reward")),
    MIXTURE_EFFECTIVE_VERSIONS,
)


def check_newest_k(newest_k: Sequence[int]) -> tuple[int, ...]:
    """The ``k`` of the newest-``k`` shares, unique and in order; ``ValueError`` unless they are positive."""
    values = tuple(dict.fromkeys(int(k) for k in newest_k))
    if any(k < 1 for k in values):
        raise ValueError(f"newest_k must hold positive ints, got {list(newest_k)}")
    return values


def csv_columns(horizon: int, newest_k: Sequence[int] = DEFAULT_NEWEST_K) -> list[str]:
    """
    The keys of :func:`~sb3_pmac.diagnostics.evaluate_model`'s result, in CSV column order.

    :param horizon: number of compounding steps ``H``
    :param newest_k: the ``k`` of the ``mixture_newest_<k>_share`` columns
    """
    return [
        *BASE_COLUMNS,
        *(newest_share_column(k) for k in check_newest_k(newest_k)),
        *(compounding_column(h) for h in range(1, int(horizon) + 1)),
    ]


@dataclasses.dataclass
class ModelDiagnostics:
    """
    One evaluation, typed; :meth:`to_dict` is its CSV row.

    :param timesteps: the agent's ``num_timesteps``
    :param local_obs_mse: next-observation MSE on fresh transitions of the current policy
    :param local_reward_mse: reward MSE on the same transitions
    :param global_obs_mse: next-observation MSE on a uniform sample of the replay buffer (NaN without a buffer)
    :param global_reward_mse: reward MSE on the same sample (NaN without a buffer)
    :param mixture_effective_versions: :math:`1/\\sum_i p_i^2` of the model-training mixture (NaN without a buffer)
    :param mixture_newest_shares: ``{k: share of the k newest versions}`` (NaN without a buffer)
    :param compounding_obs_mse: observation MSE after ``h = 1..H`` model steps (index ``h - 1``)
    """

    timesteps: int
    local_obs_mse: float
    local_reward_mse: float
    global_obs_mse: float
    global_reward_mse: float
    mixture_effective_versions: float
    mixture_newest_shares: dict[int, float]
    compounding_obs_mse: list[float]

    def to_dict(self) -> dict[str, float]:
        """The flat row of the CSV schema (:func:`csv_columns`)."""
        row: dict[str, float] = {name: getattr(self, name) for name in BASE_COLUMNS}
        for k, share in self.mixture_newest_shares.items():
            row[newest_share_column(k)] = share
        for h, error in enumerate(self.compounding_obs_mse, start=1):
            row[compounding_column(h)] = error
        return row


def append_csv_row(path: str | os.PathLike[str], row: Mapping[str, Any]) -> None:
    """
    Append a row to a CSV file, writing the header first if the file is new or empty.

    If the file's columns differ from the row's (e.g. rows of another compounding horizon), the file is rewritten
    with the union of the columns (existing ones first); missing cells stay empty.

    :param path: CSV file
    :param row: column -> value
    """
    path = os.fspath(path)
    columns = list(row)
    if os.path.exists(path) and os.path.getsize(path) > 0:
        with open(path, newline="") as file:
            reader = csv.DictReader(file)
            header = list(reader.fieldnames or [])
            rows = None if header == columns else list(reader)
        if rows is None:
            with open(path, "a", newline="") as file:
                csv.DictWriter(file, fieldnames=columns).writerow(row)
            return
        union = header + [column for column in columns if column not in header]
        with open(path, "w", newline="") as file:
            writer = csv.DictWriter(file, fieldnames=union, restval="")
            writer.writeheader()
            writer.writerows(rows)
            writer.writerow(row)
        return
    directory = os.path.dirname(path)
    if directory:
        os.makedirs(directory, exist_ok=True)
    with open(path, "w", newline="") as file:
        writer = csv.DictWriter(file, fieldnames=columns)
        writer.writeheader()
        writer.writerow(row)


def format_row(row: Mapping[str, float]) -> str:
    """A row as text: two aligned columns, column name and value."""
    width = max(len(key) for key in row)
    return "\n".join(f"{key:<{width}}  {value:.6g}" for key, value in row.items())
