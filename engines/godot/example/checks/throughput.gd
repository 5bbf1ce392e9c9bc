# Spawns many agents for measuring the bridge's round-trip rate. Command line:
#   --agents N (default 1024)  --obs-size K (default 64)  --frames F (physics frames per step, default 1)
extends Node

const BenchAgent = preload("res://checks/bench_agent.gd")
const Sync = preload("res://addons/sparring/sync.gd")


func _ready() -> void:
	var agents := int(Sync.command_line_value("--agents", "1024"))
	var obs_size := int(Sync.command_line_value("--obs-size", "64"))
	$SparringSync.frames_per_step = int(Sync.command_line_value("--frames", "1"))
	for i in range(agents):
		var agent = BenchAgent.new()
		agent.name = "Agent%d" % i
		agent.behaviour_name = "bench"
		agent.observation_size = obs_size
		agent.discrete_actions = 4
		agent.max_episode_steps = 100
		add_child(agent)
