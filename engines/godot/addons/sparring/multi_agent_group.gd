# SparringMultiAgentGroup: SparringAgents that share rewards and episodes (ML-Agents' SimpleMultiAgentGroup).
#
#   const MultiAgentGroup = preload("res://addons/sparring/multi_agent_group.gd")
#   var squad = MultiAgentGroup.new()
#   squad.register_agent($Striker)          # agents join (an agent plays in one group at a time)
#   squad.add_group_reward(1.0)             # every member earns it, reported with its next decision
#   squad.end_group_episode()               # every member's episode ends (terminated)
#   squad.group_episode_interrupted()       # every member's episode is cut short (truncated)
#   squad.unregister_agent($Striker)        # it leaves the group, usually as its own episode ends
#
# Not to be confused with SparringAgentGroup (group.gd), a crowd of one behaviour's agents handled
# as arrays. Members belong to one behaviour. The group reaches the trainer as each member's group id
# and group reward (BehaviourObservations.decision_group_* / terminal_group_*); an agent that leaves
# is reported once more with the group it left and what the group earned while it was a member, then
# in no group. An agent that leaves the scene tree leaves its group. Members stay registered from one
# group episode to the next.
extends Reference

# The group's id on the wire: the object's instance id, unique while the game runs and, in Godot 3,
# small (a counter of objects created). Godot 4's ids exceed 2^32: use a counter there.
var group_id := 0
var _members := []


func _init() -> void:
	group_id = get_instance_id()


func register_agent(agent) -> void:
	if agent.multi_agent_group == self:
		return
	if agent.multi_agent_group != null:
		agent.multi_agent_group.unregister_agent(agent)
	_members.append(agent)
	agent.multi_agent_group = self
	agent.group_id = group_id


func unregister_agent(agent) -> void:
	if agent.multi_agent_group != self:
		return
	_members.erase(agent)
	agent.multi_agent_group = null  # its group_id stays until its next row is reported


func add_group_reward(value: float) -> void:
	for agent in _members:
		agent.group_reward += value


func end_group_episode() -> void:
	for agent in _members:
		agent.end_episode()


func group_episode_interrupted() -> void:
	for agent in _members:
		agent.end_episode(true)


func get_registered_agents() -> Array:
	return _members.duplicate()
