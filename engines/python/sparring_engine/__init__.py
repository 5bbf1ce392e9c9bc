"""sparring_engine: plug a game written in Python into a sparring trainer over the bridge.

A game declares its behaviours and steps all of its agents in batches, exactly
like the sparring env API (``sparring.envs.base``), and :func:`run` does the rest::

    import numpy as np
    from gymnasium import spaces
    import sparring_engine as se

    class Chase:
        specs = {"Chaser": se.BehaviourSpec("Chaser", spaces.Box(-1, 1, (4,), np.float32), spaces.Discrete(5))}
        action_masks = {"Chaser"}          # optional: behaviours whose decisions carry masks

        def reset(self, seed):             # -> {behaviour: BehaviourStep}, every behaviour present
            ...
        def step(self, actions):           # actions[name]: one row per agent of the last decisions
            ...

    if __name__ == "__main__":
        se.run(Chase(), se.from_command_line())   # reads --sparring-port/-token/-transport/-host

The trainer launches the game as ``game [args] --sparring-port N --sparring-token T``
(add ``--sparring-transport tcp`` to the game's args for the TCP transport), or the
game connects on its own to a trainer that is waiting (editor mode). One session:
Hello -> Welcome, then Reset / Actions from the trainer, each answered with the
game's next step result, until the trainer says Close. See
``engines/python/examples/arena.py`` for a complete game.
"""

from sparring.envs.base import BehaviourStep, DecisionSteps, StepResult, TerminalSteps
from sparring.spec import BehaviourSpec
from sparring_engine.client import (
    BridgeOptions,
    EngineConnection,
    Game,
    TrainerError,
    TrainerRefused,
    from_command_line,
    run,
)

__all__ = [
    "BehaviourSpec", "BehaviourStep", "BridgeOptions", "DecisionSteps", "EngineConnection", "Game", "StepResult",
    "TerminalSteps", "TrainerError", "TrainerRefused", "from_command_line", "run",
]
