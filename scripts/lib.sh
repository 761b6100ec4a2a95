# Shared helpers for scripts/*. Source it; do not run it.
# shellcheck shell=bash

XPGM_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
export XPGM_ROOT

# Seconds since the outermost script started (shown by log, to see where time goes).
: "${XPGM_T0:=$(date +%s)}"
export XPGM_T0
log() { printf '\033[1m==> [%ss] %s\033[0m\n' "$(($(date +%s) - XPGM_T0))" "$*" >&2; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

# need_pkgs PKG... : install missing Debian packages (idempotent, quick when present).
need_pkgs() {
    local missing=()
    local p
    for p in "$@"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep 'install ok installed' >/dev/null || missing+=("$p")
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    [ "$(id -u)" -eq 0 ] || die "missing packages ${missing[*]}: run as root or install them"
    log "installing ${missing[*]}"
    if [ ! -f /var/lib/apt/xpgm-updated ] || [ -z "$(ls -A /var/lib/apt/lists 2>/dev/null | grep -v lock)" ]; then
        apt-get update -qq && touch /var/lib/apt/xpgm-updated
    fi
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

# need_cargo_tool BIN CRATE : cargo install CRATE unless BIN is on PATH.
need_cargo_tool() {
    command -v "$1" >/dev/null 2>&1 && return 0
    log "cargo install $2"
    cargo install --locked -q "$2"
}
