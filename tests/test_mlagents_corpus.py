"""ML-Agents' own example configs (release 21) translate, reward signals and behavioural cloning included."""

from pathlib import Path

import pytest
from mlagents_corpus import CORPUS, example_file

from sparring.agents.ppo import PPOSettings
from sparring.agents.sac import SACSettings
from sparring.config import load_run_config
from sparring.curriculum import Curriculum

STILL_REPORTED: dict[str, list[str]] = {}
"""What sparring does not do yet, per file: nothing in the release's example configs."""


def test_the_corpus_is_every_file_of_the_release():
    assert len(CORPUS) == 39
    assert {name.split("/")[0] for name in CORPUS} == {"ppo", "sac", "poca", "imitation"}


def _trainer_type(name: str) -> str:
    return next(iter(CORPUS[name]["behaviors"].values()))["trainer_type"]


@pytest.mark.parametrize("name", sorted(CORPUS))
def test_every_mlagents_example_config_translates_reporting_only_what_sparring_does_not_do(name, tmp_path):
    loaded = load_run_config(example_file(name, tmp_path))
    assert loaded.unsupported == STILL_REPORTED.get(name, [])
    config = loaded.config
    assert config.trainer.algorithm == _trainer_type(name)
    if config.trainer.algorithm != "sac":  # SAC's one-step targets take time_horizon as it is
        written = [*CORPUS[name]["behaviors"].values(), CORPUS[name].get("default_settings") or {}]
        assert config.trainer.hyperparameters.time_horizon in {b.get("time_horizon", 64) for b in written}
    Curriculum(config.environment_parameters, config.seed)  # its curricula can be followed


def _translated(name: str, folder: Path):
    """The file's hyperparameters, validated again as the algorithm's settings from their plain values."""
    config = load_run_config(example_file(name, folder)).config
    assert config.trainer.behaviours == {}
    settings = SACSettings if config.trainer.algorithm == "sac" else PPOSettings
    return settings(**config.trainer.hyperparameters.model_dump(mode="json"))


def test_pyramids_learns_from_curiosity_beside_the_game_s_reward(tmp_path):
    h = _translated("ppo/Pyramids.yaml", tmp_path)
    assert h.signal_names() == ("extrinsic", "curiosity")
    curiosity = h.reward_signals.curiosity
    assert (curiosity.strength, curiosity.gamma, curiosity.encoding_size, curiosity.learning_rate) == (
        0.02, 0.99, 256, 3e-4)  # encoding_size: its network_settings.hidden_units
    assert (h.reward_signals.extrinsic.strength, h.gamma) == (1.0, 0.99)
    assert h.behavioral_cloning is None


def test_pyramids_rnd_learns_from_random_network_distillation(tmp_path):
    h = _translated("ppo/PyramidsRND.yaml", tmp_path)
    assert h.signal_names() == ("extrinsic", "rnd")
    rnd = h.reward_signals.rnd
    assert (rnd.strength, rnd.gamma, rnd.encoding_size, rnd.num_layers, rnd.learning_rate) == (0.01, 0.99, 64, 3, 1e-4)


def test_imitation_crawler_learns_from_gail_and_cloning_without_the_game_s_reward(tmp_path):
    h = _translated("imitation/Crawler.yaml", tmp_path)
    assert h.signal_names() == ("gail",)  # the file names gail alone
    gail = h.reward_signals.gail
    assert gail.demo_path == Path("Project/Assets/ML-Agents/Examples/Crawler/Demos/ExpertCrawler.demo")
    assert (gail.strength, gail.gamma, gail.encoding_size, gail.learning_rate) == (1.0, 0.99, 128, 3e-4)
    assert (gail.use_actions, gail.use_vail) == (False, False)
    cloning = h.behavioral_cloning
    assert cloning.demo_path == gail.demo_path
    assert (cloning.strength, cloning.steps, cloning.samples_per_update) == (0.5, 50_000, 0)
    assert (cloning.batch_size, cloning.num_epoch) == (None, None)  # the trainer's, as in ML-Agents
    assert (h.hidden_sizes, h.normalize_obs, h.time_horizon) == ([512, 512, 512], True, 1000)


def test_imitation_pyramids_learns_from_four_sources(tmp_path):
    h = _translated("imitation/Pyramids.yaml", tmp_path)
    assert h.signal_names() == ("extrinsic", "curiosity", "gail")
    demo = Path("Project/Assets/ML-Agents/Examples/Pyramids/Demos/ExpertPyramid.demo")
    assert (h.reward_signals.curiosity.strength, h.reward_signals.curiosity.encoding_size) == (0.02, 256)
    gail = h.reward_signals.gail
    assert (gail.strength, gail.encoding_size, gail.demo_path) == (0.01, 128, demo)  # 128: ML-Agents' default width
    assert (h.behavioral_cloning.strength, h.behavioral_cloning.steps, h.behavioral_cloning.demo_path) == (
        0.5, 150_000, demo)


@pytest.mark.parametrize(("name", "demo", "cloning"), [
    ("imitation/Hallway.yaml", "Hallway/Demos/ExpertHallway.demo", None),
    ("imitation/PushBlock.yaml", "PushBlock/Demos/ExpertPushBlock.demo", (1.0, 50_000)),
])
def test_imitation_examples_add_gail_to_the_game_s_reward(name, demo, cloning, tmp_path):
    h = _translated(name, tmp_path)
    assert h.signal_names() == ("extrinsic", "gail")
    gail = h.reward_signals.gail
    assert (gail.strength, gail.encoding_size, gail.demo_path) == (
        0.01, 128, Path("Project/Assets/ML-Agents/Examples") / demo)
    assert (None if h.behavioral_cloning is None else (h.behavioral_cloning.strength, h.behavioral_cloning.steps)) == (
        cloning)


def test_sac_pyramids_weighs_the_game_s_reward_twice_beside_gail(tmp_path):
    h = _translated("sac/Pyramids.yaml", tmp_path)
    assert h.signal_names() == ("extrinsic", "gail")
    assert (h.reward_signals.extrinsic.strength, h.gamma) == (2.0, 0.995)
    gail = h.reward_signals.gail
    assert (gail.strength, gail.gamma, gail.use_actions, gail.encoding_size) == (0.01, 0.99, True, 128)
    assert gail.demo_path == Path("Project/Assets/ML-Agents/Examples/Pyramids/Demos/ExpertPyramid.demo")
    assert (h.steps_per_update, h.reward_signal_steps_per_update) == (10, 10)
