"""ML-Agents' own example configs (release 21) translate, ignoring nothing but reward signals."""

import pytest
from mlagents_corpus import CORPUS, example_file

from sparring.config import load_run_config
from sparring.curriculum import Curriculum

REWARD_SIGNALS = (".reward_signals.", ".behavioral_cloning")
"""Curiosity, GAIL, RND, behavioural cloning and the extrinsic signal's strength next to them: a later issue."""


def test_the_corpus_is_every_file_of_the_release():
    assert len(CORPUS) == 35
    assert {name.split("/")[0] for name in CORPUS} == {"ppo", "sac", "poca"}


@pytest.mark.parametrize("name", sorted(CORPUS))
def test_every_mlagents_example_config_translates_ignoring_only_reward_signals(name, tmp_path):
    loaded = load_run_config(example_file(name, tmp_path))
    ignored = [key for key in loaded.unsupported if not any(part in key for part in REWARD_SIGNALS)]
    assert ignored == []
    config = loaded.config
    assert config.trainer.algorithm == name.split("/")[0]
    if config.trainer.algorithm != "sac":  # SAC's one-step targets take time_horizon as it is
        written = [*CORPUS[name]["behaviors"].values(), CORPUS[name].get("default_settings") or {}]
        assert config.trainer.hyperparameters.time_horizon in {b.get("time_horizon", 64) for b in written}
    Curriculum(config.environment_parameters, config.seed)  # its curricula can be followed
