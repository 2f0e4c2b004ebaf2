import pytest
import torch as th


def pytest_configure(config: pytest.Config) -> None:
    # Small networks run fastest on one thread, and with pytest-xdist each worker is a process of its own:
    # one torch thread per process keeps 2 workers on 2 cores without oversubscription.
    th.set_num_threads(1)
