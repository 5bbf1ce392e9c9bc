"""Self-play: PPO learners that train against frozen snapshots of themselves, drawn from a league.

Every decision of the env is routed either to a *learner* (trained, its rows kept
in the rollout) or to an *opponent* (:mod:`~sparring.agents.selfplay.opponents`: a
frozen snapshot, or the learner itself, acting but never trained on). :class:`SelfPlay`
is PPO's :class:`~sparring.agents.routing.Routing`: PPO's rollout loop asks it which
rows its learners act for and lets it act for the others. Which rows are the learner's
depends on the game:

- **Symmetric seats** (one behaviour, several seats per game, no team ids: a
  PettingZoo board game). The env says which game each agent plays in and its seat
  there (``env.seats``); an env that does not say is refused at start (declare a team
  id per side instead). In each game the learner plays one seat per episode, rotating
  every episode; the other seats play the current opponent. With ``mirror_learns``, an episode
  that begins against the learner itself gives the learner every seat's rows.
- **Sides** (behaviours with team ids, ``"Striker?team=1"``, or several behaviour
  groups: asymmetric games). One side learns at a time and the learning side
  changes after ``team_change`` steps of its learner, as ML-Agents' ``team_change``; every
  other side plays an opponent of its own group. Behaviours that differ only by
  their team suffix share one policy (their *group*), as in ML-Agents.

**Exploiters** (AlphaStar's league roles): with ``main_exploiters`` or
``league_exploiters`` in the league settings, game copies are shared out between
the main learner and the exploiters (copy ``c`` goes to role ``c % roles``, so
the env needs at least as many copies as roles). Each exploiter is a learner of
its own, one per group, with its own opponents: a main exploiter always plays
the newest main snapshot and is reset to the initial weights each time it is
frozen into the league; a league exploiter plays the whole league by the
league's sampling rule. In games with sides, the learning side's exploiters
learn while the main learner of that side does, and change sides with it. Their
snapshots join the league, so the main learner meets the weaknesses they found.
``num_steps`` counts the main learner's decisions only.

Each policy group keeps its own schedules, by its own settings
(``league.settings.of(group)``), as each behaviour's GhostTrainer does in ML-Agents:
its learner steps (the decisions its main learner takes) and its opponent steps
(ML-Agents' ghost steps: the decisions taken for it in the main learner's games
while another side learns) are counted apart. Every ``save_steps`` learner steps
the group's policy is frozen into the league (and every exploiter's of it); every
``swap_steps`` opponent steps who plays the group is drawn again
(:meth:`League.sample_opponent`: the latest policy, uniform over the window, or
prioritized fictitious self-play), and every group's when the learning side
changes; the learning side changes after ``team_change`` learner steps of its own
group. So two Strikers and one Goalie, which take their steps at different rates,
each swap on a schedule of their own. In symmetric games every game copy draws its
own opponent, so each update learns from a mixture of opponents rather than overfitting
to one; in games with sides, each role draws one per group. A learner episode that ends (not truncated)
is a game: its final reward's sign is the result (win, draw, loss, as in
ML-Agents), which updates the payoff table and Elo ratings.

**Scripted members** of the league (:mod:`~sparring.agents.selfplay.scripted`: a function, an
exported ONNX policy, random play) are opponents like snapshots, acting through their
Predictor; the curriculum gate keeps the main learner on them until it beats them. An
*engine* member is the game's own AI: the game plays that group's agents itself and reports
what it played (the bridge's played actions), so the trainer's rows for them are filler,
that side never learns, and every game against it is recorded against the member.

**More than two seats** (a free-for-all of one behaviour, seated by ``env.seats``): each game
copy's other seats play its drawn opponent; a finished game ranks its players by final reward
and updates OpenSkill ratings (Plackett-Luce), where a player in several seats takes its best
place; the payoff table counts the learner's result by its reward's sign, and Elo is left be.
**More than two sides** (team ids 0, 1, 2, ... or three groups): the sides that do not learn
play their groups' drawn opponents, and OpenSkill rates each game from the learning side's
result, as a player in several seats is placed: a win puts the learner first and its opponent
(the next side's, where the sides are of several groups) second, a loss the other way round,
a draw ties them (the sides' agents need not arrive together, so no game waits for the
others' rewards); Elo is left be.

Recurrent policies self-play too: the learners keep their memories as PPO's do, and each
opponent a memory per agent, forgotten as the agent's episode ends (a swap starts the new
opponents with blank memories).

The checkpoint (:meth:`state_dict`) holds the league and the routing state, so a
resumed run continues exactly; its policies are keyed by group, so
``sparring export`` and :meth:`PPO.load` read it like any PPO run.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from functools import partial

import numpy as np
import torch

from sparring.agents.policy import BehaviourPolicy
from sparring.agents.poca import POCALearner, POCASettings
from sparring.agents.ppo import PPO, BehaviourLearner
from sparring.agents.rollout import AgentMemory
from sparring.agents.selfplay.league import LATEST, League, LeagueSettings, learner_key, role_kind
from sparring.agents.selfplay.opponents import Opponent, PolicyOpponent, PredictorOpponent
from sparring.agents.selfplay.scripted import scripted_predictor
from sparring.envs.base import BehaviourStep, DecisionSteps, MultiAgentEnv, TerminalSteps
from sparring.envs.vector import ID_STRIDE, VectorEnv
from sparring.spec import Batch, BehaviourSpec, batch_put, empty_actions, group_of


def _weights(policy: BehaviourPolicy) -> dict[str, torch.Tensor]:
    """A frozen copy of a policy's weights, for the league."""
    return {k: v.detach().clone() for k, v in policy.state_dict().items()}


def game_score(final_rewards: np.ndarray) -> np.ndarray:
    """ML-Agents' result of a game from the final reward: 1 win (> 0), 0.5 draw (0), 0 loss (< 0)."""
    return 0.5 + 0.5 * np.sign(final_rewards)


def game_ranking(seated: list[str], rewards: np.ndarray) -> tuple[list[str], list[int]]:
    """The places of one game's players from each seat's final reward (0 best, equal rewards tied): a player that
    holds several seats (one drawn opponent plays every seat but the learner's) takes its best seat's place."""
    places = np.unique(-np.asarray(rewards), return_inverse=True)[1].reshape(-1)
    best: dict[str, int] = {}
    for player, place in zip(seated, places.tolist()):
        best[player] = min(place, best.get(player, place))
    return list(best), list(best.values())


_PLACES = {1.0: (0, 1), 0.5: (0, 0), 0.0: (1, 0)}
"""A game of three or more sides by the learning side's score: (its place, the place of the opponent that plays the
other sides)."""


@dataclass
class GroupClock:
    """One policy group's step counts, and what they were at its schedules' last events (ML-Agents' GhostTrainer
    keeps the same per behaviour: get_step, ghost_step, last_save, last_swap, last_team_change)."""

    learned: int = 0  # decisions of its main learner: what save_steps and team_change count
    played: int = 0  # decisions taken for it in the main learner's games while another side learns: swap_steps
    snapshot: int = 0  # learned at its last snapshot
    swap: int = 0  # played at its last draw of who plays it
    team_change: int = 0  # learned when it last stopped learning


def _check_groups(settings: LeagueSettings, groups: Iterable[str]) -> None:
    """A group's own settings for a group the env does not have are a mistake in the config: say so at start."""
    unknown = sorted(set(settings.groups) - set(groups))
    if unknown:
        raise ValueError(f"self_play.groups.{unknown[0]}: the env has no policy group {unknown[0]!r}; its groups are "
                         f"{', '.join(sorted(groups))} (behaviour names without ?team=)")


class SelfPlay(PPO):
    """PPO that learns by self-play against a :class:`League` (see the module docstring).

    Args:
        env: a two-or-more-sided game: one behaviour with ``seats`` seats per game copy,
            or behaviours with team ids / several behaviour groups.
        league: where snapshots, ratings and results are kept (its settings are ML-Agents'
            ``self_play`` keys plus ours, each group's ``league.settings.of(group)``).
        seats: seats per game for symmetric games (the env's ``seats`` says which seat each agent holds; a game of
            more is counted as its agents are seated, so a config needs no count).
        seed, behaviour_settings, **settings: as :class:`PPO` (behaviour settings by group name).
    """

    def __init__(
        self,
        env: MultiAgentEnv,
        league: League,
        seed: int = 0,
        seats: int = 2,
        behaviour_settings: Mapping[str, Mapping[str, object]] | None = None,
        **settings: object,
    ) -> None:
        self.group_of = {name: group_of(name) for name in env.specs}
        groups: dict[str, BehaviourSpec] = {}
        for name, spec in env.specs.items():
            group = self.group_of[name]
            first = groups.setdefault(group, BehaviourSpec(group, spec.observation_space, spec.action_space))
            if (first.observation_space, first.action_space) != (spec.observation_space, spec.action_space):
                raise ValueError(f"behaviours of group {group!r} must share spaces to share a policy; "
                                 f"{name!r} differs")
        _check_groups(league.settings, groups)
        league.enrol(groups)
        super().__init__(None, seed=seed, specs=groups, behaviour_settings=behaviour_settings, **settings)
        self.routing = self
        self.env = env
        self.league = league
        self.seats = seats
        self.team_of = {name: spec.team_id for name, spec in env.specs.items()}
        self.symmetric = len(groups) == 1 and all(team is None for team in self.team_of.values())
        if self.symmetric and env.seats(next(iter(env.specs)), np.zeros(0, np.int64)) is None:
            raise ValueError(f"self-play: behaviour {next(iter(env.specs))!r} has no team ids and {type(env).__name__} "
                             "does not say which agents play each other (env.seats): declare a team id per side "
                             "(\"Name?team=0\", \"Name?team=1\", as ML-Agents requires for self-play), or use a source "
                             "that seats agents (PettingZoo)")
        # the sides that take turns at learning: (group, team) per behaviour, in a fixed order
        self.sides = sorted({self._side_of(name) for name in env.specs})
        if not self.symmetric and len(self.sides) < 2:
            raise ValueError(f"self-play needs two sides: behaviours {sorted(env.specs)} have one group and no teams")
        self.engine_groups = league.engine_groups()  # the game plays these sides itself: they never learn
        if self.engine_groups and (self.symmetric or {g for g, _ in self.sides} <= self.engine_groups):
            raise ValueError(f"self_play.opponents: kind engine plays groups {sorted(self.engine_groups)} of "
                             f"{sorted(groups)}; it needs a game with sides and one side of other groups to learn")
        self.learning_side = self._learning_side_from(0)
        self._engine_rows = dict.fromkeys(name for name in env.specs if self.group_of[name] in self.engine_groups)
        exploiters = [f"main_exploiter{i}" for i in range(league.settings.main_exploiters)] + [
            f"league_exploiter{i}" for i in range(league.settings.league_exploiters)]
        self.roles = ["main", *exploiters]  # copy c is played by role c % len(roles)
        copies = env.num_envs if isinstance(env, VectorEnv) else 1
        if copies < len(self.roles):
            raise ValueError(f"self_play: {len(self.roles)} roles ({', '.join(self.roles)}) play game copies of "
                             f"their own, but the env has {copies}; use at least {len(self.roles)} env copies "
                             "(num_envs, or Unity builds), or fewer exploiters")
        # per role, per group: the exploiters (each side of an asymmetric game has its own)
        self.exploiters = {role: {group: self.learner_type(spec, self.settings_of(group)) for group, spec in groups.items()}
                           for role in exploiters}
        self._initial_weights = {role: {group: _weights(learner.policy) for group, learner in by_group.items()}
                                 for role, by_group in self.exploiters.items()}
        # symmetric games: per game copy, the learner's seat, the opponent in the other seats, and whether the
        # learner plays every seat of its episode (mirror_learns: it began against the learner itself)
        self.learner_seat = np.zeros(0, np.int64)
        self.copy_opponents: list[str] = []
        self.mirrored = np.zeros(0, bool)
        # games with sides: per role, per group, the opponent that plays the group while another side learns
        self.opponents = {} if self.symmetric else {role: {group: LATEST for group in groups} for role in self.roles}
        if not self.symmetric and (league.settings.gate is not None or self.engine_groups):
            self._draw_opponents(groups)  # the game's own players, and scripted members behind the gate, from the start
        self._opponents: dict[tuple[str, str], Opponent] = {}  # (behaviour, player id) -> its seat, until the next swap
        # (behaviour, scripted player id) -> what plays it, loaded at start so a member that cannot play is named now
        self._scripted = {(name, player.id): scripted_predictor(league.member(player.id), groups[player.group],
                                                                seed + i, league.member_key(player.id))
                          for i, (name, player) in enumerate((name, player) for name in env.specs
                                                             for player in league.scripted.values()
                                                             if player.group == self.group_of[name])}
        self.clocks = {group: GroupClock() for group in groups}
        self._counted = 0  # num_steps when the learning group's clock last counted its learner's steps

    # -- routing (the trainer's Routing: who acts for which rows) -------------------

    @property
    def learning_group(self) -> str:
        return self.sides[self.learning_side][0]

    def learner_of(self, behaviour: str) -> str:
        """Behaviours that differ only by their team share their group's learner."""
        return self.group_of[behaviour]

    def learner_rows(self, behaviour: str, agent_ids: np.ndarray, role: int = 0) -> np.ndarray:
        """The main learner's rows (or learner ``role``'s); exploiters' and opponents' rows are acted for in
        :meth:`act`."""
        learning, roles = self._route(behaviour, agent_ids)
        return learning & (roles == role)

    def act(self, behaviour: str, decisions: DecisionSteps) -> Batch:
        """The exploiters' moves in their games, then the opponents' in every game."""
        group = self.group_of[behaviour]
        learning, roles = self._route(behaviour, decisions.agent_ids)
        out = empty_actions(self.env.specs[behaviour], len(decisions))
        for role in range(1, len(self.roles)):
            theirs = learning & (roles == role)
            if theirs.any():
                batch_put(out, theirs, self._learner(group, role).act(decisions.take(theirs), self.generator))
        theirs = ~learning
        if theirs.any():
            players = self._opponent_of(behaviour, decisions.agent_ids[theirs])
            batch_put(out, theirs, self._opponent_act(behaviour, players, decisions.take(theirs)))
            self.clocks[group].played += int((theirs & (roles == 0)).sum())
        return out

    def observe(self, behaviour: str, step: BehaviourStep) -> BehaviourStep | None:
        """Games that ended update the league; seats rotate between episodes; opponents forget ended episodes;
        the exploiters get their rows here, the main learner's are returned."""
        group = self.group_of[behaviour]
        if behaviour in self._engine_rows:
            self._check_engine_plays(behaviour, step)
        terminals = step.terminals
        ended, ended_role = self._route(behaviour, terminals.agent_ids)  # by the seats the episodes were played in
        gone = np.concatenate([terminals.agent_ids, step.lost])
        if len(gone):
            for (name, _), opponent in self._opponents.items():
                if name == behaviour:
                    opponent.forget(gone)
        if self.symmetric and self.free_for_all and len(terminals):
            self._rank_games(behaviour, terminals, ended, ended_role)
        if self.symmetric and len(terminals):
            games = np.unique(self.env.seats(behaviour, terminals.agent_ids)[0])
            self.learner_seat[games] = (self.learner_seat[games] + 1) % self.seats
            self.mirrored[games] = self._mirrors(games)
        if self.symmetric and self.mirrored.any():  # the other seats of its own games are opponent steps all the same
            games, seats = self.env.seats(behaviour, step.decisions.agent_ids)
            self._cover(games)
            self.clocks[group].played += int((self.mirrored[games] & (seats != self.learner_seat[games])).sum())
        if group != self.learning_group:
            return None
        decided, decided_role = self._route(behaviour, step.decisions.agent_ids)  # next episodes: new seats
        lost, lost_role = self._route(behaviour, step.lost)
        parts = [BehaviourStep(step.decisions.take(decided & (decided_role == role)),
                               terminals.take(ended & (ended_role == role)), step.lost[lost & (lost_role == role)])
                 for role in range(len(self.roles))]
        for role, part in enumerate(parts):
            if role:
                self._learner(group, role).observe(part)
            games = ~part.terminals.truncated
            faced = self._opponent_of(behaviour, part.terminals.agent_ids[games])
            for opponent, score in zip(faced.tolist(), game_score(part.terminals.total_rewards[games]).tolist()):
                self.league.record(group, opponent, score, self.num_steps, role=self.roles[role],
                                   rated=not self.free_for_all)
                if self.free_for_all and not self.symmetric and opponent != LATEST:
                    learner_place, opponent_place = _PLACES[score]
                    self.league.record_ranking([learner_key(group, self.roles[role]), opponent],
                                               [learner_place, opponent_place], self.num_steps)
        return parts[0]

    @property
    def free_for_all(self) -> bool:
        """More than two seats or sides to a game: OpenSkill rates its players, Elo is left be."""
        return self.seats > 2 if self.symmetric else len(self.sides) > 2

    def _check_engine_plays(self, behaviour: str, step: BehaviourStep) -> None:
        """An engine member's agents are the game's to play: once they have decided twice, it must have reported what
        it played for them (our rows for them are ignored), or it does not play them and the results would lie."""
        if step.played is not None and len(step.played):
            self._engine_rows[behaviour] = -1  # seen: the game plays them
        elif self._engine_rows[behaviour] != -1 and len(step.decisions):
            self._engine_rows[behaviour] = (self._engine_rows[behaviour] or 0) + 1
            if self._engine_rows[behaviour] > 2:
                raise ValueError(f"self_play.opponents: kind engine plays {behaviour!r}, but the game reported no "
                                 "action it played for those agents; the game must play them itself and report each "
                                 "action (BehaviourObservations.played_ids, protocol version 3; Python SDK: "
                                 "ActionReports)")

    def _rank_games(self, behaviour: str, terminals: TerminalSteps, learner: np.ndarray, roles: np.ndarray) -> None:
        """Games of more than two seats that ended with every seat's row here: OpenSkill rates who played them, ranked
        by their final rewards (see :func:`game_ranking`). ``learner``/``roles``: the rows' routes as played."""
        games = self.env.seats(behaviour, terminals.agent_ids)[0]
        for game in np.unique(games[~terminals.truncated]).tolist():
            rows = np.flatnonzero(games == game)
            if len(rows) != self.seats or terminals.truncated[rows].any():
                continue
            key = learner_key(self.group_of[behaviour], self.roles[int(roles[rows[0]])])
            opponent = self.copy_opponents[game]
            seated = [key if learner[r] or opponent == LATEST else opponent for r in rows.tolist()]
            participants, ranks = game_ranking(seated, terminals.total_rewards[rows])
            if len(participants) > 1:
                self.league.record_ranking(participants, ranks, self.num_steps)

    def _route(self, behaviour: str, agent_ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Per row of ``behaviour``'s batch (by agent id): is it a learner's, and which role's game is it."""
        if self.symmetric:
            games, seats = self.env.seats(behaviour, agent_ids)
            if len(seats):  # a game of more seats than said: the env's seats are the truth
                self.seats = max(self.seats, int(seats.max()) + 1)
            self._cover(games)
            return (seats == self.learner_seat[games]) | self.mirrored[games], games % len(self.roles)
        learning = self._side_of(behaviour) == self.sides[self.learning_side]
        return np.full(len(agent_ids), learning), (agent_ids // ID_STRIDE) % len(self.roles)

    def _side_of(self, behaviour: str) -> tuple[str, int]:
        team = self.team_of[behaviour]
        return self.group_of[behaviour], -1 if team is None else team

    def _learner(self, group: str, role: int) -> BehaviourLearner:
        return self.learners[group] if role == 0 else self.exploiters[self.roles[role]][group]

    def _opponent_of(self, behaviour: str, agent_ids: np.ndarray) -> np.ndarray:
        """Per row, the player id of the opponent in that game: who plays it (opponent rows) or who it
        faces (learner rows, for the payoff table). :data:`LATEST` is the main learner as it is now."""
        if self.symmetric:
            games = self.env.seats(behaviour, agent_ids)[0]
            self._cover(games)
            return np.where(self.mirrored[games], LATEST, np.asarray(self.copy_opponents, object)[games])
        if self._side_of(behaviour) == self.sides[self.learning_side]:  # it faces the next side's opponent
            group = self.sides[(self.learning_side + 1) % len(self.sides)][0]
        else:
            group = self.group_of[behaviour]
        by_role = np.array([self.opponents[role][group] for role in self.roles], object)
        return by_role[(agent_ids // ID_STRIDE) % len(self.roles)]

    def _cover(self, games: np.ndarray) -> None:
        """Games seen for the first time: game g starts with the learner in seat g % seats, against itself (a
        scripted member while the learner's gate is closed)."""
        if len(games) and games.max() >= len(self.learner_seat):
            new = np.arange(len(self.learner_seat), games.max() + 1)
            self.learner_seat = np.concatenate([self.learner_seat, new % self.seats])
            gated = not self.league.gate_open(self.learning_group)  # behind the gate: a scripted member from the start
            self.copy_opponents += [self.league.sample_opponent(self.learning_group, self.roles[c % len(self.roles)])
                                    if gated else LATEST for c in new.tolist()]
            self.mirrored = np.concatenate([self.mirrored, self._mirrors(new)])

    def _mirrors(self, games: np.ndarray) -> np.ndarray:
        """Per game starting an episode: does the main learner play every seat of it (``mirror_learns``, and the
        learner itself is the game's opponent)? Decided for the whole episode: an opponent drawn mid-episode takes the
        other seats from the next one, so no seat changes hands mid-game."""
        if not self.league.settings.of(self.learning_group).mirror_learns:
            return np.zeros(len(games), bool)
        opponents = np.asarray(self.copy_opponents, object)[games]
        return (opponents == LATEST) & (games % len(self.roles) == 0)

    def _opponent(self, behaviour: str, player: str) -> Opponent:
        """Player ``player`` of ``behaviour``'s group in its seats (made once per swap; one per behaviour, so that a
        recurrent player remembers each behaviour's agents apart)."""
        opponent = self._opponents.get((behaviour, player))
        if opponent is None:
            group = self.group_of[behaviour]
            if (behaviour, player) in self._scripted:
                opponent = PredictorOpponent(self._scripted[(behaviour, player)], group)
            else:
                policy = self.learners[group].policy
                if player != LATEST:
                    policy = copy.deepcopy(policy)  # the learner's architecture, the snapshot's weights
                    policy.load_state_dict(self.league.snapshot_weights(player))
                opponent = PolicyOpponent(policy, self.league.settings.of(group).opponent_exploration)
            self._opponents[(behaviour, player)] = opponent
        return opponent

    def _opponent_act(self, behaviour: str, players: np.ndarray, decisions: DecisionSteps) -> Batch:
        """Actions of the opponents playing ``decisions``, one batch per distinct player."""
        out = empty_actions(self.env.specs[behaviour], len(decisions))
        for player in dict.fromkeys(players.tolist()):  # distinct, in order of appearance
            rows = players == player
            batch_put(out, rows, self._opponent(behaviour, player).act(decisions.take(rows), self.generator))
        return out

    def _draw_opponents(self, groups: Iterable[str], evicted_only: bool = False) -> None:
        """Draw again who plays ``groups`` in every game (each copy by its role's rule), or only those that left the
        league."""
        groups = set(groups)

        def keep(group: str, opponent: str) -> bool:
            return group not in groups or evicted_only and (
                opponent == LATEST or opponent in self.league.players or opponent in self.league.scripted)

        learning = self.learning_group
        if self.symmetric:
            self.copy_opponents = [o if keep(learning, o) else self.league.sample_opponent(
                learning, self.roles[c % len(self.roles)]) for c, o in enumerate(self.copy_opponents)]
        else:
            self.opponents = {role: {g: o if keep(g, o) else self.league.sample_opponent(g, role, learning)
                                     for g, o in by_group.items()} for role, by_group in self.opponents.items()}

    # -- schedules ------------------------------------------------------------------

    def learn(self, total_steps: int, callback=None) -> SelfPlay:
        for group, learner in self.learners.items():
            if not any(p.group == group for p in self.league.players.values()):
                self.league.add_snapshot(group, "main", self.num_steps, _weights(learner.policy))
        return super().learn(total_steps, callback)

    def after_update(self) -> None:
        """The exploiters learn; snapshots, side changes and opponent draws fall due by the groups' clocks."""
        group = self.learning_group
        self.clocks[group].learned += self.num_steps - self._counted  # only the learning group's learner acts
        self._counted = self.num_steps
        progress = self.num_steps / max(self.total_steps, 1)
        exploiters = {role: by_group[group] for role, by_group in self.exploiters.items()}  # the learning side's
        for role, learner in exploiters.items():
            rows_of = partial(self.learner_rows, role=self.roles.index(role))
            learner.update(self._learner_decisions(group, rows_of), progress, self.generator)
        settings, clock = self.league.settings.of(group), self.clocks[group]
        if clock.learned - clock.snapshot >= settings.save_steps:
            self._take_snapshots(group, exploiters)
        if not self.symmetric and clock.learned - clock.team_change >= settings.team_change:
            self._change_learning_side(group, exploiters)
        due = [g for g, c in self.clocks.items() if c.played - c.swap >= self.league.settings.of(g).swap_steps]
        if due:
            self._swap(due)

    def _take_snapshots(self, group: str, exploiters: Mapping[str, BehaviourLearner]) -> None:
        """Freeze the learners of ``group`` into the league; AlphaStar's main exploiters start over."""
        self.league.add_snapshot(group, "main", self.num_steps, _weights(self.learners[group].policy))
        for role, learner in exploiters.items():
            self.league.add_snapshot(group, role, self.num_steps, _weights(learner.policy))
            if role_kind(role) == "main_exploiter":  # to find new weaknesses
                learner.policy.load_state_dict(self._initial_weights[role][group])
                learner.optimizer.state.clear()
        self._draw_opponents([group], evicted_only=True)  # a snapshot that left the window plays no more games
        self.clocks[group].snapshot = self.clocks[group].learned

    def _change_learning_side(self, group: str, exploiters: Mapping[str, BehaviourLearner]) -> None:
        """The next side learns; every group's opponents are drawn again, as ML-Agents swaps them at a team change.
        Where the game plays every other side itself, the one side learns on."""
        if self._learning_side_from(self.learning_side + 1) == self.learning_side:
            self.clocks[group].team_change = self.clocks[group].learned
            return
        # the rows the old side collected were trained on just now; its open episodes are not the learners' any more
        for learner in (self.learners[group], *exploiters.values()):
            learner.buffer.drop(np.arange(len(learner.buffer.pending)))
            if learner.memory is not None:  # agent ids are a behaviour's own: the next side's start blank
                learner.memory = AgentMemory(learner.policy.memory_size)
        self.learning_side = self._learning_side_from(self.learning_side + 1)
        self.clocks[group].team_change = self.clocks[group].learned
        self._swap(self.clocks)

    def _learning_side_from(self, start: int) -> int:
        """The first side from ``start`` on, in turn, that learns: a side the game plays itself never does."""
        turns = [i % len(self.sides) for i in range(start, start + len(self.sides))]
        return next(i for i in turns if self.sides[i][0] not in self.engine_groups)

    def _swap(self, groups: Iterable[str]) -> None:
        """Draw again who plays ``groups``, and start their swap schedules over."""
        groups = list(groups)
        self._draw_opponents(groups)
        self._opponents.clear()
        for group in groups:
            self.clocks[group].swap = self.clocks[group].played

    # -- persistence ------------------------------------------------------------------

    def state_dict(self) -> dict:
        state = super().state_dict()
        state["self_play"] = {
            "league": self.league.state_dict(),
            "exploiters": {role: {group: learner.state_dict() for group, learner in by_group.items()}
                           for role, by_group in self.exploiters.items()},
            "copy_opponents": list(self.copy_opponents),
            "learning_side": self.learning_side,
            "learner_seat": self.learner_seat.copy(),
            "mirrored": self.mirrored.copy(),
            "opponents": copy.deepcopy(self.opponents),
            "clocks": {group: asdict(clock) for group, clock in self.clocks.items()},
        }
        return state

    def load_state_dict(self, state: dict) -> None:
        super().load_state_dict(state)
        saved = state["self_play"]
        self.league.load_state_dict(saved["league"])
        self.learning_side = saved["learning_side"]
        self.learner_seat = np.array(saved["learner_seat"], np.int64)  # a copy: the saved state stays as saved
        self.mirrored = np.array(saved.get("mirrored", np.zeros(len(self.learner_seat), bool)), bool)
        self.opponents = copy.deepcopy(saved["opponents"])
        for role, by_group in self.exploiters.items():
            for group, learner in by_group.items():
                learner.load_state_dict(saved["exploiters"][role][group])
        self.copy_opponents = list(saved["copy_opponents"])
        self.clocks = self._saved_clocks(saved)
        self._counted = self.num_steps
        self._opponents.clear()
        self._draw_opponents(self.clocks, evicted_only=True)  # a scripted member the config no longer names

    def _saved_clocks(self, saved: dict) -> dict[str, GroupClock]:
        """The groups' clocks of a checkpoint. One from before per-group schedules counted all of them in the main
        learner's decisions over all groups: each group's counts start there, its last events where they were."""
        if "clocks" in saved:
            return {group: GroupClock(**clock) for group, clock in saved["clocks"].items()}
        marks, step = saved["marks"], self.num_steps
        return {group: GroupClock(step, step, marks["snapshot"], marks["swap"], marks["team_change"])
                for group in self.clocks}


class POCASelfPlay(SelfPlay):
    """Team against team: every side's group of agents learns with MA-POCA (SoccerTwos, StrikersVsGoalie).

    Routing, league, snapshots and ratings are :class:`SelfPlay`'s; the learners are
    :class:`~sparring.agents.poca.POCALearner`, and the snapshots hold their actors.
    """

    algorithm = "poca"
    settings_type = POCASettings
    learner_type = POCALearner
