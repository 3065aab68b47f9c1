# Sourced by compare.sh, phases.sh, timeline.sh and daemon-memory.sh.

# ferry_bin [BIN]: sets FERRY to BIN if given, else to a release build of
# this checkout (built first, in FERRY_RELEASE_TARGET_DIR, default
# ~/.cache/ferry/target-release, kept apart from the tests' target dir).
ferry_bin() {
  if [[ -n "${1:-}" ]]; then
    FERRY="$1"
  else
    export CARGO_TARGET_DIR="${FERRY_RELEASE_TARGET_DIR:-$HOME/.cache/ferry/target-release}"
    cargo build --release --locked -p ferry --bin ferry >&2
    FERRY="$CARGO_TARGET_DIR/release/ferry"
  fi
}
