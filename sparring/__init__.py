"""sparring: train game NPCs that learn, and ship them to the game as ONNX."""

__version__ = "0.1.0"
