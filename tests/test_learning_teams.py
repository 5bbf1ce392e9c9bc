"""Cooperative groups: MA-POCA gives credit to the agent that acts for the others; independent PPO cannot.

Each test's docstring gives what it measured over seeds 0-9 (``pytest -m slow --learning-seeds 0-9``).
"""

import pytest
from toy_envs import DUNGEON_SETTINGS, Dungeon, escape_rate

from sparring.agents import POCA, PPO

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("one_torch_thread")]


def test_poca_learns_the_sacrifice_that_independent_ppo_unlearns(learning_seed, measured):
    """The Dungeon: only group rewards, earned only after one agent gives itself up (and earns nothing).
    80k decisions each, the greedy policies on fresh dungeons. Seeds 0-9: MA-POCA escapes from every
    dungeon (1.000 on all ten); PPO, trained on the same individual-plus-group rewards, from none (0.000 on
    all ten: nobody fights any more). Random play escapes 0.30."""
    poca = POCA(Dungeon(areas=32), seed=learning_seed, **DUNGEON_SETTINGS).learn(80_000)
    ppo = PPO(Dungeon(areas=32), seed=learning_seed, **DUNGEON_SETTINGS).learn(80_000)
    poca_rate, ppo_rate = escape_rate(poca, 100 + learning_seed), escape_rate(ppo, 100 + learning_seed)
    measured(poca_escape_rate=poca_rate, ppo_escape_rate=ppo_rate)
    assert poca_rate >= 0.9
    assert poca_rate - ppo_rate >= 0.5
