"""The bridge protocol's .proto files and generated Python code (see the bridge issue)."""
