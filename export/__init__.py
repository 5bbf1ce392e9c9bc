"""ONNX export of trained policies for game engines (see the export issue)."""
