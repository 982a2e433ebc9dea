"""Command module (filled in by its issue)."""
