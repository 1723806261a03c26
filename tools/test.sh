#!/usr/bin/env bash
# The test command (README.md, and what .ci/run calls): installs what the tests need on a fresh
# Debian machine — the Python package with its test extra, and the real SIP peers — then runs pytest.
# Extra arguments go to pytest (e.g. tools/test.sh tests/sip -x).
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PATH:/usr/sbin:/sbin"  # kamailio lives in /usr/sbin

# command:debian-package for every real peer or tool a test uses
peers=(sipp:sip-tester baresip:baresip sipsak:sipsak tshark:tshark svmap:sipvicious chromium:chromium kamailio:kamailio)
missing=()
for pair in "${peers[@]}"; do
  command -v "${pair%%:*}" >/dev/null 2>&1 || missing+=("${pair#*:}")
done
if [ ${#missing[@]} -gt 0 ]; then
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  export DEBIAN_FRONTEND=noninteractive
  echo "installing test peers: ${missing[*]}" >&2
  $sudo apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null \
    || { $sudo apt-get update -q >/dev/null && $sudo apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null; }
fi

python3 -m pip install -q --disable-pip-version-check -e '.[test]'
exec python3 -m pytest "$@"
