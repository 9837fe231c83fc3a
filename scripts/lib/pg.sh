# shellcheck shell=bash
# Throwaway PostgreSQL server for tests and the demo. Meant to be sourced:
#   source scripts/lib/pg.sh; pg_start; ...; pg_stop
# pg_start exports DATABASE_URL, QF_PG_DIR and QF_PG_PORT. The server listens on
# 127.0.0.1 only, trusts every local connection (throwaway data) and lives in a
# mktemp directory that pg_stop deletes. This file does not change the caller's
# shell options (no set -e here); every function works with or without set -euo pipefail.

# Prints a TCP port on 127.0.0.1 that nothing answers on, below the kernel's ephemeral range:
# a port in that range can be taken by any outgoing connection (a load test opens thousands),
# and a server binding it later fails with "Address already in use".
qf_free_port() {
  local p lo=32768 from
  if [[ -r /proc/sys/net/ipv4/ip_local_port_range ]]; then
    read -r lo _ </proc/sys/net/ipv4/ip_local_port_range || lo=32768
  fi
  # At least 1,000 ports below the range; with a range starting lower than that, none is safe
  # from outgoing connections, and any port above 1024 will do.
  if ((lo > 2025)); then from=$((lo > 22025 ? lo - 20000 : 1025)); else from=1025 lo=65536; fi
  for p in $(shuf -i "$from-$((lo - 1))" -n 200); do
    if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
      echo "$p"
      return 0
    fi
  done
  echo "qf_free_port: no free port found" >&2
  return 1
}

# Prints the directory holding initdb/pg_ctl/postgres. On Debian pg_config (from
# libpq-dev) may name /usr/bin, so fall back to the newest /usr/lib/postgresql/*/bin.
_qf_pg_bindir() {
  local d=""
  if command -v pg_config >/dev/null 2>&1; then
    d=$(pg_config --bindir 2>/dev/null) || d=""
  fi
  if [[ -n $d && -x $d/initdb && -x $d/pg_ctl ]]; then
    echo "$d"
    return 0
  fi
  local c
  c=$(printf '%s\n' /usr/lib/postgresql/*/bin | sort -V | tail -n 1) || c=""
  if [[ -x $c/initdb && -x $c/pg_ctl ]]; then
    echo "$c"
    return 0
  fi
  echo "pg: PostgreSQL server binaries (initdb, pg_ctl) not found; run scripts/setup" >&2
  return 1
}

# Runs a command as the server's user: initdb/postgres refuse to run as root, so
# root uses the unprivileged 'postgres' account (from cwd /, which it can read).
_qf_pg_as() {
  if ((EUID == 0)); then
    (cd / && runuser -u postgres -- "$@")
  else
    "$@"
  fi
}

# Creates, starts and fills a fresh cluster with database 'quizflow' owned by role 'quizflow'.
pg_start() {
  if [[ -n ${QF_PG_DIR:-} ]]; then
    echo "pg_start: a server is already running in $QF_PG_DIR (call pg_stop first)" >&2
    return 1
  fi
  local bindir dir port="" started=0 _
  bindir=$(_qf_pg_bindir) || return 1
  if ((EUID == 0)) && ! id -u postgres >/dev/null 2>&1; then
    echo "pg_start: running as root but there is no 'postgres' user to run the server" >&2
    return 1
  fi
  dir=$(mktemp -d -t quizflow-pg.XXXXXX) || return 1
  # Exported at once so that pg_stop (e.g. from a trap) cleans up a half-started server.
  export QF_PG_DIR=$dir
  if ((EUID == 0)) && ! chown postgres: "$dir"; then
    _qf_pg_fail "cannot chown $dir to postgres"
    return 1
  fi

  if ! _qf_pg_as "$bindir/initdb" -A trust -U quizflow --encoding=UTF8 --locale=C \
    -D "$dir/data" >"$dir/initdb.out" 2>&1; then
    _qf_pg_fail "initdb failed" initdb.out
    return 1
  fi

  # Retry with another port if someone grabbed ours between the probe and the bind.
  for _ in 1 2 3; do
    port=$(qf_free_port) || break
    if _qf_pg_as "$bindir/pg_ctl" -w -t 60 -D "$dir/data" -l "$dir/log" \
      -o "-c listen_addresses=127.0.0.1 -p $port -k $dir -c max_connections=200 -c fsync=on -c synchronous_commit=on -c shared_buffers=256MB" \
      start >"$dir/pg_ctl.out" 2>&1; then
      started=1
      break
    fi
    grep -qE 'could not bind|Address already in use' "$dir/log" 2>/dev/null || break
  done
  if ((!started)); then
    _qf_pg_fail "server did not start" pg_ctl.out log
    return 1
  fi

  if ! _qf_pg_as "$bindir/createdb" -h 127.0.0.1 -p "$port" -U quizflow quizflow \
    >"$dir/createdb.out" 2>&1; then
    _qf_pg_fail "createdb quizflow failed" createdb.out log
    return 1
  fi

  export QF_PG_PORT=$port
  export DATABASE_URL="postgresql://quizflow@127.0.0.1:$port/quizflow"
  echo "postgres: started on 127.0.0.1:$port"
}

# Failure path of pg_start: prints the message and the tails of the named output files
# (tool output, server log), then cleans up. Usage: _qf_pg_fail MESSAGE [FILE...]
_qf_pg_fail() {
  local dir=${QF_PG_DIR:-} f
  echo "pg_start: $1" >&2
  shift
  for f in "$@"; do
    if [[ -n $dir && -s $dir/$f ]]; then
      echo "---- $f (last 30 lines) ----" >&2
      tail -n 30 "$dir/$f" >&2 || true
    fi
  done
  pg_stop >/dev/null 2>&1 || true
  return 1
}

# Stops the server started by pg_start and deletes its directory. Safe to call twice.
pg_stop() {
  [[ -n ${QF_PG_DIR:-} ]] || return 0
  local dir=$QF_PG_DIR bindir pid
  bindir=$(_qf_pg_bindir 2>/dev/null) || bindir=""
  if [[ -f $dir/data/postmaster.pid ]]; then
    if [[ -z $bindir ]] ||
      ! { _qf_pg_as "$bindir/pg_ctl" -D "$dir/data" -m fast -w -t 30 stop >/dev/null 2>&1 ||
        _qf_pg_as "$bindir/pg_ctl" -D "$dir/data" -m immediate -w -t 30 stop >/dev/null 2>&1; }; then
      # Last resort: kill our postmaster so it does not outlive its deleted directory.
      pid=$(head -n 1 "$dir/data/postmaster.pid" 2>/dev/null) || pid=""
      if [[ $pid =~ ^[0-9]+$ ]]; then
        echo "pg_stop: pg_ctl stop failed, killing postmaster $pid" >&2
        kill -9 "$pid" 2>/dev/null || true
      fi
    fi
  fi
  rm -rf "$dir"
  unset DATABASE_URL QF_PG_DIR QF_PG_PORT
  echo "postgres: stopped"
  return 0
}
