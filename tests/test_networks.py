"""The observation encoders: chosen by shape, ML-Agents' CNNs at their sizes, entity lists that ignore padding."""

import numpy as np
import pytest
import torch
from gymnasium import spaces

from sparring.agents.networks import MIN_RESOLUTION, EntityEncoder, ImageEncoder, observation_layout
from sparring.agents.policy import BehaviourPolicy
from sparring.agents.sac import SACActor
from sparring.spec import BehaviourSpec

CAMERA = spaces.Box(0, 255, (24, 20, 3), np.uint8)
ENTITIES = spaces.Box(-1, 1, (6, 4), np.float32)
MIXED = spaces.Dict({"camera": CAMERA, "allies": ENTITIES, "speed": spaces.Box(-1, 1, (2,), np.float32),
                     "board": spaces.Box(0, 1, (3, 3, 2), np.float32)})


def test_layout_puts_vectors_first_and_picks_the_encoder_by_shape():
    layout = observation_layout(MIXED.spaces)
    assert [(c.key, c.kind) for c in layout] == [
        ("board", "vector"), ("speed", "vector"),  # a 3x3 board is below every CNN's size under "auto": flattened
        ("allies", "entities"), ("camera", "image")]
    assert [(c.start, c.stop) for c in layout] == [(0, 18), (18, 20), (20, 44), (44, 44 + 24 * 20 * 3)]


def test_a_named_cnn_applies_to_every_image_and_refuses_one_too_small_for_it():
    with pytest.raises(ValueError, match=r"'board' is 3x3; vis_encode_type 'match3' needs at least 5x5 "
                                         r"\(for this size: fully_connected\)"):
        observation_layout({"board": MIXED["board"]}, "match3")
    assert observation_layout({"camera": CAMERA}, "resnet")[0].kind == "image"
    with pytest.raises(ValueError, match="needs at least 36x36"):
        observation_layout({"camera": CAMERA}, "nature_cnn")


@pytest.mark.parametrize("kind", list(MIN_RESOLUTION))
def test_every_cnn_takes_its_smallest_image_and_a_batch_of_any_size(kind):
    size = MIN_RESOLUTION[kind]
    box = spaces.Box(0, 1, (size, size + 3, 2), np.float32)
    encoder = ImageEncoder(box, kind, 32)
    for n in (1, 5):
        out = encoder(torch.rand(n, int(np.prod(box.shape))))
        assert out.shape == (n, 32) and torch.isfinite(out).all()


def test_an_image_is_scaled_into_0_1_by_its_bounds_and_read_channels_last():
    encoder = ImageEncoder(CAMERA, "simple", 8)
    seen = {}
    encoder.convs.register_forward_pre_hook(lambda module, args: seen.setdefault("input", args[0]))
    frame = np.zeros((1, 24, 20, 3), np.float32)
    frame[0, 5, 7, 2] = 255.0  # one blue pixel at row 5, column 7
    encoder(torch.from_numpy(frame.reshape(1, -1)))
    image = seen["input"]
    assert image.shape == (1, 3, 24, 20)
    assert image[0, 2, 5, 7] == 1.0 and image.sum() == 1.0


def test_an_entity_list_ignores_the_order_of_entities_and_where_the_padding_sits():
    torch.manual_seed(0)
    encoder = EntityEncoder((6, 4), 16, self_size=2)
    rng = np.random.default_rng(0)
    entities = rng.uniform(-1, 1, (3, 6, 4)).astype(np.float32)
    entities[0, [1, 4]] = 0.0  # two missing entities
    entities[1, 2:] = 0.0  # four missing
    entities[2] = 0.0  # an empty list
    me = torch.from_numpy(rng.uniform(-1, 1, (3, 2)).astype(np.float32))
    out = encoder(torch.from_numpy(entities.reshape(3, -1)), me)
    shuffled = entities[:, rng.permutation(6)]
    np.testing.assert_allclose(encoder(torch.from_numpy(shuffled.reshape(3, -1)), me).detach(), out.detach(), atol=1e-6)
    assert torch.isfinite(out).all() and (out[2] == 0).all()  # nothing present, nothing encoded
    changed = entities.copy()
    changed[1, 0, 0] += 0.5  # a present entity changes: so does the encoding
    assert not torch.allclose(encoder(torch.from_numpy(changed.reshape(3, -1)), me)[1], out[1])


def test_gradients_reach_every_encoder_parameter_through_the_policy_loss():
    spec = BehaviourSpec("b", MIXED, spaces.Discrete(3))
    policy = BehaviourPolicy(spec, hidden_sizes=(16, 16), normalize=True)
    obs = {k: np.asarray(np.stack([box.sample() for _ in range(5)]), np.float32) for k, box in MIXED.spaces.items()}
    x = policy.normalize(policy.flatten_obs(obs))
    logp, entropy, value = policy.evaluate(x, torch.tensor([0, 1, 2, 0, 1]), None)
    (logp.sum() + value.sum() + entropy.sum()).backward()
    missing = [name for name, p in policy.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert missing == []
    assert policy.normalizer.size == 20  # the board and speed columns only: images and entity lists are not normalised


def test_sac_actor_and_critics_each_have_their_own_encoder():
    from sparring.agents.sac import BehaviourSAC, SACSettings

    spec = BehaviourSpec("b", spaces.Dict({"camera": CAMERA, "speed": spaces.Box(-1, 1, (2,), np.float32)}),
                         spaces.Box(-1, 1, (2,), np.float32))
    learner = BehaviourSAC(spec, SACSettings(hidden_sizes=[16, 16]))
    assert isinstance(learner.actor, SACActor)
    actor_convs = {id(p) for p in learner.actor.encoder.parameters()}
    critic_convs = {id(p) for p in learner.critic.encoder.parameters()}
    assert actor_convs and critic_convs and not actor_convs & critic_convs


# -- learning ------------------------------------------------------------------------------


def _one_decision_success(env_id: str, steps: int, seed: int) -> float:
    """PPO on a one-decision task of tests/toy_envs.py, then the greedy policy's success rate over 500 episodes."""
    import toy_envs  # noqa: F401  (registers the envs)
    from sparring.agents import PPO
    from sparring.agents.evaluation import evaluate
    from sparring.envs.gymnasium import GymnasiumEnv

    model = PPO(GymnasiumEnv(env_id, num_envs=16), seed=seed, n_steps=16, batch_size=64, n_epochs=4,
                learning_rate=1e-3, gamma=0.0)
    model.learn(steps)
    returns = evaluate(model, GymnasiumEnv(env_id, num_envs=50), 500, seed=1000 + seed)
    return float(next(iter(returns.values())).mean())


@pytest.mark.slow
@pytest.mark.usefixtures("one_torch_thread")
@pytest.mark.parametrize("env_id, steps, threshold", [("RedSquare-v0", 10_000, 0.95), ("StrongestEntity-v0", 40_000, 0.9)],
                         ids=["cnn_red_square", "attention_strongest_entity"])
def test_ppo_learns_what_only_its_encoder_can_see(env_id, steps, threshold, learning_seed, measured):
    """The CNN finds the red square seen only in pixels; attention finds the strongest of a varying number of
    entities. Chance is 0.25 for both. Seeds 0-9: red square after 10k steps 0.998 to 1.0; strongest entity
    after 40k steps 0.988 to 0.994."""
    success = _one_decision_success(env_id, steps, learning_seed)
    measured(env=env_id, success=success)
    assert success >= threshold


@pytest.mark.slow
@pytest.mark.usefixtures("one_torch_thread")
def test_ppo_with_the_cnn_learns_minigrid_from_egocentric_pixels(learning_seed, measured):
    """MiniGrid-Empty-5x5 through the Gymnasium source, seeing the agent's 7x7-tile view rendered as 56x56 RGB
    (``RGBImgPartialObsWrapper``): the goal must be found in pixels. Reaching it at once scores about 0.95.
    Seeds 0-9 after 40k steps: every greedy episode reaches the goal at once, 0.955 each."""
    import gymnasium as gym
    from minigrid.wrappers import ImgObsWrapper, RGBImgPartialObsWrapper

    from sparring.agents import PPO
    from sparring.agents.evaluation import evaluate
    from sparring.envs.gymnasium import GymnasiumEnv

    def make():
        return ImgObsWrapper(RGBImgPartialObsWrapper(gym.make("MiniGrid-Empty-5x5-v0")))

    model = PPO(GymnasiumEnv([make] * 8), seed=learning_seed, n_steps=128, batch_size=256, n_epochs=8,
                learning_rate=1e-3, ent_coef=0.01)
    assert model.policies["agent"].encoder.slices  # the image goes through the CNN
    model.learn(40_000)
    returns = evaluate(model, GymnasiumEnv([make] * 20), 100, seed=1000 + learning_seed)["agent"]
    measured(mean_return=float(returns.mean()), reached=float((returns > 0).mean()))
    assert (returns > 0).mean() >= 0.95 and returns.mean() >= 0.85, returns


def _cue_recall_success(seed: int, **settings) -> float:
    """PPO on tests/toy_envs.py's CueRecall, then the greedy policy's success over 500 episodes (chance: 0.5)."""
    import toy_envs  # noqa: F401  (registers the env)
    from sparring.agents import PPO
    from sparring.agents.evaluation import evaluate
    from sparring.envs.gymnasium import GymnasiumEnv

    model = PPO(GymnasiumEnv("CueRecall-v0", num_envs=16), seed=seed, n_steps=32, batch_size=128, n_epochs=4,
                learning_rate=1e-3, **settings)
    model.learn(30_000)
    return float(evaluate(model, GymnasiumEnv("CueRecall-v0", num_envs=50), 500, seed=1000 + seed)["CueRecall"].mean())


@pytest.mark.slow
@pytest.mark.usefixtures("one_torch_thread")
def test_ppo_with_an_lstm_remembers_the_cue_a_memoryless_policy_cannot(learning_seed, measured):
    """The cue is seen 5 decisions before the one that counts. Seeds 0-9 after 30k steps: the LSTM 1.0 on
    every seed; the same PPO without memory 0.494 to 0.516 (chance)."""
    remembered = _cue_recall_success(learning_seed, memory={"memory_size": 32, "sequence_length": 8})
    forgot = _cue_recall_success(learning_seed)
    measured(lstm=remembered, mlp=forgot)
    assert remembered >= 0.9 and forgot <= 0.6


# -- recurrent SAC: replayed sequences ----------------------------------------------------------


def _replay_of_two_agents(capacity: int):
    """Agents 1 and 2 decide at steps 0-5; agent 2's first episode ends after step 2. Observations say
    ``[agent, step]``; the stored actor memory says the step too."""
    from sparring.agents.replay import OpenTransitions, ReplayBuffer

    replay = ReplayBuffer(capacity, 2, (), np.int64, 0, memory_size=3)
    open_ = OpenTransitions(2, (), np.int64, 0, memory_size=3)
    ids = np.array([1, 2])
    for t in range(6):
        obs = np.array([[1, t], [2, t]], np.float32)
        slots = open_.slots_of(ids)
        if t:
            open_.close(slots, np.zeros(2, np.float32), obs, np.ones(2, np.float32), None, replay)
        if t == 3:
            open_.end_episodes(open_.slots_of(np.array([2])))
        state = np.full((2, 3), t, np.float32)
        open_.start(slots, obs, np.zeros(2, np.int64), None, (state, -state))
    return replay


def test_replayed_sequences_follow_one_agent_within_its_episode_valid_steps_first():
    replay = _replay_of_two_agents(capacity=100)
    batch = replay.sample_sequences(200, 3, np.random.default_rng(0))
    seq = batch.sequences
    for obs, valid, memory, critic_memory in zip(seq.obs.numpy(), seq.valid.numpy(), seq.actor_memory.numpy(),
                                                 seq.critic_memory.numpy()):
        n = valid.sum()
        assert valid[:n].all() and not valid[n:].any()
        agent, steps = obs[: n + 1, 0], obs[: n + 1, 1]
        assert (agent == agent[0]).all() and (np.diff(steps) == 1).all()  # one agent, consecutive, then its next
        if agent[0] == 2:
            assert steps[0] >= 3 or steps[n] <= 3  # never across the end of agent 2's first episode
        assert (memory == steps[0]).all() and (critic_memory == -steps[0]).all()  # the state before the first step
        assert not obs[n + 1 :].any()
    assert len(batch.rewards) == int(seq.valid.sum())  # rows: the valid steps
    np.testing.assert_array_equal(batch.obs.numpy(), seq.obs[:, :-1][seq.valid].numpy())


def test_a_sequence_stops_where_the_ring_overwrote_its_history():
    replay = _replay_of_two_agents(capacity=4)  # 10 transitions into 4 rows: only the last 2 steps of each remain
    seq = replay.sample_sequences(100, 5, np.random.default_rng(0)).sequences
    steps = seq.obs[:, :, 1].numpy()
    assert seq.valid.sum(1).max() == 2 and (steps[:, 0] >= 3).all()


@pytest.mark.slow
@pytest.mark.usefixtures("one_torch_thread")
def test_sac_with_an_lstm_remembers_the_cue_a_memoryless_policy_cannot(learning_seed, measured):
    """Discrete SAC, memories replayed from the state stored at each sequence's start. Seeds 0-9 after 30k
    steps: the LSTM 1.0 on every seed; without memory 0.494 to 0.516 (chance)."""
    import toy_envs  # noqa: F401  (registers the env)
    from sparring.agents import SAC
    from sparring.agents.evaluation import evaluate
    from sparring.envs.gymnasium import GymnasiumEnv

    def success(**settings) -> float:
        model = SAC(GymnasiumEnv("CueRecall-v0", num_envs=16), seed=learning_seed, batch_size=256,
                    buffer_init_steps=1000, learning_rate=1e-3, steps_per_update=4, hidden_sizes=[64, 64], **settings)
        model.learn(30_000)
        return float(evaluate(model, GymnasiumEnv("CueRecall-v0", num_envs=50), 500,
                              seed=1000 + learning_seed)["CueRecall"].mean())

    remembered = success(memory={"memory_size": 32, "sequence_length": 8})
    forgot = success()
    measured(lstm=remembered, mlp=forgot)
    assert remembered >= 0.9 and forgot <= 0.6


@pytest.mark.parametrize("fmt", ["native", "mlagents"])
@pytest.mark.parametrize("action_space", [spaces.Box(-2, 2, (2,), np.float32), spaces.MultiDiscrete([3, 2])],
                         ids=["continuous", "discrete"])
def test_a_recurrent_sac_actor_that_sees_exports_verified(tmp_path, fmt, action_space):
    from sparring.agents.networks import MemorySettings
    from sparring.export.exporter import export_policy

    spec = BehaviourSpec("b", spaces.Dict({"camera": CAMERA, "allies": ENTITIES}), action_space)
    torch.manual_seed(0)
    actor = SACActor(spec, [32, 32], "relu", True, "simple", MemorySettings(memory_size=16, sequence_length=4))
    with torch.no_grad():
        for p in actor.parameters():
            p.add_(0.1 * torch.randn_like(p))
    report = export_policy(actor, tmp_path / "a.onnx", fmt)  # onnxruntime against torch, memory fed at random
    assert "deterministic actions identical" in str(report)
