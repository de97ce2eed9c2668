# Sourced by scripts/test and .ci/run (after tools.sh). Installs the real clients the
# client tests drive (python-barbicanclient, the openstack CLI, Castellan, and
# schemathesis for the OpenAPI fuzzing), pinned in tests/clients/requirements.txt,
# into a virtualenv under .tools/venv, and python-barbicanclient's own functional
# tests from its PyPI sdist into .tools/barbicanclient. Exports:
#
#   KEYLEDGER_CLIENTS_PYTHON          the virtualenv's python
#   KEYLEDGER_BARBICANCLIENT_SDIST    the unpacked sdist (its functionaltests/)
#   KEYLEDGER_AWS_PYTHON              the python of .tools/venv-aws: boto3 and the aws
#                                     CLI (tests/clients/requirements-aws.txt)
#
# Requires python3 with venv and pip. Reinstalls only when the requirements change.

_kl_root="$(cd "$(dirname "${BASH_SOURCE[0]:-$0}")/.." && pwd)"

# _kl_venv_with VENV REQUIREMENTS: (re)creates VENV with REQUIREMENTS installed,
# unless the hash stamped in VENV says they are installed already.
_kl_venv_with() {
    local want
    want="$(sha256sum "$2" | cut -d' ' -f1)"
    if [ ! -x "$1/bin/python" ] || [ "$(cat "$1/.requirements.sha256" 2>/dev/null)" != "$want" ]; then
        echo "installing the Python packages of ${2#"$_kl_root"/} into $1" >&2
        rm -rf "$1"
        python3 -m venv "$1" >&2
        # Stamped only once everything installed: a failed install is tried again.
        # Without PYTHONPATH (scripts/tools.sh puts nats-py there): pip would take a
        # package found there as installed, and the venv would run without it.
        if ! env -u PYTHONPATH "$1/bin/python" -m pip install --quiet --disable-pip-version-check \
            -r "$2" >&2; then
            echo "installing ${2#"$_kl_root"/} failed; it is tried again next time" >&2
            rm -rf "$1"
            return 1
        fi
        echo "$want" > "$1/.requirements.sha256"
    fi
}

_kl_venv="$_kl_root/.tools/venv"
_kl_req="$_kl_root/tests/clients/requirements.txt"
_kl_venv_with "$_kl_venv" "$_kl_req"
export KEYLEDGER_CLIENTS_PYTHON="$_kl_venv/bin/python"

_kl_bc_version="$(sed -n 's/^python-barbicanclient==//p' "$_kl_req")"
_kl_sdist="$_kl_root/.tools/barbicanclient/python_barbicanclient-$_kl_bc_version"
if [ ! -d "$_kl_sdist/functionaltests" ]; then
    echo "fetching python-barbicanclient $_kl_bc_version's functional tests (its sdist, from PyPI)" >&2
    mkdir -p "$_kl_root/.tools/barbicanclient"
    "$_kl_venv/bin/python" -m pip download --quiet --disable-pip-version-check --no-binary :all: \
        --no-deps -d "$_kl_root/.tools/barbicanclient" "python-barbicanclient==$_kl_bc_version" >&2
    tar -xzf "$_kl_root/.tools/barbicanclient/python_barbicanclient-$_kl_bc_version.tar.gz" \
        -C "$_kl_root/.tools/barbicanclient"
fi
export KEYLEDGER_BARBICANCLIENT_SDIST="$_kl_sdist"
# boto3 and the aws CLI, in a venv of their own (awscli pins what the OpenStack
# clients need newer).
_kl_aws_venv="$_kl_root/.tools/venv-aws"
_kl_venv_with "$_kl_aws_venv" "$_kl_root/tests/clients/requirements-aws.txt"
export KEYLEDGER_AWS_PYTHON="$_kl_aws_venv/bin/python"
unset _kl_root _kl_venv _kl_req _kl_bc_version _kl_sdist _kl_aws_venv
unset -f _kl_venv_with
