"""Games made with the Godot RL Agents plugin, trained unchanged: its JSON-over-TCP protocol spoken from the trainer's side."""
