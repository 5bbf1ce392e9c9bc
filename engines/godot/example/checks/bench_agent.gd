# A throughput-test agent: a fixed-size observation that changes each step, discrete actions.
extends "res://addons/sparring/agent.gd"

var _obs := PoolRealArray()


func reset_agent() -> void:
	_obs.resize(observation_size)
	for i in range(observation_size):
		_obs[i] = 0.0


func get_observation() -> PoolRealArray:
	_obs[0] = episode_steps
	return _obs


func apply_action(action) -> void:
	add_reward(0.01 * action)
