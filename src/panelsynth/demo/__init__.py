"""Demo workspace: a deterministic simulator of a FluPaths-like panel (SPEC §7)."""
