"""Fixtures shared by the test suite, and the seed option of the learning tests.

A learning test asserts a claim that must hold for any seed, not one lucky trajectory
(float rounding differs between CPUs, so another machine is another seed). Each takes
the ``learning_seed`` fixture: its own seed by default, or, to measure the spread of
its claim, every seed given with ``--learning-seeds`` (``0-9``, ``1,3,5``); with
``--learning-log FILE`` each test also appends what it measured to FILE (JSON lines).
"""

import json

import pytest
import torch


def pytest_addoption(parser):
    parser.addoption("--learning-seeds", default=None, metavar="SEEDS",
                     help="run each learning test once per seed (e.g. 0-9 or 1,3,5) instead of on its own seed")
    parser.addoption("--learning-log", default=None, metavar="FILE",
                     help="append what each learning test measured to FILE (JSON lines)")


def parse_seeds(text: str) -> list[int]:
    """``"0-3,7"`` -> ``[0, 1, 2, 3, 7]``."""
    seeds: list[int] = []
    for part in text.split(","):
        first, _, last = part.partition("-")
        seeds.extend(range(int(first), int(last or first) + 1))
    return seeds


def pytest_generate_tests(metafunc):
    if "learning_seed" in metafunc.fixturenames:
        option = metafunc.config.getoption("learning_seeds")
        seeds = parse_seeds(option) if option else [0]
        metafunc.parametrize("learning_seed", seeds, ids=[f"seed{s}" for s in seeds])


@pytest.fixture
def measured(request, learning_seed):
    """``measured(name=value, ...)``: what a learning test measured, printed (``-rP`` shows it) and logged."""
    def record(**values):
        row = {"test": request.node.originalname, "seed": learning_seed, **values}
        print(json.dumps(row))
        path = request.config.getoption("learning_log")
        if path:
            with open(path, "a") as log:
                log.write(json.dumps(row) + "\n")
    return record


@pytest.fixture
def one_torch_thread():
    """Learning tests run with one torch thread: reproducible, and fair to the other core."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def ray_cluster(tmp_path_factory):
    """A one-node Ray cluster started for the session's Ray tests (``ray start --head``), stopped at the end."""
    from ray_cluster import RayCluster

    cluster = RayCluster(tmp_path_factory.mktemp("ray"))
    try:
        cluster.start_node(num_cpus=2, resources={"game": 8})
        yield cluster
    finally:
        cluster.stop()
