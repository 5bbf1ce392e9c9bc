# One SparringAgentGroup (group_game.gd) set up from the command line:
#   --agents N (default 4)  --kind discrete|multi|continuous (default discrete)
#   --limit L (decisions before truncation; default 0: none)  --mask (discrete only)
#   --teams (agents 2k and 2k + 1 share rewards: group_game.gd)
extends Node

const GroupGame = preload("res://checks/group_game.gd")
const Sync = preload("res://addons/sparring/sync.gd")


func _ready() -> void:
	var group = GroupGame.new()
	group.name = "Crowd"
	group.behaviour_name = "crowd"
	group.agent_count = int(Sync.command_line_value("--agents", "4"))
	group.observation_size = 3
	group.limit = int(Sync.command_line_value("--limit", "0"))
	var kind := Sync.command_line_value("--kind", "discrete")
	if kind == "multi":
		group.action_kind = GroupGame.ActionKind.MULTI_DISCRETE
		group.action_branches = PoolIntArray([3, 2])
	elif kind == "continuous":
		group.action_kind = GroupGame.ActionKind.CONTINUOUS
		group.continuous_size = 2
		group.continuous_low = -1.0
		group.continuous_high = 1.0
	else:
		group.discrete_actions = 3
	group.use_action_mask = "--mask" in OS.get_cmdline_args()
	group.teams = "--teams" in OS.get_cmdline_args()
	add_child(group)
