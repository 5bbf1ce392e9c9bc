# A test agent that plays in a SparringMultiAgentGroup. It observes [its index, the environment
# parameter "speed" as it was when its episode started, decisions in this episode] and earns no
# reward of its own. Its action: 0 nothing; 1 its group earns 1; 2 it leaves its group and ends its
# episode (it plays on in no group until the next Reset); 3 its group's episode ends; 4 its group's
# episode is interrupted. Statistics: Teams/Earned (sum, 1 per group reward given), Teams/Action
# (histogram, every action) and Teams/Speed (most_recent, the parameter now).
extends "res://addons/sparring/agent.gd"

var index := 0
var speed := 0.0

onready var sync: Node = get_node("../SparringSync")


func reset_agent() -> void:
	speed = sync.get_parameter("speed")


func get_observation() -> PoolRealArray:
	return PoolRealArray([index, speed, episode_steps])


func apply_action(action) -> void:
	sync.record_stat("Teams/Action", action, "histogram")
	sync.record_stat("Teams/Speed", sync.get_parameter("speed"), "most_recent")
	if multi_agent_group == null:
		return
	if action == 1:
		multi_agent_group.add_group_reward(1.0)
		sync.record_stat("Teams/Earned", 1.0, "sum")
	elif action == 2:
		multi_agent_group.unregister_agent(self)
		end_episode()
	elif action == 3:
		multi_agent_group.end_group_episode()
	elif action == 4:
		multi_agent_group.group_episode_interrupted()
