"""Show what the demo run learned: the trained NPCs against random play in the arena, then a few ticks of one arena.

    python examples/show_arena.py results/demo
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "engines" / "python" / "examples"))

import arena  # noqa: E402

from sparring.agents import PPO  # noqa: E402
from sparring.agents.evaluation import RandomPolicy, evaluate  # noqa: E402
from sparring.envs.bridge.env import MultiEngineEnv  # noqa: E402
from sparring.envs.factory import game_command  # noqa: E402

EPISODES = 400


def mean_returns(player, episodes: int) -> dict[str, float]:
    """Play through the bridge, against a freshly launched arena process, as training did."""
    program, args = game_command(str(ROOT / "engines" / "python" / "examples" / "arena.py"), [])
    with MultiEngineEnv.launch(program, 1, args) as env:
        returns = evaluate(player, env, episodes, seed=2024)
    return {name: float(r.mean()) for name, r in returns.items() if len(r)}


def show_ticks(model: PPO, ticks: int = 4) -> None:
    game = arena.Arena(arenas=1)
    result = game.reset(seed=7)
    for tick in range(ticks):
        print(f"tick {tick}:\n{game.render()}")
        actions = {name: model.predict(part.decisions.obs, name, part.decisions.action_mask)
                   for name, part in result.items() if len(part.decisions)}
        result = game.step(actions)


def main() -> None:
    run = Path(sys.argv[1] if len(sys.argv) > 1 else "results/demo")
    model = PPO.load(run / "final.pt")
    trained, baseline = mean_returns(model, EPISODES), mean_returns(RandomPolicy(model.specs), EPISODES)
    print(f"mean return per episode over {EPISODES} episodes, through the bridge:")
    for name in trained:
        print(f"  {name:<7} trained {trained[name]:6.2f}   random play {baseline.get(name, float('nan')):6.2f}")
    show_ticks(model)
    print(f"outputs: {run}/ (final.pt, checkpoints/, metrics.jsonl, tensorboard/, engines/ logs)")


if __name__ == "__main__":
    main()
