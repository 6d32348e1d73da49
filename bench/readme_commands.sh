#!/usr/bin/env bash
# Times the README's two commands (the ones .ci/run runs) as a new user meets them: a fresh clone of this
# repository's committed HEAD, a new venv, an empty pip cache. Prints each command's wall time, its CPU time,
# and the machine's load while it ran (the mean of the 1-minute load average, sampled every 5 s).
# Usage: bash bench/readme_commands.sh [first|both]   (default: both)
set -euo pipefail
source_dir="$(cd "$(dirname "$0")/.." && pwd)"
which="${1:-both}"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
git clone -q "$source_dir" "$work/delegate-mcp"
cd "$work/delegate-mcp"
export PIP_CACHE_DIR="$work/pip-cache"  # empty: every package is downloaded, every build runs
mapfile -t commands < <(grep -E '^(python3 |\.venv/)' .ci/run)

run_timed() {
    local label="$1" command="$2" samples="$work/load-$1" times="$work/time-$1"
    (while sleep 5; do cut -d' ' -f1 /proc/loadavg >> "$samples"; done) &
    local sampler=$!
    /usr/bin/time -o "$times" -f '%e %U %S' bash -c "$command" > "$work/$label.out" 2> "$work/$label.err" || {
        kill "$sampler"; echo "$label failed:"; tail -20 "$work/$label.err"; exit 1; }
    kill "$sampler"
    read -r wall user system < "$times"
    # CPU time (user + system, this command and its children) is what a quiet machine's wall time approaches.
    printf '%s: %.0f s wall, %.0f s CPU; mean load %s on %s cores; %s\n' "$label" "$wall" \
        "$(echo "$user + $system" | bc)" "$(awk '{s += $1} END {printf "%.1f", NR ? s / NR : 0}' "$samples")" \
        "$(nproc)" "$(date -u '+%Y-%m-%d %H:%M UTC')"
    echo "  \$ $command"
    echo "  last line of stdout: $(tail -1 "$work/$label.out")"
    echo "  last line of stderr: $(tail -1 "$work/$label.err")"
}

run_timed first "${commands[0]}"
echo "  pip's cache after it (what was downloaded): $(du -sm "$PIP_CACHE_DIR" | cut -f1) MB"
[ "$which" = first ] || run_timed tests "${commands[1]}"
