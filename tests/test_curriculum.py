"""Environment parameters through a run: lessons end on ML-Agents' criteria, the env gets every lesson's values,
samplers are seeded as ML-Agents seeds them, and a resumed run continues its lessons."""

import json
from pathlib import Path

import numpy as np
import pytest
import yaml
from gymnasium import spaces

from sparring.agents.episodes import BehaviourReport, UpdateReport
from sparring.cli import main
from sparring.config import RunConfig
from sparring.curriculum import Curriculum
from sparring.envs.base import BehaviourStep, DecisionSteps, MultiAgentEnv, TerminalSteps
from sparring.envs.parameters import GaussianSampler, MultiRangeUniformSampler, UniformSampler, draw, draw_all
from sparring.spec import BehaviourSpec



def curriculum(*lessons: dict, seed: int = 0, **more) -> Curriculum:
    """A curriculum of parameter "p" with these lessons (and more parameters)."""
    parameters = {"p": {"curriculum": list(lessons)}, **more}
    return Curriculum(RunConfig.model_validate({"env": {"source": "gymnasium", "id": "X"}, "trainer": {"max_steps": 1},
                                                "environment_parameters": parameters}).environment_parameters, seed)


def lesson(name: str, value=1.0, behavior: str = "Walker", **criteria) -> dict:
    """A lesson ended by ``criteria`` on ``behavior`` (none given: a last lesson)."""
    return {"name": name, "value": value,
            "completion_criteria": {"behavior": behavior, **criteria} if criteria else None}


def report(*returns: float, behaviour: str = "Walker", step: int = 0) -> UpdateReport:
    return UpdateReport(step, {behaviour: BehaviourReport(np.array(returns, np.float64), np.ones(len(returns), int))})


# -- when lessons end --------------------------------------------------------------------------


def test_reward_lesson_waits_for_min_lesson_length_episodes_then_smooths_the_mean():
    """need_increment: fewer than min_lesson_length episodes -> no; then 0.25 * previous + 0.75 * mean > threshold."""
    c = curriculum(lesson("easy", measure="reward", threshold=0.8, min_lesson_length=3), lesson("hard"))
    assert c.advance(report(1.0, 1.0), 0.0) == ([], False)  # 2 episodes of 3
    assert c.advance(report(1.0), 0.0) == ([], False)  # mean 1.0, smoothed 0.75
    assert c.advance(report(), 0.0) == (["p"], False)  # smoothed 0.25 * 0.75 + 0.75 = 0.9375
    assert c.lesson_numbers == {"p": 1}


def test_without_smoothing_the_mean_of_the_last_episodes_decides():
    c = curriculum(lesson("easy", threshold=0.8, min_lesson_length=3, signal_smoothing=False), lesson("hard"))
    assert c.advance(report(0.0, 0.0, 1.0, 1.0), 0.0) == ([], False)  # the last three: mean 2/3
    assert c.advance(report(1.0), 0.0) == (["p"], False)  # the last three: 1, 1, 1


def test_the_threshold_must_be_exceeded():
    c = curriculum(lesson("easy", threshold=1.0, signal_smoothing=False), lesson("hard"))
    assert c.advance(report(1.0), 0.0) == ([], False)
    assert c.advance(report(1.5), 0.0) == (["p"], False)


def test_progress_lesson_ends_past_its_fraction_of_the_run():
    c = curriculum(lesson("early", measure="progress", threshold=0.5), lesson("late"))
    assert c.advance(report(), 0.5) == ([], False)
    assert c.advance(report(), 0.51) == (["p"], False)


def test_progress_lesson_waits_for_min_lesson_length_episodes_too():
    c = curriculum(lesson("early", measure="progress", threshold=0.1, min_lesson_length=2), lesson("late"))
    assert c.advance(report(0.0), 0.9) == ([], False)
    assert c.advance(report(0.0), 0.9) == (["p"], False)


def test_episodes_of_a_behaviours_teams_count_for_the_behaviour():
    c = curriculum(lesson("easy", threshold=0.5, signal_smoothing=False), lesson("hard"))
    assert c.advance(report(1.0, behaviour="Other"), 0.0) == ([], False)
    assert c.advance(report(1.0, behaviour="Walker?team=1"), 0.0) == (["p"], False)


def test_a_lesson_change_starts_every_behaviours_episode_count_again():
    """ML-Agents clears every trainer's reward buffer when any lesson changes."""
    c = curriculum(lesson("easy", threshold=0.5, signal_smoothing=False), lesson("hard"),
                   q={"curriculum": [lesson("slow", behavior="Runner", threshold=0.5, signal_smoothing=False,
                                            min_lesson_length=2), lesson("fast")]})
    assert c.advance(report(1.0, behaviour="Runner"), 0.0) == ([], False)
    assert c.advance(report(1.0), 0.0) == (["p"], False)  # Runner's episode is forgotten
    assert c.advance(report(1.0, behaviour="Runner"), 0.0) == ([], False)
    assert c.advance(report(1.0, behaviour="Runner"), 0.0) == (["q"], False)


def test_each_check_advances_a_parameter_one_lesson_and_the_last_lesson_stays():
    c = curriculum(lesson("a", measure="progress", threshold=0.1), lesson("b", measure="progress", threshold=0.1),
                   lesson("c"))
    assert [c.advance(report(), 0.9)[0] for _ in range(3)] == [["p"], ["p"], []]
    assert c.lesson_numbers == {"p": 2}


def test_a_finished_lesson_that_requires_a_reset_says_so():
    c = curriculum(lesson("a", measure="progress", threshold=0.1, require_reset=True), lesson("b"))
    assert c.advance(report(), 0.9) == (["p"], True)


def test_numbers_and_samplers_are_one_lesson_that_never_ends():
    c = curriculum(lesson("a"), g=9.8)
    assert c.values() == {"p": 1.0, "g": 9.8}
    assert c.advance(report(100.0), 1.0) == ([], False)
    assert c.lesson_metrics() == {"Environment/Lesson Number/p": 0.0, "Environment/Lesson Number/g": 0.0}


# -- samplers ------------------------------------------------------------------------------------


def test_samplers_of_seed_minus_one_are_seeded_from_the_run_seed_as_mlagents_numbers_them():
    """_set_sampler_seeds: seed + offset, the offset counting every lesson of seed -1 in order, constants too."""
    c = curriculum(lesson("a", value={"sampler_type": "uniform", "min_value": 0, "max_value": 1}, measure="progress"),
                   lesson("b", value=2.0, measure="progress"),
                   lesson("c", value={"sampler_type": "gaussian", "mean": 0, "st_dev": 1}),
                   seed=100, fixed={"sampler_type": "uniform", "min_value": 0, "max_value": 1, "seed": 7},
                   last={"sampler_type": "multirangeuniform", "intervals": [[0, 1]]})
    assert [lesson.value.seed for lesson in c.lessons["p"] if not isinstance(lesson.value, float)] == [100, 102]
    assert c.values()["fixed"].seed == 7
    assert c.values()["last"].seed == 103


def test_mlagents_randomized_3dball_samplers_draw_within_their_ranges(tmp_path):
    """config/ppo/3DBall_randomize.yaml: mass uniform in [0.5, 10), scale in [0.75, 3)."""
    from mlagents_corpus import example_file

    from sparring.config import load_config

    config = load_config(example_file("ppo/3DBall_randomize.yaml", tmp_path))
    rng = np.random.default_rng(0)
    draws = [draw_all(Curriculum(config.environment_parameters, config.seed).values(), rng) for _ in range(2000)]
    mass, scale = np.array([d["mass"] for d in draws]), np.array([d["scale"] for d in draws])
    assert 0.5 <= mass.min() and mass.max() < 10 and mass.max() - mass.min() > 9
    assert 0.75 <= scale.min() and scale.max() < 3 and scale.max() - scale.min() > 2


def test_every_sampler_draws_within_its_range():
    rng = np.random.default_rng(1)
    multi = MultiRangeUniformSampler(intervals=[(0, 1), (5, 7)])
    values = np.array([draw(multi, rng) for _ in range(3000)])
    assert (((0 <= values) & (values < 1)) | ((5 <= values) & (values < 7))).all()
    assert 0.2 < (values < 1).mean() < 0.45  # intervals chosen in proportion to their length (1/3)
    uniform = np.array([draw(UniformSampler(min_value=-2, max_value=-1), rng) for _ in range(1000)])
    assert (-2 <= uniform).all() and (uniform < -1).all()
    gaussian = np.array([draw(GaussianSampler(mean=3, st_dev=0.5), rng) for _ in range(4000)])
    assert abs(gaussian.mean() - 3) < 0.05 and abs(gaussian.std() - 0.5) < 0.05


# -- resume --------------------------------------------------------------------------------------


def test_a_curriculum_restored_from_its_state_advances_where_the_original_does():
    def make():
        return curriculum(lesson("a", threshold=0.9, min_lesson_length=3), lesson("b", threshold=0.9), lesson("c"))

    original = make()
    original.advance(report(1.0, 1.0), 0.0)
    restored = make()
    restored.load_state_dict(json.loads(json.dumps(original.state_dict())))
    for returns in ([1.0], [], [], [1.0, 1.0, 1.0], [], []):
        assert restored.advance(report(*returns), 0.0) == original.advance(report(*returns), 0.0)
    assert restored.lesson_numbers == original.lesson_numbers == {"p": 2}


def test_a_saved_lesson_the_config_does_not_have_is_refused_naming_the_parameter():
    c = curriculum(lesson("a", measure="progress", threshold=0.1), lesson("b"))
    with pytest.raises(ValueError, match="environment_parameters.p: the run was in lesson 3"):
        c.load_state_dict({"lesson_numbers": {"p": 2}, "smoothed": {"p": 0.0}, "returns": {}})


# -- a run through the CLI -------------------------------------------------------------------------


class LessonEnv(MultiAgentEnv):
    """``agents`` "Walker" agents play episodes of ``length`` decisions. The game reads its parameters when an
    episode begins (drawing samplers then): the episode's last step pays ``difficulty``, and every observation is
    ``[t, speed]``. Every set_parameters and reset call is kept in ``events``. Its ``interrupt_at``-th step is
    interrupted (Ctrl-C)."""

    interrupt_at: int | None = None

    def __init__(self, agents: int = 2, length: int = 4) -> None:
        self.specs = {"Walker": BehaviourSpec("Walker", spaces.Box(-np.inf, np.inf, (2,), np.float32),
                                              spaces.Discrete(2))}
        self.ids = np.arange(agents, dtype=np.int64)
        self.length = length
        self.parameters = {"difficulty": 0.0, "speed": 0.0}
        self.events: list[tuple[str, object]] = []
        self.episodes: list[dict[str, float]] = []  # the values each episode began with
        self.rng = np.random.default_rng(0)

    def set_parameters(self, parameters) -> None:
        self.events.append(("set_parameters", dict(parameters)))
        self.parameters.update(parameters)

    def reset(self, seed=None):
        self.events.append(("reset", seed))
        self._begin()
        return {"Walker": BehaviourStep(self._decisions(0.0), TerminalSteps.empty(self.specs["Walker"]))}

    def step(self, actions):
        self.steps = getattr(self, "steps", 0) + 1
        if self.steps == self.interrupt_at:
            raise KeyboardInterrupt
        self.t += 1
        if self.t < self.length:
            return {"Walker": BehaviourStep(self._decisions(0.0), TerminalSteps.empty(self.specs["Walker"]))}
        n = len(self.ids)
        ended = TerminalSteps(self.ids, self._obs(), np.full(n, self.values["difficulty"], np.float32),
                              np.zeros(n, bool))
        self._begin()
        return {"Walker": BehaviourStep(self._decisions(0.0), ended)}

    def _begin(self) -> None:
        self.t = 0
        self.values = draw_all(self.parameters, self.rng)
        self.episodes.append(self.values)

    def _obs(self) -> np.ndarray:
        return np.tile(np.array([self.t, self.values["speed"]], np.float32), (len(self.ids), 1))

    def _decisions(self, reward: float) -> DecisionSteps:
        return DecisionSteps(self.ids, self._obs(), np.full(len(self.ids), reward, np.float32))


CURRICULA = {
    "difficulty": {"curriculum": [
        {"name": "easy", "value": 1.0, "completion_criteria": {
            "behavior": "Walker", "measure": "reward", "threshold": 0.9, "min_lesson_length": 6}},
        {"name": "hard", "value": 0.0}]},
    "speed": {"curriculum": [
        {"name": "slow", "value": 1.0, "completion_criteria": {
            "behavior": "Walker", "measure": "progress", "threshold": 0.5}},
        {"name": "fast", "value": {"sampler_type": "uniform", "min_value": 2.0, "max_value": 3.0}}]},
}

RUN = {
    "env": {"source": "gymnasium", "id": "LessonEnv"},  # the factory is replaced by LessonEnv below
    "trainer": {"max_steps": 160, "summary_freq": 16, "checkpoint_interval": 32, "keep_checkpoints": 2,
                "hyperparameters": {"n_steps": 8, "batch_size": 16, "n_epochs": 1, "hidden_sizes": [8]}},
    "environment_parameters": CURRICULA,
    "seed": 5,
}


@pytest.fixture
def game(monkeypatch) -> list[LessonEnv]:
    """The LessonEnv each `sparring train` trains in (one per run, newest last)."""
    made: list[LessonEnv] = []

    def make_env(config, log_dir=None, seed=0, scale=None):
        made.append(LessonEnv())
        return made[-1]

    monkeypatch.setattr("sparring.envs.factory.make_env", make_env)
    return made


def train(tmp_path: Path, data: dict, *flags: str) -> int:
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump(data))
    return main(["train", str(path), "--results-dir", str(tmp_path / "results"), "--run-id", "r", *flags])


def metrics(tmp_path: Path) -> list[dict]:
    return [json.loads(line) for line in (tmp_path / "results" / "r" / "metrics.jsonl").read_text().splitlines()]


def test_a_run_sends_each_lessons_values_and_its_rewards_follow_them(tmp_path, game, capsys):
    """Two agents, 4-decision episodes, 16 decisions per update: after update 3 (step 48) the smoothed mean return
    (0.75, then 0.9375) passes 0.9; past half of 160 steps (step 96) speed's progress lesson ends."""
    assert train(tmp_path, RUN) == 0
    env = game[-1]
    sent = [values for kind, values in env.events if kind == "set_parameters"]
    assert sent[:2] == [{"difficulty": 1.0, "speed": 1.0}, {"difficulty": 0.0, "speed": 1.0}]
    assert sent[2]["difficulty"] == 0.0 and isinstance(sent[2]["speed"], UniformSampler) and len(sent) == 3
    assert sent[2]["speed"].seed == 5 + 3  # the fourth lesson of seed -1
    assert [kind for kind, _ in env.events] == ["set_parameters", "reset", "set_parameters", "set_parameters"]

    rows = metrics(tmp_path)
    lessons = {row["step"]: (row["Environment/Lesson Number/difficulty"], row["Environment/Lesson Number/speed"])
               for row in rows}
    assert lessons[32] == (0, 0) and lessons[48] == (1, 0) and lessons[80] == (1, 0) and lessons[96] == (1, 1)
    returns = {row["step"]: row["Environment/Cumulative Reward"] for row in rows}
    # the game pays what the lesson said when an episode began: the one under way at step 48 still pays 1
    assert (returns[48], returns[64], returns[80]) == (1.0, 0.5, 0.0)
    speeds = [episode["speed"] for episode in env.episodes]  # one episode begins every 4 env steps (8 decisions)
    assert set(speeds[:13]) == {1.0} and len(speeds) == 21 and all(2.0 <= s < 3.0 for s in speeds[13:])
    err = capsys.readouterr().err
    assert "step 48: environment parameter 'difficulty' is in lesson 'hard' (2 of 2), value 0" in err
    assert "step 96: environment parameter 'speed' is in lesson 'fast' (2 of 2), value uniform(" in err


def test_a_lesson_that_requires_a_reset_restarts_the_episodes(tmp_path, game):
    data = json.loads(json.dumps(RUN))
    data["environment_parameters"]["difficulty"]["curriculum"][0]["completion_criteria"]["require_reset"] = True
    assert train(tmp_path, data) == 0
    kinds = [kind for kind, _ in game[-1].events]
    assert kinds == ["set_parameters", "reset", "set_parameters", "reset", "set_parameters"]


@pytest.mark.parametrize("algorithm", ["ppo", "sac"])
def test_restarted_episodes_are_given_up_not_counted(algorithm):
    """One agent, 3-decision episodes; the env is restarted after 4 decisions, one decision into the second
    episode: the episodes reported are the first and the third, each 3 decisions long, and none of 4."""
    from sparring.training import build_trainer

    config = RunConfig.model_validate({
        "env": {"source": "gymnasium", "id": "LessonEnv"},
        "trainer": {"algorithm": algorithm, "max_steps": 11, "hyperparameters": (
            {"n_steps": 4, "batch_size": 4, "n_epochs": 1, "hidden_sizes": [8]} if algorithm == "ppo" else
            {"batch_size": 4, "buffer_init_steps": 2, "hidden_sizes": [8]})}})
    env = LessonEnv(agents=1, length=3)
    model = build_trainer(config, env, Path("unused"))
    lengths = []

    def callback(model, update):
        lengths.extend(update.behaviours["Walker"].episode_lengths.tolist())
        if update.step == 4:
            model.restart_episodes()

    model.learn(11, callback=callback)
    assert [kind for kind, _ in env.events] == ["reset", "reset"]
    assert lengths == [3, 3, 3]


def test_an_interrupted_run_resumes_in_its_lessons(tmp_path, game, monkeypatch):
    """Interrupted in its 33rd env step (difficulty in lesson 2 since step 48), then resumed: it starts in that
    lesson, and speed's lesson ends at the first update past half the run, counting the steps before the stop."""
    monkeypatch.setattr(LessonEnv, "interrupt_at", 33)
    assert train(tmp_path, RUN) == 1
    checkpoints = tmp_path / "results" / "r" / "checkpoints"
    assert sorted(p.name for p in checkpoints.iterdir()) == [
        "step_64.curriculum.json", "step_64.pt", "step_66.curriculum.json", "step_66.pt"]
    monkeypatch.setattr(LessonEnv, "interrupt_at", None)
    assert train(tmp_path, RUN, "--resume") == 0
    first = next(values for kind, values in game[-1].events if kind == "set_parameters")
    assert first == {"difficulty": 0.0, "speed": 1.0}
    after = {row["step"]: (row["Environment/Lesson Number/difficulty"], row["Environment/Lesson Number/speed"])
             for row in metrics(tmp_path) if row["step"] > 66}
    assert after == {82: (1, 1), 98: (1, 1), 114: (1, 1), 130: (1, 1), 146: (1, 1), 162: (1, 1)}  # 82 > 160 / 2


def test_a_source_that_takes_no_parameters_is_refused_at_start_naming_them(tmp_path, capsys):
    data = {"env": {"source": "gymnasium", "id": "CartPole-v1"}, "trainer": {"max_steps": 100},
            "environment_parameters": {"gravity": 9.8}}
    assert train(tmp_path, data) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"sparring: error: {tmp_path / 'run.yaml'}: environment_parameters: gravity: "
                          "GymnasiumEnv takes no environment parameters") and "\n" not in err


def test_a_criterion_on_a_behaviour_the_env_lacks_is_refused_at_start(tmp_path, game, capsys):
    data = json.loads(json.dumps(RUN))
    data["environment_parameters"]["speed"]["curriculum"][0]["completion_criteria"]["behavior"] = "Runner"
    assert train(tmp_path, data) == 2
    assert ("environment_parameters.speed: lesson 'slow' is measured on behavior 'Runner', which the env does not "
            "have (it has Walker)") in capsys.readouterr().err
    assert game[-1].events == []


def test_a_bridge_engine_plays_each_lesson(tmp_path):
    """The squad game (a real engine process on the bridge) reports the speed it holds as Squads/Speed: 1 in
    the first lesson, a draw from [5, 6) once the lesson ends past half the run (the update at step 144)."""
    data = {
        "env": {"source": "bridge", "executable": str(Path(__file__).parent / "engines" / "squad_game.py"),
                "args": ["--squads", "1"], "transport": "tcp"},
        "trainer": {"max_steps": 256, "summary_freq": 32, "checkpoint_interval": 1000,
                    "hyperparameters": {"n_steps": 8, "batch_size": 16, "n_epochs": 1, "hidden_sizes": [8]}},
        "environment_parameters": {"speed": {"curriculum": [
            {"name": "slow", "value": 1.0,
             "completion_criteria": {"behavior": "Mate", "measure": "progress", "threshold": 0.5}},
            {"name": "fast", "value": {"sampler_type": "uniform", "min_value": 5.0, "max_value": 6.0}}]}},
    }
    assert train(tmp_path, data) == 0
    rows = [row for row in metrics(tmp_path) if row["behaviour"] == "Mate"]
    held = {row["step"]: (row["Environment/Lesson Number/speed"], row["Squads/Speed"]) for row in rows}
    assert [held[step] for step in (32, 64, 96, 128)] == [(0, 1.0)] * 4
    assert all(lesson == 1 and 5.0 <= speed < 6.0 for lesson, speed in (held[step] for step in (160, 192, 224, 256)))
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(tmp_path / "results" / "r" / "tensorboard" / "Mate"))
    events.Reload()  # the game's statistic in TensorBoard, under its own name
    assert [e.value for e in events.Scalars("Squads/Speed")] == pytest.approx([speed for _, speed in held.values()])


UNITY_RUN = """
behaviors:
  Seeker: &small
    trainer_type: ppo
    hyperparameters: {batch_size: 32, buffer_size: 64, num_epoch: 1}
    network_settings: {hidden_units: 16, num_layers: 1}
    max_steps: 400
    summary_freq: 64
  Mover: *small
environment_parameters:
  seeker_max_steps:
    curriculum:
      - name: short
        value: 2
        completion_criteria: {behavior: Seeker, measure: progress, threshold: 0.5}
      - name: long
        value: {sampler_type: uniform, sampler_parameters: {min_value: 40, max_value: 41}}
"""


@pytest.mark.timeout(120)
def test_a_unity_build_plays_each_lesson_of_an_mlagents_curriculum(tmp_path):
    """The stand-in build's Seekers are interrupted after seeker_max_steps, which the build reads as each episode
    begins: 2 decisions while the first lesson lasts, 40 once the lesson ends past half the run (step 512 of 800);
    the file is an ML-Agents config, the build launched as mlagents-learn launches one."""
    from unity_harness import build_player, free_ports

    player = build_player(tmp_path / "standin")
    path = tmp_path / "run.yaml"
    path.write_text(UNITY_RUN)
    assert main(["train", str(path), "--results-dir", str(tmp_path / "results"), "--run-id", "r", "--env", player,
                 "--base-port", str(free_ports()), "--no-graphics", "--env-args", "--agents", "2"]) == 0
    seekers = [(row["Environment/Lesson Number/seeker_max_steps"], row["Environment/Episode Length"])
               for row in metrics(tmp_path) if row["behaviour"] == "Seeker?team=0"]
    assert [lesson for lesson, _ in seekers] == [0, 0, 0, 1, 1, 1, 1]
    assert all(length <= 2 for lesson, length in seekers if lesson == 0)
    assert seekers[-1][1] > 20  # the first episodes after the change had begun with the old limit
