"""The Godot addon (engines/godot/) and its example game, run as real headless godot3-server processes.

A loopback server in tests/godot_harness.py plays the trainer's side of the bridge's
TCP transport, so every test here is one real session with a real Godot 3.2 game.
"""

from __future__ import annotations

import re
import socket
import subprocess

import numpy as np
import pytest

from certificates import make_certificates
from godot_harness import GODOT, PROJECT, GodotSession, make_tensor, pb, tensor
from sparring.envs.bridge.tls import ServerCertificate

pytestmark = [
    pytest.mark.godot,
    pytest.mark.skipif(GODOT is None, reason="godot3-server is not on PATH (apt-get install godot3-server)"),
]

SEEKERS = 4
SEEKER_OBS = 5  # cell x, y, coin offset x, y, fraction of decisions left
SEEKER_ACTIONS = 5  # stay, up, down, left, right
SEEKER_LIMIT = 40  # decisions before an episode is truncated
GRID = 7
SPACES = "res://checks/spaces.tscn"


def random_masked_actions(mask: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    return np.argmax(rng.random(mask.shape) * mask, axis=1).astype(np.int64)


def seeker_part(obs: pb.Observations) -> pb.BehaviourObservations:
    assert [b.behaviour for b in obs.behaviours] == ["seeker"]
    return obs.behaviours[0]


def by_name(obs: pb.Observations) -> dict[str, pb.BehaviourObservations]:
    return {b.behaviour: b for b in obs.behaviours}


def test_hello_declares_the_example_seekers():
    with GodotSession(token="s3cret") as game:
        hello = game.handshake()
    assert (hello.protocol_version, hello.engine_name, hello.auth_token) == (3, "godot", "s3cret")
    [spec] = hello.behaviours
    assert spec.name == "seeker"
    assert [(c.name, list(c.space.shape), c.space.dtype) for c in spec.observations] == [("obs", [SEEKER_OBS], pb.FLOAT32)]
    assert spec.WhichOneof("action") == "discrete" and spec.discrete.n == SEEKER_ACTIONS
    assert spec.has_action_mask and not spec.has_team


def test_hello_declares_multi_discrete_continuous_and_multi_component_behaviours():
    with GodotSession(SPACES) as game:
        hello = game.handshake()
    specs = {s.name: s for s in hello.behaviours}
    assert list(specs) == ["picker", "steerer", "chooser"]  # in the order agents appear in the scene
    picker, steerer, chooser = specs.values()
    assert [(c.name, list(c.space.shape)) for c in picker.observations] == [("last_action", [2]), ("grid", [2, 3])]
    assert picker.WhichOneof("action") == "multi_discrete" and list(picker.multi_discrete.nvec) == [3, 2]
    assert (picker.has_team, picker.team_id, picker.has_action_mask) == (True, 1, True)
    assert steerer.WhichOneof("action") == "continuous"
    assert list(steerer.continuous.shape) == [2] and steerer.continuous.dtype == pb.FLOAT32
    assert tensor(steerer.continuous.low).tolist() == [-2.0, -2.0]
    assert tensor(steerer.continuous.high).tolist() == [2.0, 2.0]
    assert tensor(steerer.continuous.low).dtype == np.float64
    assert chooser.WhichOneof("action") == "discrete" and chooser.discrete.n == 4
    assert not chooser.has_action_mask and not chooser.has_team


def test_reset_yields_observations_with_the_declared_shapes_and_dtypes():
    with GodotSession() as game:
        game.handshake()
        obs = game.reset(seed=1)
    part = seeker_part(obs)
    assert obs.step == 0
    ids = tensor(part.decision_ids)
    assert ids.dtype == np.int64 and ids.shape == (SEEKERS,) and len(set(ids.tolist())) == SEEKERS
    [seen] = [tensor(t) for t in part.decision_obs]
    assert seen.dtype == np.float32 and seen.shape == (SEEKERS, SEEKER_OBS)
    rewards = tensor(part.decision_rewards)
    assert rewards.dtype == np.float32 and rewards.tolist() == [0.0] * SEEKERS
    mask = tensor(part.action_mask)
    assert mask.dtype == np.bool_ and mask.shape == (SEEKERS, SEEKER_ACTIONS)
    cells = np.rint(seen[:, :2] * (GRID - 1))
    expected = np.stack([np.ones(SEEKERS, bool), cells[:, 1] > 0, cells[:, 1] < GRID - 1,
                         cells[:, 0] > 0, cells[:, 0] < GRID - 1], axis=1)
    np.testing.assert_array_equal(mask, expected)  # moves off the grid are masked
    assert tensor(part.terminal_ids).shape == (0,) and tensor(part.terminal_ids).dtype == np.int64
    [final] = [tensor(t) for t in part.terminal_obs]
    assert final.shape == (0, SEEKER_OBS) and final.dtype == np.float32
    assert tensor(part.terminal_rewards).shape == (0,) and tensor(part.terminal_rewards).dtype == np.float32
    assert tensor(part.terminal_truncated).shape == (0,) and tensor(part.terminal_truncated).dtype == np.bool_


def test_random_play_ends_episodes_terminated_at_the_coin_or_truncated_at_the_limit():
    rng = np.random.default_rng(0)
    terminated = truncated = 0
    with GodotSession() as game:
        game.handshake()
        obs = game.reset(seed=2)
        acted = dict.fromkeys(tensor(seeker_part(obs).decision_ids).tolist(), 0)  # decisions per episode so far
        for step in range(1, 301):
            part = seeker_part(obs)
            ids = tensor(part.decision_ids)
            obs = game.step(step, {"seeker": random_masked_actions(tensor(part.action_mask), rng)})
            assert obs.step == step
            for agent in ids.tolist():
                acted[agent] += 1
            part = seeker_part(obs)
            ended, final_rewards = tensor(part.terminal_ids), tensor(part.terminal_rewards)
            flags, [final_obs] = tensor(part.terminal_truncated), [tensor(t) for t in part.terminal_obs]
            ids, rewards, [seen] = tensor(part.decision_ids), tensor(part.decision_rewards), [tensor(t) for t in part.decision_obs]
            assert sorted(ids.tolist()) == sorted(acted)  # everyone decides again, the ended agents first of a new episode
            for agent, reward, cut, last in zip(ended.tolist(), final_rewards, flags, final_obs):
                if cut:
                    truncated += 1
                    assert acted[agent] == SEEKER_LIMIT and reward == pytest.approx(-0.01)
                else:
                    terminated += 1
                    assert acted[agent] <= SEEKER_LIMIT and reward == pytest.approx(0.99)
                    assert last[2:4].tolist() == [0.0, 0.0]  # standing on the coin
                acted[agent] = 0
            fresh = np.isin(ids, ended)
            assert (rewards[fresh] == 0).all() and (seen[fresh, 4] == 1.0).all()
            assert np.allclose(rewards[~fresh], -0.01)
    assert terminated > 0 and truncated > 0


def test_actions_reach_their_agents_in_every_action_space():
    with GodotSession(SPACES) as game:
        game.handshake()
        parts = by_name(game.reset(seed=0))
        assert tensor(parts["picker"].decision_ids).tolist() == [0, 2]  # ids in scene order
        assert tensor(parts["picker"].action_mask).tolist() == [[True, True, False, True, True]] * 2
        obs = game.step(1, {
            "picker": np.array([[1, 1], [0, 1]], np.int64),
            "steerer": np.array([[0.5, -1.5]], np.float32),
            "chooser": np.array([3], np.int64),
        })
        parts = by_name(obs)
        picker = parts["picker"]
        # Picker 2 chose 0 first, which ends its episode: reported once, then back for a new one.
        assert tensor(picker.terminal_ids).tolist() == [2]
        assert tensor(picker.terminal_truncated).tolist() == [False]
        assert tensor(picker.terminal_rewards).tolist() == [0.5]
        assert tensor(picker.terminal_obs[0]).tolist() == [[0, 1]]
        assert tensor(picker.decision_ids).tolist() == [0, 2]
        assert tensor(picker.decision_obs[0]).tolist() == [[1, 1], [-1, -1]]
        assert tensor(picker.decision_obs[1]).shape == (2, 2, 3)
        assert tensor(picker.decision_rewards).tolist() == [0.5, 0.0]
        assert tensor(parts["steerer"].decision_obs[0]).tolist() == [[0.5, -1.5, 1]]
        assert tensor(parts["chooser"].decision_obs[0]).tolist() == [[3, 1]]
        for step in (2, 3):  # the steerer's episode is cut short after 3 decisions
            obs = game.step(step, {
                "picker": np.array([[2, 0], [1, 0]], np.int64),  # 2 is masked: the engine does not enforce masks
                "steerer": np.array([[0.0, 0.0]], np.float32),
                "chooser": np.array([0], np.int64),
            })
        steerer = by_name(obs)["steerer"]
        assert tensor(steerer.terminal_ids).tolist() == [1]
        assert tensor(steerer.terminal_truncated).tolist() == [True]
        assert tensor(steerer.terminal_obs[0]).tolist() == [[0, 0, 3]]


def test_the_same_seed_starts_the_same_episodes():
    with GodotSession() as game:
        game.handshake()
        first = tensor(seeker_part(game.reset(seed=11)).decision_obs[0])
        again = tensor(seeker_part(game.reset(seed=11)).decision_obs[0])
        other = tensor(seeker_part(game.reset(seed=12)).decision_obs[0])
    np.testing.assert_array_equal(first, again)
    assert not np.array_equal(first, other)


def test_environment_parameters_reach_the_game():
    with GodotSession() as game:
        game.handshake()
        seen = tensor(seeker_part(game.reset(seed=3, grid_size=3)).decision_obs[0])
    assert set(seen[:, :2].ravel().tolist()) <= {0.0, 0.5, 1.0}  # cells of a 3x3 grid


def test_a_refusal_makes_the_game_exit_nonzero():
    with GodotSession() as game:
        game.receive()
        game.send(refusal=pb.Refusal(reason="wrong token"))
        assert game.wait() != 0
        assert "wrong token" in game.output


def test_close_makes_the_game_exit_zero():
    with GodotSession() as game:
        game.handshake()
        game.reset()
        game.send(close=pb.Close(reason="training done"))
        assert game.wait() == 0


def test_a_trainer_error_makes_the_game_exit_nonzero():
    with GodotSession() as game:
        game.handshake()
        game.send(error=pb.Error(message="checkpoint disk full", field=""))
        assert game.wait() != 0
        assert "checkpoint disk full" in game.output


def test_malformed_actions_get_an_error_naming_the_field():
    with GodotSession() as game:
        game.handshake()
        game.reset()
        game.send(actions=pb.Actions(step=1, behaviours=[pb.BehaviourActions(
            behaviour="seeker", actions=pb.Tensor(dtype=pb.INT64, shape=[3], data=bytes(24)))]))
        reply = game.receive()
        assert reply.WhichOneof("message") == "error"
        assert reply.error.field == "actions.behaviours[0].actions"
        assert "[4]" in reply.error.message and "[3]" in reply.error.message
        assert game.wait() != 0


def test_a_vanished_trainer_makes_the_game_exit_nonzero():
    with GodotSession() as game:
        game.handshake()
        game.conn.close()
        assert game.wait() != 0


def test_a_game_that_quits_on_its_own_says_close():
    with GodotSession(SPACES) as game:
        game.handshake()
        game.reset()
        game.send(actions=pb.Actions(step=1, behaviours=[
            pb.BehaviourActions(behaviour="picker", actions=make_tensor(np.array([[1, 1], [1, 1]], np.int64))),
            pb.BehaviourActions(behaviour="steerer", actions=make_tensor(np.zeros((1, 2), np.float32))),
            pb.BehaviourActions(behaviour="chooser", actions=make_tensor(np.array([2], np.int64))),  # quits the game
        ]))
        assert game.receive().WhichOneof("message") == "close"
        assert game.wait() == 0


def test_no_trainer_listening_makes_the_game_exit_nonzero():
    with socket.create_server(("127.0.0.1", 0)) as probe:
        port = probe.getsockname()[1]  # closed again below, so nothing listens there
    done = subprocess.run([GODOT, "--path", str(PROJECT), "--sparring-port", str(port)],
                          capture_output=True, text=True, timeout=30)
    assert done.returncode != 0
    assert f"127.0.0.1:{port}" in done.stdout + done.stderr


# -- TLS, for a trainer on another machine ---------------------------------------------------

@pytest.fixture(scope="module")
def trainer_tls(tmp_path_factory):
    """Certificates made for the test, and the server-side TLS context the trainer makes of them."""
    certs = make_certificates(tmp_path_factory.mktemp("certificates"))
    return certs, ServerCertificate(certs.cert, certs.key).context


def test_the_addon_plays_over_tls_trusting_the_ca_by_the_certificates_dns_name(trainer_tls):
    certs, context = trainer_tls
    rng = np.random.default_rng(0)
    with GodotSession(args=("--sparring-ca", str(certs.ca), "--sparring-tls-name", "localhost"), tls=context) as game:
        assert game.handshake().engine_name == "godot"
        obs = game.reset(seed=1)
        for step in range(5):
            mask = tensor(seeker_part(obs).action_mask)
            obs = game.step(step, {"seeker": random_masked_actions(mask, rng)})
            assert obs.step == step + 1
        game.send(close=pb.Close(reason="done"))
        assert game.wait() == 0


def test_the_addon_refuses_a_trainer_whose_certificate_its_ca_did_not_sign(trainer_tls):
    certs, context = trainer_tls
    with pytest.raises(RuntimeError, match="(?s)UNKNOWN_CA.*the TLS handshake with the trainer failed .*signed by the "
                                           f"CA in --sparring-ca {re.escape(str(certs.other_ca))}"):
        GodotSession(args=("--sparring-ca", str(certs.other_ca), "--sparring-tls-name", "localhost"), tls=context)


def test_godot_3_2_matches_dns_names_only_so_an_address_needs_the_tls_name(trainer_tls):
    """The certificate holds 127.0.0.1, the address the game connects to, but Godot 3.2's mbedtls checks DNS names
    alone; the error says so."""
    certs, context = trainer_tls
    with pytest.raises(RuntimeError, match="(?s)BAD_CERTIFICATE.*hold the name 127.0.0.1 \\(Godot 3.2 matches DNS "
                                           "names only, not IP addresses: pass --sparring-tls-name\\)"):
        GodotSession(args=("--sparring-ca", str(certs.ca)), tls=context)


# -- the GDScript protobuf codec, against Python's --------------------------------------

def _field(number: int, wire: int, payload: bytes) -> bytes:
    """One raw protobuf field (numbers below 16, lengths below 128: one-byte tag and length)."""
    assert number < 16
    if wire == 2:
        assert len(payload) < 128
        return bytes([number << 3 | 2, len(payload)]) + payload
    return bytes([number << 3 | wire]) + payload


UNKNOWN_FIELDS = _field(15, 0, b"\x96\x01") + _field(14, 2, b"abc") + _field(13, 5, b"\0" * 4) + _field(12, 1, b"\0" * 8)


def codec_cases() -> dict[str, tuple[str, bytes, object]]:
    """name -> (message type, wire bytes, the message they hold) for every bridge message."""
    f64 = lambda *v: make_tensor(np.array(v, np.float64))  # noqa: E731
    hello = pb.EngineMessage(hello=pb.Hello(protocol_version=1, auth_token="tøken ✓", engine_name="godot", behaviours=[
        pb.BehaviourSpec(name="a", observations=[
            pb.ObservationComponent(name="obs", space=pb.BoxSpace(shape=[3, 200], dtype=pb.FLOAT32, low=f64(-1.5), high=f64(2.5))),
            pb.ObservationComponent(name="grid", space=pb.BoxSpace(shape=[1], dtype=pb.UINT8))],
            discrete=pb.DiscreteSpace(n=300), has_team=True, team_id=-2, has_action_mask=True),
        pb.BehaviourSpec(name="b", observations=[pb.ObservationComponent(name="obs", space=pb.BoxSpace(shape=[1]))],
                         multi_discrete=pb.MultiDiscreteSpace(nvec=[2, 2**40])),
        pb.BehaviourSpec(name="c", continuous=pb.BoxSpace(shape=[2], dtype=pb.FLOAT32, low=f64(-1, -2)), team_id=7),
    ]))
    rows = np.arange(12, dtype=np.float32).reshape(3, 4) / 7
    observations = pb.EngineMessage(observations=pb.Observations(step=2**40, behaviours=[pb.BehaviourObservations(
        behaviour="a", decision_ids=make_tensor(np.array([0, 5, 2**33], np.int64)), decision_obs=[make_tensor(rows)] * 2,
        decision_rewards=make_tensor(np.array([-1.5, 0, 1e-8], np.float32)),
        action_mask=make_tensor(np.eye(3, 4, dtype=bool)),
        terminal_ids=make_tensor(np.zeros(0, np.int64)), terminal_obs=[make_tensor(np.zeros((0, 4), np.float32))],
        terminal_rewards=make_tensor(np.zeros(0, np.float32)), terminal_truncated=make_tensor(np.zeros(0, bool)))]))
    actions = pb.TrainerMessage(actions=pb.Actions(step=3, behaviours=[
        pb.BehaviourActions(behaviour="a", actions=make_tensor(np.array([[1, 2], [3, 4]], np.int64))),
        pb.BehaviourActions(behaviour="c", actions=make_tensor(np.ones((1, 300), np.float32)))],
        environment_parameters={"speed": 2.5}))
    grouped = pb.EngineMessage(observations=pb.Observations(step=1, behaviours=[pb.BehaviourObservations(
        behaviour="a", decision_ids=make_tensor(np.array([0, 1], np.int64)),
        decision_group_ids=make_tensor(np.array([0, 2**32 - 1], np.int64)),
        decision_group_rewards=make_tensor(np.array([0, -0.5], np.float32)),
        terminal_ids=make_tensor(np.array([1], np.int64)), terminal_group_ids=make_tensor(np.array([3], np.int64)),
        terminal_group_rewards=make_tensor(np.array([2], np.float32)))], stats=[
        pb.GameStat(key="Teams/Earned", value=3.0, aggregation=pb.SUM), pb.GameStat(key="ø", value=-1e-300),
        pb.GameStat(key="h", aggregation=pb.HISTOGRAM)]))
    played = pb.EngineMessage(observations=pb.Observations(step=4, behaviours=[pb.BehaviourObservations(
        behaviour="b", decision_ids=make_tensor(np.array([0, 1], np.int64)),
        played_ids=make_tensor(np.array([1, 0], np.int64)),
        played_actions=make_tensor(np.array([[1, 2**40 - 1], [0, 0]], np.int64)))]))
    messages = {
        "hello": ("EngineMessage", hello),
        "played_observations": ("EngineMessage", played),
        "observations": ("EngineMessage", observations),
        "grouped_observations": ("EngineMessage", grouped),
        "engine_error": ("EngineMessage", pb.EngineMessage(error=pb.Error(message="bad", field="behaviours[0].decision_obs[1]"))),
        "engine_close": ("EngineMessage", pb.EngineMessage(close=pb.Close(reason="quit"))),
        "welcome": ("TrainerMessage", pb.TrainerMessage(welcome=pb.Welcome(
            protocol_version=1, seed=-(2**63), environment_parameters={"g": 9.81, "": 1e300, "n": -3.0},
            recording=True))),
        "refusal": ("TrainerMessage", pb.TrainerMessage(refusal=pb.Refusal(reason="wrong token"))),
        "reset": ("TrainerMessage", pb.TrainerMessage(reset=pb.Reset(seed=2**63 - 1, environment_parameters={"x": 0.5}))),
        "actions": ("TrainerMessage", actions),
        "trainer_close": ("TrainerMessage", pb.TrainerMessage(close=pb.Close())),
        "trainer_error": ("TrainerMessage", pb.TrainerMessage(error=pb.Error(message="x" * 300))),
    }
    cases = {name: (kind, msg.SerializeToString(), msg) for name, (kind, msg) in messages.items()}
    # Unknown fields, at the top and nested, are skipped.
    reset = pb.Reset(seed=-5)
    cases["unknown_fields"] = ("TrainerMessage", _field(3, 2, reset.SerializeToString() + UNKNOWN_FIELDS) + UNKNOWN_FIELDS,
                               pb.TrainerMessage(reset=reset))
    # Repeated int64 written unpacked (one tag per element) is read as well as packed.
    tensor = _field(1, 0, bytes([pb.INT64])) + _field(2, 0, b"\x02") + _field(2, 0, b"\x01") + _field(3, 2, bytes(16))
    unpacked = _field(4, 2, _field(2, 2, _field(1, 2, b"a") + _field(2, 2, tensor)))
    cases["unpacked_shape"] = ("TrainerMessage", unpacked, pb.TrainerMessage(actions=pb.Actions(behaviours=[
        pb.BehaviourActions(behaviour="a", actions=pb.Tensor(dtype=pb.INT64, shape=[2, 1], data=bytes(16)))])))
    # Of two members of a oneof, the last one wins.
    cases["oneof_last_wins"] = ("TrainerMessage", _field(5, 2, b"") + _field(3, 2, b""), pb.TrainerMessage(reset=pb.Reset()))
    return cases


BROKEN = {
    "truncated_varint": ("TrainerMessage", b"\x1a\x02\x08\x96"),
    "length_past_the_end": ("TrainerMessage", b"\x1a\x05\x08\x01"),
    "group_wire_type": ("TrainerMessage", b"\x1b"),
    "eleven_byte_varint": ("TrainerMessage", b"\x1a\x0c\x08" + b"\xff" * 10 + b"\x01"),
}


def test_the_gdscript_codec_reads_and_writes_every_bridge_message_as_protobuf_does(tmp_path):
    cases = codec_cases()
    for name, (kind, data, _) in cases.items():
        (tmp_path / f"{name}.{kind}.bin").write_bytes(data)
    for name, (kind, data) in BROKEN.items():
        (tmp_path / f"{name}.{kind}.bin").write_bytes(data)
    done = subprocess.run([GODOT, "--path", str(PROJECT), "-s", "res://checks/codec_echo.gd", "--dir", str(tmp_path)],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    for name, (kind, _, expected) in cases.items():
        out = tmp_path / f"{name}.{kind}.out"
        assert out.exists(), f"{name}: {(tmp_path / f'{name}.{kind}.err').read_text()}"
        echoed = type(expected)()
        echoed.ParseFromString(out.read_bytes())
        assert echoed == expected, name
        if name not in ("welcome", "reset", "actions"):  # map entries may come in any order; the rest is canonical
            assert out.read_bytes() == expected.SerializeToString(), name
    for name, (kind, _) in BROKEN.items():
        assert (tmp_path / f"{name}.{kind}.err").read_text(), name
        assert not (tmp_path / f"{name}.{kind}.out").exists(), name


def test_agents_that_declare_one_behaviour_two_ways_get_an_error_instead_of_a_hello(tmp_path):
    scene = tmp_path / "disagree.tscn"
    scene.write_text("""[gd_scene load_steps=3 format=2]
[ext_resource path="res://addons/sparring/sync.gd" type="Script" id=1]
[ext_resource path="res://checks/echo_agent.gd" type="Script" id=2]
[node name="Disagree" type="Node"]
[node name="SparringSync" type="Node" parent="."]
script = ExtResource( 1 )
[node name="A" type="Node" parent="."]
script = ExtResource( 2 )
behaviour_name = "x"
observation_size = 2
[node name="B" type="Node" parent="."]
script = ExtResource( 2 )
behaviour_name = "x"
observation_size = 3
""")
    with GodotSession(str(scene)) as game:
        reply = game.receive()
        assert reply.WhichOneof("message") == "error" and reply.error.field == "hello.behaviours"
        assert "/root/Disagree/B" in reply.error.message and "obs [3]" in reply.error.message
        assert game.wait() != 0


# -- SparringAgentGroup (addons/sparring/group.gd): many agents as whole arrays ----------

GROUP = "res://checks/group.tscn"  # checks/group_game.gd: agent i sees [i, decisions, last action]


def crowd(obs: pb.Observations) -> pb.BehaviourObservations:
    assert [b.behaviour for b in obs.behaviours] == ["crowd"]
    return obs.behaviours[0]


def test_group_declares_one_behaviour_and_sends_whole_arrays():
    with GodotSession(GROUP, args=("--agents", "5", "--mask")) as game:
        hello = game.handshake()
        obs = game.reset(seed=3)
    [spec] = hello.behaviours
    assert spec.name == "crowd" and spec.WhichOneof("action") == "discrete" and spec.discrete.n == 3
    assert [(c.name, list(c.space.shape), c.space.dtype) for c in spec.observations] == [("obs", [3], pb.FLOAT32)]
    assert spec.has_action_mask and not spec.has_team
    part = crowd(obs)
    ids = tensor(part.decision_ids)
    assert ids.dtype == np.int64 and ids.tolist() == [0, 1, 2, 3, 4]
    [seen] = [tensor(t) for t in part.decision_obs]
    assert seen.dtype == np.float32 and seen.tolist() == [[i, 0, -1] for i in range(5)]
    rewards = tensor(part.decision_rewards)
    assert rewards.dtype == np.float32 and rewards.tolist() == [0.0] * 5
    mask = tensor(part.action_mask)
    assert mask.dtype == np.bool_ and mask.tolist() == [[True, i % 2 == 0, True] for i in range(5)]
    assert tensor(part.terminal_ids).shape == (0,) and tensor(part.terminal_ids).dtype == np.int64
    assert tensor(part.terminal_obs[0]).shape == (0, 3) and tensor(part.terminal_obs[0]).dtype == np.float32
    assert tensor(part.terminal_rewards).shape == (0,) and tensor(part.terminal_truncated).dtype == np.bool_


def test_group_reports_terminal_rows_and_every_reward_exactly_once():
    with GodotSession(GROUP, args=("--agents", "5", "--limit", "2")) as game:
        game.handshake()
        game.reset()
        # Action 0 ends the episode (terminated); every action a earns a + 1.
        part = crowd(game.step(1, {"crowd": np.array([0, 1, 2, 0, 1], np.int64)}))
        assert tensor(part.terminal_ids).tolist() == [0, 3]
        assert tensor(part.terminal_truncated).tolist() == [False, False]
        assert tensor(part.terminal_rewards).tolist() == [1.0, 1.0]
        assert tensor(part.terminal_obs[0]).tolist() == [[0, 1, 0], [3, 1, 0]]  # final observations
        assert tensor(part.decision_ids).tolist() == [0, 1, 2, 3, 4]
        assert tensor(part.decision_rewards).tolist() == [0.0, 2.0, 3.0, 0.0, 2.0]  # 0 and 3 start afresh
        assert tensor(part.decision_obs[0]).tolist() == [[0, 0, -1], [1, 1, 1], [2, 1, 2], [3, 0, -1], [4, 1, 1]]
        # Second decision: 1, 2 and 4 reach the limit (truncated); 0 and 3 are one decision in.
        part = crowd(game.step(2, {"crowd": np.array([1, 1, 1, 1, 1], np.int64)}))
        assert tensor(part.terminal_ids).tolist() == [1, 2, 4]
        assert tensor(part.terminal_truncated).tolist() == [True, True, True]
        assert tensor(part.terminal_rewards).tolist() == [2.0, 2.0, 2.0]
        assert tensor(part.terminal_obs[0]).tolist() == [[1, 2, 1], [2, 2, 1], [4, 2, 1]]
        assert tensor(part.decision_rewards).tolist() == [2.0, 0.0, 0.0, 2.0, 0.0]
        assert tensor(part.decision_obs[0])[:, 1].tolist() == [1, 0, 0, 1, 0]
        # Terminated at the limit: terminated wins over truncated.
        part = crowd(game.step(3, {"crowd": np.array([0, 2, 2, 2, 2], np.int64)}))
        assert tensor(part.terminal_ids).tolist() == [0, 3]
        assert tensor(part.terminal_truncated).tolist() == [False, True]
        assert tensor(part.terminal_rewards).tolist() == [1.0, 3.0]
        assert tensor(part.decision_rewards).tolist() == [0.0, 3.0, 3.0, 0.0, 3.0]


@pytest.mark.parametrize("kind, actions, last", [
    ("discrete", np.array([2, 1, 1, 2], np.int64), [2, 1, 1, 2]),
    ("multi", np.array([[2, 1], [1, 0], [0, 1], [1, 1]], np.int64), [2, 1, 0, 1]),
    ("continuous", np.array([[0.5, 0.25], [-1, 0], [0, 0.75], [1, 1]], np.float32), [0.75, -1, 0.75, 2]),
])
def test_group_actions_reach_the_right_agents(kind, actions, last):
    with GodotSession(GROUP, args=("--agents", "4", "--kind", kind)) as game:
        hello = game.handshake()
        game.reset()
        part = crowd(game.step(1, {"crowd": actions}))
    assert hello.behaviours[0].WhichOneof("action") == {"multi": "multi_discrete"}.get(kind, kind)
    first = actions[:, 0] if actions.ndim == 2 else actions
    expected = first if kind == "continuous" else first + 1.0
    ended = tensor(part.terminal_ids).tolist()  # a first (discrete) action 0 ends the episode
    assert ended == [i for i in range(4) if kind != "continuous" and first[i] == 0]
    seen, rewards = tensor(part.decision_obs[0]), tensor(part.decision_rewards)
    final_obs, final_rewards = tensor(part.terminal_obs[0]), tensor(part.terminal_rewards)
    for i in range(4):
        row, reward = (final_obs[ended.index(i)], final_rewards[ended.index(i)]) if i in ended else (seen[i], rewards[i])
        assert row.tolist() == [i, 1, pytest.approx(last[i])] and reward == pytest.approx(expected[i])


@pytest.mark.parametrize("kind, bad, words", [
    ("discrete", np.array([0, 1, 3, 0], np.int64), ["row 2", "[0, 3)"]),
    ("discrete", np.array([0, -1, 1, 0], np.int64), ["row 1"]),
    ("discrete", np.array([0, 1, 1, 1 << 32], np.int64), ["row 3"]),
    ("multi", np.array([[0, 0], [0, 2], [0, 0], [0, 0]], np.int64), ["row 1", "[0, 2)"]),
    ("discrete", np.array([0, 1, 1], np.int64), ["[4]", "[3]"]),
])
def test_group_rejects_bad_actions_naming_the_field(kind, bad, words):
    with GodotSession(GROUP, args=("--agents", "4", "--kind", kind)) as game:
        game.handshake()
        game.reset()
        game.send(actions=pb.Actions(step=1, behaviours=[pb.BehaviourActions(behaviour="crowd", actions=make_tensor(bad))]))
        reply = game.receive()
        assert reply.WhichOneof("message") == "error" and reply.error.field == "actions.behaviours[0].actions"
        for word in words:
            assert word in reply.error.message, reply.error.message
        assert game.wait() != 0


@pytest.mark.parametrize("scene, args", [
    (GROUP, ["--agents", "6", "--limit", "5", "--mask"]),
    (GROUP, ["--agents", "6", "--limit", "5", "--teams"]),
    (GROUP, ["--agents", "3", "--kind", "multi", "--limit", "4"]),
    (GROUP, ["--agents", "3", "--kind", "continuous", "--limit", "3"]),
    ("res://checks/throughput.tscn", ["--agents", "64", "--obs-size", "8"]),
    ("res://checks/throughput.tscn", ["--agents", "8", "--obs-size", "4", "--per-agent"]),
])
def test_group_scenes_pass_check_env_through_the_trainer(tmp_path, scene, args):
    from sparring.envs.base import check_env
    from sparring.envs.bridge.env import MultiEngineEnv

    with MultiEngineEnv.launch("godot3-server", 1, ["--path", str(PROJECT), scene, *args], transport="tcp",
                               log_dir=tmp_path, step_timeout=30) as env:
        check_env(env, steps=150)
        assert env.restarts == 0
    logs = "".join(path.read_text(errors="replace") for path in tmp_path.rglob("*") if path.is_file())
    assert "SCRIPT ERROR" not in logs, logs[-2000:]


# -- SparringMultiAgentGroup, record_stat and environment parameters (protocol version 2) ----------

TEAMS = "res://checks/teams.tscn"  # checks/team_agent.gd: mates 0, 1 in one group, 2, 3 in another
NOTHING, EARN, LEAVE, END_GROUP, INTERRUPT_GROUP = range(5)


def mates(obs: pb.Observations) -> pb.BehaviourObservations:
    assert [b.behaviour for b in obs.behaviours] == ["mate"]
    return obs.behaviours[0]


def group_rows(part: pb.BehaviourObservations, kind: str) -> tuple[list, list, list]:
    return (tensor(getattr(part, f"{kind}_ids")).tolist(), tensor(getattr(part, f"{kind}_group_ids")).tolist(),
            tensor(getattr(part, f"{kind}_group_rewards")).tolist())


def test_members_of_a_multi_agent_group_report_its_id():
    with GodotSession(TEAMS) as game:
        game.handshake()
        ids, groups, rewards = group_rows(mates(game.reset()), "decision")
    assert ids == [0, 1, 2, 3] and rewards == [0, 0, 0, 0]
    assert groups[0] == groups[1] != groups[2] == groups[3] and 0 < min(groups) and max(groups) < 2**32


def test_a_group_reward_reaches_every_member_once():
    with GodotSession(TEAMS) as game:
        game.handshake()
        _, groups, _ = group_rows(mates(game.reset()), "decision")
        part = mates(game.step(1, {"mate": np.array([EARN, NOTHING, EARN, EARN])}))
        assert group_rows(part, "decision") == ([0, 1, 2, 3], groups, [1, 1, 2, 2])
        assert tensor(part.decision_rewards).tolist() == [0] * 4
        part = mates(game.step(2, {"mate": np.array([NOTHING] * 4)}))
        assert group_rows(part, "decision")[2] == [0] * 4


def test_a_member_that_leaves_mid_episode_reports_its_group_once_more_while_the_others_play_on():
    with GodotSession(TEAMS) as game:
        game.handshake()
        _, groups, _ = group_rows(mates(game.reset()), "decision")
        part = mates(game.step(1, {"mate": np.array([EARN, LEAVE, NOTHING, NOTHING])}))
        assert group_rows(part, "terminal") == ([1], [groups[1]], [1])  # what it earned before it left
        assert tensor(part.terminal_truncated).tolist() == [False]
        assert group_rows(part, "decision") == ([0, 1, 2, 3], [groups[0], 0, *groups[2:]], [1, 0, 0, 0])
        part = mates(game.step(2, {"mate": np.array([EARN, EARN, NOTHING, NOTHING])}))  # mate 1 earns nothing now
        assert group_rows(part, "decision") == ([0, 1, 2, 3], [groups[0], 0, *groups[2:]], [1, 0, 0, 0])
        assert not part.HasField("terminal_group_ids")  # no terminal rows, no group columns for them
        _, again, _ = group_rows(mates(game.reset(seed=1)), "decision")
    assert again == groups  # the Reset put mate 1 back in its team


@pytest.mark.parametrize("action, truncated", [(END_GROUP, False), (INTERRUPT_GROUP, True)])
def test_a_group_episode_ends_every_member(action, truncated):
    with GodotSession(TEAMS) as game:
        game.handshake()
        _, groups, _ = group_rows(mates(game.reset()), "decision")
        part = mates(game.step(1, {"mate": np.array([NOTHING, NOTHING, EARN, action])}))
    assert group_rows(part, "terminal") == ([2, 3], groups[2:], [1, 1])
    assert tensor(part.terminal_truncated).tolist() == [truncated] * 2
    assert group_rows(part, "decision") == ([0, 1, 2, 3], groups, [0, 0, 0, 0])  # the next group episode


def test_record_stat_sends_statistics_with_the_next_decisions():
    with GodotSession(TEAMS) as game:
        game.handshake()
        game.reset()
        obs = game.step(1, {"mate": np.array([EARN, NOTHING, NOTHING, NOTHING])})
        assert [(s.key, s.value, s.aggregation) for s in obs.stats] == [
            ("Teams/Action", 1, pb.HISTOGRAM), ("Teams/Speed", 0, pb.MOST_RECENT), ("Teams/Earned", 1, pb.SUM),
            *[("Teams/Action", 0, pb.HISTOGRAM), ("Teams/Speed", 0, pb.MOST_RECENT)] * 3]
        assert len(game.step(2, {"mate": np.array([NOTHING] * 4)}).stats) == 8  # each value is sent once


def test_parameters_in_actions_reach_the_episodes_that_start_after_them():
    with GodotSession(TEAMS) as game:
        game.handshake()
        assert tensor(mates(game.reset(speed=2.0)).decision_obs[0])[:, 1].tolist() == [2.0] * 4
        part = mates(game.step(1, {"mate": np.array([NOTHING, NOTHING, NOTHING, END_GROUP])}, speed=5.0))
        assert tensor(part.decision_obs[0])[:, 1].tolist() == [2.0, 2.0, 5.0, 5.0]  # group 2 started afresh
        obs = game.step(2, {"mate": np.array([NOTHING] * 4)})
        assert [s.value for s in obs.stats if s.key == "Teams/Speed"] == [5.0] * 4  # the values held now
        assert tensor(mates(game.reset(seed=1)).decision_obs[0])[:, 1].tolist() == [5.0] * 4  # kept over the Reset


def test_teams_train_through_the_trainer_with_groups_statistics_and_sampled_parameters(tmp_path):
    from sparring.envs.base import check_step_result, random_actions
    from sparring.envs.bridge.env import MultiEngineEnv
    from sparring.envs.parameters import UniformSampler

    rng = np.random.default_rng(0)
    with MultiEngineEnv.launch("godot3-server", 1, ["--path", str(PROJECT), TEAMS], transport="tcp",
                               log_dir=tmp_path, step_timeout=30) as env:
        env.set_parameters({"speed": UniformSampler(min_value=10.0, max_value=20.0)})
        result = env.reset(seed=0)
        starts = set(result["mate"].decisions.obs[:, 1].tolist())
        grouped = 0
        for _ in range(60):
            actions = {"mate": random_actions(env.specs["mate"], 4, None, rng)}
            result = env.step(actions)
            check_step_result(env.specs, result)
            part = result["mate"]
            grouped += int((part.decisions.group_ids != 0).sum())
            fresh = part.decisions.obs[:, 2] == 0  # the first decision of an episode
            starts |= set(part.decisions.obs[fresh, 1].tolist())
        stats = env.drain_stats()
        assert env.restarts == 0
    logs = "".join(path.read_text(errors="replace") for path in tmp_path.rglob("*") if path.is_file())
    assert "SCRIPT ERROR" not in logs, logs[-2000:]
    assert grouped > 0
    assert all(10.0 <= s < 20.0 for s in starts) and len(starts) > 3  # a new draw for new episodes
    assert {key: values[0][1] for key, values in stats.items()} == {
        "Teams/Action": "histogram", "Teams/Speed": "most_recent", "Teams/Earned": "sum"}
    assert len(stats["Teams/Action"]) == 4 * 60


def test_crowd_rows_share_group_rewards_and_a_row_leaves_its_group_mid_episode():
    """SparringAgentGroup's reward groups (checks/group_game.gd --teams): rows 0, 1 are group 1, rows 2, 3 group 2;
    action 2 earns the row's group 1, action 1 ends its group's episode, action 0 ends the row's episode and group."""
    with GodotSession(GROUP, args=("--agents", "4", "--teams")) as game:
        game.handshake()
        assert group_rows(crowd(game.reset()), "decision") == ([0, 1, 2, 3], [1, 1, 2, 2], [0, 0, 0, 0])
        part = crowd(game.step(1, {"crowd": np.array([2, 2, 2, 1], np.int64)}))  # group 2's episode ends, too
        assert group_rows(part, "terminal") == ([2, 3], [2, 2], [1, 1])
        assert group_rows(part, "decision") == ([0, 1, 2, 3], [1, 1, 2, 2], [2, 2, 0, 0])
        part = crowd(game.step(2, {"crowd": np.array([0, 2, 2, 2], np.int64)}))  # row 0 leaves as it ends
        assert group_rows(part, "terminal") == ([0], [1], [0])  # it left before row 1 earned
        assert group_rows(part, "decision") == ([0, 1, 2, 3], [0, 1, 2, 2], [0, 1, 2, 2])
        part = crowd(game.step(3, {"crowd": np.array([2, 2, 0, 0], np.int64)}))
        assert group_rows(part, "decision") == ([0, 1, 2, 3], [0, 1, 0, 0], [0, 1, 0, 0])
        assert group_rows(part, "terminal") == ([2, 3], [2, 2], [0, 0])
        part = crowd(game.step(4, {"crowd": np.array([2, 2, 2, 2], np.int64)}))
        assert group_rows(part, "decision") == ([0, 1, 2, 3], [0, 1, 0, 0], [0, 1, 0, 0])
        part = crowd(game.step(5, {"crowd": np.array([0, 0, 2, 2], np.int64)}))  # the last member leaves
        assert group_rows(part, "terminal") == ([0, 1], [0, 1], [0, 0])
        assert not part.HasField("decision_group_ids")  # nobody is in a group: no group columns
        assert group_rows(crowd(game.reset(seed=1)), "decision") == ([0, 1, 2, 3], [1, 1, 2, 2], [0, 0, 0, 0])


def test_a_crowd_without_groups_sends_no_group_columns():
    with GodotSession(GROUP, args=("--agents", "3")) as game:
        game.handshake()
        part = crowd(game.reset())
        assert not part.HasField("decision_group_ids") and not part.HasField("decision_group_rewards")
        part = crowd(game.step(1, {"crowd": np.array([0, 1, 2], np.int64)}))
        assert not part.HasField("terminal_group_ids") and not part.HasField("decision_group_ids")


# -- recording demonstrations (protocol version 3) -------------------------------------------------------------

RECORDING = "res://checks/recording.tscn"  # the echo agents of SPACES, none of which quits the game


def last_actions(part: pb.BehaviourObservations, kind: str) -> dict[int, list[float]]:
    """Each row's echoed last action (checks/echo_agent.gd), by agent id."""
    ids = tensor(getattr(part, f"{kind}_ids")).tolist()
    obs = tensor(getattr(part, f"{kind}_obs")[0])
    width = 2 if part.behaviour != "chooser" else 1
    return {agent: row[:width] for agent, row in zip(ids, obs.tolist())}


def test_a_recording_session_plays_every_agents_heuristic_and_reports_it_with_its_next_row():
    with GodotSession(RECORDING) as game:
        game.receive()
        game.send(welcome=pb.Welcome(protocol_version=3, seed=0, recording=True))
        previous = by_name(game.reset(seed=3))
        assert all(not part.HasField("played_ids") for part in previous.values())  # nothing played yet
        ended = 0
        for step in range(8):
            game.send(actions=pb.Actions(step=step))  # a recording trainer sends no rows: "go on"
            parts = by_name(game.observations())
            for name, part in parts.items():
                deciders = tensor(previous[name].decision_ids).tolist()
                actions = tensor(part.played_actions).reshape(len(deciders), -1).tolist()
                played = dict(zip(tensor(part.played_ids).tolist(), actions))
                assert sorted(played) == sorted(deciders), name  # every agent that decided reports, once
                echoed = {**last_actions(part, "decision"), **last_actions(part, "terminal")}  # the terminal row wins
                assert played == {agent: echoed[agent] for agent in played}, name  # ... what it then did (float32)
                ended += len(tensor(part.terminal_ids))
            previous = parts
        assert ended > 0  # actions played at an episode's last decision came with its end
        assert tensor(previous["chooser"].played_actions).dtype == np.int64
        assert tensor(previous["steerer"].played_actions).dtype == np.float32


def test_sparring_record_writes_a_godot_games_demonstrations(tmp_path, capsys):
    import yaml

    from sparring.cli import main
    from sparring.envs.demonstrations import load_demonstrations

    config = tmp_path / "godot.yaml"
    config.write_text(yaml.safe_dump({"env": {"source": "bridge", "executable": "godot3-server", "transport": "tcp",
                                              "args": ["--path", str(PROJECT), RECORDING], "step_timeout": 30},
                                      "trainer": {"max_steps": 10}}))
    out = tmp_path / "steerer.demo"
    assert main(["record", str(config), "--out", str(out), "--behaviour", "steerer", "--episodes", "3"]) == 0, \
        capsys.readouterr()
    demo = load_demonstrations(out)
    assert demo.spec.name == "steerer" and demo.episodes == 3
    assert demo.dones.tolist() == ([False] * 3 + [True]) * 3  # 3 decisions, then the end
    assert demo.max_step_reached[demo.dones].all()  # cut at max_episode_steps
    # Each observation echoes the action taken at the decision before it; the record pairs it with the next one.
    episodes = demo.obs.reshape(3, 4, 3)
    actions = demo.actions.reshape(3, 4, 2)
    np.testing.assert_allclose(episodes[:, 1:, :2], actions[:, :3], rtol=1e-6)
    assert (np.abs(actions[:, :3]) <= 2).all() and (actions[:, 3] == 0).all()


def test_a_crowd_cannot_be_recorded_and_says_so():
    with GodotSession(GROUP) as game:
        game.receive()
        game.send(welcome=pb.Welcome(protocol_version=3, seed=0, recording=True))
        error = game.receive().error
        assert error.field == "hello.behaviours" and "SparringAgentGroup" in error.message and "not supported" in error.message
        assert game.wait() == 1
