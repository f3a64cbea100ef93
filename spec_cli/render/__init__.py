"""Renderers consume engine events: plain text for pipes, live colours for terminals, JSON."""
