"""Groups, game statistics and environment parameters over the bridge (protocol version 2), with real parts: loopback
gRPC and TCP servers, the Python SDK's squad game (tests/engines/squad_game.py) in a thread or launched as processes.
"""

import sys
from pathlib import Path

import numpy as np
import pytest

import sparring_engine as se
from engine_threads import engine_in_thread, load_engine
from sparring.envs.base import check_step_result
from sparring.envs.bridge.codec import ProtocolError
from sparring.envs.bridge.env import BridgeEnv, EngineFailure, MultiEngineEnv
from sparring.envs.bridge.parameters import EngineParameters
from sparring.envs.bridge.server import BridgeServer
from sparring.envs.parameters import GaussianSampler, MultiRangeUniformSampler, UniformSampler
from sparring.envs.vector import split_agent_ids
from sparring.protos.sparring.v1 import bridge_pb2 as pb
from sparring.protos.wire import encode_tensor

pytestmark = pytest.mark.timeout(120)

ENGINES = Path(__file__).resolve().parent / "engines"
SQUAD_GAME = ENGINES / "squad_game.py"
FAULTY = str(ENGINES / "faulty_game.py")
TRANSPORTS = ["grpc", "tcp"]
NOTHING, EARN, LEAVE, END_GROUP, INTERRUPT_GROUP = range(5)


squad_game = load_engine("squad_game")


@pytest.fixture(params=TRANSPORTS)
def squads(request):
    """A BridgeEnv over ``request.param`` whose engine is the squad game, run by the SDK in a thread."""
    with BridgeServer(handshake_timeout=5.0) as server:
        with engine_in_thread(server, request.param, squad_game.Squads(), engine_name="squads") as env:
            yield env


def step(env, *actions):
    result = env.step({"Mate": np.array(actions, np.int64)})
    check_step_result(env.specs, result)
    return result["Mate"]


def columns(rows):
    return rows.agent_ids.tolist(), rows.group_ids.tolist(), rows.group_rewards.tolist()


# -- groups ------------------------------------------------------------------------------


def test_group_ids_and_group_rewards_reach_the_trainer(squads):
    first = squads.reset(seed=0)["Mate"]
    assert columns(first.decisions) == ([0, 1, 2, 3], [1, 1, 2, 2], [0, 0, 0, 0])
    mates = step(squads, EARN, NOTHING, EARN, EARN)  # group 1 earns 1, group 2 earns 2
    assert columns(mates.decisions) == ([0, 1, 2, 3], [1, 1, 2, 2], [1, 1, 2, 2])
    assert mates.decisions.rewards.tolist() == [0] * 4 and mates.decisions.total_rewards.tolist() == [1, 1, 2, 2]
    mates = step(squads, NOTHING, NOTHING, NOTHING, NOTHING)
    assert columns(mates.decisions)[2] == [0, 0, 0, 0]  # each group reward is reported once


def test_an_agent_that_leaves_its_group_mid_episode_while_the_others_play_on(squads):
    squads.reset(seed=0)
    mates = step(squads, LEAVE, EARN, NOTHING, NOTHING)  # agent 0 leaves after its group earned 1
    assert columns(mates.terminals) == ([0], [1], [1])  # it ends with the group it left and what it earned there
    assert mates.terminals.truncated.tolist() == [False]
    assert columns(mates.decisions) == ([0, 1, 2, 3], [0, 1, 2, 2], [0, 1, 0, 0])  # agent 0 plays on, alone
    mates = step(squads, EARN, EARN, NOTHING, NOTHING)  # agent 0's action no longer rewards group 1
    assert columns(mates.decisions) == ([0, 1, 2, 3], [0, 1, 2, 2], [0, 1, 0, 0])
    assert len(mates.terminals) == 0


@pytest.mark.parametrize("action, truncated", [(END_GROUP, False), (INTERRUPT_GROUP, True)])
def test_a_group_episode_ends_every_member_and_the_group_plays_on(squads, action, truncated):
    squads.reset(seed=0)
    mates = step(squads, NOTHING, NOTHING, EARN, action)
    assert columns(mates.terminals) == ([2, 3], [2, 2], [1, 1])
    assert mates.terminals.truncated.tolist() == [truncated] * 2
    assert columns(mates.decisions) == ([0, 1, 2, 3], [1, 1, 2, 2], [0, 0, 0, 0])  # new episodes, same groups


def test_a_reset_forgets_group_rewards_its_episodes_did_not_report(squads):
    squads.reset(seed=0)
    step(squads, LEAVE, NOTHING, NOTHING, NOTHING)
    first = squads.reset(seed=1)["Mate"]
    assert columns(first.decisions) == ([0, 1, 2, 3], [1, 1, 2, 2], [0, 0, 0, 0])  # agent 0 is registered again


def test_group_ids_of_several_engines_stay_apart(tmp_path):
    with MultiEngineEnv.launch(sys.executable, 2, [str(SQUAD_GAME)], transport="tcp", log_dir=tmp_path,
                               step_timeout=30) as env:
        mates = env.reset(seed=0)["Mate"]
        slot, local = split_agent_ids(mates.decisions.group_ids)
        assert slot.tolist() == [0] * 4 + [1] * 4 and local.tolist() == [1, 1, 2, 2] * 2
        mates = env.step({"Mate": np.array([EARN, 0, 0, 0] * 2, np.int64)})["Mate"]
        assert mates.decisions.group_rewards.tolist() == [1, 1, 0, 0] * 2


def rows(ids) -> se.DecisionSteps:
    return se.DecisionSteps(np.array(ids, np.int64), np.zeros((len(ids), 3), np.float32), np.zeros(len(ids), np.float32))


def test_agent_groups_keep_a_batch_of_agents_in_groups():
    groups = se.AgentGroups()
    groups.register_agent([7, 3, 5, 9], [2, 1, 1, 2])
    groups.add_group_reward([1, 2, 1], [0.5, 1.0, 0.25])  # a group named twice earns the sum
    assert groups.members([1]).tolist() == [3, 5] and groups.members([1, 2]).tolist() == [3, 5, 7, 9]
    groups.register_agent(5, 2)  # moves, keeping what it earned in group 1
    groups.add_group_reward(2, 1.0)
    ended, truncated = groups.group_episode_interrupted(1)
    assert ended.tolist() == [3] and truncated.tolist() == [True]
    step = se.BehaviourStep(rows([3, 5, 7, 9, 11]), se.TerminalSteps(np.array([3]), np.zeros((1, 3), np.float32),
                                                                    np.zeros(1, np.float32), truncated))
    labelled = groups.label(step)
    assert columns(labelled.terminals) == ([3], [1], [0.75])
    assert columns(labelled.decisions) == ([3, 5, 7, 9, 11], [1, 2, 2, 2, 0], [0, 1.75, 2, 2, 0])  # 3 starts afresh


def test_agent_groups_refuse_ids_the_protocol_cannot_carry():
    groups = se.AgentGroups()
    with pytest.raises(ValueError, match=r"group ids lie in \[1, 4294967295\]"):
        groups.register_agent([1, 2], [1, 0])
    with pytest.raises(ValueError, match="registered twice"):
        groups.register_agent([1, 1], 3)
    groups.unregister_agent(5)  # not in a group: passed over
    assert groups.end_group_episode(3)[0].tolist() == []


# -- malformed group fields and statistics: a clear error, the engine dropped, the trainer alive ---------


def observations(**fields) -> pb.Observations:
    """Step 0 of the squad game, four mates, with ``fields`` set on its entry (None: cleared)."""
    msg = se.encode_observations(0, squad_game.Squads.specs, squad_game.Squads().reset(0))
    for name, value in fields.items():
        if value is None:
            msg.behaviours[0].ClearField(name)
        else:
            getattr(msg.behaviours[0], name).CopyFrom(encode_tensor(value))
    return msg


@pytest.mark.parametrize("transport", TRANSPORTS)
@pytest.mark.parametrize("message, field, words", [
    (observations(decision_group_ids=np.array([1, 1, 2], np.int64)),
     "observations.behaviours[0].decision_group_ids", "expected int64 (4), got int64 [3]"),
    (observations(decision_group_rewards=np.array([0, np.nan, 0, 0], np.float32)),
     "observations.behaviours[0].decision_group_rewards", "non-finite rewards in rows [1]"),
    (observations(decision_group_ids=np.array([1, 1, 2, -2], np.int64)),
     "observations.behaviours[0].decision_group_ids", "group ids must lie in [0, 4294967295]"),
    (observations(decision_group_ids=None, decision_group_rewards=np.ones(4, np.float32)),
     "observations.behaviours[0].decision_group_rewards", "group rewards for agents in no group"),
    (pb.Observations(stats=[pb.GameStat(key="Squads/Speed", value=float("nan"))]),
     "observations.stats[0].value", "statistic 'Squads/Speed': non-finite value nan"),
    (pb.Observations(stats=[pb.GameStat(key="a", aggregation=7)]),
     "observations.stats[0].aggregation", "unknown aggregation 7"),
    (pb.Observations(stats=[pb.GameStat(key="a"), pb.GameStat(key="a", aggregation=pb.SUM)]),
     "observations.stats[1].aggregation", "recorded with aggregation 'average', now 'sum'"),
    (pb.Observations(stats=[pb.GameStat(key="", value=1)]), "observations.stats[0].key", "needs a name"),
], ids=["group-ids-length", "nan-group-reward", "negative-group-id", "group-reward-without-group", "nan-stat",
        "unknown-aggregation", "aggregation-changed", "unnamed-stat"])
def test_malformed_groups_and_statistics_end_the_session_naming_the_field(transport, message, field, words):
    with BridgeServer() as server:
        port = server.grpc_port if transport == "grpc" else server.tcp_port
        with se.EngineConnection(se.BridgeOptions(port, transport=transport)) as conn:
            conn.hello(squad_game.Squads.specs)
            env = BridgeEnv(server.accept(timeout=5), step_timeout=10)
            env.send_reset(seed=0)
            conn.receive()
            conn.send(pb.EngineMessage(observations=message))
            with pytest.raises(ProtocolError) as raised:
                env.receive()
            assert raised.value.field == field and words in str(raised.value), str(raised.value)
            told = conn.receive()  # the engine is told which field, as for any malformed message
            assert told.error.field == field and words in told.error.message
        with se.EngineConnection(se.BridgeOptions(port, transport=transport)) as again:
            again.hello(squad_game.Squads.specs)
            assert server.accept(timeout=5).engine_name


def test_a_nan_group_reward_drops_the_engine_and_training_goes_on_until_max_restarts(tmp_path):
    with MultiEngineEnv.launch(sys.executable, 1, [FAULTY, "--fault", "nan-group-reward"], transport="tcp",
                               log_dir=tmp_path, restart_backoff=0.05, max_restarts=1, step_timeout=30) as env:
        result = env.reset(seed=0)
        with pytest.raises(EngineFailure) as failure:
            for _ in range(20):
                result = env.step({name: np.zeros(len(part.decisions), np.int64)
                                   for name, part in result.items() if len(part.decisions)})
        assert env.metrics["invalid_messages"] == 2
    assert "observations.behaviours[0].decision_group_rewards: non-finite rewards in rows [1]" in str(failure.value)


# -- statistics ---------------------------------------------------------------------------


def test_statistics_arrive_in_drain_stats_with_their_aggregation(squads):
    squads.reset(seed=0)
    assert squads.drain_stats() == {}
    step(squads, EARN, NOTHING, EARN, EARN)
    step(squads, NOTHING, LEAVE, NOTHING, NOTHING)
    stats = squads.drain_stats()
    assert stats == {
        "Squads/Earned": [(3.0, "sum"), (0.0, "sum")],
        "Squads/Speed": [(0.0, "most_recent"), (0.0, "most_recent")],
        "Squads/Action": [(float(a), "histogram") for a in (EARN, NOTHING, EARN, EARN, NOTHING, LEAVE, NOTHING, NOTHING)],
    }
    assert squads.drain_stats() == {}  # drained


def test_statistics_of_every_engine_are_drained_together(tmp_path):
    with MultiEngineEnv.launch(sys.executable, 2, [str(SQUAD_GAME), "--squads", "1"], transport="grpc",
                               log_dir=tmp_path, step_timeout=30) as env:
        env.reset(seed=0)
        env.step({"Mate": np.array([EARN, EARN, EARN, NOTHING], np.int64)})
        stats = env.drain_stats()
    assert stats["Squads/Earned"] == [(2.0, "sum"), (1.0, "sum")]  # slot 0's, then slot 1's
    assert len(stats["Squads/Action"]) == 4


def test_the_sdk_refuses_a_statistic_the_trainer_could_not_log():
    stats = se.StatsRecorder()
    with pytest.raises(ValueError, match="'mean' is not one of"):
        stats.record_stat("x", 1.0, "mean")
    with pytest.raises(ValueError, match="'x': nan is not finite"):
        stats.record_stat("x", float("nan"))
    stats.record_stat("x", 1.0, "sum")
    with pytest.raises(ValueError, match="recorded with aggregation 'sum', not 'average'"):
        stats.record_stat("x", 1.0)


# -- environment parameters -----------------------------------------------------------------


def speeds(rows) -> list[float]:
    return rows.obs[:, 1].tolist()


def test_set_parameters_reach_the_episodes_that_start_after_them(squads):
    squads.reset(seed=0)
    squads.set_parameters({"speed": 3.0})
    mates = step(squads, NOTHING, NOTHING, END_GROUP, NOTHING)  # group 2's episodes end and start afresh
    assert speeds(mates.terminals) == [0.0, 0.0]
    assert speeds(mates.decisions) == [0.0, 0.0, 3.0, 3.0]  # group 1 is still in the episodes it started
    mates = step(squads, NOTHING, NOTHING, NOTHING, NOTHING)
    assert speeds(mates.decisions) == [0.0, 0.0, 3.0, 3.0]
    assert squads.drain_stats()["Squads/Speed"][-1] == (3.0, "most_recent")
    assert speeds(squads.reset(seed=1)["Mate"].decisions) == [3.0] * 4  # a Reset carries the current values


def test_a_sampler_is_drawn_afresh_for_every_episode_start(squads):
    squads.set_parameters({"speed": UniformSampler(min_value=5.0, max_value=6.0)})
    first = speeds(squads.reset(seed=0)["Mate"].decisions)
    assert len(set(first)) == 1 and 5.0 <= first[0] < 6.0  # one engine holds one value at a time
    seen = [first[0]]
    for _ in range(3):  # group 2's episodes end, and the next ones start, in the same step
        mates = step(squads, NOTHING, NOTHING, END_GROUP, NOTHING)
        assert speeds(mates.terminals) == [seen[-1]] * 2
        seen.append(speeds(mates.decisions)[2])
        assert speeds(mates.decisions)[:2] == [first[0]] * 2  # group 1's episodes keep the value they started with
    assert all(5.0 <= s < 6.0 for s in seen) and len(set(seen)) == 4
    step(squads, NOTHING, NOTHING, NOTHING, NOTHING)  # takes the value drawn after the last episode start
    step(squads, NOTHING, NOTHING, NOTHING, NOTHING)  # no episode started: nothing new
    held = [value for value, _ in squads.drain_stats()["Squads/Speed"]]
    assert held[-1] == held[-2] not in seen


def test_parameter_draws_repeat_with_the_reset_seed_and_differ_between_engines(tmp_path):
    sampler = {"speed": GaussianSampler(mean=0.0, st_dev=1.0)}
    with MultiEngineEnv.launch(sys.executable, 2, [str(SQUAD_GAME), "--squads", "1"], transport="tcp",
                               log_dir=tmp_path, step_timeout=30, environment_parameters=sampler) as env:
        first = speeds(env.reset(seed=4)["Mate"].decisions)
        again = speeds(env.reset(seed=4)["Mate"].decisions)
        other = speeds(env.reset(seed=5)["Mate"].decisions)
    assert first == again and first != other
    assert first[0] == first[1] and first[2] == first[3] and first[0] != first[2]  # per engine


def test_engine_parameters_send_only_what_changed():
    parameters = EngineParameters({"speed": 1.0, "size": MultiRangeUniformSampler(intervals=[(0, 1), (10, 11)])})
    held = parameters.at_reset(seed=0)
    assert held["speed"] == 1.0 and (0 <= held["size"] <= 1 or 10 <= held["size"] <= 11)
    assert parameters.changes() == {}
    parameters.set({"speed": 1.0, "gravity": 9.8})
    assert parameters.changes() == {"gravity": 9.8}  # speed is what the engine holds already
    parameters.episodes_started()
    assert set(parameters.changes()) == {"size"}  # samplers only
    assert parameters.at_reset(seed=0) == {**held, "gravity": 9.8}  # the same seed, the same draws


@pytest.mark.parametrize("value, words", [(float("nan"), "'speed': nan is not finite"),
                                          ("fast", "a number or a sampler")])
def test_parameters_the_protocol_cannot_carry_are_refused_naming_them(squads, value, words):
    with pytest.raises(ValueError, match=words):
        squads.set_parameters({"speed": value})
