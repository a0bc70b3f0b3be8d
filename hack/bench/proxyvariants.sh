#!/usr/bin/env bash
# hack/bench/proxyvariants.sh: what two httputil.ReverseProxy settings cost per request, apart
# from any token work: a plain reverse proxy (hack/bench/proxyvariants, the sidecar's
# upstream transport tuning) with FlushInterval -1 (as internal/sidecar sets it) or 0, and
# with or without a BufferPool, in front of hack/bench/upstream, on 127.0.0.1 only.
# ROUNDS rounds, round-robin over the four variants, wrk -t2 -c64 -d${DURATION}s each;
# prints the median req/s and the proxy's CPU time per request. About 2 minutes.
# Raw outputs: bin/bench/results/proxyvariants-<timestamp>/. Benchmarking only.
set -euo pipefail
cd "$(dirname "$0")/../.."
BIN=$PWD/bin/bench
OUT=$BIN/results/proxyvariants-$(date -u +%Y%m%dT%H%M%SZ)
mkdir -p "$OUT"
ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-8}
BASE_PORT=${BASE_PORT:-18300}
command -v wrk >/dev/null || { apt-get install -y wrk || { apt-get update && apt-get install -y wrk; }; } >"$OUT/apt.log" 2>&1

PIDS=()
cleanup() {
	local p
	for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
	for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
}
trap cleanup EXIT
trap 'exit 130' INT TERM

port=$BASE_PORT
port_in_use() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
alloc_port() {
	while port_in_use "$port"; do port=$((port + 1)); done
	printf -v "$1" '%s' "$port"
	port=$((port + 1))
}
wait_port() {
	local i
	for i in $(seq 1 100); do port_in_use "$1" && return 0; sleep 0.1; done
	echo "nothing listens on 127.0.0.1:$1" >&2
	exit 1
}

go build -o "$BIN/bench-upstream" ./hack/bench/upstream
go build -o "$BIN/bench-proxyvariants" ./hack/bench/proxyvariants
alloc_port UP
"$BIN/bench-upstream" -addr "127.0.0.1:$UP" >"$OUT/upstream.log" 2>&1 &
PIDS+=("$!")
declare -A PORT PID
VARIANTS=(flush-1 flush-1+pool flush0 flush0+pool)
for v in "${VARIANTS[@]}"; do
	args=(-upstream "http://127.0.0.1:$UP")
	[[ $v == flush-1* ]] && args+=(-flush=-1ns)
	[[ $v == *+pool ]] && args+=(-buffer-pool)
	alloc_port p
	PORT[$v]=$p
	"$BIN/bench-proxyvariants" -listen "127.0.0.1:$p" "${args[@]}" >"$OUT/$v.log" 2>&1 &
	PIDS+=("$!")
	PID[$v]=$!
done
wait_port "$UP"
for v in "${VARIANTS[@]}"; do wait_port "${PORT[$v]}"; done

ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
for ((r = 1; r <= ROUNDS; r++)); do
	for ((i = 0; i < ${#VARIANTS[@]}; i++)); do
		v=${VARIANTS[$(((i + r - 1) % ${#VARIANTS[@]}))]}
		c0=$(ticks "${PID[$v]}")
		wrk -t2 -c64 -d"${DURATION}s" "http://127.0.0.1:${PORT[$v]}/" >"$OUT/$v-r$r.txt" 2>&1
		c1=$(ticks "${PID[$v]}")
		n=$(awk '/requests in/ {print $1}' "$OUT/$v-r$r.txt")
		rps=$(awk '/Requests\/sec/ {print $2}' "$OUT/$v-r$r.txt")
		cpu=$(awk -v d=$((c1 - c0)) -v n="$n" -v hz="$(getconf CLK_TCK)" 'BEGIN {printf "%.1f", d / hz * 1e6 / n}')
		echo "$r $v $rps $cpu $(cut -d' ' -f1 /proc/loadavg)" | tee -a "$OUT/results.tsv"
	done
done
median() { sort -g | awk '{a[NR]=$1} END {print (NR % 2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }
echo
echo "| variant | req/s (median) | proxy CPU µs/req (median) |"
echo "|---|---:|---:|"
for v in "${VARIANTS[@]}"; do
	echo "| $v | $(awk -v v="$v" '$2 == v {print $3}' "$OUT/results.tsv" | median) | $(awk -v v="$v" '$2 == v {print $4}' "$OUT/results.tsv" | median) |"
done | tee "$OUT/summary.md"
