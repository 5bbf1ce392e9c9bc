# A SparringAgentGroup the tests can predict. Agent i observes [i, decisions in this
# episode, last action] (last action: -1 at the start of an episode; the first branch
# for multi-discrete, the sum of the row for continuous). Each decision earns
# (action + 1) (first branch; the first value for continuous). A discrete action 0
# ends the episode (terminated); after `limit` decisions it is truncated. With the
# mask, odd agents may not take action 1.
# With teams, agents 2k and 2k + 1 are reward group k + 1 (registered at every Reset), and (discrete
# actions) an action 2 makes the agent's group earn 1, an action 1 ends its group's episode, and an
# action 0, ending the agent's own episode, takes it out of its group until the next Reset.
extends "res://addons/sparring/group.gd"

var limit := 0
var teams := false
var steps := []
var last := []
var resets := 0  # reset_agents() calls, for the tests


func reset_agents(indices: PoolIntArray) -> void:
	resets += 1
	steps.resize(agent_count)
	last.resize(agent_count)
	for i in indices:
		steps[i] = 0
		last[i] = -1.0
		if teams and indices.size() == agent_count:
			set_group(i, i / 2 + 1)


func get_observations() -> PoolRealArray:
	var obs := PoolRealArray()
	for i in range(agent_count):
		obs.append_array(PoolRealArray([i, steps[i], last[i]]))
	return obs


func get_action_masks() -> PoolByteArray:
	var mask := PoolByteArray()
	for i in range(agent_count):
		for a in range(discrete_actions):
			mask.append(0 if (i % 2 == 1 and a == 1) else 1)
	return mask


func apply_actions(actions) -> void:
	var width := 1
	if action_kind == ActionKind.MULTI_DISCRETE:
		width = action_branches.size()
	elif action_kind == ActionKind.CONTINUOUS:
		width = continuous_size
	assert(actions.size() == agent_count * width)
	for i in range(agent_count):
		var first = actions[i * width]
		steps[i] += 1
		if action_kind == ActionKind.CONTINUOUS:
			var total := 0.0
			for k in range(width):
				total += actions[i * width + k]
			last[i] = total
			add_reward(i, first)
		else:
			last[i] = first
			add_reward(i, first + 1)
			if teams:
				_team_play(i, first)
			if first == 0:
				end_episode(i)
		if limit > 0 and steps[i] >= limit:
			end_episode(i, true)  # no effect when the episode ended already (terminated wins)


func _team_play(i: int, action: int) -> void:
	var group := get_group(i)
	if group == 0:
		return
	if action == 2:
		add_group_reward(group, 1.0)
	elif action == 1:
		end_group_episode(group)
	elif action == 0:
		leave_group(i)
