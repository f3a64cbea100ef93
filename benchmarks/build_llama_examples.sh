#!/usr/bin/env bash
# Build llama.cpp's `llama-lookup` and `llama-speculative-simple` examples from the
# llama.cpp that the installed llama-cpp-python vendors (same kernels as `spec`), for
# `speed.py --llama-lookup` and `--llama-speculative`.
#   bash benchmarks/build_llama_examples.sh [DIR]   # prints the binaries' folder; ~5 min on 2 cores
set -euo pipefail
dir="${1:-${TMPDIR:-/tmp}/spec-llama-lookup}"
version="$(python -c 'import importlib.metadata as m; print(m.version("llama_cpp_python"))')"
mkdir -p "$dir"
cd "$dir"
if [ ! -d "llama_cpp_python-$version" ]; then
    python -m pip download --quiet --no-deps --no-binary :all: "llama-cpp-python==$version" -d .
    tar xzf "llama_cpp_python-$version.tar.gz"
fi
src="llama_cpp_python-$version/vendor/llama.cpp"
cmake -S "$src" -B "$src/build" -DCMAKE_BUILD_TYPE=Release -DGGML_NATIVE=ON -DLLAMA_CURL=OFF \
    -DLLAMA_OPENSSL=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_SERVER=OFF >/dev/null
cmake --build "$src/build" -j "$(nproc)" --target llama-lookup llama-speculative-simple >/dev/null
echo "$dir/$src/build/bin"
