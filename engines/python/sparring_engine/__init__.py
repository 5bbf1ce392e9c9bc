"""sparring_engine: plug a game written in Python into a sparring trainer over the bridge.

A game declares its behaviours and steps all of its agents in batches, in the shapes
of the sparring env API, and :func:`run` does the rest::

    import numpy as np
    import sparring_engine as se

    class Chase:
        specs = {"Chaser": se.BehaviourSpec("Chaser", se.Box(-1, 1, (4,)), se.Discrete(5))}
        action_masks = {"Chaser"}          # optional: behaviours whose decisions carry masks

        def reset(self, seed):             # -> {behaviour: BehaviourStep}, every behaviour present
            ...
        def step(self, actions):           # actions[name]: one row per agent of the last decisions
            ...

    if __name__ == "__main__":
        se.run(Chase(), se.from_command_line())   # reads --sparring-host/-port/-transport/-token/-ca/-tls-name

Optional: ``groups = {"Chaser": se.AgentGroups()}`` for agents that share rewards (ML-Agents'
SimpleMultiAgentGroup), ``stats = se.StatsRecorder()`` for statistics the trainer logs,
``configure(parameters)`` to receive the environment parameters, and ``played = se.ActionReports()``
for the actions a person or heuristic took, which ``sparring record`` records (see :class:`Game`).

The package needs numpy, grpcio, protobuf and the bridge's wire format
(``sparring-protocol``), nothing of the trainer. Gymnasium's spaces are accepted
in place of :class:`Box`, :class:`Discrete` and :class:`MultiDiscrete`. The
protocol, and what the trainer expects of a game, is ``protos/README.md``;
``engines/python/examples/arena.py`` is a complete game.
"""

from sparring.protos.wire import ProtocolError
from sparring_engine.client import (
    BridgeOptions,
    EngineConnection,
    Game,
    TrainerError,
    TrainerRefused,
    from_command_line,
    run,
)
from sparring_engine.groups import AgentGroups
from sparring_engine.messages import decode_actions, encode_observations, hello_message, serialize_observations, spec_to_proto
from sparring_engine.played import ActionReports
from sparring_engine.stats import StatsRecorder
from sparring_engine.tls import TrainerTlsError
from sparring_engine.types import (
    BehaviourSpec,
    BehaviourStep,
    Box,
    DecisionSteps,
    Discrete,
    MultiDiscrete,
    PlayedActions,
    StepResult,
    TerminalSteps,
)

__all__ = [
    "ActionReports", "AgentGroups", "BehaviourSpec", "BehaviourStep", "Box", "BridgeOptions", "DecisionSteps",
    "Discrete", "EngineConnection", "Game", "MultiDiscrete", "PlayedActions", "ProtocolError", "StatsRecorder",
    "StepResult", "TerminalSteps", "TrainerError", "TrainerRefused", "TrainerTlsError",
    "decode_actions", "encode_observations", "from_command_line", "hello_message", "run", "serialize_observations",
    "spec_to_proto",
]
