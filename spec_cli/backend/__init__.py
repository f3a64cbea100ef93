"""Model backends: the protocol in `base`, llama.cpp in `llama_cpp`."""
