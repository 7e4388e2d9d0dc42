# Sourced by bin/run and bin/manage: the environment of the local, embedded set-up.
# Anything already set in the environment wins.
cd "$(dirname "${BASH_SOURCE[0]}")/.."
PY=.venv/bin/python
if [ ! -x "$PY" ]; then echo "No .venv yet: run 'make run' (or 'make venv') first" >&2; exit 1; fi

export VAR_DIR="${VAR_DIR:-$PWD/var}"
mkdir -p "$VAR_DIR"
# A local secret made once and kept out of git, so a fresh checkout starts without set-up.
if [ -z "${SECRET_KEY:-}" ]; then
  if [ ! -s "$VAR_DIR/secret-key" ]; then
    (umask 077; "$PY" -c 'import secrets; print(secrets.token_urlsafe(50))' > "$VAR_DIR/secret-key")
  fi
  SECRET_KEY="$(cat "$VAR_DIR/secret-key")"
  export SECRET_KEY
fi
export ALLOWED_HOSTS="${ALLOWED_HOSTS:-127.0.0.1,localhost}"
export PROMETHEUS_MULTIPROC_DIR="${PROMETHEUS_MULTIPROC_DIR:-$VAR_DIR/prometheus}"
mkdir -p "$PROMETHEUS_MULTIPROC_DIR"
# No allocator is preloaded: Debian's jemalloc measured 25-40% slower than glibc here (docs/performance.md).
