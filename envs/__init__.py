"""Multi-agent environments: the batched env API and every source that produces it."""
