"""spec: faster local LLM decoding with speculative execution."""

__version__ = "0.1.0"
