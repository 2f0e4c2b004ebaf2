"""
The diagnostics CSV format: column names, the row of one evaluation, appending rows to a file.

One row per evaluation of the dynamics model (the quantities of the paper's Fig. 1 and Fig. 3; ``docs/diagnostics.md``
says what each column measures). Plain Python without torch: :mod:`sb3_pmac.plot` reads the files with these names.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import os
import re
import shutil
from collections.abc import Callable, Mapping, Sequence
from typing import IO, Any

TIMESTEPS = "timesteps"
MIXTURE_EFFECTIVE_VERSIONS = "mixture_effective_versions"
#: The file name a run folder's diagnostics are looked for under (``python -m sb3_pmac.plot diagnostics``)
DIAGNOSTICS_CSV = "diagnostics.csv"
#: The ``k`` of the default newest-``k`` shares (the ``mixture_newest_<k>_share`` columns)
DEFAULT_NEWEST_K = (1, 5)
_COMPOUNDING = re.compile(r"^compounding_obs_mse_h(\d+)$")
_NEWEST_SHARE = re.compile(r"^mixture_newest_(\d+)_share$")


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


def is_diagnostics_column(column: str) -> bool:
    """Whether ``column`` is one of the columns of :func:`csv_columns` (for any horizon and newest-``k``)."""
    return column in BASE_COLUMNS or _NEWEST_SHARE.match(column) is not None or compounding_horizon(column) is not None


def check_diagnostics_csv(path: str | os.PathLike[str], columns: Sequence[str] = ()) -> None:
    """
    Check that diagnostics rows may be written to ``path``: it does not exist, is empty, or is a CSV file whose
    header starts with ``timesteps`` (the first of ``columns``) and holds only diagnostics columns (or ``columns``).

    :param path: CSV file
    :param columns: the columns of the rows to write (default: diagnostics rows)
    :raises ValueError: for a folder or any other file (e.g. an SB3 Monitor or progress CSV); it is not changed
    """
    _read_csv(os.fspath(path), columns)


def csv_timesteps(path: str | os.PathLike[str]) -> list[int]:
    """
    The ``timesteps`` of the rows of a diagnostics CSV file, in file order (``[]`` for no file or an empty one; cells
    that are not numbers are left out).

    :param path: CSV file
    :raises ValueError: for a folder or a file that is not a diagnostics CSV (``check_diagnostics_csv``)
    """
    existing = _read_csv(os.fspath(path), ())
    if existing is None:
        return []
    steps = []
    for row in csv.DictReader(io.StringIO(existing[1], newline="")):
        try:
            steps.append(int(float(row[TIMESTEPS])))
        except (TypeError, ValueError, OverflowError):  # an empty cell, a short row, nan or inf
            continue
    return steps


def _read_csv(path: str, columns: Sequence[str]) -> tuple[list[str], str] | None:
    """Header and text of the CSV file ``path`` (None: no file, or an empty one); see ``check_diagnostics_csv``."""
    if not os.path.exists(path):
        return None
    if os.path.isdir(path):
        raise ValueError(f"{path} is a folder, not a CSV file: give a file name, e.g. {os.path.join(path, DIAGNOSTICS_CSV)}")
    with open(path, "rb") as binary:
        data = binary.read()
    if not data:
        return None
    try:
        text = data.decode("utf-8")
        header = next(csv.reader(io.StringIO(text, newline="")), [])
    except (UnicodeDecodeError, csv.Error):
        header, text = [], ""
    first = columns[0] if columns else TIMESTEPS
    if not header or header[0] != first or not all(c in columns or is_diagnostics_column(c) for c in header):
        line = data.splitlines()[0][:80].decode("utf-8", errors="replace")
        raise ValueError(
            f"{path} is not a diagnostics CSV file (its first line is {line!r}): refusing to write to it, the file is "
            f"left unchanged. A diagnostics CSV starts with the column {first!r} and holds only diagnostics columns "
            "(sb3_pmac.diagnostics.csv_columns); give a new file name"
        )
    return header, text


def _write_atomically(path: str, write: Callable[[IO[str]], None]) -> None:
    """Write ``path`` through a temporary file in its folder renamed over it: a failure leaves the file as it was."""
    directory, name = os.path.split(path)
    tmp = os.path.join(directory, f".{name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "w", newline="", encoding="utf-8") as file:
            write(file)
        if os.path.exists(path):
            shutil.copymode(path, tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def append_csv_row(path: str | os.PathLike[str], row: Mapping[str, Any]) -> None:
    """
    Append a row to a CSV file, writing the header first if the file is new or empty.

    If the file's columns differ from the row's (e.g. rows of another compounding horizon), the file is rewritten
    with the union of the columns (existing ones first); missing cells stay empty. An existing file must hold rows of
    this kind (``check_diagnostics_csv``), else ``ValueError``. The file is replaced atomically (written to a
    temporary file in its folder, then renamed): a failure while writing leaves it as it was.

    :param path: CSV file
    :param row: column -> value
    """
    path = os.fspath(path)
    columns = list(row)
    existing = _read_csv(path, columns)
    if existing is None:
        directory = os.path.dirname(path)
        if directory:
            os.makedirs(directory, exist_ok=True)
        header, text = columns, ""
    else:
        header, text = existing
    union = header + [column for column in columns if column not in header]

    def write(file: IO[str]) -> None:
        writer = csv.DictWriter(file, fieldnames=union, restval="")
        if text and union == header:  # the file as it is, then the row
            file.write(text)
            if not text.endswith(("\n", "\r")):
                file.write("\r\n")
        else:
            writer.writeheader()
            writer.writerows(csv.DictReader(io.StringIO(text, newline="")))
        writer.writerow(row)

    _write_atomically(path, write)


def format_row(row: Mapping[str, float]) -> str:
    """A row as text: two aligned columns, column name and value."""
    width = max(len(key) for key in row)
    return "\n".join(f"{key:<{width}}  {value:.6g}" for key, value in row.items())
