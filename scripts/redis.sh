# Shared by scripts/serve and scripts/test: makes sure redis-server exists.
# shellcheck shell=bash

ensure_redis_server() {
    if command -v redis-server >/dev/null 2>&1 && command -v redis-cli >/dev/null 2>&1; then
        return
    fi
    echo "redis-server is missing; installing Debian's redis-server package" >&2
    local sudo=""
    if [ "$(id -u)" -ne 0 ]; then
        if ! command -v sudo >/dev/null 2>&1; then
            echo "cannot install redis-server: run 'apt-get install -y redis-server' as root" >&2
            exit 1
        fi
        sudo="sudo"
    fi
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq redis-server >/dev/null
    # The package may start a system-wide server; ours are started on demand.
}
