"""Cooperative groups: MA-POCA gives credit to the agent that acts for the others; independent PPO rarely does.

Each test's docstring gives what it measured over seeds 0-9 (``pytest -m slow --learning-seeds 0-9``).
"""

import numpy as np
import pytest
from toy_envs import DUNGEON_SETTINGS, Dungeon, escape_rate

from sparring.agents import POCA, PPO

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("one_torch_thread")]


def test_poca_learns_the_sacrifice_that_independent_ppo_rarely_keeps(learning_seed, measured):
    """The Dungeon: only group rewards, earned only after one agent gives itself up (and earns nothing).
    80k decisions each, the greedy policies on fresh dungeons; random play escapes 0.30.

    Seeds 0-9: MA-POCA escapes from every dungeon (1.000 on all ten). PPO, trained on the same
    individual-plus-group rewards, unlearns fighting on most seeds: it escapes from none on 48 of 50
    seeds (0-49), from all on seeds 0 and 3, where one agent came to fight whose own value was already
    0, so dying cost it nothing. Asserted: MA-POCA's rate, and that PPO's median over five seeds
    (5k .. 5k+4) is 0."""
    poca = POCA(Dungeon(areas=32), seed=learning_seed, **DUNGEON_SETTINGS).learn(80_000)
    poca_rate = escape_rate(poca, seed=100 + learning_seed)
    ppo_rates = [escape_rate(PPO(Dungeon(areas=32), seed=seed, **DUNGEON_SETTINGS).learn(80_000), seed=100 + seed)
                 for seed in range(5 * learning_seed, 5 * learning_seed + 5)]
    measured(poca_escape_rate=poca_rate, ppo_escape_rates=ppo_rates)
    assert poca_rate >= 0.9
    assert np.median(ppo_rates) == 0.0
