"""Games made with the Godot RL Agents plugin, trained unchanged: the plugin's JSON-over-TCP protocol, trainer side."""
