"""Drafters propose continuations; the engine verifies them against the target."""
