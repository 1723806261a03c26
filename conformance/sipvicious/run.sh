#!/usr/bin/env bash
# SIPVicious (Debian package sipvicious: svmap, svwar, svcrack) against `sipua serve` on loopback.
# Prints each command and its output, then the security gate's counters; RESULTS.md records a run.
#   conformance/sipvicious/run.sh
# The automated version with assertions is tests/security/test_sipvicious.py.
set -euo pipefail
cd "$(dirname "$0")/../.."
for tool in svmap svwar svcrack; do
  command -v "$tool" >/dev/null || { echo "$tool missing: apt-get install sipvicious" >&2; exit 2; }
done
WORK=$(mktemp -d)
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done; rm -rf "$WORK"; }
trap cleanup EXIT

export SIPUA_API_KEY=conformance-key-0123456789
PASSWORD='s3cret-9'
WORDS=(123456 password admin 1234 trunk letmein qwerty 000000 s3cret secret 12345678 "$PASSWORD" welcome abc123 passw0rd)
printf '%s\n' "${WORDS[@]}" > "$WORK/words.txt"

# start NAME [ENV=VALUE ...]: a sipua serve with authentication required and one user, MD5 first
# (SIPVicious computes MD5 only, from the first challenge it reads).
start() {
  local name=$1; shift
  env SIPUA_SECURITY__AUTH=required SIPUA_SECURITY__ALGORITHMS=MD5,SHA-256 \
    SIPUA_SECURITY__USERS="[{\"username\":\"trunk\",\"password\":\"$PASSWORD\"}]" "$@" \
    python3 -m sipua serve --host 127.0.0.1 --http-host 127.0.0.1 --sip-port 0 --tls-port 0 \
    --http-port 0 --data-dir "$WORK/$name" --log-format json > "$WORK/$name.ready" 2> "$WORK/$name.log" &
  PIDS+=($!)
  for _ in $(seq 100); do [ -s "$WORK/$name.ready" ] && break; sleep 0.1; done
}
port() { python3 -c "import json,sys; print(json.load(open(sys.argv[1]))['ports'][sys.argv[2]])" "$WORK/$1.ready" "$2"; }
state() { curl -s "http://127.0.0.1:$(port "$1" http)/v1/sip-security" -H "Authorization: Bearer $SIPUA_API_KEY"; echo; }
# Each tool binds its own local port (-P): svwar's INVITEs are never ACKed, and the 401s
# sipua retransmits to them (Timer G) must not reach another tool.
run() { echo "\$ $*"; "$@" 2>&1 | cut -c1-300 | sed 's/^/    /'; echo; }

start default                                                    # scanner User-Agents dropped (default)
start open SIPUA_SECURITY__SCANNER_USER_AGENTS='[]'              # scanners answered, bans on
start nobans SIPUA_SECURITY__SCANNER_USER_AGENTS='[]' SIPUA_SECURITY__MAX_AUTH_FAILURES=0

SID=$(curl -s -X POST "http://127.0.0.1:$(port open http)/v1/sessions" -H "Authorization: Bearer $SIPUA_API_KEY" \
  -H 'Content-Type: application/json' -d '{"mode":"echo"}' | python3 -c "import json,sys; print(json.load(sys.stdin)['id'])")
printf '%s\n' 100 1000 trunk admin "session_$SID" "$SID" > "$WORK/extensions.txt"

echo "== svmap, default configuration (scanner User-Agents dropped)"
run svmap 127.0.0.1 -p "$(port default udp)"
echo "== svmap, security.scanner_user_agents = []"
run svmap 127.0.0.1 -p "$(port open udp)"
echo "== svwar (REGISTER), dictionary holds a real session: session_$SID"
run svwar -P 5071 -d "$WORK/extensions.txt" 127.0.0.1 -p "$(port open udp)"
echo "== svwar --force -m INVITE"
run svwar -P 5072 --force -m INVITE -d "$WORK/extensions.txt" 127.0.0.1 -p "$(port open udp)"
echo "== svcrack, wordlist of ${#WORDS[@]} words, the real password is #12; max_auth_failures = 5"
run svcrack -P 5073 -u trunk -d "$WORK/words.txt" --maximumtime 2 -vv 127.0.0.1 -p "$(port open udp)"
echo "== gate state after svcrack"
state open
echo "== control: the same svcrack against a service that never bans (max_auth_failures = 0)"
run svcrack -P 5074 -u trunk -d "$WORK/words.txt" --maximumtime 2 127.0.0.1 -p "$(port nobans udp)"
state nobans
echo "== security log lines of the banning service"
grep '"logger": "sipua.security"' "$WORK/open.log" | head -20 | sed 's/^/    /'
