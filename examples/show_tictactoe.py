"""Show what the demo run learned: its record against a random player, and one game move by move.

    python examples/show_tictactoe.py results/demo
"""

from __future__ import annotations

import sys
import warnings
from pathlib import Path

import numpy as np

warnings.filterwarnings("ignore", category=DeprecationWarning)  # pettingzoo.classic's import path

from pettingzoo.classic import tictactoe_v3  # noqa: E402

from sparring.agents import PPO  # noqa: E402
from sparring.agents.evaluation import evaluate  # noqa: E402
from sparring.envs.pettingzoo import PettingZooEnv  # noqa: E402

GAMES = 200


def record(model: PPO) -> None:
    returns = evaluate(model, PettingZooEnv(tictactoe_v3.env(), opponent="random"), GAMES, seed=2024)["player"]
    wins, draws, losses = (returns > 0).mean(), (returns == 0).mean(), (returns < 0).mean()
    print(f"against a random player, {GAMES} games alternating first and second seat:")
    print(f"  won {wins:.1%}   drew {draws:.1%}   lost {losses:.1%}")


def show_game(model: PPO) -> None:
    """One game, the trained policy (X) moving first against the random player (O)."""
    env = tictactoe_v3.env()
    env.reset(seed=7)
    rng = np.random.default_rng(7)
    board = [" "] * 9
    marks = {"player_1": "X", "player_2": "O"}
    for agent in env.agent_iter():
        obs, reward, terminated, truncated, _ = env.last()
        if terminated or truncated:
            env.step(None)
            continue
        mask = obs["action_mask"].astype(bool)
        if agent == "player_1":
            move = int(model.predict(obs["observation"][None], "player", mask[None])[0])
        else:
            move = int(rng.choice(np.flatnonzero(mask)))
        board[move] = marks[agent]
        env.step(move)
    rows = [" " + " | ".join(board[c * 3 + r] for c in range(3)) for r in range(3)]  # pettingzoo indexes columns first
    print("a game (trained X vs random O):")
    print("\n ---------\n".join(rows))


def main() -> None:
    run = Path(sys.argv[1] if len(sys.argv) > 1 else "results/demo")
    model = PPO.load(run / "final.pt")
    record(model)
    show_game(model)
    print(f"outputs: {run}/ (final.pt, checkpoints/, metrics.jsonl, tensorboard/)")


if __name__ == "__main__":
    main()
