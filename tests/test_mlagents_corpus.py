"""ML-Agents' own example configs (tests/data/mlagents, release 21) translate, ignoring nothing but reward signals."""

from pathlib import Path

import pytest

from sparring.config import ConfigError, load_run_config
from sparring.curriculum import Curriculum

CORPUS = Path(__file__).resolve().parent / "data" / "mlagents"
FILES = sorted(CORPUS.glob("*/*.yaml"))

REWARD_SIGNALS = (".reward_signals.", ".behavioral_cloning")
"""Curiosity, GAIL, RND, behavioural cloning and the extrinsic signal's strength next to them: a later issue."""

BEING_WIRED = (".time_horizon",)
"""Translated once PPO and SAC take ML-Agents' time_horizon (in progress); then this goes."""

POCA_BEING_WIRED = pytest.mark.xfail(raises=ConfigError, strict=True,
                                     reason="trainer_type poca: translated once the MA-POCA trainer is (in progress)")


CASES = [pytest.param(path, id=str(path.relative_to(CORPUS)),
                      marks=[POCA_BEING_WIRED] if path.parent.name == "poca" else []) for path in FILES]


def test_the_corpus_is_every_file_of_the_release():
    assert len(FILES) == 35
    assert {path.parent.name for path in FILES} == {"ppo", "sac", "poca"}


@pytest.mark.parametrize("path", CASES)
def test_every_mlagents_example_config_translates_ignoring_only_reward_signals(path):
    loaded = load_run_config(path)
    ignored = [key for key in loaded.unsupported if not any(part in key for part in REWARD_SIGNALS + BEING_WIRED)]
    assert ignored == []
    assert loaded.config.trainer.algorithm == path.parent.name
    Curriculum(loaded.config.environment_parameters, loaded.config.seed)  # its curricula can be followed


@pytest.mark.xfail(strict=True, reason="time_horizon: translated once PPO and SAC take it (in progress); then remove "
                                       "BEING_WIRED and this test")
def test_time_horizon_is_translated():
    assert not [key for path in FILES if path.parent.name != "poca" for key in load_run_config(path).unsupported
                if key.endswith(BEING_WIRED)]
