# Two teams of two TeamAgents (team_agent.gd), each team a SparringMultiAgentGroup; every Reset
# registers every agent with its team again. --teams N makes N teams.
extends Node

const MultiAgentGroup = preload("res://addons/sparring/multi_agent_group.gd")
const Sync = preload("res://addons/sparring/sync.gd")
const TeamAgent = preload("res://checks/team_agent.gd")

var teams := []


func _ready() -> void:
	$SparringSync.connect("reset_requested", self, "_on_reset_requested")
	for t in range(int(Sync.command_line_value("--teams", "2"))):
		teams.append(MultiAgentGroup.new())
		for k in range(2):
			var agent = TeamAgent.new()
			agent.name = "Mate%d" % (2 * t + k)
			agent.index = 2 * t + k
			agent.behaviour_name = "mate"
			agent.observation_size = 3
			agent.discrete_actions = 5
			add_child(agent)
	_on_reset_requested(0, {})


func _on_reset_requested(_seed: int, _parameters: Dictionary) -> void:
	for agent in get_tree().get_nodes_in_group("sparring_agents"):
		teams[agent.index / 2].register_agent(agent)
