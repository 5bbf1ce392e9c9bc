"""Groups, game statistics and environment parameters of a Unity build, through the real mlagents_envs code path.

The build is the stand-in player (engines/unity/) with ``--group``: its ``Escaper`` behaviour plays
tests/toy_envs.py's ``Dungeon`` as a Unity group game sends it (``SimpleMultiAgentGroup``), records
``Dungeon/Escaped`` with the StatsRecorder, and reads its time limit, ``escaper_max_steps``, from the
environment parameters channel at the start of every group episode.
"""

from __future__ import annotations

import json
from collections import Counter

import numpy as np
import pytest
import yaml

from sparring.agents import POCA
from sparring.envs.base import StepResult, check_env, random_actions
from sparring.envs.parameters import GaussianSampler, MultiRangeUniformSampler, UniformSampler
from sparring.envs.unity import MultiUnityEnv
from sparring.envs.vector import split_agent_ids
from toy_envs import DUNGEON_SETTINGS
from unity_harness import DISTUTILS_WARNING, build_player, free_ports

pytestmark = [pytest.mark.timeout(120), pytest.mark.filterwarnings(DISTUTILS_WARNING)]

ESCAPER = "Escaper"
DUNGEONS, GROUP_SIZE, TIME_LIMIT = 2, 3, 6  # --agents 2: two dungeons of three per build
WAIT, FIGHT, FIRST_DOOR = 0, 1, 2


@pytest.fixture(scope="module")
def player(tmp_path_factory) -> str:
    return build_player(tmp_path_factory.mktemp("standin"))


def launch(player: str, num_envs: int = 2, *extra_args: str, **options) -> MultiUnityEnv:
    options.setdefault("timeout_wait", 20)
    return MultiUnityEnv(player, num_envs, base_port=free_ports(num_envs), no_graphics=True,
                         additional_args=["--group", "--agents", str(DUNGEONS), *extra_args], **options)


def play(env: MultiUnityEnv, result: StepResult, escapers: np.ndarray) -> StepResult:
    """One step: the escapers take ``escapers``, the other behaviours random actions (which do not matter here)."""
    rng = np.random.default_rng(0)
    actions = {name: random_actions(env.specs[name], len(step.decisions), step.decisions.action_mask, rng)
               for name, step in result.items() if name != ESCAPER}
    return env.step({**actions, ESCAPER: escapers})


def escape(obs: np.ndarray) -> np.ndarray:
    """The winning plan: the first of each group fights the dragon; the others wait, then open the door it guarded."""
    dragon = obs[:, 3] == 1
    return np.where(dragon, np.where(obs[:, 0] == 1, FIGHT, WAIT), FIRST_DOOR + np.argmax(obs[:, 4:8], axis=1))


def waiting_time_limits(env: MultiUnityEnv, steps: int, result: StepResult | None = None) -> list[tuple[int, int, int]]:
    """``(build, restarts so far, length)`` of every escaper episode that ended while all escapers waited ``steps``
    steps from ``result`` (default: a reset), counting the episodes that began in ``result`` or later.

    Waiting escapers never escape, so each group episode runs to its time limit: its length is the
    ``escaper_max_steps`` the build read as the episode started.
    """
    result = env.reset() if result is None else result
    decisions = Counter(result[ESCAPER].decisions.agent_ids.tolist())  # per live agent, its episode's so far
    ended = []
    for _ in range(steps):
        result = play(env, result, np.full(len(result[ESCAPER].decisions), WAIT))
        escapers = result[ESCAPER]
        for agent in escapers.lost:
            decisions.pop(agent)
        for agent in escapers.terminals.agent_ids:
            ended.append((int(split_agent_ids(agent)[0]), env.restarts, decisions.pop(agent)))
        decisions.update(escapers.decisions.agent_ids.tolist())
    return ended


def lengths_of(ended: list[tuple[int, int, int]], build: int) -> list[int]:
    return [length for index, _, length in ended if index == build]


def test_random_play_through_a_unity_group_game_passes_check_env(player):
    with launch(player) as env:
        spec = env.specs[ESCAPER]
        assert spec.observation_space.shape == (9,) and spec.action_branches == (6,)
        check_env(env, steps=100)


def test_each_dungeon_s_three_agents_share_a_group_id_of_their_own(player):
    with launch(player) as env:
        decisions = env.reset()[ESCAPER].decisions
    groups = Counter(decisions.group_ids.tolist())
    assert len(groups) == 2 * DUNGEONS and set(groups.values()) == {GROUP_SIZE} and 0 not in groups
    np.testing.assert_array_equal(decisions.group_rewards, 0.0)


def test_the_agent_that_fights_leaves_its_group_while_its_mates_escape_with_the_group_reward(player):
    with launch(player) as env:
        result = env.reset()
        first = result[ESCAPER].decisions
        group_of = dict(zip(first.agent_ids.tolist(), first.group_ids.tolist()))
        fighters = first.agent_ids[first.obs[:, 0] == 1]

        result = play(env, result, escape(first.obs))
        fought, mates = result[ESCAPER].terminals, result[ESCAPER].decisions
        np.testing.assert_array_equal(np.sort(fought.agent_ids), np.sort(fighters))
        assert fought.terminated.all() and (fought.total_rewards == 0).all()
        assert fought.group_ids.tolist() == [group_of[agent] for agent in fought.agent_ids.tolist()]
        assert set(mates.agent_ids.tolist()) == set(group_of) - set(fighters.tolist())  # they play on
        assert mates.group_ids.tolist() == [group_of[agent] for agent in mates.agent_ids.tolist()]
        assert (mates.obs[:, 3] == 0).all() and (mates.obs[:, 4:8].sum(axis=1) == 1).all()  # dragon dead, code shown

        result = play(env, result, escape(mates.obs))
        escaped, next_episode = result[ESCAPER].terminals, result[ESCAPER].decisions
        assert set(escaped.agent_ids.tolist()) == set(mates.agent_ids.tolist())
        assert escaped.terminated.all() and (escaped.rewards == 0).all() and (escaped.group_rewards == 1).all()
        assert escaped.group_ids.tolist() == [group_of[agent] for agent in escaped.agent_ids.tolist()]
        # every member back under a fresh id, in the same group
        assert len(next_episode) == len(first) and not set(next_episode.agent_ids.tolist()) & set(group_of)
        assert Counter(next_episode.group_ids.tolist()) == Counter(first.group_ids.tolist())
        assert env.drain_stats() == {"Dungeon/Escaped": [(1.0, "average")] * (2 * DUNGEONS)}
        assert env.drain_stats() == {}  # drained


def test_a_wrong_code_traps_the_group_with_nothing_earned(player):
    with launch(player) as env:
        result = env.reset()
        result = play(env, result, escape(result[ESCAPER].decisions.obs))
        mates = result[ESCAPER].decisions
        wrong = FIRST_DOOR + (np.argmax(mates.obs[:, 4:8], axis=1) + 1) % 4
        result = play(env, result, wrong)
        trapped = result[ESCAPER].terminals
        assert set(trapped.agent_ids.tolist()) == set(mates.agent_ids.tolist())
        assert trapped.terminated.all() and (trapped.total_rewards == 0).all()
        assert len(result[ESCAPER].decisions) == 2 * DUNGEONS * GROUP_SIZE  # the next group episodes begin
        assert env.drain_stats() == {"Dungeon/Escaped": [(0.0, "average")] * (2 * DUNGEONS)}


def test_a_group_that_all_fight_ends_at_once_and_begins_again(player):
    with launch(player) as env:
        result = env.reset()
        first = result[ESCAPER].decisions
        result = play(env, result, np.full(len(first), FIGHT))
        ended, again = result[ESCAPER].terminals, result[ESCAPER].decisions
        assert set(ended.agent_ids.tolist()) == set(first.agent_ids.tolist()) and ended.terminated.all()
        assert len(again) == len(first) and (again.obs[:, 3] == 1).all()  # every member back, the dragon too
        assert env.drain_stats() == {"Dungeon/Escaped": [(0.0, "average")] * (2 * DUNGEONS)}


def test_a_group_that_only_waits_is_interrupted_at_the_time_limit_and_records_no_escape(player):
    with launch(player) as env:
        result = env.reset()
        for _ in range(TIME_LIMIT):
            assert len(result[ESCAPER].terminals) == 0
            result = play(env, result, np.full(len(result[ESCAPER].decisions), WAIT))
        ended = result[ESCAPER].terminals
        assert len(ended) == 2 * DUNGEONS * GROUP_SIZE and ended.truncated.all()
        assert (ended.group_rewards == 0).all() and (ended.obs[:, 8] == 1).all()
        assert env.drain_stats() == {"Dungeon/Escaped": [(0.0, "average")] * (2 * DUNGEONS)}


def test_a_number_set_before_reset_is_the_time_limit_from_the_first_group_episodes_on(player):
    with launch(player) as env:
        env.set_parameters({"escaper_max_steps": 4})
        ended = waiting_time_limits(env, 3 * 4)
    assert len(ended) == 3 * 2 * DUNGEONS * GROUP_SIZE and {length for _, _, length in ended} == {4}


def test_a_number_set_mid_run_is_the_time_limit_of_the_next_group_episodes(player):
    with launch(player) as env:
        result = env.reset()
        env.set_parameters({"escaper_max_steps": 4})
        for _ in range(TIME_LIMIT):  # the group episodes under way keep their time limit
            assert len(result[ESCAPER].terminals) == 0
            result = play(env, result, np.full(len(result[ESCAPER].decisions), WAIT))
        assert len(result[ESCAPER].terminals) == 2 * DUNGEONS * GROUP_SIZE
        ended = waiting_time_limits(env, 2 * 4, result)
    assert len(ended) == 2 * 2 * DUNGEONS * GROUP_SIZE and {length for _, _, length in ended} == {4}


def test_a_uniform_sampler_is_drawn_by_the_build_at_every_group_episode_within_its_range(player):
    with launch(player, environment_parameters={"escaper_max_steps": UniformSampler(min_value=3, max_value=8)}) as env:
        ended = waiting_time_limits(env, 80)
    for build in (0, 1):
        lengths = lengths_of(ended, build)
        assert len(lengths) >= 10 * GROUP_SIZE and set(lengths) <= {3, 4, 5, 6, 7}
        assert len(set(lengths)) >= 3, lengths  # drawn afresh, not once


def test_sampler_draws_differ_between_builds_and_repeat_with_the_seed(player):
    def draws(seed: int, sampler_seed: int = -1) -> list[list[int]]:
        parameters = {"escaper_max_steps": UniformSampler(min_value=3, max_value=8, seed=sampler_seed)}
        with launch(player, seed=seed, environment_parameters=parameters) as env:
            ended = waiting_time_limits(env, 40)
        return [lengths_of(ended, build) for build in (0, 1)]

    first = draws(seed=1)
    assert first[0] != first[1]
    assert draws(seed=1) == first
    assert draws(seed=2) != first
    own_seed = draws(seed=1, sampler_seed=7)
    assert own_seed[0] == own_seed[1]  # a seed the config gives is the build's sampler seed, as in ML-Agents


@pytest.mark.parametrize("sampler, limits", [
    (GaussianSampler(mean=5.5, st_dev=0.0), {5}),
    (MultiRangeUniformSampler(intervals=[(3.0, 4.0), (9.0, 10.0)]), {3, 9}),
])
def test_gaussian_and_multirange_samplers_reach_the_build(player, sampler, limits):
    with launch(player, 1) as env:
        env.set_parameters({"escaper_max_steps": sampler})
        ended = waiting_time_limits(env, 60)
    assert set(lengths_of(ended, 0)) == limits


def test_a_relaunched_build_gets_the_parameters_set_before_its_predecessor_crashed(player):
    with launch(player, 1, "--crash-after-steps", "12", restart_backoff=0.05) as env:
        env.set_parameters({"escaper_max_steps": 4})
        ended = waiting_time_limits(env, 24)
        assert env.metrics["crashes"] == 1
    relaunched = [length for _, restarts, length in ended if restarts == 1]
    assert len(relaunched) >= 2 * DUNGEONS * GROUP_SIZE and set(relaunched) == {4}


def test_a_crashed_build_s_statistics_received_before_the_crash_are_still_drained(player):
    """Both builds escape twice per dungeon, then crash: the trainer keeps every escape they reported."""
    with launch(player, 2, "--crash-after-steps", "4", restart_backoff=0.05) as env:
        result = env.reset()
        for _ in range(5):
            result = play(env, result, escape(result[ESCAPER].decisions.obs))
        assert env.metrics["crashes"] == 2
        assert env.drain_stats() == {"Dungeon/Escaped": [(1.0, "average")] * (2 * 2 * DUNGEONS)}


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_poca_learns_the_escape_from_a_unity_build(player, learning_seed, measured, one_torch_thread):
    """MA-POCA through envs/unity.py: two builds of 16 dungeons each (and their Seekers and Movers, trained too),
    150k decisions, then the greedy escapers for 60 steps. Seeds 0-9: 959 to 960 of 960 group episodes escaped
    (0.999 on seed 0, 1.000 on the others; random play: 0.30)."""
    with MultiUnityEnv(player, 2, base_port=free_ports(2), no_graphics=True, seed=learning_seed, timeout_wait=20,
                       additional_args=["--group", "--agents", "16"]) as env:
        model = POCA(env, seed=learning_seed, **DUNGEON_SETTINGS).learn(150_000)
        env.drain_stats()  # training's episodes
        result = model._current
        for _ in range(60):
            result = env.step({name: model.predict(step.decisions.obs, name, step.decisions.action_mask)
                               for name, step in result.items() if len(step.decisions)})
        escaped = [value for value, _ in env.drain_stats()["Dungeon/Escaped"]]
    measured(escape_rate=float(np.mean(escaped)), group_episodes=len(escaped))
    assert np.mean(escaped) >= 0.9


POCA_RUN = """
behaviors:
  Escaper: &small
    trainer_type: poca
    hyperparameters: {batch_size: 64, buffer_size: 128, num_epoch: 1}
    network_settings: {hidden_units: 16, num_layers: 1}
    time_horizon: 4
    max_steps: 300
    summary_freq: 200
  Seeker: *small
  Mover: *small
"""


@pytest.mark.timeout(180)
def test_an_mlagents_poca_file_trains_the_group_and_logs_the_game_s_statistics(player, tmp_path):
    """`sparring train` on an ML-Agents file with trainer_type poca: the stand-in's StatsRecorder values reach
    metrics.jsonl and TensorBoard under the game's own name, averaged over each summary period."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from sparring.cli import main

    path = tmp_path / "run.yaml"
    path.write_text(POCA_RUN)
    assert main(["train", str(path), "--results-dir", str(tmp_path / "results"), "--run-id", "r", "--env", player,
                 "--base-port", str(free_ports()), "--no-graphics", "--env-args", "--group", "--agents", "2"]) == 0
    run = tmp_path / "results" / "r"
    assert yaml.safe_load((run / "configuration.yaml").read_text())["trainer"]["algorithm"] == "poca"
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    escaped = [row["Dungeon/Escaped"] for row in rows if row["behaviour"] == ESCAPER]
    assert escaped and all(0.0 <= value <= 1.0 for value in escaped)
    events = EventAccumulator(str(run / "tensorboard" / ESCAPER))
    events.Reload()
    assert [e.value for e in events.Scalars("Dungeon/Escaped")] == pytest.approx(escaped)
