# Many agents for measuring the bridge's round-trip rate. Command line:
#   --agents N (default 1024)  --obs-size K (default 64)  --frames F (physics frames per step, default 1)
#   --per-agent   one SparringAgent node per agent (bench_agent.gd) instead of one SparringAgentGroup
extends Node

const BenchAgent = preload("res://checks/bench_agent.gd")
const BenchGroup = preload("res://checks/bench_group.gd")
const Sync = preload("res://addons/sparring/sync.gd")


func _ready() -> void:
	var agents := int(Sync.command_line_value("--agents", "1024"))
	var obs_size := int(Sync.command_line_value("--obs-size", "64"))
	$SparringSync.frames_per_step = int(Sync.command_line_value("--frames", "1"))
	if not "--per-agent" in OS.get_cmdline_args():
		var group = BenchGroup.new()
		group.name = "Bench"
		group.behaviour_name = "bench"
		group.agent_count = agents
		group.observation_size = obs_size
		group.discrete_actions = 4
		group.episode_length = 100
		add_child(group)
		return
	for i in range(agents):
		var agent = BenchAgent.new()
		agent.name = "Agent%d" % i
		agent.behaviour_name = "bench"
		agent.observation_size = obs_size
		agent.discrete_actions = 4
		agent.max_episode_steps = 100
		add_child(agent)
