#!/usr/bin/env bash
# Calls per second: drive SIPp's built-in uac scenario (100 ms hold, 4 MiB socket buffers) at rising
# rates against a fresh `sipua serve` on loopback; report the highest clean rate (0 failed calls,
# retransmissions <= 1 % of calls) and sipua's CPU time per call.
#   bench/cps.sh [--uvloop] [--transport udp|tcp] [--rates "500 1000 2000 3000"] [--seconds 10]
set -euo pipefail
cd "$(dirname "$0")/.."
UVLOOP=""
TRANSPORT=udp
RATES="250 500 1000 1500 2000 2500 3000 4000 5000"
SECONDS_PER_RATE=10
while [ $# -gt 0 ]; do
  case "$1" in
    --uvloop) UVLOOP="--uvloop"; shift ;;
    --transport) TRANSPORT="$2"; shift 2 ;;
    --rates) RATES="$2"; shift 2 ;;
    --seconds) SECONDS_PER_RATE="$2"; shift 2 ;;
    *) echo "unknown option $1" >&2; exit 2 ;;
  esac
done
command -v sipp >/dev/null || { echo "sipp (Debian sip-tester) is needed" >&2; exit 2; }
WORK=$(mktemp -d)
trap 'kill $PID 2>/dev/null; wait $PID 2>/dev/null; [ -n "${KEEP:-}" ] || rm -rf "$WORK"' EXIT
export SIPUA_API_KEY=bench-key-0123456789abcdef
export SIPUA_SIP__MAX_CALLS_PER_SESSION=10000  # every call of the run goes to one session
export SIPUA_MEDIA__ENABLED=${SIPUA_MEDIA__ENABLED:-false}  # signalling only, unless asked (see docs/PERFORMANCE.md)
python3 -m sipua serve --host 127.0.0.1 --http-host 127.0.0.1 --sip-port 0 --tls-port 0 --http-port 0 \
  --data-dir "$WORK/data" --log-level warning $UVLOOP > "$WORK/ready" 2> "$WORK/serve.log" &
PID=$!
for _ in $(seq 100); do [ -s "$WORK/ready" ] && break; sleep 0.1; done
read -r HTTP SIP < <(python3 -c "import json,sys; p=json.loads(open(sys.argv[1]).readline())['ports']; print(p['http'], p['udp'])" "$WORK/ready")
SID=$(curl -s -X POST "http://127.0.0.1:$HTTP/v1/sessions" -H "Authorization: Bearer $SIPUA_API_KEY" \
  -H 'Content-Type: application/json' -d '{"mode":"ai_agent","source_language":"en"}' | python3 -c "import json,sys; print(json.load(sys.stdin)['id'])")
TFLAG=u1; [ "$TRANSPORT" = tcp ] && TFLAG=t1
cpu() { awk '{print $14+$15}' "/proc/$PID/stat"; }
HZ=$(getconf CLK_TCK)
echo "sipua pid $PID, session $SID, transport $TRANSPORT ${UVLOOP:-(asyncio loop)}"
printf "%8s %8s %8s %8s %10s %12s\n" rate calls failed retrans retrans% cpu_ms/call
BEST=0
for R in $RATES; do
  N=$((R * SECONDS_PER_RATE))
  C0=$(cpu)
  (cd "$WORK" && sipp -sn uac -s "session_$SID" "127.0.0.1:$SIP" -t $TFLAG -r "$R" -m "$N" -d 100 \
      -buff_size 4194304 -max_socket 1000 -nostdin -timeout $((SECONDS_PER_RATE * 4 + 30)) -timeout_error \
      -trace_stat -fd 1 -stf stat.csv > sipp.out 2>&1) || true
  C1=$(cpu)
  OK=$(grep -E "^\s+Successful call" "$WORK/sipp.out" | tail -1 | awk -F'|' '{gsub(/ /,"",$3); print $3}')
  FAILED=$(grep -E "^\s+Failed call" "$WORK/sipp.out" | tail -1 | awk -F'|' '{gsub(/ /,"",$3); print $3}')
  RETRANS=$(python3 - "$WORK/stat.csv" <<'PY'
import csv, sys
rows = list(csv.reader(open(sys.argv[1]), delimiter=";"))
col = rows[0].index("Retransmissions(C)")
print(rows[-1][col])
PY
)
  OK=${OK:-0}; FAILED=${FAILED:-$N}
  PCT=$(python3 -c "print(f'{100*$RETRANS/max($N,1):.2f}')")
  CPUMS=$(python3 -c "print(f'{1000*($C1-$C0)/$HZ/max($OK,1):.3f}')")
  printf "%8s %8s %8s %8s %10s %12s\n" "$R" "$OK" "$FAILED" "$RETRANS" "$PCT" "$CPUMS"
  rm -f "$WORK/stat.csv"
  if [ "$FAILED" = 0 ] && python3 -c "import sys; sys.exit(0 if $RETRANS <= 0.01*$N else 1)"; then
    BEST=$R
  else
    break
  fi
done
echo "highest clean rate: $BEST calls/s"
