"""ML-Agents trainer configs: `sparring train` takes the file mlagents-learn takes, and its flags."""

import copy
from pathlib import Path

import pytest
import yaml
from mlagents_corpus import example_file

from sparring.cli import UsageError, apply_env_flags, main
from sparring.config import ConfigError, RunConfig, load_config, load_run_config
from sparring.mlagents_config import is_mlagents_config, run_options, translate

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "mlagents" / "standin.yaml"

# ML-Agents' config/ppo/3DBall.yaml
BALL = yaml.safe_load("""
behaviors:
  3DBall:
    trainer_type: ppo
    hyperparameters:
      batch_size: 64
      buffer_size: 12000
      learning_rate: 0.0003
      beta: 0.001
      epsilon: 0.2
      lambd: 0.99
      num_epoch: 3
      learning_rate_schedule: linear
    network_settings:
      normalize: true
      hidden_units: 128
      num_layers: 2
      vis_encode_type: simple
    reward_signals:
      extrinsic:
        gamma: 0.99
        strength: 1.0
    keep_checkpoints: 5
    max_steps: 500000
    time_horizon: 1000
    summary_freq: 12000
""")


def _soccer_behaviour(swap_steps: int) -> dict:
    """A behaviour of ML-Agents' config/ppo/StrikersVsGoalie.yaml (self-play)."""
    return yaml.safe_load(f"""
    trainer_type: ppo
    hyperparameters:
      batch_size: 2048
      buffer_size: 20480
      learning_rate: 0.0003
      beta: 0.005
      epsilon: 0.2
      lambd: 0.95
      num_epoch: 3
      learning_rate_schedule: constant
    network_settings:
      normalize: false
      hidden_units: 512
      num_layers: 2
      vis_encode_type: simple
    reward_signals:
      extrinsic:
        gamma: 0.99
        strength: 1.0
    keep_checkpoints: 5
    max_steps: 30000000
    time_horizon: 1000
    summary_freq: 10000
    self_play:
      save_steps: 50000
      team_change: 200000
      swap_steps: {swap_steps}
      window: 10
      play_against_latest_model_ratio: 0.5
      initial_elo: 1200.0
    """)


SOCCER = {"behaviors": {"Goalie": _soccer_behaviour(1000), "Striker": _soccer_behaviour(4000)}}


def _with(data: dict, path: str, value) -> dict:
    """A copy of ``data`` with the dotted key ``path`` set to ``value``."""
    data = copy.deepcopy(data)
    *parents, key = path.split(".")
    section = data
    for parent in parents:
        section = section.setdefault(parent, {})
    section[key] = value
    return data


def test_3dball_trains_a_unity_env_with_its_own_hyperparameters():
    config, unsupported = translate(BALL, "3DBall.yaml")
    assert config.env.source == "unity" and config.env.env_path is None  # the Editor, as mlagents-learn
    h = config.trainer.hyperparameters
    assert (h.batch_size, h.buffer_size, h.learning_rate, h.lr_schedule) == (64, 12000, 3e-4, "linear")
    assert (h.ent_coef, h.clip_range, h.clip_range_vf, h.gae_lambda, h.n_epochs) == (0.001, 0.2, 0.2, 0.99, 3)
    assert (h.hidden_sizes, h.normalize_obs, h.gamma, h.activation) == ([128, 128], True, 0.99, "swish")
    assert (config.trainer.max_steps, config.trainer.summary_freq) == (500_000, 12_000)
    assert config.trainer.behaviours == {}
    assert unsupported == []
    assert h.time_horizon == 1000


def test_absent_keys_take_mlagents_defaults_not_sparrings():
    config, unsupported = translate({"behaviors": {"Agent": {}}}, "f.yaml")
    h = config.trainer.hyperparameters
    assert (h.batch_size, h.buffer_size, h.learning_rate, h.n_epochs) == (1024, 10240, 3e-4, 3)
    assert (h.ent_coef, h.clip_range, h.gae_lambda, h.gamma) == (5e-3, 0.2, 0.95, 0.99)
    assert (h.hidden_sizes, h.normalize_obs, h.lr_schedule, h.clip_schedule) == ([128, 128], False, "linear", "linear")
    t = config.trainer
    assert (t.max_steps, t.summary_freq, t.checkpoint_interval, t.keep_checkpoints) == (500_000, 50_000, 500_000, 5)
    assert (config.seed, config.env.max_restarts, config.env.time_scale) == (0, 10, 20.0)
    assert unsupported == []


def test_epsilon_schedule_follows_learning_rate_schedule_unless_set():
    constant = _with({"behaviors": {"A": {}}}, "behaviors.A.hyperparameters.learning_rate_schedule", "constant")
    assert translate(constant, "f.yaml")[0].trainer.hyperparameters.clip_schedule == "constant"
    linear_clip = _with(constant, "behaviors.A.hyperparameters.epsilon_schedule", "linear")
    assert translate(linear_clip, "f.yaml")[0].trainer.hyperparameters.clip_schedule == "linear"


def test_schedules_end_where_ml_agents_ends_them_and_beta_follows_the_learning_rate_unless_set():
    """TorchPPOOptimizer: DecayedValue(schedule, initial, min_value, max_steps) with min_value 1e-10 (learning
    rate), 0.1 (epsilon), 1e-5 (beta); beta_schedule and epsilon_schedule default to learning_rate_schedule."""
    from sparring.agents.ppo import _schedule

    h = translate({"behaviors": {"A": {}}}, "f.yaml")[0].trainer.hyperparameters
    assert (h.lr_schedule, h.clip_schedule, h.ent_schedule) == ("linear", "linear", "linear")
    assert (h.learning_rate_end, h.clip_range_end, h.ent_coef_end) == (1e-10, 0.1, 1e-5)
    for progress, want in ((0.0, 0.2), (0.5, 0.15), (1.0, 0.1), (1.5, 0.1)):
        assert _schedule(h.clip_range, h.clip_schedule, progress, h.clip_range_end) == pytest.approx(want)
    constant = translate({"behaviors": {"A": {"hyperparameters": {"learning_rate_schedule": "constant"}}}}, "f.yaml")
    assert constant[0].trainer.hyperparameters.ent_schedule == "constant"


def test_settings_every_behaviour_shares_are_trainer_wide_and_the_rest_per_behaviour():
    data = _with(SOCCER, "behaviors.Goalie.hyperparameters.learning_rate", 1e-3)
    data = _with(data, "behaviors.Goalie.network_settings.hidden_units", 256)
    config, _ = translate(data, "f.yaml")
    assert config.trainer.hyperparameters.learning_rate == 3e-4  # ML-Agents' default, as they differ
    assert config.trainer.hyperparameters.hidden_sizes == [128, 128]
    assert config.trainer.hyperparameters.batch_size == 2048  # shared
    assert config.trainer.behaviours == {
        "Goalie": {"learning_rate": 1e-3, "hidden_sizes": [256, 256]},
        "Striker": {"hidden_sizes": [512, 512]},
    }


def test_default_settings_are_merged_under_every_behaviour():
    data = {
        "default_settings": {"hyperparameters": {"learning_rate": 1e-3, "batch_size": 128}, "max_steps": 1000},
        "behaviors": {"A": {"hyperparameters": {"batch_size": 64}}, "B": {}},
    }
    config, _ = translate(data, "f.yaml")
    assert config.trainer.hyperparameters.learning_rate == 1e-3
    assert config.trainer.hyperparameters.batch_size == 128
    assert config.trainer.behaviours == {"A": {"batch_size": 64}}
    assert config.trainer.max_steps == 2000


def test_max_steps_add_up_and_intervals_take_the_smallest():
    data = {"behaviors": {
        "A": {"max_steps": 1000, "summary_freq": 100, "checkpoint_interval": 500, "keep_checkpoints": 3},
        "B": {"max_steps": 2000, "summary_freq": 300, "checkpoint_interval": 200, "keep_checkpoints": 7},
    }}
    t = translate(data, "f.yaml")[0].trainer
    assert (t.max_steps, t.summary_freq, t.checkpoint_interval, t.keep_checkpoints) == (3000, 100, 200, 3)


def test_differing_buffer_sizes_share_the_largest_and_say_so():
    data = _with(SOCCER, "behaviors.Goalie.hyperparameters.buffer_size", 4096)
    config, unsupported = translate(data, "f.yaml")
    assert config.trainer.hyperparameters.buffer_size == 20480
    assert "behaviors.Goalie.hyperparameters.buffer_size (all behaviours share the largest, 20480)" in unsupported


def test_self_play_file_becomes_a_league_with_each_behaviours_own_swap_steps_and_nothing_reported():
    """SOCCER's Goalie swaps every 1000 steps, its Striker every 4000: each policy group keeps its own."""
    config, unsupported = translate(SOCCER, "f.yaml")
    assert unsupported == []
    assert config.trainer.max_steps == 60_000_000
    assert config.trainer.hyperparameters.lr_schedule == "constant"
    league = config.trainer.self_play
    assert (league.save_steps, league.team_change, league.window) == (50_000, 200_000, 10)
    assert league.play_against_latest_model_ratio == 0.5 and league.opponent_sampling == "uniform"
    assert league.model_dump()["groups"] == {"Goalie": {"swap_steps": 1000}, "Striker": {"swap_steps": 4000}}
    assert (league.of("Goalie").swap_steps, league.of("Striker").swap_steps) == (1000, 4000)


def test_a_differing_self_play_key_takes_default_settings_value_and_only_the_others_get_their_own():
    """As hyperparameters do: the league holds default_settings' swap_steps, the Goalie's; the Striker its own."""
    data = {**SOCCER, "default_settings": {"self_play": {"swap_steps": 1000, "window": 5}}}
    league = translate(data, "f.yaml")[0].trainer.self_play
    assert (league.swap_steps, league.window) == (1000, 10)  # both behaviours write window 10
    assert league.model_dump()["groups"] == {"Striker": {"swap_steps": 4000}}


def test_a_resolved_mlagents_configuration_reports_only_what_asks_for_more():
    """mlagents-learn's results/<run>/configuration.yaml spells out every key, mostly at harmless values."""
    behaviour = _with(BALL["behaviors"]["3DBall"], "hyperparameters.beta_schedule", "linear")
    behaviour["hyperparameters"].update(epsilon_schedule="linear", shared_critic=False)
    behaviour["network_settings"].update(memory=None, goal_conditioning_type="hyper", deterministic=False)
    behaviour["reward_signals"]["extrinsic"]["network_settings"] = {"normalize": False, "hidden_units": 128}
    behaviour.update(init_path=None, checkpoint_interval=500000, threaded=False, self_play=None,
                     behavioral_cloning=None, even_checkpoints=False)
    data = {
        "default_settings": None,
        "behaviors": {"3DBall": behaviour},
        "env_settings": {"env_path": None, "env_args": None, "base_port": 5005, "num_envs": 1, "num_areas": 1,
                         "seed": -1, "max_lifetime_restarts": 10, "restarts_rate_limit_n": 1,
                         "restarts_rate_limit_period_s": 60},
        "engine_settings": {"width": 84, "height": 84, "quality_level": 5, "time_scale": 20,
                            "target_frame_rate": -1, "capture_frame_rate": 60, "no_graphics": False},
        "environment_parameters": None,
        "checkpoint_settings": {"run_id": "ball", "initialize_from": None, "load_model": False, "resume": False,
                                "force": False, "train_model": False, "inference": False,
                                "results_dir": "results"},
        "torch_settings": {"device": None},
        "debug": False,
    }
    config, unsupported = translate(data, "configuration.yaml")
    assert unsupported == ["env_settings.restarts_rate_limit_n", "env_settings.restarts_rate_limit_period_s"]
    assert config.env.base_port is None  # the Editor listens on 5004 whatever base_port says, as in mlagents-learn
    assert config == translate(BALL, "3DBall.yaml")[0]


def test_a_resolved_reward_signal_reports_nothing_it_asks_for_as_sparring_does():
    """configuration.yaml writes each signal's network_settings in full, and encoding_size: null."""
    network = {"normalize": True, "hidden_units": 128, "num_layers": 2, "vis_encode_type": "simple", "memory": None,
               "goal_conditioning_type": "hyper", "deterministic": False}
    curiosity = {"gamma": 0.99, "strength": 0.02, "network_settings": network, "learning_rate": 3e-4,
                 "encoding_size": None}
    config, unsupported = translate(_with(BALL, "behaviors.3DBall.reward_signals.curiosity", curiosity), "f.yaml")
    assert unsupported == []  # 3DBall normalizes, so its curiosity's normalize: true is what sparring does
    assert config.trainer.hyperparameters.reward_signals.curiosity.encoding_size == 128


BASE = {"behaviors": {"A": {}}, "env_settings": {"env_path": "Builds/Base"}}

TRANSLATED = [
    ("behaviors.A.hyperparameters.batch_size", 32),
    ("behaviors.A.hyperparameters.buffer_size", 2048),
    ("behaviors.A.hyperparameters.learning_rate", 1e-3),
    ("behaviors.A.hyperparameters.learning_rate_schedule", "constant"),
    ("behaviors.A.hyperparameters.beta", 0.01),
    ("behaviors.A.hyperparameters.epsilon", 0.1),
    ("behaviors.A.hyperparameters.epsilon_schedule", "constant"),
    ("behaviors.A.hyperparameters.beta_schedule", "constant"),
    ("behaviors.A.hyperparameters.lambd", 0.9),
    ("behaviors.A.hyperparameters.num_epoch", 5),
    ("behaviors.A.network_settings.normalize", True),
    ("behaviors.A.network_settings.hidden_units", 32),
    ("behaviors.A.network_settings.num_layers", 1),
    ("behaviors.A.reward_signals.extrinsic.gamma", 0.9),
    ("behaviors.A.reward_signals.extrinsic.strength", 0.5),
    ("behaviors.A.reward_signals.curiosity", {"strength": 0.02, "gamma": 0.99}),
    ("behaviors.A.reward_signals.gail", {"demo_path": "expert.demo"}),
    ("behaviors.A.reward_signals.rnd", {}),
    ("behaviors.A.reward_signals.rnd.network_settings.hidden_units", 32),
    ("behaviors.A.reward_signals.rnd.encoding_size", 32),
    ("behaviors.A.behavioral_cloning", {"demo_path": "expert.demo"}),
    ("behaviors.A.max_steps", 1000),
    ("behaviors.A.summary_freq", 1000),
    ("behaviors.A.keep_checkpoints", 2),
    ("behaviors.A.checkpoint_interval", 1000),
    ("env_settings.env_path", "Builds/Game"),
    ("env_settings.env_args", ["--level", "2"]),
    ("env_settings.base_port", 6000),
    ("env_settings.num_envs", 3),
    ("env_settings.timeout_wait", 30),
    ("env_settings.seed", 7),
    ("env_settings.max_lifetime_restarts", 3),
    ("engine_settings.width", 100),
    ("engine_settings.height", 100),
    ("engine_settings.quality_level", 1),
    ("engine_settings.time_scale", 1.0),
    ("engine_settings.target_frame_rate", 60),
    ("engine_settings.capture_frame_rate", 30),
    ("engine_settings.no_graphics", True),
    ("environment_parameters.difficulty", 2.0),
    ("environment_parameters.size", {"sampler_type": "constant", "sampler_parameters": {"value": 3.0}}),
    ("environment_parameters.mass", {"sampler_type": "uniform", "sampler_parameters": {"min_value": 1}}),
    ("environment_parameters.wall", {"curriculum": [{"name": "low", "value": 0.0}]}),
    ("behaviors.A.self_play", {"save_steps": 1000}),
]

REPORTED = [
    ("behaviors.A.hyperparameters.shared_critic", True),
    ("behaviors.A.network_settings.deterministic", True),
    ("behaviors.A.reward_signals.rnd.network_settings.normalize", True),
    ("behaviors.A.reward_signals.rnd.network_settings.vis_encode_type", "resnet"),
    ("behaviors.A.reward_signals.rnd.network_settings.memory", {"memory_size": 64}),
    ("behaviors.A.even_checkpoints", True),
    ("behaviors.A.threaded", True),
    ("behaviors.A.init_path", "results/old/A"),
    ("env_settings.num_areas", 2),
    ("env_settings.max_lifetime_restarts", -1),
    ("env_settings.restarts_rate_limit_n", 5),
    ("env_settings.restarts_rate_limit_period_s", 10),
    ("engine_settings.no_graphics_monitor", True),
    ("checkpoint_settings.initialize_from", "old-run"),
    ("checkpoint_settings.load_model", True),
    ("checkpoint_settings.inference", True),
    ("torch_settings.device", "cuda"),
    ("debug", True),
]


@pytest.mark.parametrize(("path", "value"), TRANSLATED)
def test_every_supported_setting_changes_the_run(path, value):
    config, unsupported = translate(_with(BASE, path, value), "f.yaml")
    assert config != translate(BASE, "f.yaml")[0]
    assert unsupported == []


@pytest.mark.parametrize(("path", "value"), REPORTED)
def test_every_unsupported_setting_is_reported_by_its_path(path, value):
    config, unsupported = translate(_with(BASE, path, value), "f.yaml")
    assert unsupported == [path]


def _signals(data: dict, behaviour: str | None = None) -> dict:
    """The translated reward signals (of ``behaviour`` where it has its own), as plain values."""
    trainer = translate(data, "f.yaml")[0].trainer
    own = trainer.behaviours.get(behaviour, {}) if behaviour else {}
    signals = own.get("reward_signals") or trainer.hyperparameters.model_dump(mode="json")["reward_signals"]
    return {key: signal for key, signal in signals.items() if signal is not None}


def test_only_the_reward_signals_named_are_learned_from_as_in_ml_agents():
    """settings.py: a reward_signals section replaces TrainerSettings' default, {extrinsic} (imitation/Crawler.yaml
    names gail alone and learns without the game's reward)."""
    assert set(_signals(BASE)) == {"extrinsic"}
    gail_alone = _with(BASE, "behaviors.A.reward_signals.gail", {"demo_path": "Demos/Expert.demo"})
    assert set(_signals(gail_alone)) == {"gail"}
    assert translate(gail_alone, "f.yaml")[1] == []


def test_default_settings_add_their_signals_under_each_behaviours_as_ml_agents_merges_them():
    """ML-Agents reads default_settings into TrainerSettings (so with its default extrinsic signal) and deep-merges
    each behaviour over that: a behaviour naming gail alone still has the extrinsic signal."""
    gail = {"demo_path": "Demos/Expert.demo"}
    data = {"default_settings": {"max_steps": 1000}, "behaviors": {"A": {"reward_signals": {"gail": gail}}}}
    assert set(_signals(data)) == {"extrinsic", "gail"}
    curious = {"default_settings": {"reward_signals": {"curiosity": {"strength": 0.1}}},
               "behaviors": {"A": {"reward_signals": {"gail": gail}}}}
    assert set(_signals(curious)) == {"curiosity", "gail"}


@pytest.mark.parametrize(("curiosity", "width", "unsupported"), [
    ({}, 128, []),  # ML-Agents' NetworkSettings.hidden_units
    ({"network_settings": {"hidden_units": 256}}, 256, []),
    ({"encoding_size": 32}, 32, []),  # deprecated, used where there is no network_settings
    ({"encoding_size": 32, "network_settings": {"hidden_units": 256}}, 256,
     ["behaviors.A.reward_signals.curiosity.encoding_size"]),  # ignored by ML-Agents too
    ({"encoding_size": 128, "network_settings": {}}, 128, []),
])
def test_a_signal_s_width_is_its_hidden_units_or_the_deprecated_encoding_size(curiosity, width, unsupported):
    config, reported = translate(_with(BASE, "behaviors.A.reward_signals.curiosity", curiosity), "f.yaml")
    assert config.trainer.hyperparameters.reward_signals.curiosity.encoding_size == width
    assert reported == unsupported


def test_a_behaviour_s_encoding_size_under_default_settings_signal_is_ignored_as_ml_agents_ignores_it():
    """default_settings' curiosity is read with its network_settings (hidden_units 64 from its encoding_size), so
    the behaviour's encoding_size meets a network_settings and goes unused."""
    data = {"default_settings": {"reward_signals": {"curiosity": {"encoding_size": 64}}},
            "behaviors": {"A": {"reward_signals": {"curiosity": {"encoding_size": 32}}}}}
    config, unsupported = translate(data, "f.yaml")
    assert config.trainer.hyperparameters.reward_signals.curiosity.encoding_size == 64
    assert unsupported == ["behaviors.A.reward_signals.curiosity.encoding_size"]


def test_absent_signal_keys_take_mlagents_defaults():
    gail = {"demo_path": "Demos/Expert.demo"}
    data = _with(_with(BASE, "behaviors.A.reward_signals.rnd", {}), "behaviors.A.reward_signals.gail", gail)
    data = _with(data, "behaviors.A.reward_signals.curiosity", {})
    signals = _signals(data)
    assert signals["rnd"] == {"strength": 1.0, "gamma": 0.99, "encoding_size": 128, "num_layers": 2,
                              "learning_rate": 1e-4}
    assert signals["curiosity"] == {"strength": 1.0, "gamma": 0.99, "encoding_size": 128, "num_layers": 2,
                                    "learning_rate": 3e-4}
    assert signals["gail"] == {"strength": 1.0, "gamma": 0.99, "encoding_size": 128, "num_layers": 2, "learning_rate": 3e-4,
                               "demo_path": "Demos/Expert.demo", "use_actions": False, "use_vail": False}


def test_the_extrinsic_signal_keeps_its_strength_and_its_discount_is_the_trainer_s_gamma():
    data = _with(BALL, "behaviors.3DBall.reward_signals.extrinsic", {"strength": 2.0, "gamma": 0.9})
    h = translate(data, "f.yaml")[0].trainer.hyperparameters
    assert (h.reward_signals.extrinsic.strength, h.reward_signals.extrinsic.gamma, h.gamma) == (2.0, None, 0.9)


def test_behavioral_cloning_is_translated_with_its_keys():
    cloning = {"demo_path": "Demos/Expert.demo", "strength": 0.5, "steps": 150_000, "batch_size": 64,
               "num_epoch": 2, "samples_per_update": 1000}
    h = translate(_with(BASE, "behaviors.A.behavioral_cloning", cloning), "f.yaml")[0].trainer.hyperparameters
    assert h.behavioral_cloning.model_dump(mode="json") == cloning
    absent = translate(_with(BASE, "behaviors.A.behavioral_cloning", {"demo_path": "d.demo"}), "f.yaml")[0]
    assert absent.trainer.hyperparameters.behavioral_cloning.model_dump(mode="json") == {
        "demo_path": "d.demo", "strength": 1.0, "steps": 0, "batch_size": None, "num_epoch": None,
        "samples_per_update": 0}


def test_behaviours_with_different_signals_each_get_their_own():
    gail = {"demo_path": "Demos/Goalie.demo", "strength": 0.1}
    data = _with(SOCCER, "behaviors.Goalie.reward_signals.gail", gail)
    data = _with(data, "behaviors.Goalie.behavioral_cloning", {"demo_path": "Demos/Goalie.demo"})
    config, unsupported = translate(data, "f.yaml")
    assert unsupported == []
    assert set(_signals(data)) == {"extrinsic"}  # the Striker's, ML-Agents' default
    assert set(_signals(data, "Goalie")) == {"extrinsic", "gail"}
    assert config.trainer.behaviours["Goalie"]["behavioral_cloning"]["demo_path"] == "Demos/Goalie.demo"
    assert config.trainer.hyperparameters.behavioral_cloning is None
    assert "Striker" not in config.trainer.behaviours  # it trains with trainer.hyperparameters


def test_reward_signals_naming_none_are_an_error_naming_the_path():
    with pytest.raises(ConfigError, match="^f.yaml: behaviors.A.reward_signals: names no signal"):
        translate(_with(BASE, "behaviors.A.reward_signals", {}), "f.yaml")


def test_a_demo_path_is_kept_as_written(tmp_path, monkeypatch):
    """Relative to the working directory, as ML-Agents reads it, not to the config file."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "configs").mkdir()
    gail = {"demo_path": "Demos/Expert.demo"}
    data = _with(_with(BALL, "behaviors.3DBall.reward_signals.gail", gail), "behaviors.3DBall.behavioral_cloning", gail)
    path = write(tmp_path / "configs", data)
    h = load_run_config(path).config.trainer.hyperparameters
    assert h.reward_signals.gail.demo_path == Path("Demos/Expert.demo") == h.behavioral_cloning.demo_path


def test_checkpoint_settings_become_run_options():
    data = {**BASE, "checkpoint_settings": {"run_id": "r7", "results_dir": "out", "resume": True, "force": False}}
    assert run_options(data, "f.yaml") == {"run_id": "r7", "results_dir": "out", "resume": True}
    assert translate(data, "f.yaml")[1] == []


@pytest.mark.parametrize(("path", "value", "message"), [
    ("behaviors.A.hyperparameters.learning_rat", 0.1, "behaviors.A.hyperparameters.learning_rat: unknown key"),
    ("behaviors.A.network_setting", {}, "behaviors.A.network_setting: unknown key"),
    ("env_settings.env_pth", "x", "env_settings.env_pth: unknown key"),
    ("behaviors.A.hyperparameters.tau", 0.005, "behaviors.A.hyperparameters.tau: unknown key"),  # SAC's
    ("behaviors.A.hyperparameters.batch_size", "lots", "behaviors.A.hyperparameters.batch_size:"),
    ("behaviors.A.network_settings.num_layers", 0, "behaviors.A.network_settings.num_layers:"),
    ("behaviors.A.trainer_type", "ppo2", "behaviors.A.trainer_type:"),
    ("env_settings.seed", -2, "env_settings.seed:"),
    ("environment_parameters.size", "big", "environment_parameters.size: expected a number"),
    ("checkpoint_settings", {"resume": True, "force": True}, "checkpoint_settings.resume: cannot be true together"),
])
def test_wrong_keys_and_values_are_errors_naming_the_path(path, value, message):
    with pytest.raises(ConfigError, match="^f.yaml: ") as error:
        translate(_with(BASE, path, value), "f.yaml")
    assert message in str(error.value) and "\n" not in str(error.value)


def test_poca_trains_with_ppo_s_keys_as_ml_agents_names_them():
    data = {"behaviors": {"Walker": {"trainer_type": "poca", "time_horizon": 32,
                                     "hyperparameters": {"beta": 0.005, "num_epoch": 4}}}}
    config, unsupported = translate(data, "f.yaml")
    h = config.trainer.hyperparameters
    assert (config.trainer.algorithm, type(h).__name__, unsupported) == ("poca", "POCASettings", [])
    assert (h.ent_coef, h.n_epochs, h.time_horizon, h.buffer_size) == (0.005, 4, 32, 10240)


def test_sac_takes_time_horizon_as_it_is():
    """One-step targets: nothing to cut (note 9); not reported."""
    data = {"behaviors": {"Walker": {"trainer_type": "sac", "time_horizon": 32}}}
    assert translate(data, "f.yaml")[1] == []


# ML-Agents' config/sac/Walker.yaml
WALKER = yaml.safe_load("""
behaviors:
  Walker:
    trainer_type: sac
    hyperparameters:
      learning_rate: 0.0003
      learning_rate_schedule: constant
      batch_size: 1024
      buffer_size: 2000000
      buffer_init_steps: 0
      tau: 0.005
      steps_per_update: 30.0
      save_replay_buffer: false
      init_entcoef: 1.0
      reward_signal_steps_per_update: 30.0
    network_settings:
      normalize: true
      hidden_units: 256
      num_layers: 3
      vis_encode_type: simple
    reward_signals:
      extrinsic:
        gamma: 0.995
        strength: 1.0
    keep_checkpoints: 5
    max_steps: 15000000
    time_horizon: 1000
    summary_freq: 30000
""")


def test_sac_file_trains_sac_with_its_own_hyperparameters():
    config, unsupported = translate(WALKER, "Walker.yaml")
    assert config.trainer.algorithm == "sac"
    assert config.trainer.hyperparameters.model_dump() == {
        "learning_rate": 3e-4, "lr_schedule": "constant", "buffer_size": 2_000_000, "batch_size": 1024,
        "buffer_init_steps": 0, "steps_per_update": 30.0, "tau": 0.005, "gamma": 0.995, "init_entcoef": 1.0,
        "learn_entcoef": True, "target_entropy": None, "save_replay_buffer": False, "normalize_obs": True,
        "normalize_reward": False,
        "hidden_sizes": [256, 256, 256], "activation": "swish", "vis_encode_type": "simple", "memory": None,
        "reward_signal_steps_per_update": 30.0, "behavioral_cloning": None,
        "reward_signals": {"extrinsic": {"strength": 1.0, "gamma": None}, "curiosity": None, "rnd": None, "gail": None},
    }
    assert unsupported == []


@pytest.mark.parametrize("written, used", [({"vis_encode_type": "resnet"}, "resnet"),
                                           ({"vis_encode_type": "simple"}, "simple"), ({}, "auto")])
def test_vis_encode_type_is_used_as_named_and_auto_where_the_file_names_none(written, used):
    config, unsupported = translate({"behaviors": {"A": {"trainer_type": "ppo", "network_settings": written}}}, "f.yaml")
    assert config.trainer.hyperparameters.vis_encode_type == used
    assert unsupported == []


def test_memory_is_translated_and_an_odd_memory_size_is_refused_as_ml_agents_does():
    behaviour = {"trainer_type": "ppo", "network_settings": {"memory": {"memory_size": 64, "sequence_length": 16}}}
    config, unsupported = translate({"behaviors": {"A": behaviour}}, "f.yaml")
    assert config.trainer.hyperparameters.memory.model_dump() == {"memory_size": 64, "sequence_length": 16}
    assert unsupported == []
    behaviour["network_settings"]["memory"]["memory_size"] = 63
    with pytest.raises(ValueError, match="memory_size"):
        translate({"behaviors": {"A": behaviour}}, "f.yaml")


def test_sac_absent_keys_take_mlagents_sac_defaults():
    config, _ = translate({"behaviors": {"A": {"trainer_type": "sac"}}}, "f.yaml")
    h = config.trainer.hyperparameters
    assert (h.batch_size, h.buffer_size, h.buffer_init_steps, h.lr_schedule, h.hidden_sizes) == (
        128, 50_000, 0, "constant", [128, 128])


def test_sac_trainer_type_and_keys_come_from_default_settings_too():
    data = {"default_settings": {"trainer_type": "sac", "hyperparameters": {"tau": 0.01}},
            "behaviors": {"A": {"hyperparameters": {"save_replay_buffer": True}}, "B": {}}}
    config, _ = translate(data, "f.yaml")
    assert config.trainer.algorithm == "sac" and config.trainer.hyperparameters.tau == 0.01
    assert config.trainer.behaviours == {"A": {"save_replay_buffer": True}}


def test_sac_updates_reward_signals_every_reward_signal_steps_per_update_or_as_the_policy_where_absent():
    """ML-Agents' SACSettings: reward_signal_steps_per_update defaults to steps_per_update (config/sac/WallJump.yaml
    sets 10 against 20)."""
    curious = _with(WALKER, "behaviors.Walker.reward_signals.curiosity", {"strength": 0.02})
    slower = _with(curious, "behaviors.Walker.hyperparameters.reward_signal_steps_per_update", 10.0)
    config, unsupported = translate(slower, "f.yaml")
    h = config.trainer.hyperparameters
    assert (h.steps_per_update, h.reward_signal_steps_per_update, unsupported) == (30.0, 10.0, [])
    assert h.signal_names() == ("extrinsic", "curiosity") and h.reward_signals.curiosity.strength == 0.02
    del curious["behaviors"]["Walker"]["hyperparameters"]["reward_signal_steps_per_update"]
    assert translate(curious, "f.yaml")[0].trainer.hyperparameters.reward_signal_steps_per_update is None


def test_sac_learns_from_gail_and_cloning_as_ppo_does():
    gail = {"demo_path": "Demos/Walker.demo", "use_actions": True}
    data = _with(_with(WALKER, "behaviors.Walker.reward_signals.gail", gail),
                 "behaviors.Walker.behavioral_cloning", {"demo_path": "Demos/Walker.demo", "strength": 0.5})
    config, unsupported = translate(data, "f.yaml")
    h = config.trainer.hyperparameters
    assert (type(h).__name__, h.signal_names(), unsupported) == ("SACSettings", ("extrinsic", "gail"), [])
    assert (h.reward_signals.gail.use_actions, h.reward_signals.gail.encoding_size) == (True, 128)
    assert (h.behavioral_cloning.demo_path, h.behavioral_cloning.strength) == (Path("Demos/Walker.demo"), 0.5)


@pytest.mark.parametrize(("changes", "message"), [
    ({"Walker.hyperparameters.beta": 0.01}, "behaviors.Walker.hyperparameters.beta: unknown key for trainer_type sac"),
    ({"Walker.self_play": {"window": 5}}, "behaviors.Walker.self_play: self-play trains with trainer_type ppo"),
    ({"Other": {"trainer_type": "ppo"}}, "trainer_type differs (Walker: sac, Other: ppo)"),
])
def test_sac_keys_sparring_does_not_honour_are_reported_or_refused(changes, message):
    data = copy.deepcopy(WALKER)
    for path, value in changes.items():
        data = _with(data, f"behaviors.{path}", value)
    with pytest.raises(ConfigError) as error:
        translate(data, "f.yaml")
    assert message in str(error.value)


def test_an_mlagents_file_is_recognised_by_behaviors():
    assert is_mlagents_config(BALL) and not is_mlagents_config({"env": {}, "trainer": {}})


def test_load_config_translates_an_mlagents_file(tmp_path):
    path = tmp_path / "ball.yaml"
    path.write_text(yaml.safe_dump({**BALL, "checkpoint_settings": {"run_id": "ball"}}))
    loaded = load_run_config(path)
    assert isinstance(load_config(path), RunConfig) and load_config(path) == loaded.config
    assert (loaded.unsupported, loaded.run_options) == ([], {"run_id": "ball"})


def test_standin_example_trains_both_behaviours_alike():
    loaded = load_run_config(EXAMPLE)
    t = loaded.config.trainer
    assert (t.max_steps, t.summary_freq, t.behaviours) == (200_000, 5000, {})
    assert (t.hyperparameters.hidden_sizes, t.hyperparameters.batch_size, t.hyperparameters.buffer_size) == (
        [64, 64], 256, 2048)
    assert loaded.unsupported == []


# -- the command line ----------------------------------------------------------------------------

NATIVE = {"env": {"source": "gymnasium", "id": "CartPole-v1"}, "trainer": {"max_steps": 100}}


def write(tmp_path: Path, data: dict, name: str = "config.yaml") -> Path:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(data))
    return path


@pytest.fixture
def started(monkeypatch) -> dict:
    """What `sparring train` would start the env with; no Unity here, so starting it fails."""
    seen: dict = {}

    def make_env(config, log_dir=None, seed=0, scale=None):
        seen.update(config=config, log_dir=log_dir, seed=seed, scale=scale)
        raise RuntimeError("no Unity build here")

    monkeypatch.setattr("sparring.envs.factory.make_env", make_env)
    return seen


def test_train_warns_once_naming_every_unsupported_key(tmp_path, capsys, started):
    data = _with(_with(SOCCER, "behaviors.Goalie.threaded", True), "behaviors.Striker.init_path", "x")
    config = write(tmp_path, data)
    assert main(["train", str(config), "--results-dir", str(tmp_path / "results")]) == 2
    warnings = [line for line in capsys.readouterr().err.splitlines() if "warning" in line]
    assert warnings == [f"sparring: warning: {config}: ignoring ML-Agents settings sparring does not support yet: "
                        "behaviors.Goalie.threaded, behaviors.Striker.init_path"]


def test_train_takes_an_imitation_config_warning_of_nothing(tmp_path, capsys, started):
    """ML-Agents' config/imitation/Pyramids.yaml: curiosity, GAIL and cloning reach the run as they are written."""
    config = example_file("imitation/Pyramids.yaml", tmp_path)
    assert main(["train", str(config), "--results-dir", str(tmp_path / "results")]) == 2  # no Unity build here
    assert "warning" not in capsys.readouterr().err
    assert started["config"].source == "unity"


def test_a_translated_imitation_config_reads_back_from_the_run_s_configuration_yaml(tmp_path):
    from sparring.run import RunDirectory

    config = load_config(example_file("imitation/Pyramids.yaml", tmp_path))
    run = RunDirectory(tmp_path / "run")
    run.write_config(config)
    assert load_config(run.config) == config


def test_ppo_trains_with_a_translated_curiosity_config(tmp_path, one_torch_thread):
    """ML-Agents' config/ppo/Pyramids.yaml as the trainer's keyword arguments (as `sparring train` passes them), on
    CartPole with a small rollout: its curiosity learns beside the game's reward."""
    from sparring.agents.ppo import PPO
    from sparring.envs.gymnasium import GymnasiumEnv

    h = load_config(example_file("ppo/Pyramids.yaml", tmp_path)).trainer.hyperparameters.model_dump()
    model = PPO(GymnasiumEnv("CartPole-v1", num_envs=2), seed=0,
                **{**h, "buffer_size": 64, "batch_size": 32, "hidden_sizes": [16, 16]})
    reports = []
    model.learn(128, callback=lambda m, r: reports.append(r.behaviours["CartPole"].stats))
    assert {"Losses/Curiosity Forward Loss", "Policy/Curiosity Reward"} <= set(reports[-1])


def test_mlagents_learn_flags_override_the_file(tmp_path, started):
    config = write(tmp_path, {**BALL, "env_settings": {"env_path": "Builds/Old", "num_envs": 1}})
    main(["train", str(config), "--results-dir", str(tmp_path / "results"), "--env", "Builds/Ball", "--num-envs", "4",
          "--base-port", "6000", "--no-graphics", "--time-scale", "5", "--env-args", "--level", "2"])
    env = started["config"]
    assert (env.env_path, env.num_envs, env.base_port, env.no_graphics, env.time_scale, env.env_args) == (
        "Builds/Ball", 4, 6000, True, 5.0, ["--level", "2"])


def test_checkpoint_settings_name_the_run_unless_flags_do(tmp_path, started):
    data = {**BALL, "checkpoint_settings": {"run_id": "ball", "results_dir": str(tmp_path / "out")}}
    main(["train", str(write(tmp_path, data))])
    assert started["log_dir"] == tmp_path / "out" / "ball" / "engines"
    main(["train", str(write(tmp_path, data)), "--run-id", "mine", "--results-dir", str(tmp_path / "r")])
    assert started["log_dir"] == tmp_path / "r" / "mine" / "engines"


def test_env_flags_need_a_unity_env(tmp_path, capsys):
    config = write(tmp_path, NATIVE)
    assert main(["train", str(config), "--results-dir", str(tmp_path / "results"), "--env", "Builds/Game"]) == 2
    err = capsys.readouterr().err
    assert err.strip() == f"sparring: error: --env: only for a Unity env, and {config} has env.source 'gymnasium'"
    assert not (tmp_path / "results").exists()


def test_num_envs_flag_applies_to_any_source():
    native = RunConfig.model_validate(NATIVE)
    assert apply_env_flags(native, {"num_envs": 8}, Path("c.yaml")).env.num_envs == 8
    assert native.env.num_envs == 1


def test_env_flag_values_are_checked_naming_the_flag():
    unity = translate(BALL, "3DBall.yaml")[0]
    with pytest.raises(UsageError, match="^--num-envs: Input should be greater than or equal to 1"):
        apply_env_flags(unity, {"num_envs": 0}, Path("3DBall.yaml"))
    with pytest.raises(UsageError, match="^--time-scale: "):
        apply_env_flags(unity, {"time_scale": -1.0}, Path("3DBall.yaml"))


def test_numbers_written_as_ml_agents_files_write_them_are_numbers(tmp_path):
    """PyYAML reads YAML 1.1, where 1.0e7 and 5e5 are strings; ML-Agents' own files write them (Pyramids.yaml)."""
    path = tmp_path / "Pyramids.yaml"
    path.write_text("behaviors:\n  Pyramids:\n    trainer_type: ppo\n    max_steps: 1.0e7\n"
                    "    hyperparameters: {buffer_size: 5e5, learning_rate: 3.0e-4, beta: 1e-2}\n")
    loaded = load_run_config(path)
    assert loaded.config.trainer.max_steps == 10_000_000
    h = loaded.config.trainer.hyperparameters
    assert (h.buffer_size, h.learning_rate, h.ent_coef) == (500_000, 3e-4, 0.01)
    assert loaded.unsupported == []


# -- environment parameters ----------------------------------------------------------------------

def _parameter(value) -> object:
    config, unsupported = translate(_with(BASE, "environment_parameters.p", value), "f.yaml")
    assert unsupported == []
    return config.environment_parameters["p"]


@pytest.mark.parametrize(("sampler_type", "written", "fields"), [
    ("uniform", {}, {"min_value": 0.0, "max_value": 1.0}),
    ("uniform", {"max_value": 4}, {"min_value": 0.0, "max_value": 4.0}),
    ("gaussian", {}, {"mean": 1.0, "st_dev": 1.0}),
    ("gaussian", {"mean": 0, "st_dev": 0.5, "seed": 7}, {"mean": 0.0, "st_dev": 0.5, "seed": 7}),
    ("multirangeuniform", {}, {"intervals": [(0.0, 1.0)]}),
    ("multirangeuniform", {"intervals": [[1, 2], [5, 9]]}, {"intervals": [(1.0, 2.0), (5.0, 9.0)]}),
])
def test_a_sampler_takes_mlagents_values_for_the_parameters_it_leaves_out(sampler_type, written, fields):
    """settings.py: UniformSettings(0, 1), GaussianSettings(1, 1), MultiRangeUniformSettings([[0, 1]]), seed -1."""
    sampler = _parameter({"sampler_type": sampler_type, "sampler_parameters": written})
    assert sampler.model_dump() == {"seed": -1, "sampler_type": sampler_type, **fields}


def test_a_constant_sampler_is_its_number():
    assert _parameter({"sampler_type": "constant", "sampler_parameters": {}}) == 0.0
    assert _parameter({"sampler_type": "constant", "sampler_parameters": {"value": 2, "seed": 4}}) == 2.0


def test_wall_jump_curriculum_translates_lesson_by_lesson(tmp_path):
    """ML-Agents' config/ppo/WallJump_curriculum.yaml: a sampler per lesson of one wall, numbers for the other."""
    config = load_config(example_file("ppo/WallJump_curriculum.yaml", tmp_path))
    big = config.environment_parameters["big_wall_height"].curriculum
    assert [lesson.name for lesson in big] == ["Lesson0", "Lesson1", "Lesson2", "Lesson3"]
    assert [(lesson.value.min_value, lesson.value.max_value) for lesson in big[:3]] == [(0, 4), (4, 7), (6, 8)]
    assert big[3].value == 8.0 and big[3].completion_criteria is None
    criteria = big[1].completion_criteria
    assert criteria.model_dump() == {"behavior": "BigWallJump", "measure": "progress", "threshold": 0.3,
                                     "min_lesson_length": 100, "signal_smoothing": True, "require_reset": False}
    small = config.environment_parameters["small_wall_height"].curriculum
    assert [lesson.value for lesson in small] == [1.5, 2.0, 2.5, 4.0]


def test_a_last_lessons_completion_criteria_is_reported_as_mlagents_warns_of_it():
    lessons = [{"name": "low", "value": 1.0, "completion_criteria": {"behavior": "A", "threshold": 0.5}},
               {"name": "high", "value": 2.0, "completion_criteria": {"behavior": "A", "threshold": 0.9}}]
    config, unsupported = translate(_with(BASE, "environment_parameters.wall", {"curriculum": lessons}), "f.yaml")
    assert unsupported == ["environment_parameters.wall.curriculum.1.completion_criteria (the last lesson)"]
    assert config.environment_parameters["wall"].curriculum[1].completion_criteria is None


LESSON = {"name": "low", "value": 1.0, "completion_criteria": {"behavior": "A", "threshold": 0.5}}


@pytest.mark.parametrize(("value", "message"), [
    ({"sampler_type": "uniform"}, "environment_parameters.p.sampler_parameters: expected a mapping"),
    ({"sampler_type": "beta", "sampler_parameters": {}},
     "environment_parameters.p.sampler_type: must be one of constant, uniform, gaussian, multirangeuniform"),
    ({"sampler_type": "uniform", "sampler_parameters": {"min_value": 5, "max_value": 1}},
     "environment_parameters.p.sampler_parameters.min_value 5.0 is above max_value 1.0"),
    ({"sampler_type": "uniform", "sampler_parameters": {"min": 0}},
     "environment_parameters.p.sampler_parameters.min: unknown key"),
    ({"sampler_type": "gaussian", "sampler_parameters": {"st_dev": -1}},
     "environment_parameters.p.sampler_parameters.st_dev: Input should be greater than or equal to 0"),
    ({"sampler_type": "uniform", "sampler_parameters": {}, "resampling-interval": 5},
     "environment_parameters.p.resampling-interval: unknown key"),
    ({"sampler_type": "constant", "sampler_parameters": {"value": "high"}},
     "environment_parameters.p.sampler_parameters.value: expected a number"),
    ({"curriculum": {"low": 1}}, "environment_parameters.p.curriculum: expected a list of lessons"),
    ({"curriculum": [{"value": 1.0}]}, "environment_parameters.p.curriculum.0.name: required key is missing"),
    ({"curriculum": [{**LESSON, "value": {"sampler_type": "uniform", "sampler_parameters": {"max_value": -1}}},
                     LESSON]},
     "environment_parameters.p.curriculum.0.value.sampler_parameters.min_value 0.0 is above max_value -1.0"),
    ({"curriculum": [{**LESSON, "completion_criteria": {"behavior": "A", "measure": "progres"}}, {**LESSON}]},
     "environment_parameters.p.curriculum.0.completion_criteria.measure: Input should be 'reward' or 'progress'"),
    ({"curriculum": [{**LESSON, "completion_criteria": {"measure": "progress"}}, LESSON]},
     "environment_parameters.p.curriculum.0.completion_criteria.behavior: required key is missing"),
    ({"curriculum": [{**LESSON, "completion_criteria": {"behavior": "A", "measure": "progress", "threshold": 2}},
                     LESSON]},
     "environment_parameters.p.curriculum.0.completion_criteria.threshold: with measure progress it is a fraction"),
    ({"curriculum": [{"name": "low", "value": 1.0}, LESSON]},
     "environment_parameters.p.curriculum.0.completion_criteria: lesson 'low' needs one"),
])
def test_environment_parameter_errors_name_the_files_keys(value, message):
    with pytest.raises(ConfigError, match="^f.yaml: ") as error:
        translate(_with(BASE, "environment_parameters.p", value), "f.yaml")
    assert message in str(error.value) and "\n" not in str(error.value)


def test_self_play_takes_mlagents_defaults_team_change_five_save_steps():
    """SelfPlaySettings: save_steps 20000, team_change 5 * save_steps, swap_steps 2000, window 10, ratio 0.5."""
    league = translate(_with(BASE, "behaviors.A.self_play", {"save_steps": 30_000}), "f.yaml")[0].trainer.self_play
    assert (league.save_steps, league.team_change, league.swap_steps, league.window) == (30_000, 150_000, 2000, 10)
    assert (league.play_against_latest_model_ratio, league.initial_elo) == (0.5, 1200.0)
