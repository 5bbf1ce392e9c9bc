"""The self-play league: frozen snapshots, who plays whom, results and ratings, kept so a run resumes exactly.

A *learner* is a policy being trained, named by its policy group and role
(``"Striker/main"``, see :func:`learner_key`). A *player* is a frozen snapshot of
a learner, kept while it is among the newest ``window`` of its (group, role).
Learners face either themselves (:data:`LATEST`) or a player of their group,
drawn as ML-Agents' ``self_play`` settings and AlphaStar's prioritized fictitious
self-play (PFSP) say, each group by its own (:meth:`LeagueSettings.of`). Scripted
members (:mod:`~sparring.agents.selfplay.scripted`: a game's own AI, an exported
policy, random play) are players that never change; they are drawn like snapshots,
one may hold a fixed rating (the anchor), and a gate may keep the learner on them
until it beats them. Every finished game updates the payoff table (the learner's
wins, draws and losses against each opponent) and the Elo ratings of both sides;
games of more than two teams update OpenSkill ratings instead.

On disk (``directory``, a run's ``league/`` folder)::

    league.json              settings, players, scripted, learners, payoff, openskill, history, gate, rng
                             (see League.state_dict)
    snapshots/<id>.pt        each player's weights (torch.save), the id made file-safe
    archive/<id>.pt          weights of snapshots that left the window, kept for a difficulty ladder (``archive``)

The league knows nothing of envs or trainers; torch is imported only to write
and read snapshot weights.
"""

from __future__ import annotations

import copy
import hashlib
import json
import math
import os
import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

import numpy as np
from openskill.models import PlackettLuce
from pydantic import (
    BaseModel, ConfigDict, Field, SerializerFunctionWrapHandler, create_model, model_serializer, model_validator,
)
from pydantic.fields import FieldInfo

from sparring.agents.selfplay.scripted import Anchor, Gate, ScriptedOpponent, check_members
from sparring.spec import group_of

LATEST = "latest"
"""The sampler's answer meaning "the current learner itself" (a mirror match)."""

LEARNER_SUFFIX = " (learner)"
"""How :attr:`League.history` names a learner's rows: ``"Striker/main (learner)"``."""

ROLES = ("main", "main_exploiter", "league_exploiter")
SCRIPTED = "scripted"
"""The role of a scripted member's players (they are no learner's snapshots)."""
_ROLE = re.compile(r"(main|main_exploiter|league_exploiter)\d*")
_SCORE_COLUMN = {1.0: 0, 0.5: 1, 0.0: 2}  # payoff row: [wins, draws, losses]


class GroupSettings(BaseModel):
    """The self-play keys each policy group has a value of its own for, as each behaviour's GhostTrainer does in
    ML-Agents: an asymmetric game's sides differ in numbers (two Strikers against one Goalie), so they count steps
    at different rates and need their own schedules."""

    model_config = ConfigDict(extra="forbid")

    save_steps: int = Field(20000, ge=1, description="The group's learner steps between its snapshots (ML-Agents).")
    swap_steps: int = Field(
        2000, ge=1,
        description="The group's opponent steps (ML-Agents' ghost steps: decisions taken for it by whoever plays it "
        "against the main learner, a snapshot or its learner itself) between draws of who plays it (ML-Agents).",
    )
    team_change: int = Field(
        100000, ge=1,
        description="The group's learner steps before the learning side changes: each side learns for its own group's "
        "team_change (ML-Agents).",
    )
    window: int = Field(
        10, ge=1, description="Snapshots kept per (group, role); older ones leave sampling and the disk (ML-Agents)."
    )
    play_against_latest_model_ratio: float = Field(
        0.5, ge=0, le=1, description="Probability that the group is played by its current learner itself (ML-Agents)."
    )
    initial_elo: float = Field(1200.0, description="The starting Elo rating of the group's learners (ML-Agents).")
    opponent_sampling: Literal["uniform", "pfsp", "latest"] = Field(
        "pfsp", description="How a snapshot is drawn from the window: uniformly, by PFSP weight, or the newest."
    )
    pfsp_weighting: Literal["hard", "variance"] = Field(
        "hard",
        description="PFSP weight of a snapshot the learner beats with probability p: (1-p)^2 favours the hardest, "
        "p(1-p) the evenly matched.",
    )
    opponent_exploration: float = Field(
        0.0, ge=0, le=1,
        description="Probability that an opponent's move is drawn at random (uniformly among allowed discrete "
        "actions) instead of by its policy: the learner meets positions that its own play and its snapshots' "
        "never reach, as AlphaZero's root noise does.",
    )
    mirror_learns: bool = Field(
        False,
        description="Games of seats (one behaviour, no teams): in games against the learner itself "
        "(play_against_latest_model_ratio), learn from every seat, not only the learner's. The other seats are played "
        "by the same policy, so their decisions are as on-policy as its own: such a game gives a seat's worth more "
        "experience at no cost in play. Learner steps count every seat's decisions then.",
    )


class _Written(BaseModel):
    """A partial settings section: it holds, and writes back, only the keys given."""

    model_config = ConfigDict(extra="forbid")

    @model_serializer(mode="wrap")
    def _given_only(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        return {key: value for key, value in handler(self).items() if value is not None}


def _optional(field: FieldInfo) -> tuple[Any, FieldInfo]:
    """``field`` as a key that may be left out (None), checked as the field checks it when given."""
    annotation = Annotated[(field.annotation, *field.metadata)] if field.metadata else field.annotation
    return annotation | None, Field(None, description=field.description)


GroupOverrides = create_model(
    "GroupOverrides", __base__=_Written, __doc__="The :class:`GroupSettings` keys one policy group sets otherwise.",
    **{name: _optional(field) for name, field in GroupSettings.model_fields.items()},
)


class LeagueSettings(GroupSettings):
    """Self-play settings; the YAML ``self_play:`` section is validated against this (ML-Agents' keys, and ours).

    The :class:`GroupSettings` keys hold for every policy group; ``groups`` sets them otherwise for some
    (``groups: {Striker: {swap_steps: 4000}}``), as ML-Agents' per-behaviour ``self_play`` sections do.
    """

    elo_k: float = Field(16.0, gt=0, description="Elo K-factor: the largest rating change one game makes.")
    archive: int = Field(
        50, ge=0,
        description="Snapshots of each group kept on disk after they leave the window, so that `sparring ladder` "
        "finds weak early players too (a snapshot of a 128x128 tic-tac-toe policy takes 160 KB, 256x256 connect "
        "four 0.7 MB, a 3x512 network 4.4 MB); past that many, the one whose neighbours in Elo are closest goes, so "
        "those kept stay spread from weakest to strongest. 0 deletes them, as ML-Agents does.",
    )
    main_exploiters: int = Field(0, ge=0, description="AlphaStar main exploiters: play the newest main, reset when frozen (each needs its own env copies).")
    league_exploiters: int = Field(0, ge=0, description="AlphaStar league exploiters: play the whole league (each needs its own env copies).")
    groups: dict[str, GroupOverrides] = Field(
        default_factory=dict,
        description="Per policy group (a behaviour name without its ?team= suffix), the keys above it sets otherwise.",
    )
    opponents: list[ScriptedOpponent] = Field(
        default_factory=list, description="Scripted members: players that never learn, drawn and rated like snapshots.")
    anchor: Anchor | None = Field(None, description="A scripted member whose Elo never moves: the scale's zero point.")
    gate: Gate | None = Field(None, description="The curriculum gate: scripted members only until the learner beats "
                                                "them.")

    @model_validator(mode="after")
    def _members_fit(self) -> LeagueSettings:
        check_members(self.opponents, self.anchor, self.gate)
        return self

    def of(self, group: str) -> GroupSettings:
        """The settings policy group ``group`` (or a behaviour of it) plays by: these, with its ``groups`` entry."""
        overrides = self.groups.get(group_of(group))
        if overrides is None:
            return self
        own = self.model_dump(include=set(GroupSettings.model_fields))
        return GroupSettings.model_validate({**own, **overrides.model_dump()})


@dataclass
class Player:
    """One frozen snapshot of a learner, or a scripted member playing one group."""

    id: str  # unique: "<group>@<step>" for main, "<group>/<role>@<step>" otherwise
    group: str  # policy group: the behaviour name without its "?team=..." suffix
    role: str  # main | main_exploiter | league_exploiter, with an index when a league runs several
    step: int  # the learner's step when it was taken
    rating: float  # Elo
    games: int
    member: str | None = None  # a scripted member's name (role SCRIPTED); None for snapshots


@dataclass
class Learner:
    """A policy being trained: its own Elo (ML-Agents' Self-play/ELO) and games played, mirror matches included."""

    rating: float
    games: int = 0


def learner_key(group: str, role: str = "main") -> str:
    """How a learner is named in the payoff table and OpenSkill ratings: ``"<group>/<role>"``.

    ``group`` may be a behaviour name; its ``?team=...`` suffix is dropped, since both teams share one policy.
    """
    return f"{group_of(group)}/{_check_role(role)}"


def role_kind(role: str) -> str:
    """What a role does, without its index: ``"main_exploiter1"`` -> ``"main_exploiter"``."""
    return _check_role(role).rstrip("0123456789")


def payoff_score(record: Sequence[int]) -> float:
    """The score of a payoff record ``[wins, draws, losses]``, draws counting half; nan for no games."""
    wins, draws, losses = record
    games = wins + draws + losses
    return (wins + 0.5 * draws) / games if games else math.nan


def elo_expected(rating: float, opponent: float) -> float:
    """The score Elo expects of a player rated ``rating`` against ``opponent``."""
    return 1.0 / (1.0 + 10.0 ** ((opponent - rating) / 400.0))


class League:
    """Snapshots, opponent sampling, payoff table and ratings of a self-play run.

    Args:
        settings: the run's ``self_play`` settings (each group's are ``settings.of(group)``).
        directory: the run's ``league/`` folder for league.json and snapshot files; None keeps snapshots in memory
            (and in :meth:`state_dict`).
        seed: seeds the opponent sampler.
    """

    def __init__(self, settings: LeagueSettings, directory: Path | None = None, seed: int = 0) -> None:
        self.settings = settings
        self.directory = Path(directory) if directory is not None else None
        self.rng = np.random.default_rng(seed)
        self.players: dict[str, Player] = {}  # the window of every (group, role), oldest first
        self.retired: dict[str, Player] = {}  # dropped from the window; games still in flight against them count
        self.archived: list[str] = []  # retired players whose weights are kept (archive/), for difficulty ladders
        self.scripted: dict[str, Player] = {}  # scripted members, one player per group each plays (see enrol)
        self.learners: dict[str, Learner] = {}
        self.payoff: dict[str, dict[str, list[int]]] = {}  # learner key -> opponent id -> [wins, draws, losses]
        self.openskill: dict[str, dict[str, float]] = {}  # participant -> {"mu", "sigma"}
        self.history: list[dict[str, Any]] = []  # {"step", "player", "rating"} per Elo change and new snapshot
        self.recent: dict[str, dict[str, list[float]]] = {}  # gated learner key -> scripted id -> its last scores
        self.gate_passed: dict[str, int] = {}  # learner key -> the step its gate opened
        self._groups: list[str] = []  # the env's groups, once enrolled
        self._weights: dict[str, dict] = {}  # in-memory leagues only
        self._evicted_files: list[Path] = []  # deleted by save(), once league.json no longer names them
        self._archived_files: list[Path] = []  # moved to archive/ by save(), before it deletes evicted files
        self._openskill_model = PlackettLuce()

    # -- snapshots ------------------------------------------------------------------

    def add_snapshot(self, group: str, role: str, step: int, weights: dict) -> Player:
        """Freeze ``weights`` (a state_dict) as a new player rated as its learner is now; the window drops its oldest.

        The files of dropped players are moved to the archive (or deleted, past ``archive`` of them) by the next
        :meth:`save`, so league.json on disk never names a snapshot that is gone.
        """
        group, step = group_of(group), int(step)
        learner = self._learner(group, role)
        player_id = f"{group}@{step}" if role == "main" else f"{group}/{role}@{step}"
        if player_id in self.players or player_id in self.retired:
            raise ValueError(f"league already has a snapshot {player_id!r}; one snapshot per (group, role, step)")
        if self.directory is None:
            self._weights[player_id] = copy.deepcopy(weights)  # a live state_dict shares storage with the learner
        else:
            import torch

            path = self._snapshot_path(player_id)
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(".pt.tmp")
            torch.save(weights, tmp)
            os.replace(tmp, path)
        player = Player(player_id, group, role, step, learner.rating, games=0)
        self.players[player_id] = player
        self.history.append({"step": step, "player": player_id, "rating": player.rating})
        same = [p for p in self.players.values() if p.group == group and p.role == role]
        for old in same[: max(0, len(same) - self.settings.of(group).window)]:
            self.retired[old.id] = self.players.pop(old.id)
            self.archived.append(old.id)
            if self.directory is not None:
                self._archived_files.append(self._snapshot_path(old.id))
            self._thin_archive(group)
        return player

    def _thin_archive(self, group: str) -> None:
        """Keep at most ``archive`` archived snapshots of ``group``: drop the one whose neighbours (by Elo) are
        closest, never the weakest (with room for only one, the weakest stays)."""
        kept = sorted((self.retired[i] for i in self.archived if self.retired[i].group == group),
                      key=lambda p: (p.rating, p.step))
        if len(kept) <= self.settings.archive:
            return
        gaps = [kept[i + 1].rating - kept[i - 1].rating for i in range(1, len(kept) - 1)]
        drop = kept[1 + int(np.argmin(gaps))] if gaps else kept[-1]
        self.archived.remove(drop.id)
        if self.directory is None:
            del self._weights[drop.id]
        else:
            self._evicted_files.append(self._snapshot_path(drop.id, archived=True))

    def snapshot_weights(self, player_id: str) -> dict:
        """The weights of a player in the window or the archive (a fresh copy each call)."""
        archived = player_id in self.archived
        if player_id not in self.players and not archived:
            where = "was dropped from the window and the archive" if player_id in self.retired else "is not in the league"
            raise KeyError(f"snapshot {player_id!r} {where}; its weights are gone")
        if self.directory is None:
            return copy.deepcopy(self._weights[player_id])
        import torch

        path = self._snapshot_path(player_id, archived)
        if archived and not path.exists():
            path = self._snapshot_path(player_id)  # moved to the archive by the next save()
        return torch.load(path, map_location="cpu", weights_only=False)

    # -- scripted members -------------------------------------------------------------

    def enrol(self, groups: Sequence[str]) -> None:
        """Give each scripted member of the settings a player in each group it plays, of the env's ``groups``.

        A member that names no group plays every group; its players are then ``"<name> (<group>)"``, each with a
        rating of its own, since one script is not equally strong on every side of an asymmetric game. Players
        already in the league (a resumed run) keep their ratings; the anchor's is always the settings'.
        """
        self._groups = sorted({group_of(g) for g in groups})
        for i, member in enumerate(self.settings.opponents):
            if member.group is not None and member.group not in self._groups:
                raise ValueError(f"self_play.opponents.{i}.group: the env has no policy group {member.group!r}; its "
                                 f"groups are {', '.join(self._groups)} (behaviour names without ?team=)")
            plays = [member.group] if member.group is not None else self._groups
            for group in plays:
                player_id = member.name if len(plays) == 1 else f"{member.name} ({group})"
                if player_id not in self.scripted:
                    rating = member.rating if member.rating is not None else self.settings.of(group).initial_elo
                    self.scripted[player_id] = Player(player_id, group, SCRIPTED, 0, rating, 0, member.name)
        self._pin_anchor()

    def member(self, player_id: str) -> ScriptedOpponent | None:
        """The settings of the scripted member that ``player_id`` is a player of; None for snapshots and LATEST."""
        player = self.scripted.get(player_id)
        return None if player is None else next(m for m in self.settings.opponents if m.name == player.member)

    def engine_groups(self) -> set[str]:
        """The groups an engine member plays: the game plays their agents itself, in every game."""
        return {p.group for p in self.scripted.values() if self.member(p.id).kind == "engine"}

    def member_key(self, player_id: str) -> str:
        """The config key of the scripted member ``player_id`` plays for: ``self_play.opponents.<i>``."""
        name = self.scripted[player_id].member
        return f"self_play.opponents.{[m.name for m in self.settings.opponents].index(name)}"

    def anchored(self, player: Player) -> bool:
        """Whether ``player``'s rating is fixed: it plays for the anchor member."""
        return self.settings.anchor is not None and player.member == self.settings.anchor.name

    def gate_open(self, group: str, role: str = "main") -> bool:
        """Whether learner ``group``/``role`` may play itself and snapshots: always without a gate, for exploiters,
        and for a main learner once it has beaten every scripted member it met (:meth:`gate_score`)."""
        return self.settings.gate is None or role_kind(role) != "main" or learner_key(group, role) in self.gate_passed

    def gate_score(self, group: str, role: str = "main") -> float:
        """The learner's lowest score over its recent games (the gate's ``games``) against each scripted member of
        the groups it has met them in (0 for one not met yet); nan before it met any. The gate opens when it reaches ``win_rate`` with
        ``games`` games against each."""
        recent = self.recent.get(learner_key(group, role), {})
        met = {self.scripted[i].group for i in recent if i in self.scripted}
        members = [p.id for p in self.scripted.values() if p.group in met]
        return min((float(np.mean(recent[i])) if i in recent else 0.0 for i in members), default=math.nan)

    def metrics(self, group: str) -> dict[str, float]:
        """What a run logs of the main learner of ``group``: its Elo (ML-Agents' Self-play/ELO) and, with a gate,
        whether it is open and the learner's score that opens it (:meth:`gate_score`)."""
        metrics = {"Self-play/ELO": self.learner_rating(group)}
        if self.settings.gate is not None:
            metrics["Self-play/Gate open"] = float(self.gate_open(group))
            metrics["Self-play/Scripted score"] = self.gate_score(group)
        return metrics

    def _after_scripted_game(self, key: str, opponent: Player, score: float, step: int) -> None:
        """A gated learner's game against a scripted member: kept among its recent ones; the gate may open."""
        gate = self.settings.gate
        if gate is None or key in self.gate_passed or role_kind(key.rpartition("/")[2]) != "main":
            return
        scores = self.recent.setdefault(key, {}).setdefault(opponent.id, [])
        scores.append(score)
        del scores[: max(0, len(scores) - gate.games)]
        recent = self.recent[key]
        members = [p.id for p in self.scripted.values() if p.group == opponent.group]
        if all(len(recent.get(i, ())) >= gate.games and np.mean(recent[i]) >= gate.win_rate for i in members):
            self.gate_passed[key] = step

    def _pin_anchor(self) -> None:
        for player in self.scripted.values():
            if self.anchored(player):
                player.rating = self.settings.anchor.rating

    # -- opponents ------------------------------------------------------------------

    def sample_opponent(self, group: str, role: str = "main", learner_group: str | None = None) -> str:
        """Who plays ``group`` next against a learner: :data:`LATEST` (that group's learner) or a player id of ``group``.

        A main exploiter always faces the newest main snapshot (LATEST before there is one). Other roles face
        LATEST with probability ``play_against_latest_model_ratio`` (always while the group has no snapshot or
        scripted member), otherwise a snapshot of any role of the group or one of its scripted members, drawn by
        ``opponent_sampling``; both are ``group``'s own settings, as each GhostTrainer of ML-Agents draws its own
        snapshots. PFSP weighs the players by the results of the learner ``learner_group``/``role`` against them;
        ``learner_group`` is ``group`` itself in symmetric games, the learning side's group in games with sides.
        While the learner's gate is closed (:meth:`gate_open`), only the group's scripted members are drawn. A group
        the game plays itself (an engine member) is always played by it.
        """
        own = [p for p in self.scripted.values() if p.group == group_of(group)]
        engine = [p.id for p in own if self.member(p.id).kind == "engine"]
        if engine:
            return engine[0]
        if role_kind(role) == "main_exploiter":
            mains = self._snapshots(group, role="main")
            return mains[-1].id if mains else LATEST
        settings = self.settings.of(group)
        if own and not self.gate_open(learner_group or group, role):
            candidates = own
        else:
            candidates = self._snapshots(group) + own
            if not candidates or self.rng.random() < settings.play_against_latest_model_ratio:
                return LATEST
        ids = [p.id for p in candidates]
        if settings.opponent_sampling == "latest":
            return ids[-1]
        if settings.opponent_sampling == "uniform":
            return ids[self.rng.integers(len(ids))]
        return ids[self.rng.choice(len(ids), p=self.pfsp_weights(learner_group or group, ids, role))]

    def pfsp_weights(self, group: str, candidates: list[str], role: str = "main") -> np.ndarray:
        """PFSP sampling probabilities of ``candidates`` for a learner: f(p) normalised, p its win rate against each.

        ``candidates`` are snapshots of one group, whose ``pfsp_weighting`` is f. A snapshot never played counts
        as p = 0.5; if every weight is 0 (say, the learner beats them all under "hard"), the draw is uniform.
        """
        p = np.array([self.win_rate(group, c, role) for c in candidates], dtype=np.float64)
        p = np.where(np.isnan(p), 0.5, p)
        hard = not candidates or self.settings.of(self._player(candidates[0]).group).pfsp_weighting == "hard"
        f = (1.0 - p) ** 2 if hard else p * (1.0 - p)
        if f.sum() == 0:
            f = np.ones_like(f)
        return f / f.sum()

    def win_rate(self, group: str, opponent_id: str, role: str = "main") -> float:
        """The learner's score against ``opponent_id`` over their games (draws count half); nan if never played."""
        return payoff_score(self.payoff.get(learner_key(group, role), {}).get(opponent_id, (0, 0, 0)))

    # -- results --------------------------------------------------------------------

    def learner_rating(self, group: str, role: str = "main") -> float:
        """The learner's own Elo (ML-Agents' Self-play/ELO); its group's ``initial_elo`` before its first game."""
        learner = self.learners.get(learner_key(group, role))
        return learner.rating if learner is not None else self.settings.of(group).initial_elo

    def record(self, group: str, opponent_id: str, score: float, step: int, role: str = "main",
               rated: bool = True) -> None:
        """One finished game of a learner: ``score`` 1 win, 0.5 draw, 0 loss against a player id or LATEST.

        Updates the payoff table, games counts and the Elo of both sides (the player gets the mirrored change,
        unless it is the anchor). A mirror match (LATEST) counts in the payoff table but rates nobody, as in
        ML-Agents. ``rated=False`` (a game of more than two teams, rated by :meth:`record_ranking`) leaves Elo be.
        """
        if score not in _SCORE_COLUMN:
            raise ValueError(f"game score must be 1 (win), 0.5 (draw) or 0 (loss), got {score!r}")
        score, step = float(score), int(step)  # numpy scalars would not go into league.json
        key = learner_key(group, role)
        opponent = None if opponent_id == LATEST else self._player(opponent_id)
        learner = self._learner(group, role)
        self.payoff.setdefault(key, {}).setdefault(opponent_id, [0, 0, 0])[_SCORE_COLUMN[score]] += 1
        learner.games += 1
        if opponent is None:
            return
        opponent.games += 1
        if opponent.role == SCRIPTED:
            self._after_scripted_game(key, opponent, score, step)
        if not rated:
            return
        change = self.settings.elo_k * (score - elo_expected(learner.rating, opponent.rating))
        learner.rating += change
        if not self.anchored(opponent):
            opponent.rating -= change
        self.history.append({"step": step, "player": key + LEARNER_SUFFIX, "rating": learner.rating})
        self.history.append({"step": step, "player": opponent.id, "rating": opponent.rating})

    def record_ranking(self, participants: list[str], ranks: list[int], step: int) -> None:
        """One finished game of more than two teams: OpenSkill (Plackett-Luce) ratings of every participant move.

        ``participants`` are player ids or learner keys (``"<group>/<role>"``); ``ranks[i]`` is participant i's
        place, 0 best, equal ranks a tie. Elo ratings and the payoff table are for two-sided games and stay as
        they are. ``step`` is accepted for symmetry with :meth:`record`.
        """
        if len(participants) != len(ranks) or len(participants) < 2 or len(set(participants)) != len(participants):
            raise ValueError(f"a ranking needs two or more distinct participants, one rank each; got "
                             f"{participants!r} ranked {ranks!r}")
        for participant in participants:
            if participant not in self.players and participant not in self.retired and participant not in self.scripted:
                group, _, role = participant.rpartition("/")
                if not group:
                    raise KeyError(f"{participant!r} is neither a player of the league nor a learner '<group>/<role>'")
                self._learner(group, role)
        model = self._openskill_model
        teams = [[model.rating(**self.openskill.get(p, {}))] for p in participants]
        for participant, (rating,) in zip(participants, model.rate(teams, ranks=list(ranks))):
            anchor = self.scripted.get(participant)
            if anchor is None or not self.anchored(anchor):  # the anchor keeps the model's default rating
                self.openskill[participant] = {"mu": rating.mu, "sigma": rating.sigma}

    # -- persistence ----------------------------------------------------------------

    def state_dict(self) -> dict:
        """Everything the league knows, as JSON-ready data (an in-memory league adds its snapshots' weights).

        Layout: ``settings``; ``players`` and ``retired`` (lists of Player fields, oldest first); ``archived`` (the
        retired player ids whose weights are kept); ``scripted`` (the scripted members' players); ``learners``
        (key -> {"rating", "games"}); ``payoff`` (learner key -> opponent id -> [wins, draws, losses]);
        ``openskill`` (participant -> {"mu", "sigma"}); ``history`` (rows {"step", "player", "rating"});
        ``gate`` ({"recent": learner key -> scripted id -> last scores, "passed": learner key -> step});
        ``rng`` (the sampler's bit generator state).
        """
        state = {
            "settings": self.settings.model_dump(),
            "players": [asdict(p) for p in self.players.values()],
            "retired": [asdict(p) for p in self.retired.values()],
            "archived": list(self.archived),
            "scripted": [asdict(p) for p in self.scripted.values()],
            "learners": {key: asdict(learner) for key, learner in self.learners.items()},
            "payoff": copy.deepcopy(self.payoff),
            "openskill": copy.deepcopy(self.openskill),
            "history": list(self.history),  # rows are never changed once written
            "gate": {"recent": copy.deepcopy(self.recent), "passed": dict(self.gate_passed)},
            "rng": self.rng.bit_generator.state,
        }
        if self.directory is None:
            state["weights"] = copy.deepcopy(self._weights)
        return state

    def load_state_dict(self, state: dict) -> None:
        """Continue from :meth:`state_dict`. The league keeps its own settings (the run's config decides them): an
        enrolled league plays the scripted members its settings name (those saved keep their ratings, the anchor
        takes the settings' rating; a member no longer named retires)."""
        if self.directory is None and state["players"] and "weights" not in state:
            raise ValueError("an in-memory league needs its snapshots' weights; this state was saved by a league "
                             "on disk, so load it with League.load(directory)")
        self.players = {p["id"]: Player(**p) for p in state["players"]}
        self.retired = {p["id"]: Player(**p) for p in state["retired"]}
        self.archived = list(state.get("archived", []))  # leagues saved before the archive kept none
        self.learners = {key: Learner(**learner) for key, learner in state["learners"].items()}
        self.payoff = copy.deepcopy(state["payoff"])
        self.openskill = copy.deepcopy(state["openskill"])
        self.history = list(state["history"])
        self.scripted = {p["id"]: Player(**p) for p in state.get("scripted", [])}  # none before scripted members
        gate = state.get("gate", {"recent": {}, "passed": {}})
        self.recent, self.gate_passed = copy.deepcopy(gate["recent"]), dict(gate["passed"])
        if self._groups:
            named = {m.name for m in self.settings.opponents}
            for player in [p for p in self.scripted.values() if p.member not in named]:
                self.retired[player.id] = self.scripted.pop(player.id)
            self.enrol(self._groups)
        self.rng.bit_generator.state = state["rng"]
        self._evicted_files, self._archived_files = [], []  # an older state may hold them in its window again
        if self.directory is None:
            self._weights = copy.deepcopy(state.get("weights", {}))

    def save(self) -> None:
        """Write ``directory/league.json`` atomically, then move the files of snapshots dropped from the window to
        the archive, and delete those dropped from both."""
        if self.directory is None:
            raise ValueError("an in-memory league has no directory to save to; use state_dict()")
        self.directory.mkdir(parents=True, exist_ok=True)
        path = self.directory / "league.json"
        tmp = path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(self.state_dict(), indent=1))
        os.replace(tmp, path)
        for file in self._archived_files:
            if file.exists():
                archived = self.directory / "archive" / file.name
                archived.parent.mkdir(exist_ok=True)
                os.replace(file, archived)
        for file in self._evicted_files:
            file.unlink(missing_ok=True)
        self._evicted_files.clear()
        self._archived_files.clear()

    @classmethod
    def load(cls, directory: Path) -> League:
        """The league saved in ``directory`` (its league.json and snapshot files), with the settings it was run with."""
        directory = Path(directory)
        state = json.loads((directory / "league.json").read_text())
        league = cls(LeagueSettings.model_validate(state["settings"]), directory)
        league.load_state_dict(state)
        return league

    # -- internals ------------------------------------------------------------------

    def _snapshots(self, group: str, role: str | None = None) -> list[Player]:
        """The window of a group (one role, or all), oldest first."""
        group = group_of(group)
        found = [p for p in self.players.values() if p.group == group and (role is None or p.role == role)]
        return sorted(found, key=lambda p: p.step)

    def _player(self, player_id: str) -> Player:
        player = self.players.get(player_id) or self.scripted.get(player_id) or self.retired.get(player_id)
        if player is None:
            raise KeyError(f"no player {player_id!r} in the league (players are '<group>@<step>' ids, or {LATEST!r})")
        return player

    def _learner(self, group: str, role: str) -> Learner:
        return self.learners.setdefault(learner_key(group, role), Learner(self.settings.of(group).initial_elo))

    def _snapshot_path(self, player_id: str, archived: bool = False) -> Path:
        """``snapshots/<id>.pt`` (``archive/<id>.pt``), the id made file-safe; a hash of the id keeps altered names
        unique."""
        safe = re.sub(r"[^\w.@-]", "_", player_id)
        if safe != player_id:
            safe += "-" + hashlib.sha1(player_id.encode()).hexdigest()[:8]
        return self.directory / ("archive" if archived else "snapshots") / f"{safe}.pt"


def _check_role(role: str) -> str:
    if not _ROLE.fullmatch(role):
        raise ValueError(f"role {role!r}: must be one of {', '.join(ROLES)}, optionally indexed (main_exploiter0)")
    return role
