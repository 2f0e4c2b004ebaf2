import os

import pytest
import torch as th


def pytest_configure(config: pytest.Config) -> None:
    # With pytest-xdist each worker is a process: one torch thread each keeps 2 workers on 2 cores.
    if os.environ.get("PYTEST_XDIST_WORKER") is not None:
        th.set_num_threads(1)
