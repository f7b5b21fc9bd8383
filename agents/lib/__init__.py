"""Guide-compatible modules: see each module for what it re-exports."""
