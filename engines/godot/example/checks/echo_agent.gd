# A test agent for every action space: it observes the last action it was given, so a
# test can see each row reach the right agent. Reward 0.5 per action; with
# end_on_first_action, the episode ends (terminated) when the first action component is 0;
# with quit_on_action, the game quits when given that action.
extends "res://addons/sparring/agent.gd"

export var end_on_first_action := false
export var quit_on_action := -1  # the game quits when this agent is given this discrete action

var _last := PoolRealArray()


func observation_components() -> Dictionary:
	if action_kind == ActionKind.MULTI_DISCRETE:
		return {"last_action": [action_branches.size()], "grid": [2, 3]}
	return {"obs": [observation_size]}


func reset_agent() -> void:
	_last = PoolRealArray()
	for i in range(_width()):
		_last.append(-1.0)


func get_observation():
	if action_kind == ActionKind.MULTI_DISCRETE:
		var grid := PoolRealArray([agent_id, episode_steps, 0, 0, 0, 1])
		return {"last_action": _last, "grid": grid}
	var obs := PoolRealArray(_last)
	obs.append(episode_steps)
	return obs


func get_action_mask() -> PoolByteArray:
	return PoolByteArray([1, 1, 0, 1, 1])  # for branches [3, 2]: the first branch never picks 2


func apply_action(action) -> void:
	_last = PoolRealArray()
	if typeof(action) == TYPE_INT:
		_last.append(action)
	else:
		for v in action:
			_last.append(v)
	add_reward(0.5)
	if typeof(action) == TYPE_INT and action == quit_on_action:
		get_tree().quit()
	if end_on_first_action and _last[0] == 0.0:
		end_episode()


func _width() -> int:
	if action_kind == ActionKind.DISCRETE:
		return 1
	if action_kind == ActionKind.MULTI_DISCRETE:
		return action_branches.size()
	return continuous_size
