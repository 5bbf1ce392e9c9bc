"""Self-play: the league of frozen snapshots a learner trains against (and the trainer that runs it)."""

from sparring.agents.selfplay.league import LATEST, GroupSettings, League, LeagueSettings, Player

__all__ = ["LATEST", "GroupSettings", "League", "LeagueSettings", "Player"]
