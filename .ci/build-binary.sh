#!/bin/sh
# Builds the operator binary and copies it to OUT/expensify-operator: the Dockerfile's build
# step (target/ is a cache mount there, so the binary must be copied out of it), replayed by
# CI through .ci/image.py.
#   sh .ci/build-binary.sh [PROFILE] [OUT]     # PROFILE: release (default) or dev
set -eu
profile=${1:-release}
out=${2:-out}
cargo build --locked --profile "$profile" --bin expensify-operator
# Cargo names the dev profile's directory `debug`.
case $profile in dev) dir=debug ;; *) dir=$profile ;; esac
mkdir -p "$out"
cp "${CARGO_TARGET_DIR:-target}/$dir/expensify-operator" "$out/expensify-operator"
