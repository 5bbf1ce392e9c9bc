"""MA-POCA's parts: groups read from the env API, the departing agent's bootstrap, the critic's inputs,
persistence and export. Its learning is checked in tests/test_learning_teams.py."""

import numpy as np
import pytest
import torch
from gymnasium import spaces
from toy_envs import Dungeon

from sparring import agents
from sparring.agents import POCA, PPOSettings
from sparring.agents.ppo import BehaviourLearner
from sparring.agents.poca import POCALearner, POCASettings, group_keys, group_members, mates_of
from sparring.envs.base import BehaviourStep, DecisionSteps, TerminalSteps
from sparring.export.exporter import ExportError, export_policy
from sparring.spec import BehaviourSpec

SPEC = BehaviourSpec("b", spaces.Box(-1, 1, (3,), np.float32), spaces.Discrete(2))


def test_groups_are_read_from_group_ids_with_ungrouped_agents_alone():
    ids = np.array([7, 0, 3, 7, 0, 7, 3])
    members, group, position = group_members(group_keys(ids))
    assert (members[group, position] == np.arange(len(ids))).all()
    for row in range(len(ids)):
        together = set(members[group[row]][members[group[row]] >= 0])
        expected = {row} if ids[row] == 0 else set(np.flatnonzero(ids == ids[row]))
        assert together == expected
    mates = mates_of(members, group, position)
    assert mates.shape == (len(ids), 2)
    assert set(mates[0][mates[0] >= 0]) == {3, 5}
    assert (mates[1] == -1).all()  # alone


def obs(*rows: float) -> np.ndarray:
    return np.array([[r, 0.0, 0.0] for r in rows], np.float32)


def test_an_agent_that_leaves_its_group_bootstraps_from_the_group_it_leaves_behind():
    """Agent 1 ends its episode (terminated) while 2 and 3 of its group play on: its last decision's
    next value is V(group of 2 and 3 as they are now), not 0. Group 6's episode ended with agent 9, and
    agent 7 starts the group's next episode under a new id (as Unity numbers agents): worth 0. A truncated
    agent alone is worth V of its final observation; one that terminated alone, 0."""
    torch.manual_seed(0)
    learner = POCALearner(SPEC, POCASettings())
    before = DecisionSteps(np.array([1, 2, 3, 9, 4, 8]), obs(0.1, 0.2, 0.3, 0.9, 0.4, 0.6), np.zeros(6, np.float32),
                           group_ids=np.array([5, 5, 5, 6, 0, 0]))
    learner.act(before, torch.Generator().manual_seed(0))
    decisions = DecisionSteps(np.array([2, 3, 7]), obs(0.2, 0.3, 0.95), np.zeros(3, np.float32),
                              group_ids=np.array([5, 5, 6]))
    terminals = TerminalSteps(np.array([1, 9, 4, 8]), obs(0.1, 0.8, 0.5, 0.7), np.zeros(4, np.float32),
                              np.array([False, False, True, False]), group_ids=np.array([5, 6, 0, 0]))
    values = learner._terminal_values(BehaviourStep(decisions, terminals))
    with torch.no_grad():
        group = torch.from_numpy(obs(0.2, 0.3)).unsqueeze(0)
        left_behind = learner.critic.value(group, torch.ones(1, 2)).item()
        alone = learner.critic.value(torch.from_numpy(obs(0.5)).unsqueeze(0), torch.ones(1, 1)).item()
    assert values[:, 0].tolist() == pytest.approx([left_behind, 0.0, alone, 0.0], abs=1e-6)
    assert left_behind != 0.0
    learner.observe(BehaviourStep(decisions, terminals))
    assert learner._playing.tolist() == [2, 3]  # 7 joins when it acts


def test_each_row_reads_its_mates_of_the_same_step_and_its_advantage_is_against_its_baseline():
    torch.manual_seed(0)
    env = Dungeon(areas=2, group_size=3)
    model = POCA(env, seed=0, n_steps=4, batch_size=64, n_epochs=1)
    result = env.reset(seed=0)
    learner = model.learners["escaper"]
    decisions = result["escaper"].decisions
    learner.act(decisions, model.generator)
    buf = learner.buffer
    # agents 0-2 are group 1, 3-5 group 2: every row's mates are the other two of its area
    for row in range(6):
        assert sorted(buf.mates[row][buf.mates[row] >= 0].tolist()) == sorted({row // 3 * 3 + k for k in range(3)} - {row})
    assert len(set(np.round(buf.values[:3, 0], 6))) == 1  # one value per group
    advantages, returns = np.random.default_rng(0).normal(size=(2, buf.size, 1)).astype(np.float32)
    columns = learner._training_columns(buf, slice(0, buf.size), advantages, returns)
    torch.testing.assert_close(columns["advantages"], torch.from_numpy(returns - buf.baselines[: buf.size])[:, 0])
    torch.testing.assert_close(columns["mates_obs"][0], columns["obs"][[1, 2]])


def test_poca_checkpoints_load_as_poca_and_export_their_actor(tmp_path):
    model = POCA(Dungeon(areas=2), seed=0, n_steps=8, batch_size=32, n_epochs=1).learn(48)
    model.save(tmp_path / "m.pt")
    loaded = agents.load(tmp_path / "m.pt")
    assert isinstance(loaded, POCA)
    for (name, p), q in zip(model.learners["escaper"].critic.named_parameters(),
                            loaded.learners["escaper"].critic.parameters()):
        torch.testing.assert_close(p, q, msg=name)
    policy = loaded.policies["escaper"]
    export_policy(policy, tmp_path / "escaper.onnx", "native")
    with pytest.raises(ExportError, match="group"):
        export_policy(policy, tmp_path / "value.onnx", "native", with_value=True)


def test_poca_refuses_memory_it_cannot_train():
    with pytest.raises(ValueError, match="memory"):
        POCASettings(memory={"memory_size": 8, "sequence_length": 4})


def test_independent_learners_train_on_individual_plus_group_reward():
    decisions = DecisionSteps(np.array([1, 2]), obs(0.1, 0.2), np.array([0.5, 0.0], np.float32),
                              group_ids=np.array([3, 3]), group_rewards=np.array([1.0, 1.0], np.float32))
    assert decisions.total_rewards.tolist() == [1.5, 1.0]
    learner = BehaviourLearner(SPEC, PPOSettings())
    learner.act(decisions, torch.Generator().manual_seed(0))
    learner.observe(BehaviourStep(decisions, TerminalSteps.empty(SPEC)))
    assert learner.buffer.rewards[:2].tolist() == [1.5, 1.0]


def test_agents_in_no_group_are_groups_of_one():
    """Every behaviour of an env trains under poca, grouped or not (a Unity game's other behaviours)."""
    from toy_envs import CountingEnv

    model = POCA(CountingEnv(episode_length=4), seed=0, n_steps=8, batch_size=16, n_epochs=1).learn(64)
    assert model.num_updates >= 1
