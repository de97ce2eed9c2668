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
_kl_venv="$_kl_root/.tools/venv"
_kl_req="$_kl_root/tests/clients/requirements.txt"
_kl_stamp="$_kl_venv/.requirements.sha256"
_kl_want="$(sha256sum "$_kl_req" | cut -d' ' -f1)"
if [ ! -x "$_kl_venv/bin/python" ] || [ "$(cat "$_kl_stamp" 2>/dev/null)" != "$_kl_want" ]; then
    echo "installing the client tests' Python packages into $_kl_venv (tests/clients/requirements.txt)" >&2
    rm -rf "$_kl_venv"
    python3 -m venv "$_kl_venv" >&2
    "$_kl_venv/bin/python" -m pip install --quiet --disable-pip-version-check -r "$_kl_req" >&2
    echo "$_kl_want" > "$_kl_stamp"
fi
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
_kl_aws_req="$_kl_root/tests/clients/requirements-aws.txt"
_kl_aws_want="$(sha256sum "$_kl_aws_req" | cut -d' ' -f1)"
if [ ! -x "$_kl_aws_venv/bin/python" ] || [ "$(cat "$_kl_aws_venv/.requirements.sha256" 2>/dev/null)" != "$_kl_aws_want" ]; then
    echo "installing boto3 and the aws CLI into $_kl_aws_venv (tests/clients/requirements-aws.txt)" >&2
    rm -rf "$_kl_aws_venv"
    python3 -m venv "$_kl_aws_venv" >&2
    "$_kl_aws_venv/bin/python" -m pip install --quiet --disable-pip-version-check -r "$_kl_aws_req" >&2
    echo "$_kl_aws_want" > "$_kl_aws_venv/.requirements.sha256"
fi
export KEYLEDGER_AWS_PYTHON="$_kl_aws_venv/bin/python"
unset _kl_root _kl_venv _kl_req _kl_stamp _kl_want _kl_bc_version _kl_sdist
unset _kl_aws_venv _kl_aws_req _kl_aws_want
