# One player of checks/showdown.gd: sees its game's target, one-hot, and names a number (0-2).
extends "res://addons/sparring/agent.gd"

var arena := {}


func get_observation() -> PoolRealArray:
	var seen := PoolRealArray([0.0, 0.0, 0.0])
	seen[arena["target"]] = 1.0
	return seen


func apply_action(action) -> void:
	get_parent().choose(arena, self, int(action))
