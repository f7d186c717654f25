#!/usr/bin/env bash
# Fetches the CPU build of ONNX Runtime (libonnxruntime.so) that otonode's
# analysis loads at run time. ONNX Runtime is neither a Go module nor a Debian
# package; the npm package onnxruntime-node ships the official Linux x64 CPU
# library, so we take it from there (no install scripts run) and check its hash.
#
# usage: deploy/fetch-onnxruntime.sh [DEST_DIR]   (default third_party/onnxruntime)
# Afterwards point otonode at it: ORT_LIB=DEST_DIR/libonnxruntime.so.1
# A GPU site sets ORT_LIB to its own CUDA-enabled build instead.
set -euo pipefail
version=1.30.0
sha256=ffb75a925ba05e47b235bb66e3e3911714a80b328a9c9425539feb204aa32a23
dest=${1:-"$(dirname "$0")/../third_party/onnxruntime"}
lib="$dest/libonnxruntime.so.1"

if [ -f "$lib" ] && echo "$sha256  $lib" | sha256sum -c --status; then
	echo "onnxruntime $version already at $lib"
	exit 0
fi
command -v npm >/dev/null || { echo "fetch-onnxruntime: npm is needed (apt-get install npm)" >&2; exit 1; }
mkdir -p "$dest"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
(cd "$tmp" && npm pack --silent "onnxruntime-node@$version" >/dev/null)
tar -xzf "$tmp/onnxruntime-node-$version.tgz" -C "$tmp" package/bin/napi-v6/linux/x64/libonnxruntime.so.1
echo "$sha256  $tmp/package/bin/napi-v6/linux/x64/libonnxruntime.so.1" | sha256sum -c --status ||
	{ echo "fetch-onnxruntime: checksum mismatch" >&2; exit 1; }
install -m 0644 "$tmp/package/bin/napi-v6/linux/x64/libonnxruntime.so.1" "$lib"
echo "onnxruntime $version installed at $lib"
