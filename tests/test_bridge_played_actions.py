"""Played actions and recording sessions (bridge protocol version 3), with real parts: loopback gRPC and TCP servers,
the Python SDK's player game (tests/engines/player_game.py) in a thread, and the env API's own checks.
"""


import numpy as np
import pytest
from gymnasium import spaces

import sparring_engine as se
from engine_threads import engine_in_thread, load_engine, port_of
from sparring.envs.base import (
    BehaviourStep, DecisionSteps, MultiAgentEnv, PlayedActions, TerminalSteps, check_step_result,
)
from sparring.envs.bridge.codec import ProtocolError
from sparring.envs.bridge.env import BridgeEnv
from sparring.envs.bridge.server import BridgeServer
from sparring.envs.vector import ID_STRIDE, SerialVectorEnv
from sparring.protos.sparring.v1 import bridge_pb2 as pb
from sparring.protos.wire import encode_tensor
from sparring.spec import BehaviourSpec, empty_actions

pytestmark = pytest.mark.timeout(60)

TRANSPORTS = ["grpc", "tcp"]
WALKER = se.BehaviourSpec("Walker", se.Box(-1, 1, (2,), np.float32), se.Discrete(3))


player_game = load_engine("player_game")


# -- the handshake and the Actions of a recording session ------------------------------------------------------


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_a_recording_trainer_says_so_in_its_welcome_and_sends_no_action_rows(transport):
    with BridgeServer(recording=True) as server:
        with se.EngineConnection(se.BridgeOptions(port_of(server, transport), transport=transport)) as conn:
            welcome = conn.hello({"Walker": WALKER})
            assert welcome.recording and welcome.protocol_version == 3
            env = BridgeEnv(server.accept(timeout=5), step_timeout=10)
            assert env.session.recording
            env.send_reset(seed=0)
            conn.receive()
            ids = np.array([0, 1], np.int64)
            conn.send(se.serialize_observations(0, {"Walker": WALKER}, {"Walker": se.BehaviourStep(
                se.DecisionSteps(ids, np.zeros((2, 2), np.float32), np.zeros(2, np.float32)),
                se.TerminalSteps.empty(WALKER))}))
            env.receive()
            env.send_step({"Walker": empty_actions(env.specs["Walker"], 2)})  # the env API's rows, checked
            actions = conn.receive().actions
            assert actions.step == 0 and len(actions.behaviours) == 0  # ... and not sent: "go on"
            env.close()


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_a_recording_trainer_refuses_engines_older_than_version_3(transport):
    with BridgeServer(recording=True) as server:
        with se.EngineConnection(se.BridgeOptions(port_of(server, transport), transport=transport)) as conn:
            hello = se.hello_message({"Walker": WALKER})
            hello.protocol_version = 2
            conn.send(pb.EngineMessage(hello=hello))
            reason = conn.receive().refusal.reason
    assert reason == ("this trainer is recording demonstrations, which needs protocol version 3 (the engine plays "
                      "every agent itself and reports the actions it took); the engine speaks 2")


# -- played actions travel with each agent's next row -----------------------------------------------------------


@pytest.fixture(params=TRANSPORTS)
def players(request):
    """A recording BridgeEnv whose engine is the player game, run by the SDK in a thread."""
    with BridgeServer(handshake_timeout=5.0, recording=True) as server:
        with engine_in_thread(server, request.param, player_game.Players()) as env:
            yield env


def go_on(env, result):
    result = env.step({name: empty_actions(env.specs[name], len(part.decisions)) for name, part in result.items()})
    check_step_result(env.specs, result)
    return result


def test_each_action_played_arrives_with_the_agents_next_row(players):
    result = players.reset(seed=0)
    assert result["Runner"].played is None and result["Runner"].decisions.agent_ids.tolist() == [5, 9]
    result = go_on(players, result)  # tick 1: runner 5 decides again, runner 9 (every other tick) does not
    runners = result["Runner"]
    assert runners.decisions.agent_ids.tolist() == [5]
    assert runners.played.agent_ids.tolist() == [5] and runners.played.actions.tolist() == [2]  # (0 + 5) % 3
    assert result["Turret"].played.actions.tolist() == [1]
    runners = go_on(players, result)["Runner"]  # tick 2: runner 9's action of tick 0 comes with its next row
    assert runners.decisions.agent_ids.tolist() == [5, 9]
    assert sorted(zip(runners.played.agent_ids.tolist(), runners.played.actions.tolist())) == [(5, 0), (9, 0)]


def test_an_action_played_at_an_episodes_last_decision_comes_with_its_end(players):
    result = players.reset(seed=0)
    for _ in range(3):  # runner 5's third decision ends its episode
        result = go_on(players, result)
    runners = result["Runner"]
    assert runners.terminals.agent_ids.tolist() == [5] and 5 in runners.decisions.agent_ids.tolist()
    assert runners.played.agent_ids.tolist() == [5] and runners.played.actions.tolist() == [1]
    assert players.reset(seed=1)["Runner"].played is None  # a Reset forgets what was not sent


# -- malformed played actions: a clear error, the engine dropped ------------------------------------------------


def walkers(step: int, ids=(0, 1), terminal_ids=(), **fields) -> pb.Observations:
    """An Observations of two walkers deciding (and ``terminal_ids`` ending) with ``fields`` set on their entry."""
    ids, ended = np.array(ids, np.int64), np.array(terminal_ids, np.int64)
    part = se.BehaviourStep(
        se.DecisionSteps(ids, np.zeros((len(ids), 2), np.float32), np.zeros(len(ids), np.float32)),
        se.TerminalSteps(ended, np.zeros((len(ended), 2), np.float32), np.zeros(len(ended), np.float32),
                         np.zeros(len(ended), bool)))
    msg = se.encode_observations(step, {"Walker": WALKER}, {"Walker": part})
    for name, value in fields.items():
        getattr(msg.behaviours[0], name).CopyFrom(encode_tensor(value))
    return msg


WHERE = "observations.behaviours[0]"


@pytest.mark.parametrize("transport", TRANSPORTS)
@pytest.mark.parametrize("message, field, words", [
    (walkers(1, played_ids=np.array([0, 7], np.int64), played_actions=np.array([1, 1], np.int64)),
     f"{WHERE}.played_ids", "agents [7] have no decision or terminal row in this message"),
    (walkers(1, ids=[1], terminal_ids=[0], played_ids=np.array([0, 1], np.int64),
             played_actions=np.array([1, 2, 0], np.int64)),
     f"{WHERE}.played_actions", "expected int64 (2), got int64 [3]"),
    (walkers(1, played_ids=np.array([0], np.int64), played_actions=np.array([0.5], np.float32)),
     f"{WHERE}.played_actions", "expected int64 (1), got float32 [1]"),
    (walkers(1, played_ids=np.array([0, 1], np.int64), played_actions=np.array([2, 3], np.int64)),
     f"{WHERE}.played_actions", "actions outside behaviour 'Walker''s action space Discrete(3) in rows [1]"),
    (walkers(1, played_ids=np.array([1, 1], np.int64), played_actions=np.array([0, 0], np.int64)),
     f"{WHERE}.played_ids", "duplicate agent ids [1]"),
    (walkers(1, played_ids=np.array([0], np.int64)), f"{WHERE}.played_actions", "1 played_ids but no played_actions"),
    (walkers(1, played_actions=np.array([0], np.int64)), f"{WHERE}.played_ids", "played_actions sent without played_ids"),
    (walkers(0, played_ids=np.array([0], np.int64), played_actions=np.array([0], np.int64)),
     f"{WHERE}.played_ids", "the answer to a Reset has no played actions"),
], ids=["id-without-row", "rows-count", "dtype", "out-of-range", "duplicate", "ids-alone", "actions-alone", "at-reset"])
def test_malformed_played_actions_end_the_session_naming_the_field(transport, message, field, words):
    with BridgeServer() as server:
        with se.EngineConnection(se.BridgeOptions(port_of(server, transport), transport=transport)) as conn:
            conn.hello({"Walker": WALKER})
            env = BridgeEnv(server.accept(timeout=5), step_timeout=10)
            env.send_reset(seed=0)
            conn.receive()
            if message.step == 1:
                conn.send(pb.EngineMessage(observations=walkers(0)))
                env.receive()
                env.send_step({"Walker": np.zeros(2, np.int64)})
                conn.receive()
            conn.send(pb.EngineMessage(observations=message))
            with pytest.raises(ProtocolError) as raised:
                env.receive()
            assert raised.value.field == field and words in str(raised.value), str(raised.value)
            told = conn.receive()
            assert told.error.field == field and words in told.error.message


# -- the Python SDK's reports ----------------------------------------------------------------------------------


def step_of(decision_ids, terminal_ids=()) -> se.BehaviourStep:
    d, t = np.array(decision_ids, np.int64), np.array(terminal_ids, np.int64)
    return se.BehaviourStep(se.DecisionSteps(d, np.zeros((len(d), 2), np.float32), np.zeros(len(d), np.float32)),
                            se.TerminalSteps(t, np.zeros((len(t), 2), np.float32), np.zeros(len(t), np.float32),
                                             np.zeros(len(t), bool)))


def test_action_reports_wait_for_each_agents_next_row():
    reports = se.ActionReports()
    reports.report("Walker", [3, 4], [2, 1])
    out = reports.attach({"Walker": WALKER}, {"Walker": step_of([4])}, decided={"Walker": np.array([3, 4])})
    assert out["Walker"].played.agent_ids.tolist() == [4] and out["Walker"].played.actions.tolist() == [1]
    out = reports.attach({"Walker": WALKER}, {"Walker": step_of([4], terminal_ids=[3])}, decided={"Walker": [4]})
    assert out["Walker"].played.agent_ids.tolist() == [3] and out["Walker"].played.actions.dtype == np.int64
    assert reports.attach({"Walker": WALKER}, {"Walker": step_of([3, 4])}, decided={})["Walker"].played is None


def test_action_reports_refuse_an_agent_that_did_not_decide_or_reports_twice():
    reports = se.ActionReports()
    reports.report("Walker", 3, 1)
    with pytest.raises(ValueError, match=r"already reported an action that has not been sent yet"):
        reports.report("Walker", [3], [0])
    with pytest.raises(ValueError, match=r"agents \[3\] of behaviour 'Walker', which did not decide at the last step"):
        reports.attach({"Walker": WALKER}, {"Walker": step_of([3])}, decided={"Walker": np.array([4])})
    with pytest.raises(ValueError, match="2 action rows reported for 1 agents"):
        reports.report("Walker", [3], [0, 1])


# -- the env API ----------------------------------------------------------------------------------------------


SPEC = BehaviourSpec("walker", spaces.Box(-1, 1, (1,), np.float32), spaces.MultiDiscrete([2, 3]))


class Echo(MultiAgentEnv):
    """Two agents deciding every step, played by the env itself: it reports the actions it was last given."""

    specs = {"walker": SPEC}

    def reset(self, seed=None):
        return {"walker": BehaviourStep(self._decisions(), TerminalSteps.empty(SPEC))}

    def step(self, actions):
        played = PlayedActions(np.array([0, 1], np.int64), np.asarray(actions["walker"], np.int64))
        return {"walker": BehaviourStep(self._decisions(), TerminalSteps.empty(SPEC), played=played)}

    def _decisions(self):
        return DecisionSteps(np.array([0, 1], np.int64), np.zeros((2, 1), np.float32), np.zeros(2, np.float32))


def test_vector_envs_carry_each_copys_played_actions_under_its_merged_ids():
    env = SerialVectorEnv([Echo, Echo])
    env.reset(seed=0)
    result = env.step({"walker": np.array([[0, 0], [1, 1], [0, 2], [1, 2]], np.int64)})
    check_step_result(env.specs, result)
    played = result["walker"].played
    assert played.agent_ids.tolist() == [0, 1, ID_STRIDE, ID_STRIDE + 1]
    assert played.actions.tolist() == [[0, 0], [1, 1], [0, 2], [1, 2]]


@pytest.mark.parametrize("played, words", [
    (PlayedActions(np.array([5], np.int64), np.zeros((1, 2), np.int64)), "agents [5] have no decision or terminal row"),
    (PlayedActions(np.array([0], np.int64), np.zeros((1, 3), np.int64)), "actions: expected int64 (1, 2)"),
    (PlayedActions(np.array([0, 0], np.int64), np.zeros((2, 2), np.int64)), "duplicate agent ids [0, 0]"),
])
def test_check_step_result_refuses_played_actions_that_break_the_contract(played, words):
    step = Echo().reset()["walker"]
    step.played = played
    with pytest.raises(ValueError) as raised:
        check_step_result(Echo.specs, {"walker": step})
    assert "behaviour 'walker' played" in str(raised.value) and words in str(raised.value), str(raised.value)
