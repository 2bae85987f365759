# Shared by the scripts: makes sure redis-server (and, for the TLS tests,
# openssl) exist.
# shellcheck shell=bash

ensure_redis_server() {
    local packages=()
    command -v redis-server >/dev/null 2>&1 && command -v redis-cli >/dev/null 2>&1 ||
        packages+=(redis-server)
    command -v openssl >/dev/null 2>&1 || packages+=(openssl)
    if [ "${#packages[@]}" -eq 0 ]; then
        return
    fi
    echo "installing Debian's ${packages[*]}" >&2
    local sudo=""
    if [ "$(id -u)" -ne 0 ]; then
        if ! command -v sudo >/dev/null 2>&1; then
            echo "cannot install ${packages[*]}: run 'apt-get install -y ${packages[*]}' as root" >&2
            exit 1
        fi
        sudo="sudo"
    fi
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${packages[@]}" >/dev/null
    # The package may start a system-wide server; ours are started on demand.
}
