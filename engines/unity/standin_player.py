"""A stand-in for a Unity game built with ML-Agents: it plays Unity's side of the real protocol.

Why this exists: no Unity player runs on our CI machines, yet the trainer's Unity
support (``envs/unity.py``) must be tested against the protocol exactly as a Unity
build speaks it, through ``mlagents_envs.environment.UnityEnvironment`` unchanged.
This script is launched like a Unity build (``<player> [-nographics -batchmode]
--mlagents-port N [-logFile PATH] ...``), connects to the trainer's gRPC server
(Unity is the client) and speaks communication API 1.5.0 with ``mlagents_envs``'
own generated messages and stub, as ``com.unity.ml-agents``' ``RpcCommunicator``
does:

1. ``Exchange`` the academy parameters (name, versions, capabilities); the reply
   holds the trainer's ``rl_initialization_input`` (seed, number of areas).
2. ``Exchange`` an empty message; its reply is the trainer's first command.
3. Answer every command (RESET or STEP) with the game's next output: each
   behaviour's agent infos, and the brain parameters of behaviours the trainer has
   not been told about yet. A reply with status 400 (or the QUIT command) ends the
   game with exit status 0; a broken channel (the trainer is gone) ends it with
   :data:`EXIT_TRAINER_GONE`.

The game inside is small and quickly learnable: Seekers walk a grid to a target
(one discrete branch, action masks, a vector and a grid sensor) and Movers steer a
point to a target on a line (one continuous action); with ``--hybrid``, Parkers
drive and park (a continuous and a discrete action together); with ``--visual``, Spotters
look at a camera and a buffer sensor sent as ML-Agents 3.x+ sends them; with ``--memory``,
Recallers must remember a cue; with ``--group``, Escapers play a cooperative group game
(group ids and rewards, a game statistic, a sampled environment parameter). ``--scene duel``
plays the Python SDK's two-player duel (engines/python/examples/duel.py) as a symmetric Unity
self-play game declares it: two teams of one behaviour. See engines/unity/README.md.
"""

from __future__ import annotations

import argparse
import importlib.util
import io
import itertools
import logging
import os
import random
import struct
import sys
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import grpc
import numpy as np

from sparring.envs import mlagents_compat

mlagents_compat.install()  # before any mlagents_envs message module is imported

from mlagents_envs.communicator_objects.agent_action_pb2 import AgentActionProto  # noqa: E402
from mlagents_envs.communicator_objects.agent_info_pb2 import AgentInfoProto  # noqa: E402
from mlagents_envs.communicator_objects.brain_parameters_pb2 import (  # noqa: E402
    ActionSpecProto,
    BrainParametersProto,
)
from mlagents_envs.communicator_objects.capabilities_pb2 import UnityRLCapabilitiesProto  # noqa: E402
from mlagents_envs.communicator_objects.command_pb2 import QUIT, RESET, STEP  # noqa: E402
from mlagents_envs.communicator_objects.header_pb2 import HeaderProto  # noqa: E402
from mlagents_envs.communicator_objects.observation_pb2 import DEFAULT, NONE, PNG, ObservationProto  # noqa: E402
from mlagents_envs.communicator_objects.unity_message_pb2 import UnityMessageProto  # noqa: E402
from mlagents_envs.communicator_objects.unity_output_pb2 import UnityOutputProto  # noqa: E402
from mlagents_envs.communicator_objects.unity_rl_initialization_input_pb2 import (  # noqa: E402
    UnityRLInitializationInputProto,
)
from mlagents_envs.communicator_objects.unity_rl_initialization_output_pb2 import (  # noqa: E402
    UnityRLInitializationOutputProto,
)
from mlagents_envs.communicator_objects.unity_rl_input_pb2 import UnityRLInputProto  # noqa: E402
from mlagents_envs.communicator_objects.unity_rl_output_pb2 import UnityRLOutputProto  # noqa: E402
from mlagents_envs.communicator_objects.unity_to_external_pb2_grpc import UnityToExternalProtoStub  # noqa: E402
from mlagents_envs.side_channel.incoming_message import IncomingMessage  # noqa: E402
from mlagents_envs.side_channel.outgoing_message import OutgoingMessage  # noqa: E402

log = logging.getLogger("standin")

COMMUNICATION_VERSION = "1.5.0"
PACKAGE_VERSION = "sparring-standin"
OK = 200  # header status; any other (UnityEnvironment.close() sends 400) means quit
EXIT_TRAINER_GONE = 1
EXIT_CRASH = 3  # --crash-after-steps
CONNECT_TIMEOUT_S = 60.0  # the trainer starts its server before launching the player; this is a safety net

# The side channels' ids, as com.unity.ml-agents hard-codes them.
ENGINE_CONFIGURATION_CHANNEL = uuid.UUID("e951342c-4f7e-11ea-b238-784f4387d1f7")
ENVIRONMENT_PARAMETERS_CHANNEL = uuid.UUID("534c891e-810f-11ea-a9d0-822485860400")
ENGINE_SETTINGS = {  # EngineConfigurationChannel.ConfigurationType -> the values that follow it
    0: (("width", "int32"), ("height", "int32")),
    1: (("quality_level", "int32"),),
    2: (("time_scale", "float32"),),
    3: (("target_frame_rate", "int32"),),
    4: (("capture_frame_rate", "int32"),),
}
STATS_CHANNEL = uuid.UUID("a1d8f7b7-cec8-50f9-b78b-d3e165a78520")
FLOAT_PARAMETER, SAMPLER_PARAMETER = 0, 1  # EnvironmentParametersChannel.EnvironmentDataTypes
UNIFORM_SAMPLER, GAUSSIAN_SAMPLER, MULTIRANGE_UNIFORM_SAMPLER = 0, 1, 2  # its SamplerType
STATS_AVERAGE = 0  # StatsAggregationMethod.Average (MostRecent 1, Sum 2, Histogram 3)

# ObservationSpec.DimensionProperty values, as Unity's vector and grid sensors declare them.
DIMENSION_NONE, DIMENSION_TRANSLATIONAL, DIMENSION_VARIABLE_SIZE = 1, 2, 4


# ---------------------------------------------------------------------------------------------
# Side channels


def split_side_channel(data: bytes) -> Iterator[tuple[uuid.UUID, bytes]]:
    """The (channel id, payload) messages packed in ``rl_input.side_channel``.

    Wire format (SideChannelManager): per message a 16-byte little-endian UUID, an
    int32 payload length and the payload.
    """
    offset = 0
    while offset < len(data):
        channel = uuid.UUID(bytes_le=bytes(data[offset:offset + 16]))
        (length,) = struct.unpack_from("<i", data, offset + 16)
        offset += 20
        yield channel, bytes(data[offset:offset + length])
        offset += length


def pack_side_channel(channel: uuid.UUID, payload: bytes) -> bytes:
    """One message for ``rl_output.side_channel``, in the format :func:`split_side_channel` reads."""
    return channel.bytes_le + struct.pack("<i", len(payload)) + payload


def uniform_sampler(low: float, high: float, seed: int) -> Callable[[], float]:
    """Unity's ``SamplerFactory.CreateUniformSampler``: its own generator, seeded once, drawn at every read."""
    rng = random.Random(seed)
    return lambda: low + rng.random() * (high - low)


def gaussian_sampler(mean: float, st_dev: float, seed: int) -> Callable[[], float]:
    """Unity's ``SamplerFactory.CreateGaussianSampler``."""
    rng = random.Random(seed)
    return lambda: rng.gauss(mean, st_dev)


def multirange_sampler(bounds: Sequence[float], seed: int) -> Callable[[], float]:
    """Unity's ``SamplerFactory.CreateMultiRangeUniformSampler``: ``bounds`` is ``[min0, max0, min1, max1, ...]``;
    an interval is picked in proportion to its length (by a second generator seeded ``seed + 1``, as Unity's)."""
    intervals = list(zip(bounds[0::2], bounds[1::2]))
    lengths = [high - low for low, high in intervals]
    values, picks = random.Random(seed), random.Random(seed + 1)

    def draw() -> float:
        low, high = picks.choices(intervals, weights=lengths if sum(lengths) > 0 else None)[0]
        return low + values.random() * (high - low)

    return draw


def read_sampler(kind: int, message: IncomingMessage, seed: int) -> Callable[[], float] | None:
    """A sampler's definition as the parameters channel sends it (two floats, or a float list), or None if unknown."""
    if kind == UNIFORM_SAMPLER:
        return uniform_sampler(message.read_float32(), message.read_float32(), seed)
    if kind == GAUSSIAN_SAMPLER:
        return gaussian_sampler(message.read_float32(), message.read_float32(), seed)
    if kind == MULTIRANGE_UNIFORM_SAMPLER:
        return multirange_sampler(message.read_float32_list(), seed)
    return None


class EnvironmentParameters:
    """``Academy.Instance.EnvironmentParameters``: what the trainer set, read by the game with a default.

    As Unity's ``EnvironmentParametersChannel`` keeps them: a number is returned as sent; a sampler
    (uniform, gaussian, multirangeuniform, with the trainer's seed) draws a fresh value at every read.
    """

    def __init__(self) -> None:
        self._values: dict[str, Callable[[], float]] = {}

    def get(self, key: str, default: float) -> float:
        """``GetWithDefault``: the parameter's value now, or ``default`` if the trainer never set it."""
        value = self._values.get(key)
        return default if value is None else value()

    def read_message(self, message: IncomingMessage) -> None:
        """One channel message: key, data type (0 float, 1 sampler), then the float or the sampler's definition."""
        key, data_type = message.read_string(), message.read_int32()
        if data_type == FLOAT_PARAMETER:
            number = message.read_float32()
            self._values[key] = lambda: number
            log.info("environment parameter %s = %s", key, number)
        elif data_type == SAMPLER_PARAMETER:
            seed, kind = message.read_int32(), message.read_int32()
            sampler = read_sampler(kind, message, seed)
            if sampler is None:
                log.warning("environment parameter %s: unknown sampler type %d", key, kind)
                return
            self._values[key] = sampler
            log.info("environment parameter %s: sampler type %d, seed %d", key, kind, seed)
        else:
            log.warning("environment parameter %s: unknown data type %d", key, data_type)


class StatsRecorder:
    """``Academy.Instance.StatsRecorder``: statistics the game records, sent with its next output."""

    def __init__(self) -> None:
        self._pending = bytearray()

    def add(self, key: str, value: float, aggregation: int = STATS_AVERAGE) -> None:
        """``Add(key, value, aggregationMethod)``: a stats channel message of key, float32 value and int32 method."""
        message = OutgoingMessage()
        message.write_string(key)
        message.write_float32(value)
        message.write_int32(aggregation)
        self._pending += pack_side_channel(STATS_CHANNEL, bytes(message.buffer))

    def flush(self) -> bytes:
        """The messages recorded since the previous output, for ``rl_output.side_channel``; then none are pending."""
        pending, self._pending = bytes(self._pending), bytearray()
        return pending


@dataclass
class Settings:
    """What the trainer configured through side channels; Unity keeps these across resets."""

    engine: dict[str, float] = field(default_factory=dict)
    parameters: EnvironmentParameters = field(default_factory=EnvironmentParameters)

    def read_side_channel(self, data: bytes) -> None:
        """Apply the engine configuration and environment parameters; ignore other channels as Unity does."""
        for channel, payload in split_side_channel(data):
            message = IncomingMessage(payload)
            if channel == ENGINE_CONFIGURATION_CHANNEL:
                for name, kind in ENGINE_SETTINGS.get(message.read_int32(), ()):
                    self.engine[name] = message.read_int32() if kind == "int32" else message.read_float32()
                log.info("engine configuration: %s", self.engine)
            elif channel == ENVIRONMENT_PARAMETERS_CHANNEL:
                self.parameters.read_message(message)


# ---------------------------------------------------------------------------------------------
# The game


@dataclass(kw_only=True)
class Episode:
    """One agent's current episode; Unity reports it under a fresh episode id, never reused."""

    id: int
    max_steps: int
    steps: int = 0


@dataclass(kw_only=True)
class SeekerEpisode(Episode):
    x: int
    y: int
    target_x: int
    target_y: int


@dataclass(kw_only=True)
class MoverEpisode(Episode):
    position: float
    target: float


def vector_observation(name: str, values: Sequence[float]) -> ObservationProto:
    """An uncompressed rank-1 observation, as Unity's VectorSensor sends it."""
    return ObservationProto(shape=[len(values)], float_data=ObservationProto.FloatData(data=values),
                            compression_type=NONE, dimension_properties=[DIMENSION_NONE],
                            observation_type=DEFAULT, name=name)


class Behaviour:
    """The agents of one behaviour: what Unity's Agent components do at each decision.

    Subclasses hold the rules (``start``, ``act``, ``observe``, ``mask``); this class
    does Unity's bookkeeping: rewards since the previous decision, episode ends
    (reached a goal, or interrupted by the step limit) reported with ``done`` and
    followed in the same output by the first decision of the agent's next episode.
    """

    name: str
    action_spec: ActionSpecProto

    def __init__(self, num_agents: int, rng: random.Random, episode_ids: Iterator[int]) -> None:
        self.num_agents = num_agents
        self.rng = rng
        self.episode_ids = episode_ids  # shared by all behaviours, like Unity's EpisodeIdCounter
        self.episodes: list[Episode] = []

    def brain_parameters(self) -> BrainParametersProto:
        return BrainParametersProto(brain_name=self.name, is_training=True, action_spec=self.action_spec)

    def reset(self, parameters: EnvironmentParameters) -> list[AgentInfoProto]:
        """New episodes for every agent (a RESET command): the old ones are dropped, not reported done."""
        self.episodes = [self.start(next(self.episode_ids), parameters) for _ in range(self.num_agents)]
        return [self.info(episode, 0.0) for episode in self.episodes]

    def step(self, actions: Sequence[AgentActionProto], parameters: EnvironmentParameters) -> list[AgentInfoProto]:
        """Apply one action per agent (in the order of the previous decisions) and report the next decisions.

        An agent the trainer sent no action for does nothing, as Unity agents do with an empty action.
        """
        infos = []
        for index, episode in enumerate(self.episodes):
            reward, succeeded = self.act(episode, actions[index] if index < len(actions) else AgentActionProto())
            episode.steps += 1
            if succeeded or episode.steps >= episode.max_steps:
                infos.append(self.info(episode, reward, done=True, max_step_reached=not succeeded))
                self.episodes[index] = episode = self.start(next(self.episode_ids), parameters)
                reward = 0.0
            infos.append(self.info(episode, reward))
        return infos

    def info(self, episode: Episode | Escaper, reward: float, done: bool = False, max_step_reached: bool = False,
             group_id: int = 0, group_reward: float = 0.0) -> AgentInfoProto:
        return AgentInfoProto(id=episode.id, reward=reward, done=done, max_step_reached=max_step_reached,
                              observations=self.observe(episode), action_mask=self.mask(episode),
                              group_id=group_id, group_reward=group_reward)

    def start(self, episode_id: int, parameters: EnvironmentParameters) -> Episode:
        raise NotImplementedError

    def act(self, episode: Episode, action: AgentActionProto) -> tuple[float, bool]:
        """Apply the action; return the reward it earned and whether the episode's goal was reached."""
        raise NotImplementedError

    def observe(self, episode: Episode) -> list[ObservationProto]:
        raise NotImplementedError

    def mask(self, episode: Episode) -> list[bool]:
        """One flag per action of all discrete branches; True means NOT allowed (ML-Agents' wire convention)."""
        return []


class Seekers(Behaviour):
    """Walk a G x G grid to a target: +1 on reaching it, -0.01 for every other step.

    Actions: one branch of 5 (stay, left, right, down, up); moves off the grid are
    masked, and a masked move the trainer takes anyway leaves the seeker in place.
    Interrupted after ``seeker_max_steps`` decisions (an environment parameter, read
    at the start of each episode as Unity games read them in OnEpisodeBegin).
    """

    name = "Seeker?team=0"
    action_spec = ActionSpecProto(num_discrete_actions=1, discrete_branch_sizes=[5])
    MOVES = ((0, 0), (-1, 0), (1, 0), (0, -1), (0, 1))
    DEFAULT_MAX_STEPS = 30
    GOAL_REWARD, STEP_REWARD = 1.0, -0.01

    def __init__(self, num_agents: int, grid_size: int, rng: random.Random, episode_ids: Iterator[int]) -> None:
        super().__init__(num_agents, rng, episode_ids)
        self.grid_size = grid_size

    def start(self, episode_id: int, parameters: EnvironmentParameters) -> SeekerEpisode:
        cells = self.grid_size * self.grid_size
        start, target = self.rng.sample(range(cells), 2)  # never the same cell
        max_steps = max(1, int(parameters.get("seeker_max_steps", self.DEFAULT_MAX_STEPS)))
        return SeekerEpisode(id=episode_id, max_steps=max_steps, x=start % self.grid_size, y=start // self.grid_size,
                             target_x=target % self.grid_size, target_y=target // self.grid_size)

    def act(self, episode: SeekerEpisode, action: AgentActionProto) -> tuple[float, bool]:
        choice = action.discrete_actions[0] if action.discrete_actions else 0
        dx, dy = self.MOVES[choice] if 0 <= choice < len(self.MOVES) else (0, 0)
        if 0 <= episode.x + dx < self.grid_size and 0 <= episode.y + dy < self.grid_size:
            episode.x, episode.y = episode.x + dx, episode.y + dy
        if (episode.x, episode.y) == (episode.target_x, episode.target_y):
            return self.GOAL_REWARD, True
        return self.STEP_REWARD, False

    def observe(self, episode: SeekerEpisode) -> list[ObservationProto]:
        """A vector sensor (own and target cell, scaled to [0, 1]) and a (G, G, 1) grid sensor.

        The grid is indexed [y, x]: 1 at the target, 0.5 at the seeker, 1.5 where both are
        (only in the final observation of a successful episode).
        """
        scale = self.grid_size - 1
        vector = vector_observation("SeekerVector", [episode.x / scale, episode.y / scale,
                                                     episode.target_x / scale, episode.target_y / scale])
        grid = [0.0] * (self.grid_size * self.grid_size)
        grid[episode.target_y * self.grid_size + episode.target_x] += 1.0
        grid[episode.y * self.grid_size + episode.x] += 0.5
        visual = ObservationProto(shape=[self.grid_size, self.grid_size, 1],
                                  float_data=ObservationProto.FloatData(data=grid), compression_type=NONE,
                                  dimension_properties=[DIMENSION_TRANSLATIONAL, DIMENSION_TRANSLATIONAL,
                                                        DIMENSION_NONE],
                                  observation_type=DEFAULT, name="GridSensor")
        return [vector, visual]

    def mask(self, episode: SeekerEpisode) -> list[bool]:
        last = self.grid_size - 1
        return [False, episode.x == 0, episode.x == last, episode.y == 0, episode.y == last]


class Movers(Behaviour):
    """Steer a point on [-1, 1] to a target: reward -0.1 * |position - target| after each move.

    One continuous action, clipped to [-1, 1], moves the point by 0.2 * action.
    Every episode is interrupted after 20 decisions.
    """

    name = "Mover?team=1"
    action_spec = ActionSpecProto(num_continuous_actions=1)
    MAX_STEPS = 20
    SPEED, DISTANCE_PENALTY = 0.2, 0.1

    def start(self, episode_id: int, parameters: EnvironmentParameters) -> MoverEpisode:
        return MoverEpisode(id=episode_id, max_steps=self.MAX_STEPS,
                            position=self.rng.uniform(-1.0, 1.0), target=self.rng.uniform(-1.0, 1.0))

    def act(self, episode: MoverEpisode, action: AgentActionProto) -> tuple[float, bool]:
        push = min(1.0, max(-1.0, action.continuous_actions[0])) if action.continuous_actions else 0.0
        episode.position = min(1.0, max(-1.0, episode.position + self.SPEED * push))
        return -self.DISTANCE_PENALTY * abs(episode.position - episode.target), False

    def observe(self, episode: MoverEpisode) -> list[ObservationProto]:
        return [vector_observation("MoverVector", [episode.position, episode.target])]


@dataclass(kw_only=True)
class ParkerEpisode(Episode):
    position: float
    target: float


class Parkers(Behaviour):
    """Drive a car along [-1, 1] and park it near a target: continuous and discrete actions at once (hybrid).

    Actions: one continuous (the throttle, clipped to [-1, 1], moves the car by
    0.25 * throttle) and one discrete branch of 2 (drive on, park). Parking within
    ``PARK_DISTANCE`` of the target earns +1 and ends the episode; parking anywhere
    else costs 0.1, and every decision costs 0.01. Parking is masked on an episode's
    first decision. Interrupted after 20 decisions. Added with ``--hybrid``.
    """

    name = "Parker"
    action_spec = ActionSpecProto(num_continuous_actions=1, num_discrete_actions=1, discrete_branch_sizes=[2])
    MAX_STEPS = 20
    SPEED, PARK_DISTANCE = 0.25, 0.15
    PARK_REWARD, MISPARK_REWARD, STEP_REWARD = 1.0, -0.1, -0.01

    def start(self, episode_id: int, parameters: EnvironmentParameters) -> ParkerEpisode:
        return ParkerEpisode(id=episode_id, max_steps=self.MAX_STEPS,
                             position=self.rng.uniform(-1.0, 1.0), target=self.rng.uniform(-1.0, 1.0))

    def act(self, episode: ParkerEpisode, action: AgentActionProto) -> tuple[float, bool]:
        throttle = min(1.0, max(-1.0, action.continuous_actions[0])) if action.continuous_actions else 0.0
        episode.position = min(1.0, max(-1.0, episode.position + self.SPEED * throttle))
        if action.discrete_actions and action.discrete_actions[0] == 1 and episode.steps > 0:
            if abs(episode.position - episode.target) <= self.PARK_DISTANCE:
                return self.PARK_REWARD, True
            return self.STEP_REWARD + self.MISPARK_REWARD, False
        return self.STEP_REWARD, False

    def observe(self, episode: ParkerEpisode) -> list[ObservationProto]:
        return [vector_observation("ParkerVector", [episode.position, episode.target])]

    def mask(self, episode: ParkerEpisode) -> list[bool]:
        return [False, episode.steps == 0]


@dataclass(kw_only=True)
class SpotterEpisode(Episode):
    top: int
    left: int
    entities: list[tuple[float, float, float]]


class Spotters(Behaviour):
    """Say which half of a camera image holds a red square: one decision per episode, +1 if right.

    The sensors are sent as ML-Agents 3.x+ sends them: a camera (``CameraSensor``), channels first
    (3, H, W) with dimension properties (none, translational, translational) and PNG-compressed, and
    a buffer sensor (``BufferSensor``, up to 4 entities of 3 features, zero rows for missing ones).
    The camera is 24 high and 20 wide (so swapped axes show): green 0.2 everywhere but in a 4x4 square
    of pure red (1, 0, 0). Actions: one branch of 2 (left half, right half). Added with ``--visual``.
    """

    name = "Spotter"
    action_spec = ActionSpecProto(num_discrete_actions=1, discrete_branch_sizes=[2])
    HEIGHT, WIDTH, SQUARE, GREEN = 24, 20, 4, 51  # green 51/255 = 0.2
    MAX_ENTITIES, ENTITY_SIZE = 4, 3

    def start(self, episode_id: int, parameters: EnvironmentParameters) -> SpotterEpisode:
        count = self.rng.randint(0, self.MAX_ENTITIES)
        entities = [(self.rng.uniform(0.1, 1), self.rng.uniform(0.1, 1), 1.0) for _ in range(count)]
        return SpotterEpisode(id=episode_id, max_steps=1, top=self.rng.randrange(self.HEIGHT - self.SQUARE + 1),
                              left=self.rng.randrange(self.WIDTH - self.SQUARE + 1), entities=entities)

    def act(self, episode: SpotterEpisode, action: AgentActionProto) -> tuple[float, bool]:
        choice = action.discrete_actions[0] if action.discrete_actions else 0
        right_half = episode.left + self.SQUARE / 2 > self.WIDTH / 2
        return float(choice == int(right_half)), True

    def observe(self, episode: SpotterEpisode) -> list[ObservationProto]:
        from PIL import Image  # mlagents_envs' own dependency, as Unity's Texture2D.EncodeToPNG

        pixels = bytearray([0, self.GREEN, 0] * (self.HEIGHT * self.WIDTH))
        for y in range(episode.top, episode.top + self.SQUARE):
            for x in range(episode.left, episode.left + self.SQUARE):
                pixels[3 * (y * self.WIDTH + x) : 3 * (y * self.WIDTH + x) + 2] = b"\xff\x00"  # pure red
        png = io.BytesIO()
        Image.frombytes("RGB", (self.WIDTH, self.HEIGHT), bytes(pixels)).save(png, format="PNG")
        camera = ObservationProto(shape=[3, self.HEIGHT, self.WIDTH], compressed_data=png.getvalue(),
                                  compression_type=PNG, compressed_channel_mapping=[0, 1, 2],
                                  dimension_properties=[DIMENSION_NONE, DIMENSION_TRANSLATIONAL,
                                                        DIMENSION_TRANSLATIONAL],
                                  observation_type=DEFAULT, name="CameraSensor")
        rows = [value for entity in episode.entities for value in entity]
        rows += [0.0] * (self.MAX_ENTITIES * self.ENTITY_SIZE - len(rows))
        buffer = ObservationProto(shape=[self.MAX_ENTITIES, self.ENTITY_SIZE],
                                  float_data=ObservationProto.FloatData(data=rows), compression_type=NONE,
                                  dimension_properties=[DIMENSION_VARIABLE_SIZE, DIMENSION_NONE],
                                  observation_type=DEFAULT, name="BufferSensor")
        return [buffer, camera]


@dataclass(kw_only=True)
class RecallerEpisode(Episode):
    cue: int


class Recallers(Behaviour):
    """Remember a cue: shown at the first decision only, it names the action that counts at the sixth and last.

    A vector sensor ``RecallerVector`` [cue left, cue right, decide now]; one branch of 2. The last
    decision earns 1 if it names the cue, the others nothing: without memory, 0.5 at best. Added
    with ``--memory``.
    """

    name = "Recaller"
    action_spec = ActionSpecProto(num_discrete_actions=1, discrete_branch_sizes=[2])
    LENGTH = 6

    def start(self, episode_id: int, parameters: EnvironmentParameters) -> RecallerEpisode:
        return RecallerEpisode(id=episode_id, max_steps=self.LENGTH, cue=self.rng.randrange(2))

    def act(self, episode: RecallerEpisode, action: AgentActionProto) -> tuple[float, bool]:
        if episode.steps < self.LENGTH - 1:
            return 0.0, False
        choice = action.discrete_actions[0] if action.discrete_actions else 0
        return float(choice == episode.cue), True

    def observe(self, episode: RecallerEpisode) -> list[ObservationProto]:
        cue = [float(episode.steps == 0 and episode.cue == side) for side in (0, 1)]
        return [vector_observation("RecallerVector", [*cue, float(episode.steps == self.LENGTH - 1)])]


@dataclass
class Dungeon:
    """One training area's group episode (``SimpleMultiAgentGroup``): the dragon, the door, the clock, who is in."""

    group_id: int
    code: int
    max_steps: int
    members: list[Escaper] = field(default_factory=list)  # the agents still in the group episode
    dragon: bool = True
    steps: int = 0


@dataclass
class Escaper:
    """One escaper's episode: its place in its group (0..2) and its dungeon."""

    id: int
    index: int
    dungeon: Dungeon


class Escapers(Behaviour):
    """A cooperative escape where one agent must give itself up for the others (ML-Agents' DungeonEscape).

    The rules of tests/toy_envs.py's ``Dungeon``, sent as a Unity group game sends them: each dungeon
    holds a group of 3 (group ids 1, 2, ... as Unity's ``MultiAgentGroupIdCounter`` hands them out),
    whose agents report their ``group_id`` and ``group_reward`` in every AgentInfoProto; every episode
    is a fresh agent id. Observation ``EscaperVector`` (9): the agent's place one-hot (3), whether the
    dragon lives, the door's code one-hot (4, zeros while the dragon lives), steps used / time limit.
    Actions, one branch of 6: wait, fight the dragon, open the door with code 0..3. All act at once:

    - while the dragon lives, an agent that fights kills it and dies: its episode ends (done, nothing
      earned) and it leaves the group, while the others play on;
    - once the dragon is dead, a door opened with the right code lets the group out (group reward +1
      to every member left, then ``EndGroupEpisode``); only wrong codes spring a trap (``EndGroupEpisode``);
    - after ``escaper_max_steps`` steps (an environment parameter read as each group episode starts,
      default 6) ``GroupEpisodeInterrupted``; when nobody is left, the group episode ends too. Every
      member comes back under a fresh id in the same output.

    Each group episode records ``Dungeon/Escaped`` (1 or 0, average) with the StatsRecorder. Added with ``--group``.
    One departure from the toy: an agent that dies fighting is done (a real end, not an interruption) even
    on the time limit's step, where the toy marks it truncated with its group.
    """

    name = "Escaper"
    action_spec = ActionSpecProto(num_discrete_actions=1, discrete_branch_sizes=[6])
    GROUP_SIZE, CODES, DEFAULT_MAX_STEPS = 3, 4, 6
    FIGHT, FIRST_DOOR = 1, 2
    GROUP_REWARD = 1.0

    def __init__(self, dungeons: int, rng: random.Random, episode_ids: Iterator[int], stats: StatsRecorder) -> None:
        super().__init__(dungeons * self.GROUP_SIZE, rng, episode_ids)
        self.group_ids = range(1, dungeons + 1)
        self.stats = stats
        self.dungeons: list[Dungeon] = []

    def reset(self, parameters: EnvironmentParameters) -> list[AgentInfoProto]:
        """New group episodes in every dungeon (a RESET command): the old ones are dropped, not reported done."""
        self.dungeons = [self.open(group_id, parameters) for group_id in self.group_ids]
        return [info for dungeon in self.dungeons for info in self.decisions(dungeon)]

    def step(self, actions: Sequence[AgentActionProto], parameters: EnvironmentParameters) -> list[AgentInfoProto]:
        """Play one step in every dungeon; actions come in the order of the previous decisions (dungeon by dungeon)."""
        moves = iter(actions)
        infos = []
        for number, dungeon in enumerate(self.dungeons):
            choices = [self.choice(next(moves, AgentActionProto())) for _ in dungeon.members]
            infos += self.play(dungeon, choices)
            if not dungeon.members:
                self.dungeons[number] = dungeon = self.open(dungeon.group_id, parameters)
            infos += self.decisions(dungeon)
        return infos

    def open(self, group_id: int, parameters: EnvironmentParameters) -> Dungeon:
        """A new group episode: the dragon back, a new code, the time limit read now, every member under a fresh id."""
        max_steps = max(1, int(parameters.get("escaper_max_steps", self.DEFAULT_MAX_STEPS)))
        dungeon = Dungeon(group_id=group_id, code=self.rng.randrange(self.CODES), max_steps=max_steps)
        dungeon.members = [Escaper(next(self.episode_ids), index, dungeon) for index in range(self.GROUP_SIZE)]
        return dungeon

    @staticmethod
    def choice(action: AgentActionProto) -> int:
        return action.discrete_actions[0] if action.discrete_actions else 0

    def play(self, dungeon: Dungeon, choices: list[int]) -> list[AgentInfoProto]:
        """Apply one choice per member; the infos of the agents whose episode ends (the group's, if it is over)."""
        fighting = [dungeon.dragon and choice == self.FIGHT for choice in choices]
        fighters = [member for member, fights in zip(dungeon.members, fighting) if fights]
        codes = {choice - self.FIRST_DOOR for choice in choices if not dungeon.dragon and choice >= self.FIRST_DOOR}
        escaped, trapped = dungeon.code in codes, bool(codes) and dungeon.code not in codes
        dungeon.dragon = dungeon.dragon and not fighters
        dungeon.steps += 1
        dungeon.members = [member for member in dungeon.members if member not in fighters]
        ended = [self.info(fighter, 0.0, done=True, group_id=dungeon.group_id) for fighter in fighters]
        if escaped or trapped or not dungeon.members or dungeon.steps >= dungeon.max_steps:
            interrupted = not (escaped or trapped or not dungeon.members)
            group_reward = self.GROUP_REWARD if escaped else 0.0
            ended += [self.info(member, 0.0, done=True, max_step_reached=interrupted, group_id=dungeon.group_id,
                                group_reward=group_reward) for member in dungeon.members]
            dungeon.members = []
            self.stats.add("Dungeon/Escaped", float(escaped))
        return ended

    def decisions(self, dungeon: Dungeon) -> list[AgentInfoProto]:
        return [self.info(member, 0.0, group_id=dungeon.group_id) for member in dungeon.members]

    def observe(self, episode: Escaper) -> list[ObservationProto]:
        dungeon = episode.dungeon
        values = [0.0] * 9
        values[episode.index] = 1.0
        values[3] = float(dungeon.dragon)
        if not dungeon.dragon:
            values[4 + dungeon.code] = 1.0
        values[8] = dungeon.steps / dungeon.max_steps
        return [vector_observation("EscaperVector", values)]


class Game:
    """The scene: every behaviour's agents, one RNG seeded by the trainer, the side-channel settings and statistics."""

    def __init__(self, options: argparse.Namespace, init: UnityRLInitializationInputProto) -> None:
        log.info("connected: trainer communication %s, package %s, seed %d, %d area(s)",
                 init.communication_version, init.package_version, init.seed, init.num_areas)
        rng = random.Random(init.seed)
        episode_ids = itertools.count()
        agents = options.agents * max(1, init.num_areas)  # each training area holds --agents of each behaviour
        self.behaviours: list[Behaviour] = [Seekers(agents, options.grid_size, rng, episode_ids),
                                            Movers(agents, rng, episode_ids)]
        if options.hybrid:
            self.behaviours.append(Parkers(agents, rng, episode_ids))
        if options.visual:
            self.behaviours.append(Spotters(agents, rng, episode_ids))
        if options.memory:
            self.behaviours.append(Recallers(agents, rng, episode_ids))
        self.stats = StatsRecorder()
        if options.group:
            self.behaviours.append(Escapers(agents, rng, episode_ids, self.stats))  # --agents dungeons of 3
        self.settings = Settings()
        self.announced: set[str] = set()
        self.started = False

    def answer(self, rl_input: UnityRLInputProto) -> UnityOutputProto:
        """The output answering one command; a STEP before any RESET starts the game, as Unity's first step does."""
        self.settings.read_side_channel(rl_input.side_channel)
        parameters = self.settings.parameters
        if rl_input.command == RESET or not self.started:
            infos = {b.name: b.reset(parameters) for b in self.behaviours}
            self.started = True
        else:
            infos = {b.name: b.step(rl_input.agent_actions[b.name].value, parameters) for b in self.behaviours}
        output = UnityOutputProto(rl_output=UnityRLOutputProto(
            agentInfos={name: UnityRLOutputProto.ListAgentInfoProto(value=value) for name, value in infos.items()},
            side_channel=self.stats.flush()))
        for behaviour in self.behaviours:
            if behaviour.name not in self.announced:  # Unity announces each behaviour with its first agent infos
                output.rl_initialization_output.brain_parameters.append(behaviour.brain_parameters())
                self.announced.add(behaviour.name)
        return output


class ThroughputScene:
    """``--scene throughput``: what the trainer side costs, with the game's own work taken out.

    One behaviour, ``Bench``, of ``--agents`` agents with a ``--obs-size``-float vector
    observation and two discrete branches of 3 (all allowed); episodes never end. The
    output is built once and sent again every step, as a native Unity player's
    serialisation would cost next to nothing beside Python's decoding.
    """

    name = "Bench"

    def __init__(self, options: argparse.Namespace, init: UnityRLInitializationInputProto) -> None:
        rng = random.Random(init.seed)
        infos = [AgentInfoProto(id=agent, reward=0.0, action_mask=[False] * 6, observations=[vector_observation(
            "BenchVector", [rng.uniform(-1.0, 1.0) for _ in range(options.obs_size)])]) for agent in range(options.agents)]
        self.output = UnityOutputProto(rl_output=UnityRLOutputProto(
            agentInfos={self.name: UnityRLOutputProto.ListAgentInfoProto(value=infos)}))
        self.first = UnityOutputProto()
        self.first.CopyFrom(self.output)
        self.first.rl_initialization_output.brain_parameters.append(BrainParametersProto(
            brain_name=self.name, is_training=True,
            action_spec=ActionSpecProto(num_discrete_actions=2, discrete_branch_sizes=[3, 3])))
        self.announced = False

    def answer(self, rl_input: UnityRLInputProto) -> UnityOutputProto:
        if self.announced:
            return self.output
        self.announced = True
        return self.first


class DuelScene:
    """``--scene duel``: ``--agents`` duels per training area of engines/python/examples/duel.py, the game's
    batched rules sent as Unity agents: behaviours ``Duelist?team=0`` and ``Duelist?team=1`` (two teams, one
    policy group), duel ``g``'s players agents ``2g`` and ``2g + 1``, which keep their ids from game to game."""

    DUEL = Path(__file__).resolve().parents[1] / "python" / "examples" / "duel.py"
    action_spec = ActionSpecProto(num_discrete_actions=1, discrete_branch_sizes=[5])

    def __init__(self, options: argparse.Namespace, init: UnityRLInitializationInputProto) -> None:
        spec = importlib.util.spec_from_file_location("duel", self.DUEL)
        duel = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(duel)
        self.sides = duel.SIDES
        self.game = duel.Duel(games=options.agents * max(1, init.num_areas))
        self.seed = init.seed
        self.started = False

    def answer(self, rl_input: UnityRLInputProto) -> UnityOutputProto:
        if rl_input.command == RESET or not self.started:
            result = self.game.reset(self.seed)
        else:
            result = self.game.step({name: np.array([a.discrete_actions[0] for a in rl_input.agent_actions[name].value],
                                                    np.int64) for name in self.sides})
        output = UnityOutputProto(rl_output=UnityRLOutputProto(agentInfos={
            name: UnityRLOutputProto.ListAgentInfoProto(value=self.infos(team, result[name]))
            for team, name in enumerate(self.sides)}))
        if not self.started:
            self.started = True
            output.rl_initialization_output.brain_parameters.extend(
                BrainParametersProto(brain_name=name, is_training=True, action_spec=self.action_spec)
                for name in self.sides)
        return output

    @staticmethod
    def infos(team: int, step) -> list[AgentInfoProto]:
        """A side's terminals (done; ``max_step_reached`` if truncated), then its decisions (masks inverted: Unity
        sends True for a forbidden action)."""
        ended, deciding = step.terminals, step.decisions
        return [*(AgentInfoProto(id=2 * int(agent) + team, reward=float(reward), done=True, max_step_reached=bool(cut),
                                 observations=[vector_observation("DuelVector", obs.tolist())])
                  for agent, reward, cut, obs in zip(ended.agent_ids, ended.rewards, ended.truncated, ended.obs)),
                *(AgentInfoProto(id=2 * int(agent) + team, reward=float(reward), action_mask=(~mask).tolist(),
                                 observations=[vector_observation("DuelVector", obs.tolist())])
                  for agent, reward, mask, obs in zip(deciding.agent_ids, deciding.rewards, deciding.action_mask,
                                                      deciding.obs))]


# ---------------------------------------------------------------------------------------------
# The player


def academy_parameters(options: argparse.Namespace) -> UnityRLInitializationOutputProto:
    """What Unity's Academy announces in its first message."""
    capabilities = UnityRLCapabilitiesProto(
        baseRLCapabilities=True, concatenatedPngObservations=True, compressedChannelMapping=True,
        hybridActions=True, trainingAnalytics=True, variableLengthObservation=True, multiAgentGroups=True)
    return UnityRLInitializationOutputProto(
        name="StandIn", communication_version=options.communication_version, package_version=PACKAGE_VERSION,
        log_path=options.log_file or "", capabilities=capabilities)


def message(output: UnityOutputProto | None = None) -> UnityMessageProto:
    result = UnityMessageProto(header=HeaderProto(status=OK))
    if output is not None:
        result.unity_output.CopyFrom(output)
    return result


def hang_while_launched() -> int:
    """Stop answering but stay alive (--hang-after-steps) until the trainer kills us or is gone itself."""
    launcher = os.getppid()
    while os.getppid() == launcher:
        time.sleep(0.5)
    return EXIT_TRAINER_GONE


def trainer_stopped_its_server(error: grpc.RpcError) -> bool:
    """Whether the trainer shut its server down on purpose, rather than vanished.

    ``UnityEnvironment.close()`` sends status 400 and at once stops its server with
    no grace, which cancels the Exchange in flight: that cancellation (a GOAWAY
    saying "Cancelling all calls") can overtake the 400 reply. A trainer that dies
    drops the connection instead ("Socket closed").
    """
    return error.code() == grpc.StatusCode.UNAVAILABLE and "Cancelling all calls" in (error.details() or "")


def poison_first_observation(output: UnityOutputProto) -> None:
    """A game bug (--nan-after-steps): the first float of the first agent's first observation becomes NaN."""
    for infos in output.rl_output.agentInfos.values():
        for info in infos.value:
            info.observations[0].float_data.data[0] = float("nan")
            return


def play(options: argparse.Namespace) -> int:
    """Connect to the trainer and play until it says quit; the exit status."""
    steps = 0
    with grpc.insecure_channel(f"localhost:{options.mlagents_port}") as channel:
        exchange = UnityToExternalProtoStub(channel).Exchange
        try:
            reply = exchange(message(UnityOutputProto(rl_initialization_output=academy_parameters(options))),
                             wait_for_ready=True, timeout=CONNECT_TIMEOUT_S)
            scene = {"throughput": ThroughputScene, "duel": DuelScene}.get(options.scene, Game)
            game = scene(options, reply.unity_input.rl_initialization_input)
            reply = exchange(message())  # the trainer's first command answers this empty message
            while reply.header.status == OK and reply.unity_input.rl_input.command != QUIT:
                rl_input = reply.unity_input.rl_input
                if rl_input.command == STEP:
                    steps += 1
                    if steps > options.crash_after_steps:
                        log.error("crashing on step %d (--crash-after-steps)", steps)
                        logging.shutdown()
                        os._exit(EXIT_CRASH)
                    if steps > options.hang_after_steps:
                        log.warning("hanging on step %d (--hang-after-steps)", steps)
                        return hang_while_launched()
                output = game.answer(rl_input)
                if steps > options.nan_after_steps:
                    log.warning("sending a NaN observation on step %d (--nan-after-steps)", steps)
                    poison_first_observation(output)
                reply = exchange(message(output))
        except grpc.RpcError as error:
            if not trainer_stopped_its_server(error):
                log.error("lost the trainer after %d steps: %s %s", steps, error.code(), error.details())
                return EXIT_TRAINER_GONE
    log.info("the trainer closed the game after %d steps", steps)
    return 0


def parse_options(argv: Sequence[str]) -> argparse.Namespace:
    """The player's options; Unity's own (-batchmode, -nographics, ...) and any unknown ones are ignored."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0], allow_abbrev=False)
    parser.add_argument("--mlagents-port", type=int, required=True, help="the trainer's gRPC port (localhost)")
    parser.add_argument("-logFile", "-logfile", dest="log_file", help="write the log here ('-': stdout)")
    parser.add_argument("--agents", type=int, default=4, help="agents of each behaviour per training area")
    parser.add_argument("--grid-size", type=int, default=5, help="the Seekers' grid is G x G")
    parser.add_argument("--scene", choices=("game", "throughput", "duel"), default="game",
                        help="the Seeker/Mover game, the throughput scene (see ThroughputScene) or the duel (DuelScene)")
    parser.add_argument("--obs-size", type=int, default=64, help="throughput scene: floats per observation")
    parser.add_argument("--hybrid", action="store_true", help="game scene: add the Parker behaviour (hybrid actions)")
    parser.add_argument("--visual", action="store_true",
                        help="game scene: add the Spotter behaviour (a 3.x-style camera and a buffer sensor)")
    parser.add_argument("--memory", action="store_true",
                        help="game scene: add the Recaller behaviour (needs a policy with memory)")
    parser.add_argument("--group", action="store_true",
                        help="game scene: add the Escaper behaviour (groups of 3, group rewards, a statistic)")
    parser.add_argument("--communication-version", default=COMMUNICATION_VERSION,
                        help="the communication API version announced to the trainer")
    parser.add_argument("--crash-after-steps", type=int, default=sys.maxsize,
                        help=f"exit abruptly with status {EXIT_CRASH} when STEP command S+1 arrives")
    parser.add_argument("--hang-after-steps", type=int, default=sys.maxsize,
                        help="stop answering (but stay alive) when STEP command S+1 arrives")
    parser.add_argument("--nan-after-steps", type=int, default=sys.maxsize,
                        help="answer STEP command S+1 and later with a NaN in the first observation")
    options, _unknown = parser.parse_known_args(argv)
    if options.agents < 1 or options.grid_size < 2:
        parser.error("--agents must be at least 1 and --grid-size at least 2")
    return options


def main(argv: Sequence[str] | None = None) -> int:
    options = parse_options(sys.argv[1:] if argv is None else argv)
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s",
        **({"stream": sys.stdout} if options.log_file == "-" else
           {"filename": options.log_file, "filemode": "w"} if options.log_file else {}))
    return play(options)


if __name__ == "__main__":
    sys.exit(main())
