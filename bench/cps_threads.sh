#!/usr/bin/env bash
# CPU per call of each thread of `sipua serve` under one SIPp uac run (the event loop's thread
# against the event-log writer and any other), optionally with a py-spy profile of the run.
#   bench/cps_threads.sh [rate] [seconds]        e.g. bench/cps_threads.sh 1500 10
#   PROFILE=/tmp/serve.json bench/cps_threads.sh  py-spy speedscope profile (250 Hz) as well
set -euo pipefail
SPY=""
cd "$(dirname "$0")/.."
RATE=${1:-1500}
SECS=${2:-10}
command -v sipp >/dev/null || { echo "sipp (Debian sip-tester) is needed" >&2; exit 2; }
WORK=$(mktemp -d)
trap 'kill $PID 2>/dev/null; wait $PID 2>/dev/null; rm -rf "$WORK"' EXIT
export SIPUA_API_KEY=bench-key-0123456789abcdef
export SIPUA_SIP__MAX_CALLS_PER_SESSION=10000
export SIPUA_MEDIA__ENABLED=${SIPUA_MEDIA__ENABLED:-false}
python3 -m sipua serve --host 127.0.0.1 --http-host 127.0.0.1 --sip-port 0 --tls-port 0 --http-port 0 \
  --data-dir "$WORK/data" --log-level warning > "$WORK/ready" 2> "$WORK/serve.log" &
PID=$!
for _ in $(seq 100); do [ -s "$WORK/ready" ] && break; sleep 0.1; done
read -r HTTP SIP < <(python3 -c "import json,sys; p=json.loads(open(sys.argv[1]).readline())['ports']; print(p['http'], p['udp'])" "$WORK/ready")
SID=$(curl -s -X POST "http://127.0.0.1:$HTTP/v1/sessions" -H "Authorization: Bearer $SIPUA_API_KEY" \
  -H 'Content-Type: application/json' -d '{"mode":"ai_agent","source_language":"en"}' | python3 -c "import json,sys; print(json.load(sys.stdin)['id'])")
snap() { for t in /proc/$PID/task/*; do echo "$(basename "$t") $(tr ' ' _ < "$t/comm") $(awk '{print $14, $15}' "$t/stat")"; done | sort; }
snap > "$WORK/before"
if [ -n "${PROFILE:-}" ]; then
  py-spy record -p "$PID" -o "$PROFILE" -d $((SECS - 1)) -r 250 -f speedscope --nonblocking >/dev/null 2>&1 &
  SPY=$!
fi
(cd "$WORK" && sipp -sn uac -s "session_$SID" "127.0.0.1:$SIP" -r "$RATE" -m $((RATE * SECS)) -d 100 \
    -buff_size 4194304 -nostdin -timeout $((SECS * 4 + 30)) > sipp.out 2>&1) || true
snap > "$WORK/after"
grep -E "Successful call|Failed call" "$WORK/sipp.out" | tail -2
HZ=$(getconf CLK_TCK)
join -a 2 -e 0 -o 0,2.2,1.3,1.4,2.3,2.4 "$WORK/before" "$WORK/after" |
  awk -v n=$((RATE * SECS)) -v hz="$HZ" '{u=$5-$3; s=$6-$4; if (u+s>0) printf "thread %s %-16s user %.3f  system %.3f ms per call\n", $1, $2, 1000*u/hz/n, 1000*s/hz/n}'
[ -z "${SPY:-}" ] || wait "$SPY"
