# A throughput-test group: agent_count agents with fixed-size observations that change
# each step and discrete actions, everything done with whole-array operations.
extends "res://addons/sparring/group.gd"

export var episode_length := 100  # decisions; then every agent's episode is truncated

var _obs := PoolRealArray()
var _steps := 0
var _all_truncated := PoolByteArray()


func reset_agents(_indices: PoolIntArray) -> void:
	_steps = 0
	if _obs.size() != agent_count * observation_size:
		_obs.resize(agent_count * observation_size)
		for i in range(_obs.size()):
			_obs[i] = 0.0
		_all_truncated.resize(agent_count)
		for i in range(agent_count):
			_all_truncated[i] = 2


func get_observations() -> PoolRealArray:
	_obs[0] = _steps
	return _obs


func apply_actions(actions) -> void:
	rewards = PoolRealArray(Array(actions))  # reward = the action taken
	_steps += 1
	if _steps >= episode_length:
		dones = _all_truncated
