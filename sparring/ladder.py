"""`sparring ladder RUN_DIR`: difficulty tiers chosen from a self-play run's league, checked with fresh games in
the run's own env, and exported to ``RUN_DIR/ladder/`` for the game.

Layout::

    ladder/ladder.json                 the tiers of every ladder, their checked win rates, every measurement
    ladder/<side>/tier<k>.onnx         tier k (1 the easiest) in the native format, with tier<k>.policy.tres (Godot
                                       addon) beside it, and tier<k>.mlagents.onnx / tier<k>.godot.onnx where the
                                       behaviour fits those formats
    ladder/ladder.png                  the plot (sparring.ladder_report)

``<side>`` is the policy group in games with seats (a board game: one ladder), or each behaviour of the group in
games with sides (``Striker_team_0``, ``Striker_team_1``: a ladder per side, its tiers playing that side against
the tier below on the others). Each export's metadata carries its tier, Elo and checked win rates
(``ladder_*`` properties), and how the tiers were played (``ladder_play``), which is how the game must play them
for the rates to hold:

- ``sampled`` (the default; the league's games were played so): each action is drawn from the policy. Native: draw
  from the softmax of ``logits`` over the allowed actions, or from a Gaussian of ``mean`` and ``exp(log_std)``;
  ML-Agents: its sampled outputs, what Unity runs unless Deterministic Inference is ticked; the Godot addon's
  ``.policy.tres`` is written with ``sample_actions`` on (discrete actions only). The Godot RL Agents format is not
  written: its plugin plays the most likely action.
- ``deterministic``: the most likely action, the native export's ``action``, in every format. In a game without
  chance (a board game) two deterministic players play the same game again and again, so their rates are 0, 0.5
  or 1 and a band between is rarely met.
"""

from __future__ import annotations

import copy
import json
import shutil
from collections.abc import Sequence
from contextlib import nullcontext
from dataclasses import asdict, dataclass, field
from functools import partial
from pathlib import Path
from typing import Literal

from sparring.agents.selfplay.ladder import Candidate, Ladder, LadderError, Measurement, build_ladder, check_band
from sparring.agents.selfplay.league import League
from sparring.envs.base import MultiAgentEnv
from sparring.spec import group_of

LADDER_DIR = "ladder"
Play = Literal["sampled", "deterministic"]
PLAY_NOTES = {
    "sampled": "sampled: draw each action from the policy (native: softmax of logits over the allowed actions, Gaussian "
               "of mean and exp(log_std), tanh-squashed into the Box for SAC; ML-Agents: the sampled outputs); the most "
               "likely action plays stronger",
    "deterministic": "deterministic: the most likely action (native: action)",
}
FINAL = " (final)"
"""How the run's final policy is named among the candidates: ``"player (final)"``."""


@dataclass
class SideLadder:
    """One ladder: the group whose snapshots it ranks, the side its tiers play (None in games with seats), how
    they played, and the files each tier was exported to (``files[k - 1]`` for tier k; ``refused``: format -> why
    not)."""

    group: str
    side: str | None
    ladder: Ladder
    play: Play = "sampled"
    files: list[list[Path]] = field(default_factory=list)
    refused: dict[str, str] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return self.side or self.group


def make_ladders(run_dir: str | Path, tiers: int | None = None, band: Sequence[float] = (0.65, 0.75),
                 games: int = 400, seed: int = 0, env: MultiAgentEnv | None = None,
                 play: Play = "sampled") -> list[SideLadder]:
    """Build, check and export the ladders of a finished self-play run (see the module docstring), every game
    played as ``play`` says.

    The games are played in ``env``, by default the run's own, built from its configuration.yaml as ``sparring
    train`` built it (a run trained from Python in an env of its own passes that env). Raises
    :class:`LadderError` for a run that has no league or whose snapshots cannot make the ladder asked for
    (nothing is exported then).
    """
    from sparring.agents import load

    run_dir = Path(run_dir)
    if not (run_dir / "league" / "league.json").is_file():
        raise LadderError(f"{run_dir} has no league (no league/league.json); a ladder is chosen from the snapshots "
                          "of a self-play run (a self_play: section in the config)")
    if not (run_dir / "final.pt").is_file():
        raise LadderError(f"{run_dir}: no final.pt; a ladder is built once training has finished")
    band = check_band(band)
    if games < 1:
        raise LadderError(f"--games {games}: each check needs at least one game")
    if play not in PLAY_NOTES:
        raise LadderError(f"--play {play!r}: one of {', '.join(PLAY_NOTES)}")
    league = League.load(run_dir / "league")
    model = load(run_dir / "final.pt")
    built = []
    with nullcontext(env) if env is not None else _run_env(run_dir, seed) as env:  # the caller's env stays open
        groups = sorted({group_of(name) for name in env.specs})
        if len(groups) > 1:
            raise LadderError(f"the game's policy groups {', '.join(groups)} each meet only the others; a ladder's "
                              "tiers must play each other, so it needs one group (seats, or teams of one group)")
        (group,) = groups
        names = sorted(env.specs)
        sides = names if any(env.specs[n].team_id is not None for n in names) else [None]
        candidates = _candidates(league, model, group)
        players = _Players(league, model, group, play)
        for side in sides:
            try:
                ladder = build_ladder(candidates, partial(players.match, env, side, games), band, tiers, seed)
            except LadderError as exc:
                raise LadderError(f"side {side!r}: {exc}" if side else str(exc)) from None
            built.append(SideLadder(group, side, ladder, play))
    for side_ladder in built:
        _export(run_dir / LADDER_DIR, side_ladder, players, model)
    _write_json(run_dir / LADDER_DIR / "ladder.json", built)
    return built


def _run_env(run_dir: Path, seed: int) -> MultiAgentEnv:
    """The run's env from its configuration.yaml, with its torch threads (small networks run fastest on one, and
    leave the other cores to the game)."""
    import torch

    from sparring.config import ConfigError, load_config
    from sparring.envs.factory import make_env

    try:
        config = load_config(run_dir / "configuration.yaml")
    except ConfigError as exc:
        raise LadderError(f"{run_dir}: cannot read the run's config: {exc}") from None
    if config.torch_threads:
        torch.set_num_threads(config.torch_threads)
    return make_env(config.env, seed=seed)


def _candidates(league: League, model, group: str) -> list[Candidate]:
    """The group's main snapshots whose weights are kept (window and archive), and the final policy."""
    kept = [*league.players.values(), *(league.retired[i] for i in league.archived)]
    found = [Candidate(p.id, p.step, p.rating) for p in kept if p.group == group and p.role == "main"]
    return [*found, Candidate(group + FINAL, model.num_steps, league.learner_rating(group))]


class _Players:
    """Each candidate as a model that plays (the run's model with the snapshot's weights), made once."""

    def __init__(self, league: League, model, group: str, play: Play) -> None:
        self.league, self.model, self.group, self.play = league, model, group, play
        self._made: dict[str, object] = {}

    def __call__(self, candidate: Candidate):
        if candidate.id.endswith(FINAL):
            return self.model
        made = self._made.get(candidate.id)
        if made is None:
            made = self._made[candidate.id] = copy.deepcopy(self.model)
            made.learners[self.group].policy.load_state_dict(self.league.snapshot_weights(candidate.id))
        return made

    def match(self, env, side: str | None, games: int, upper: Candidate, lower: Candidate, seed: int) -> Measurement:
        from sparring.agents.selfplay.matches import play_match

        a, b = self(upper), self(lower)
        a.generator.manual_seed(seed)
        b.generator.manual_seed(seed + 1)
        scores = play_match(env, a, b, self.group, games, side=side, seed=seed,
                            deterministic=self.play == "deterministic")
        if not len(scores):
            raise LadderError(f"none of {games} games of {upper.id} against {lower.id} ended with a result (every "
                              "one was cut short); a ladder needs games that are won, drawn or lost")
        return Measurement(upper.id, lower.id, float(scores.mean()), len(scores))


def _export(folder: Path, side_ladder: SideLadder, players: _Players, model) -> None:
    """Every tier in every format its behaviour fits, its place on the ladder in the metadata."""
    from sparring.export.exporter import FORMATS, export_policy, file_stem, support_problem

    ladder, group = side_ladder.ladder, side_ladder.group
    out = folder / file_stem(side_ladder.name)
    shutil.rmtree(out, ignore_errors=True)  # a ladder rebuilt with fewer tiers leaves none of the old ones
    learner = model.learners[group]
    low, high = ladder.band
    for k, tier in enumerate(ladder.tiers, start=1):
        below = ladder.checks[k - 2] if k > 1 else None
        above = ladder.checks[k - 1] if k < len(ladder.tiers) else None
        metadata = {
            "ladder_tier": str(k), "ladder_tiers": str(len(ladder.tiers)), "ladder_player": tier.id,
            "ladder_elo": f"{tier.rating:.1f}", "ladder_side": side_ladder.side or "",
            "ladder_band": f"{low:g}-{high:g}", "ladder_play": PLAY_NOTES[players.play],
            "ladder_win_rate_vs_tier_below": "" if below is None else f"{below.score:.4f}",
            "ladder_games_vs_tier_below": "" if below is None else str(below.games),
            "ladder_win_rate_vs_tier_above": "" if above is None else f"{1 - above.score:.4f}",
            "ladder_games_vs_tier_above": "" if above is None else str(above.games),
        }
        policy = players(tier).learners[group].policy
        files = []
        sampled = players.play == "sampled"
        for fmt in FORMATS:
            problem = support_problem(policy.spec, fmt, policy.memory_size, learner.masked)
            if fmt == "godot" and sampled:
                problem = ("the Godot RL Agents plugin plays the most likely action, and these tiers were measured "
                           "with sampled actions (sparring ladder --play deterministic measures them so)")
            if problem:
                side_ladder.refused[fmt] = problem
                continue
            path = out / f"tier{k}{'' if fmt == 'native' else '.' + fmt}.onnx"
            export_policy(policy, path, fmt, training_step=tier.step, recorded_obs=learner.recorded_obs.numpy(),
                          masked=learner.masked, metadata=metadata, sample_actions=sampled)
            files.append(path)
        side_ladder.files.append(files)


def _write_json(path: Path, ladders: list[SideLadder]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    rows = [{"group": s.group, "side": s.side, "band": list(s.ladder.band), "play": s.play,
             "tiers": [{**asdict(tier), "files": [str(f) for f in files]} for tier, files in zip(s.ladder.tiers, s.files)],
             "checks": [asdict(m) for m in s.ladder.checks], "tried": [asdict(m) for m in s.ladder.tried],
             "refused": s.refused} for s in ladders]
    path.write_text(json.dumps(rows, indent=1))
