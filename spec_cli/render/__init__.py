"""Renderers consume engine events: plain text for pipes, live colours for terminals, JSON."""


def counted(n: int, noun: str) -> str:
    """`n noun`, the noun plural (an added s) unless n is 1."""
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"
