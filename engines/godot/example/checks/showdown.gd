# A two-player game for self-play over the bridge: --arenas N games at once (8 by default), each
# between a player of behaviour "showdowner?team=0" and one of "showdowner?team=1" (one policy, two
# sides, as ML-Agents names teams). Both see the game's target (one of 3, one-hot) and name a
# number; the one who names it alone wins (+1, the other -1), both or neither draw (0), and the game
# ends for both. Who always names the target wins 2 games in 3 against random play and draws the
# rest (scoring 5/6, a draw half); random play against random play scores 1/2.
extends Node

const Player = preload("res://checks/showdown_player.gd")
const Sync = preload("res://addons/sparring/sync.gd")

var rng := RandomNumberGenerator.new()
var arenas := []  # per game: {"target": int, "choices": {player: number}}


func _ready() -> void:
	$SparringSync.connect("reset_requested", self, "_on_reset_requested")
	for a in range(int(Sync.command_line_value("--arenas", "8"))):
		var arena := {"target": 0, "choices": {}}
		arenas.append(arena)
		for team in range(2):
			var player = Player.new()
			player.name = "Player%d_%d" % [a, team]
			player.behaviour_name = "showdowner?team=%d" % team
			player.observation_size = 3
			player.discrete_actions = 3
			player.arena = arena
			add_child(player)
	_on_reset_requested(0, {})


func _on_reset_requested(seed_value: int, _parameters: Dictionary) -> void:
	rng.seed = seed_value
	for arena in arenas:
		arena["target"] = rng.randi_range(0, 2)
		arena["choices"] = {}


# A player named `number`; the game is decided once both have.
func choose(arena: Dictionary, player, number: int) -> void:
	arena["choices"][player] = number
	if arena["choices"].size() < 2:
		return
	var hits := 0
	for p in arena["choices"]:
		hits += int(arena["choices"][p] == arena["target"])
	for p in arena["choices"]:
		if hits == 1:
			p.add_reward(1.0 if arena["choices"][p] == arena["target"] else -1.0)
		p.end_episode()
	arena["choices"] = {}
	arena["target"] = rng.randi_range(0, 2)  # the next game's, which both see in their final observation
