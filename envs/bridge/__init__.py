"""The sparring bridge, trainer side: running game instances as envs over gRPC or framed TCP."""
