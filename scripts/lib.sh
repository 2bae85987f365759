# shellcheck shell=bash
# Sourced by the scripts in scripts/ and bench/ (never run): what they share.
#
#   install_packages PKG...       installs Debian packages (apt-get, through sudo
#                                 when not root; `apt-get update` once per script)
#   install_missing CMD:PKG...    installs PKG for each CMD that is not on the PATH
#   ensure_redis_server           redis-server, redis-cli and openssl
#   ensure_smtp_sink              aiosmtpd (PyPI) in target/smtp-venv, for the
#                                 SMTP server of the tests and the reliability
#                                 checks; sets $smtp_python
#   free_port                     prints a free TCP port on 127.0.0.1
#   make_work_dir                 sets $work to a temporary directory
#   start_throwaway_redis [DIR]   a redis-server without persistence on a free
#                                 port, its files in DIR (default $work); sets
#                                 $redis_port and $redis_pid
#   start_service [--release] [--wait live|ready] [--log FILE] [NAME=VALUE...]
#                                 builds target/debug (or release)/user-accounts,
#                                 starts it on a free port with these settings,
#                                 its output in FILE (default $work/service.log),
#                                 and waits until /health/ready (or live)
#                                 answers 200; sets $service_port, $service_pid,
#                                 $service_log
#   is_running PID                whether that process runs (a zombie does not)
#   stop_on_exit PID...           stopped when the script exits
#   remove_on_exit PATH...        removed when the script exits
#
# Sourcing it sets the script's EXIT trap: whatever the script exits through
# (an error, Ctrl-C, SIGTERM), every process registered is stopped, the most
# recent first (SIGTERM, then SIGKILL after 5 s), and every path removed. A
# script that sources it registers its own clean-ups with the two functions
# above instead of setting a trap of its own.

_exit_pids=()
_exit_paths=()
_apt_updated=""

stop_on_exit() { _exit_pids+=("$@"); }

is_running() {
    local stat
    stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
    stat=${stat##*) }
    [ "${stat%% *}" != Z ]
}
remove_on_exit() { _exit_paths+=("$@"); }

_on_exit() {
    local status=$? i pid
    trap - EXIT INT TERM
    for ((i = ${#_exit_pids[@]} - 1; i >= 0; i--)); do
        kill "${_exit_pids[i]}" 2>/dev/null || true
    done
    for pid in "${_exit_pids[@]}"; do
        for _ in $(seq 100); do
            is_running "$pid" || break
            sleep 0.05
        done
        kill -9 "$pid" 2>/dev/null || true
    done
    rm -rf "${_exit_paths[@]}"
    exit "$status"
}
trap _on_exit EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

install_packages() {
    [ $# -gt 0 ] || return 0
    local sudo=()
    if [ "$(id -u)" -ne 0 ]; then
        if ! command -v sudo >/dev/null 2>&1; then
            echo "cannot install $*: run 'apt-get install -y $*' as root" >&2
            exit 1
        fi
        sudo=(sudo)
    fi
    echo "installing Debian's $*" >&2
    if [ -z "$_apt_updated" ]; then
        "${sudo[@]}" apt-get update -qq
        _apt_updated=1
    fi
    "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}

install_missing() {
    local packages=() pair
    for pair in "$@"; do
        command -v "${pair%%:*}" >/dev/null 2>&1 || packages+=("${pair#*:}")
    done
    install_packages "${packages[@]}"
}

# The package may start a system-wide server; the scripts start their own.
ensure_redis_server() {
    install_missing redis-server:redis-server redis-cli:redis-tools openssl:openssl
}

ensure_smtp_sink() {
    local venv=target/smtp-venv
    smtp_python=$venv/bin/python
    if ! "$smtp_python" -c 'import aiosmtpd' 2>/dev/null; then
        python3 -m venv "$venv"
        "$venv/bin/pip" install --quiet "aiosmtpd==1.4.6"
    fi
}

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

make_work_dir() {
    if [ -z "${work:-}" ]; then
        work=$(mktemp -d)
        remove_on_exit "$work"
    fi
}

# shellcheck disable=SC2120 # DIR is optional
start_throwaway_redis() {
    local dir=${1:-}
    if [ -z "$dir" ]; then
        make_work_dir
        dir=$work
    fi
    mkdir -p "$dir"
    redis_port=$(free_port)
    redis-server --port "$redis_port" --bind 127.0.0.1 --save "" --appendonly no \
        --dir "$dir" --logfile "$dir/redis.log" >/dev/null &
    redis_pid=$!
    stop_on_exit "$redis_pid"
    for _ in $(seq 200); do
        redis-cli -p "$redis_port" ping >/dev/null 2>&1 && return 0
        is_running "$redis_pid" || break
        sleep 0.05
    done
    echo "redis-server on 127.0.0.1:$redis_port did not answer; its log ($dir/redis.log):" >&2
    tail -20 "$dir/redis.log" >&2
    exit 1
}

start_service() {
    local profile=debug health=ready
    service_log=""
    while [ $# -gt 0 ]; do
        case "$1" in
            --release) profile=release; shift ;;
            --wait) health=$2; shift 2 ;;
            --log) service_log=$2; shift 2 ;;
            *) break ;;
        esac
    done
    if [ -z "$service_log" ]; then
        make_work_dir
        service_log=$work/service.log
    fi
    if [ "$profile" = release ]; then
        cargo build --release --locked --bin user-accounts
    else
        cargo build --locked --bin user-accounts
    fi
    service_port=$(free_port)
    env ROCKET_ADDRESS=127.0.0.1 ROCKET_PORT="$service_port" "$@" \
        "target/$profile/user-accounts" >"$service_log" 2>&1 &
    service_pid=$!
    stop_on_exit "$service_pid"
    for _ in $(seq 200); do
        curl -fs "http://127.0.0.1:$service_port/health/$health" >/dev/null 2>&1 && return 0
        is_running "$service_pid" || break
        sleep 0.05
    done
    echo "the service did not answer /health/$health on 127.0.0.1:$service_port;" \
        "the end of its log ($service_log):" >&2
    tail -20 "$service_log" >&2
    exit 1
}
