#!/usr/bin/env bash
# docker/tcnn/build.sh SRC WHEEL_DIR
#
# Builds the tinycudann PyTorch extension (tiny-cuda-nn's bindings/torch) as a wheel into WHEEL_DIR, from a pinned
# source without network: SRC is a tiny-cuda-nn checkout with its submodules (dependencies/cutlass, dependencies/fmt)
# or a .tar.gz of one, e.g. the vendored tiny-cuda-nn-src.tar.gz (commit 6ee3546, cutlass 82f5075, fmt fa2eb2d).
# The Docker images (--build-arg TCNN=with) and the GPU benchmarks use this script.
#
# Environment: TCNN_CUDA_ARCHITECTURES ("90", "80;86;89;90"; default: the visible GPU's), MAX_JOBS, CC/CXX.
# Needs: nvcc matching the CUDA of the installed PyTorch (the one that will import the wheel), setuptools, ninja.
#
# The extension must link libstdc++ dynamically. A C++ compiler that has no shared libstdc++ (`g++
# -print-file-name=libstdc++.so` prints a bare name; seen on the H200 machine's /opt/gcc wrapper) links a private
# static copy into the extension; its iostream locale facets then clash with the process's libstdc++ and the first
# forward pass segfaults (std::ostream << double in tcnn::bytes_to_string). This script then falls back to the
# system compiler (/usr/bin/gcc, /usr/bin/g++), and refuses a wheel whose extension does not link libstdc++.so.
set -euo pipefail
src=${1:?usage: build.sh SRC WHEEL_DIR}
out=${2:?usage: build.sh SRC WHEEL_DIR}
say() { echo "build-tcnn: $*" >&2; }

has_shared_libstdcxx() { [[ $("$1" -print-file-name=libstdc++.so) == /* ]]; }
cxx=${CXX:-c++}
if ! has_shared_libstdcxx "$cxx"; then
    if [[ -x /usr/bin/g++ ]] && has_shared_libstdcxx /usr/bin/g++; then
        say "$cxx has no shared libstdc++ (it would link a static copy that crashes tcnn); using /usr/bin/g++"
        export CC=/usr/bin/gcc CXX=/usr/bin/g++ CUDAHOSTCXX=/usr/bin/g++
    else
        say "$cxx has no shared libstdc++ and no system g++ has one; set CC/CXX to a compiler that does"
        exit 2
    fi
fi

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
if [[ -f $src ]]; then
    tar xzf "$src" -C "$work"
    root=$(dirname "$(find "$work" -maxdepth 3 -path '*/bindings/torch/setup.py' | head -n1)")
    root=${root%/bindings/torch}
else
    cp -a "$src" "$work/tcnn"
    root=$work/tcnn
fi
[[ -f $root/bindings/torch/setup.py && -d $root/dependencies/cutlass/include ]] \
    || { say "$src is not a tiny-cuda-nn source tree with its submodules"; exit 2; }

mkdir -p "$out"
(cd "$root/bindings/torch" && python3 -m pip wheel --no-build-isolation --no-deps -w "$work/wheel" .)
wheel=$(ls "$work"/wheel/tinycudann-*.whl)
mkdir -p "$work/check" && (cd "$work/check" && python3 -m zipfile -e "$wheel" .)
for so in "$work"/check/tinycudann_bindings/*.so; do
    ldd "$so" | grep -q 'libstdc++\.so' || { say "$(basename "$so") does not link libstdc++.so dynamically; refused"; exit 3; }
done
cp "$wheel" "$out/"
say "built $out/$(basename "$wheel")"
