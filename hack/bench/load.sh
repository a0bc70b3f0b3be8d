#!/usr/bin/env bash
# hack/bench/load.sh: HTTP load benchmark of the Keyward verifier sidecar against
# oauth2-proxy, a minimal golang-jwt reverse proxy and no proxy, all in front of the same
# upstream, on loopback (127.0.0.1) only. Benchmarking only; results are documented in
# docs/benchmarks.md.
#
# One invocation (about 8-9 minutes with the defaults, tools already installed):
#   1. installs what is missing: wrk (apt-get), oauth2-proxy and vegeta (go install into
#      bin/bench), and builds the verifier and hack/bench/{upstream,issuer,jwtproxy};
#   2. starts the upstream, the OIDC issuer stub (which writes the tokens, the JWKS and the
#      sidecar's bundle directory), and the targets:
#        keyward          verifier serve, verified-token cache on (default --cache-size)
#        keyward-nocache  verifier serve --cache-size 0 (every request verifies the signature)
#        oauth2-proxy     oauth2-proxy validating bearer JWTs against the issuer stub
#        jwtproxy         hack/bench/jwtproxy (golang-jwt/jwt/v5 + httputil.ReverseProxy)
#        none             the upstream itself
#      and checks each one with curl (valid token 200, no token and bad tokens 401/403);
#   3. saturation: ROUNDS rounds, round-robin over the targets (the order rotates each
#      round), wrk -t$SAT_THREADS -c$SAT_CONNS -d${SAT_DURATION}s with hack/bench/tokens.lua;
#      right after each proxy target's wrk run, vegeta drives it as fast as $SAT_CONNS
#      workers go for ${VSAT_DURATION}s ("vegeta saturation");
#   4. half-rate latency: ROUNDS rounds, round-robin; each proxy target is attacked by
#      vegeta at a constant rate of HALF x its median vegeta saturation (workers capped at
#      SAT_CONNS), immediately followed by the upstream alone at the same rate (the paired
#      baseline); added latency = target minus that baseline, per pair, median over the
#      rounds. The half rate is based on vegeta's saturation, not wrk's: on 2 shared cores
#      the load generator's CPU counts, and vegeta spends several times wrk's per request;
#   5. low-concurrency probe: ROUNDS rounds, round-robin, wrk -t1 -c$PROBE_CONNS
#      -d${PROBE_DURATION}s (not rate-limited: the fallback when vegeta is missing, and a
#      second view of the latency); added = target minus none, same round;
#   6. prints a summary (also bin/bench/results/<timestamp>/summary.md) next to the raw
#      outputs.
#
# Knobs (environment): ROUNDS=3 SAT_DURATION=10 SAT_THREADS=2 SAT_CONNS=64 VSAT_DURATION=5 LAT_DURATION=8
# HALF=0.5 PROBE_CONNS=4 PROBE_DURATION=5 NTOKENS=1000 BASE_PORT=18100
# TARGETS="keyward keyward-nocache oauth2-proxy jwtproxy none".
set -euo pipefail

cd "$(dirname "$0")/../.."
ROOT=$PWD
BIN=$ROOT/bin/bench
STAMP=$(date -u +%Y%m%dT%H%M%SZ)
OUT=$BIN/results/$STAMP
mkdir -p "$OUT"

ROUNDS=${ROUNDS:-3}
SAT_DURATION=${SAT_DURATION:-10}
SAT_THREADS=${SAT_THREADS:-2}
SAT_CONNS=${SAT_CONNS:-64}
LAT_DURATION=${LAT_DURATION:-8}
VSAT_DURATION=${VSAT_DURATION:-5}
HALF=${HALF:-0.5}
NTOKENS=${NTOKENS:-1000}
BASE_PORT=${BASE_PORT:-18100}
PROBE_CONNS=${PROBE_CONNS:-4}
PROBE_DURATION=${PROBE_DURATION:-5}
TARGETS=${TARGETS:-keyward keyward-nocache oauth2-proxy jwtproxy none}
read -r -a TARGET_LIST <<<"$TARGETS"
OAUTH2_PROXY_VERSION=v7.15.6
VEGETA_VERSION=v12.13.0
AUDIENCE=keyward-bench

log() { printf '[%s] %s\n' "$(date -u +%H:%M:%S)" "$*" | tee -a "$OUT/log.txt" >&2; }
die() { log "ERROR: $*"; exit 1; }

# ---- processes: every one we start is recorded and stopped by its PID -------------------
PIDS=()
NAMES=()
cleanup() {
	local i
	for i in "${!PIDS[@]}"; do
		kill "${PIDS[$i]}" 2>/dev/null || true
	done
	for i in "${!PIDS[@]}"; do
		wait "${PIDS[$i]}" 2>/dev/null || true
	done
}
trap cleanup EXIT
trap 'exit 130' INT TERM

declare -A PID_OF
start() { # start NAME CMD...: runs CMD in the background, output to $OUT/NAME.log
	local name=$1
	shift
	"$@" >"$OUT/$name.log" 2>&1 &
	PIDS+=("$!")
	NAMES+=("$name")
	PID_OF[$name]=$!
	log "started $name (pid $!): $*"
}

# ---- ports: loopback, below the ephemeral range, skipping any in use ----------------------
next_port=$BASE_PORT
port_in_use() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
alloc_port() { # alloc_port VAR
	while port_in_use "$next_port"; do next_port=$((next_port + 1)); done
	printf -v "$1" '%s' "$next_port"
	next_port=$((next_port + 1))
}

check_alive() { # every process we started must still run
	local i
	for i in "${!PIDS[@]}"; do
		if ! kill -0 "${PIDS[$i]}" 2>/dev/null; then
			tail -5 "$OUT/${NAMES[$i]}.log" >&2 || true
			die "${NAMES[$i]} (pid ${PIDS[$i]}) exited; see $OUT/${NAMES[$i]}.log"
		fi
	done
}
wait_http() { # wait_http URL [WANT_CODE]: until URL answers (WANT_CODE if given), 30 s max
	local url=$1 want=${2:-} code i
	for i in $(seq 1 300); do
		check_alive
		code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 1 "$url" || true)
		if [[ $code != 000 && (-z $want || $code == "$want") ]]; then return 0; fi
		sleep 0.1
	done
	die "$url did not answer${want:+ $want} within 30 s"
}

median() { sort -g | awk '{a[NR]=$1} END {if (NR == 0) {print "nan"} else if (NR % 2) {print a[(NR+1)/2]} else {print (a[NR/2]+a[NR/2+1])/2}}'; }
field() { # field NAME FILE: value of NAME=... on the RESULT line
	grep -m1 '^RESULT ' "$2" | tr ' ' '\n' | awk -F= -v k="$1" '$1 == k {print $2}'
}
cpu_ticks() { # user+system clock ticks of a process
	awk '{print $14 + $15}' "/proc/$1/stat"
}
loadavg() { cut -d' ' -f1-3 /proc/loadavg; }

# ---- 1. tools ----------------------------------------------------------------------------
mkdir -p "$BIN"
if ! command -v wrk >/dev/null; then
	log "installing wrk (apt-get)"
	if ! apt-get install -y wrk >"$OUT/apt.log" 2>&1; then
		apt-get update >>"$OUT/apt.log" 2>&1
		apt-get install -y wrk >>"$OUT/apt.log" 2>&1 || die "could not install wrk (see $OUT/apt.log)"
	fi
fi
if [[ ! -x $BIN/oauth2-proxy ]]; then
	log "installing oauth2-proxy $OAUTH2_PROXY_VERSION (go install, a few minutes)"
	GOBIN=$BIN go install "github.com/oauth2-proxy/oauth2-proxy/v7@$OAUTH2_PROXY_VERSION"
fi
USE_VEGETA=1
if [[ ! -x $BIN/vegeta ]]; then
	log "installing vegeta $VEGETA_VERSION (go install)"
	if ! GOBIN=$BIN go install "github.com/tsenart/vegeta/v12@$VEGETA_VERSION" >"$OUT/vegeta-install.log" 2>&1; then
		log "vegeta could not be installed: only the fixed-concurrency wrk probe measures latency"
		USE_VEGETA=0
	fi
fi
log "building the verifier and hack/bench programs"
go build -o "$BIN/verifier" ./cmd/verifier
go build -o "$BIN/bench-upstream" ./hack/bench/upstream
go build -o "$BIN/bench-issuer" ./hack/bench/issuer
go build -o "$BIN/bench-jwtproxy" ./hack/bench/jwtproxy

{
	echo "date: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
	echo "nproc: $(nproc)"
	echo "cpu: $(awk -F': ' '/model name/ {print $2; exit}' /proc/cpuinfo)"
	echo "kernel: $(uname -srm)"
	echo "go: $(go version)"
	echo "wrk: $(wrk -v 2>&1 | head -1)"
	# go install leaves the version strings of both "undefined"/empty: the pinned versions.
	echo "oauth2-proxy: $OAUTH2_PROXY_VERSION (go install; $("$BIN/oauth2-proxy" --version 2>&1 | head -1))"
	[[ $USE_VEGETA == 1 ]] && echo "vegeta: $VEGETA_VERSION (go install)"
	echo "loadavg at start: $(loadavg)"
	echo "settings: ROUNDS=$ROUNDS SAT_DURATION=$SAT_DURATION SAT_THREADS=$SAT_THREADS SAT_CONNS=$SAT_CONNS VSAT_DURATION=$VSAT_DURATION LAT_DURATION=$LAT_DURATION HALF=$HALF PROBE_CONNS=$PROBE_CONNS PROBE_DURATION=$PROBE_DURATION NTOKENS=$NTOKENS TARGETS=\"$TARGETS\""
} >"$OUT/machine.txt"
cat "$OUT/machine.txt" >&2

# ---- 2. servers --------------------------------------------------------------------------
alloc_port UP_PORT
alloc_port ISS_PORT
alloc_port KW_PORT
alloc_port KW_ADMIN
alloc_port KWN_PORT
alloc_port KWN_ADMIN
alloc_port O2_PORT
alloc_port JP_PORT
UPSTREAM=http://127.0.0.1:$UP_PORT
ISSUER=http://127.0.0.1:$ISS_PORT
DATA=$OUT/data

start upstream "$BIN/bench-upstream" -addr "127.0.0.1:$UP_PORT"
start issuer "$BIN/bench-issuer" -addr "127.0.0.1:$ISS_PORT" -out "$DATA" -n "$NTOKENS" -audience "$AUDIENCE"
wait_http "$UPSTREAM/" 200
wait_http "$ISSUER/.well-known/openid-configuration" 200
[[ -s $DATA/tokens.txt && -L $DATA/bundle/bundle.json ]] || die "the issuer wrote no tokens or bundle"

start keyward "$BIN/verifier" serve --listen "127.0.0.1:$KW_PORT" --admin-listen "127.0.0.1:$KW_ADMIN" \
	--upstream "$UPSTREAM" --bundle-dir "$DATA/bundle" --audit-file "$OUT/keyward-audit.jsonl"
start keyward-nocache "$BIN/verifier" serve --listen "127.0.0.1:$KWN_PORT" --admin-listen "127.0.0.1:$KWN_ADMIN" \
	--upstream "$UPSTREAM" --bundle-dir "$DATA/bundle" --cache-size 0 --audit-file "$OUT/keyward-nocache-audit.jsonl"
# oauth2-proxy: validate bearer JWTs (--skip-jwt-bearer-tokens) with the OIDC provider's
# verifier (issuer discovery, JWKS from the discovered jwks_uri, algorithms from
# id_token_signing_alg_values_supported, aud == --client-id through --oidc-audience-claim
# aud) and never start a login: --bearer-token-login-fallback=false answers an invalid JWT
# with 403, --api-route='^/' answers a missing one with 401 instead of a redirect. Request
# and auth logging are off: the sidecar does not log accepted requests either. Everything
# else is oauth2-proxy's default (e.g. --pass-user-headers, its upstream transport).
COOKIE_SECRET=$(head -c 24 /dev/urandom | base64 | tr '+/' '-_' | head -c 32)
start oauth2-proxy "$BIN/oauth2-proxy" \
	--http-address="127.0.0.1:$O2_PORT" \
	--upstream="$UPSTREAM/" \
	--provider=oidc \
	--oidc-issuer-url="$ISSUER" \
	--client-id="$AUDIENCE" \
	--client-secret=bench-secret \
	--cookie-secret="$COOKIE_SECRET" \
	--cookie-secure=false \
	--email-domain='*' \
	--skip-jwt-bearer-tokens=true \
	--bearer-token-login-fallback=false \
	--api-route='^/' \
	--skip-provider-button=true \
	--insecure-oidc-allow-unverified-email=true \
	--oidc-audience-claim=aud \
	--reverse-proxy=false \
	--request-logging=false \
	--auth-logging=false \
	--redirect-url="http://127.0.0.1:$O2_PORT/oauth2/callback"
start jwtproxy "$BIN/bench-jwtproxy" -listen "127.0.0.1:$JP_PORT" -upstream "$UPSTREAM" \
	-jwks "$DATA/jwks.json" -issuer "$ISSUER" -audience "$AUDIENCE"

wait_http "http://127.0.0.1:$KW_ADMIN/readyz" 200
wait_http "http://127.0.0.1:$KWN_ADMIN/readyz" 200
wait_http "http://127.0.0.1:$O2_PORT/ping" 200
wait_http "http://127.0.0.1:$JP_PORT/"

declare -A URL=(
	[keyward]="http://127.0.0.1:$KW_PORT/"
	[keyward-nocache]="http://127.0.0.1:$KWN_PORT/"
	[oauth2-proxy]="http://127.0.0.1:$O2_PORT/"
	[jwtproxy]="http://127.0.0.1:$JP_PORT/"
	[none]="$UPSTREAM/"
)
declare -A PROC=([keyward]=keyward [keyward-nocache]=keyward-nocache [oauth2-proxy]=oauth2-proxy [jwtproxy]=jwtproxy [none]=upstream)
for t in "${TARGET_LIST[@]}"; do [[ -n ${URL[$t]:-} ]] || die "unknown target $t"; done

# ---- correctness: the targets must accept and refuse the same tokens ---------------------
TOKEN=$(head -1 "$DATA/tokens.txt")
code() { curl -s -o "$OUT/curl-body.txt" -w '%{http_code}' --max-time 5 "$@"; }
failed=0
for t in "${TARGET_LIST[@]}"; do
	[[ $t == none ]] && continue
	u=${URL[$t]}
	c=$(code -H "Authorization: Bearer $TOKEN" "$u")
	body=$(cat "$OUT/curl-body.txt")
	echo "$t valid-token $c $body" >>"$OUT/checks.txt"
	[[ $c == 200 && $body == ok ]] || { log "CHECK FAILED: $t valid token -> $c $body"; failed=1; }
	c=$(code "$u")
	echo "$t no-token $c" >>"$OUT/checks.txt"
	[[ $c == 401 || $c == 403 ]] || { log "CHECK FAILED: $t no token -> $c"; failed=1; }
	while read -r label bad; do
		c=$(code -H "Authorization: Bearer $bad" "$u")
		echo "$t $label $c" >>"$OUT/checks.txt"
		[[ $c == 401 || $c == 403 ]] || { log "CHECK FAILED: $t $label -> $c"; failed=1; }
	done <"$DATA/bad-tokens.txt"
done
column -t "$OUT/checks.txt" >&2 || cat "$OUT/checks.txt" >&2
[[ $failed == 0 ]] || die "a target does not accept/refuse the tokens as expected; not measuring"

# vegeta_run URL RATE DURATION OUTFILE: one vegeta attack rotating through the tokens;
# RATE 0 means as fast as SAT_CONNS workers go (vegeta's own saturation). Workers are
# always capped at SAT_CONNS: a target that falls behind a constant rate then shows as an
# achieved throughput below the rate instead of an ever-growing number of connections.
# Prints "p50_us p99_us achieved_rps success% vegeta_cpu_us_per_req".
vegeta_run() {
	local url=$1 rate=$2 duration=$3 f=$4
	local tg
	tg=$OUT/vegeta-targets-$(echo "$url" | tr -c 'a-z0-9' '_').txt
	if [[ ! -s $tg ]]; then
		awk -v u="$url" 'NF {printf "GET %s\nAuthorization: Bearer %s\n\n", u, $1}' "$DATA/tokens.txt" >"$tg"
	fi
	echo "loadavg-before: $(loadavg)" >"$f"
	local TIMEFORMAT='%U %S' cpu r=$rate
	[[ $rate == 0 ]] || r=$rate/s
	cpu=$({ time "$BIN/vegeta" attack -targets="$tg" -rate="$r" -duration="${duration}s" -timeout=10s \
		-max-workers="$SAT_CONNS" >"$f.bin" 2>>"$f"; } 2>&1)
	"$BIN/vegeta" report -type=json <"$f.bin" >"$f.json"
	"$BIN/vegeta" report <"$f.bin" >>"$f"
	rm -f "$f.bin"
	local p50 p99 thr ok n
	p50=$(grep -o '"50th":[0-9]*' "$f.json" | cut -d: -f2)
	p99=$(grep -o '"99th":[0-9]*' "$f.json" | cut -d: -f2)
	thr=$(grep -o '"throughput":[0-9.e+-]*' "$f.json" | cut -d: -f2)
	ok=$(grep -o '"success":[0-9.e+-]*' "$f.json" | cut -d: -f2)
	n=$(grep -o '"requests":[0-9]*' "$f.json" | cut -d: -f2)
	echo "vegeta CPU (user sys, s): $cpu" >>"$f"
	awk -v a="$p50" -v b="$p99" -v c="$thr" -v d="$ok" -v cpu="$cpu" -v n="$n" \
		'BEGIN {split(cpu, x, " "); printf "%.0f %.0f %.0f %.2f %.1f\n", a / 1000, b / 1000, c, d * 100, n ? (x[1] + x[2]) * 1e6 / n : 0}'
}

# ---- 3. saturation -----------------------------------------------------------------------
rotate() { # rotate N: the target list rotated left by N
	local n=${#TARGET_LIST[@]} i
	for ((i = 0; i < n; i++)); do printf '%s\n' "${TARGET_LIST[$(((i + $1) % n))]}"; done
}

log "warm-up: 2 s per target"
for t in "${TARGET_LIST[@]}"; do
	wrk -t1 -c8 -d2s -s hack/bench/tokens.lua "${URL[$t]}" -- "$DATA/tokens.txt" >"$OUT/warmup-$t.txt" 2>&1
done

log "saturation: $ROUNDS rounds x ${#TARGET_LIST[@]} targets, wrk -t$SAT_THREADS -c$SAT_CONNS -d${SAT_DURATION}s (load $(loadavg))"
for ((r = 1; r <= ROUNDS; r++)); do
	for t in $(rotate $((r - 1))); do
		f=$OUT/sat-$t-r$r.txt
		pid=${PID_OF[${PROC[$t]}]}
		c0=$(cpu_ticks "$pid")
		echo "loadavg-before: $(loadavg)" >"$f"
		wrk -t"$SAT_THREADS" -c"$SAT_CONNS" -d"${SAT_DURATION}s" --latency -s hack/bench/tokens.lua "${URL[$t]}" -- "$DATA/tokens.txt" >>"$f" 2>&1
		c1=$(cpu_ticks "$pid")
		check_alive
		reqs=$(field requests "$f")
		# CPU time of the target's own process per request (ticks are 10 ms).
		cpu_us=$(awk -v d="$((c1 - c0))" -v n="$reqs" -v hz="$(getconf CLK_TCK)" 'BEGIN {printf "%.1f", n ? d / hz * 1e6 / n : 0}')
		echo "CPU cpu_us_per_req=$cpu_us ticks=$((c1 - c0))" >>"$f"
		echo "$r $t $(field rps "$f") $(field p50_us "$f") $(field p99_us "$f") $(field non2xx "$f") $(field sock_errors "$f") $cpu_us" >>"$OUT/sat.tsv"
		log "  r$r $t: $(field rps "$f") req/s, p50 $(field p50_us "$f") us, p99 $(field p99_us "$f") us, non-2xx $(field non2xx "$f"), socket errors $(field sock_errors "$f"), target CPU $cpu_us us/req"
		if [[ $USE_VEGETA == 1 && $t != none ]]; then
			# The same target driven by vegeta as fast as it goes: the basis of the half rate
			# (vegeta costs far more CPU per request than wrk, on the same 2 cores).
			read -r _ _ vthr vok vcpu < <(vegeta_run "${URL[$t]}" 0 "$VSAT_DURATION" "$OUT/vsat-$t-r$r.txt")
			echo "$r $t $vthr $vok $vcpu" >>"$OUT/vsat.tsv"
			log "  r$r $t: vegeta saturation $vthr req/s (success $vok%, vegeta CPU $vcpu us/req)"
		fi
	done
done
declare -A SAT
for t in "${TARGET_LIST[@]}"; do
	SAT[$t]=$(awk -v t="$t" '$2 == t {print $3}' "$OUT/sat.tsv" | median)
done

# ---- 4. half-rate latency (vegeta, constant rate) ----------------------------------------
declare -A RATE VSAT
for t in "${TARGET_LIST[@]}"; do
	[[ $t == none || $USE_VEGETA == 0 ]] && continue
	VSAT[$t]=$(awk -v t="$t" '$2 == t {print $3}' "$OUT/vsat.tsv" | median)
	RATE[$t]=$(awk -v s="${VSAT[$t]}" -v h="$HALF" 'BEGIN {printf "%d", s * h}')
done
if [[ $USE_VEGETA == 1 ]]; then
	log "half-rate latency: $ROUNDS rounds, vegeta -max-workers $SAT_CONNS at ${HALF} x each target's median vegeta saturation for ${LAT_DURATION}s, each followed by the upstream alone at the same rate (load $(loadavg))"
	# The upstream alone ("none") is measured right after each proxy target, at that
	# target's rate: the paired baseline.
	for ((r = 1; r <= ROUNDS; r++)); do
		for t in $(rotate $((r - 1))); do
			[[ $t == none ]] && continue
			read -r p50 p99 thr ok _ < <(vegeta_run "${URL[$t]}" "${RATE[$t]}" "$LAT_DURATION" "$OUT/lat-$t-r$r.txt")
			read -r bp50 bp99 bthr bok _ < <(vegeta_run "${URL[none]}" "${RATE[$t]}" "$LAT_DURATION" "$OUT/lat-$t-baseline-r$r.txt")
			[[ -n $p99 && -n $bp99 ]] || die "latency run $t r$r produced no result (see $OUT/lat-$t-r$r.txt)"
			echo "$r $t ${RATE[$t]} $p50 $p99 $thr $ok $bp50 $bp99 $((p50 - bp50)) $((p99 - bp99)) $bthr $bok" >>"$OUT/lat.tsv"
			log "  r$r $t @${RATE[$t]}/s: p50 $p50 us, p99 $p99 us, achieved $thr/s, success $ok%; upstream alone: p50 $bp50 us, p99 $bp99 us, achieved $bthr/s; added p50 $((p50 - bp50)) us, p99 $((p99 - bp99)) us"
		done
	done
else
	log "vegeta is missing: no constant-rate latency phase, only the fixed-concurrency probe below"
fi

# ---- 5. low-concurrency probe (wrk, fixed concurrency) ------------------------------------
log "low-concurrency probe: $ROUNDS rounds x ${#TARGET_LIST[@]} targets, wrk -t1 -c$PROBE_CONNS -d${PROBE_DURATION}s (load $(loadavg))"
for ((r = 1; r <= ROUNDS; r++)); do
	for t in $(rotate $((r - 1))); do
		f=$OUT/probe-$t-r$r.txt
		echo "loadavg-before: $(loadavg)" >"$f"
		wrk -t1 -c"$PROBE_CONNS" -d"${PROBE_DURATION}s" --latency -s hack/bench/tokens.lua "${URL[$t]}" -- "$DATA/tokens.txt" >>"$f" 2>&1
		check_alive
		echo "$r $t $(field rps "$f") $(field p50_us "$f") $(field p99_us "$f") $(field non2xx "$f") $(field sock_errors "$f")" >>"$OUT/probe.tsv"
		log "  r$r $t: $(field rps "$f") req/s, p50 $(field p50_us "$f") us, p99 $(field p99_us "$f") us, non-2xx $(field non2xx "$f")"
	done
done
echo "loadavg at end: $(loadavg)" >>"$OUT/machine.txt"

# ---- 6. summary --------------------------------------------------------------------------
med() { [[ -s $3 ]] && awk -v t="$1" -v c="$2" '$2 == t {print $c}' "$3" | median || echo nan; }
ratio_med() { # ratio_med A B: median over rounds of sat(A)/sat(B), same round
	awk -v a="$1" -v b="$2" '$2 == a {x[$1] = $3} $2 == b {y[$1] = $3} END {for (r in x) if (r in y && y[r] > 0) print x[r] / y[r]}' "$OUT/sat.tsv" | median
}
probe_added() { # probe_added T COL: median over rounds of probe(T) - probe(none), same round
	awk -v a="$1" -v c="$2" '$2 == a {x[$1] = $c} $2 == "none" {y[$1] = $c} END {for (r in x) if (r in y) print x[r] - y[r]}' "$OUT/probe.tsv" | median
}
has() { [[ " ${TARGET_LIST[*]} " == *" $1 "* ]]; }
{
	echo "# Load benchmark $STAMP"
	echo
	sed 's/^/    /' "$OUT/machine.txt"
	echo
	echo "Medians of $ROUNDS rounds (round-robin over the targets, order rotated each round)."
	echo
	echo "Saturation: wrk -t$SAT_THREADS -c$SAT_CONNS -d${SAT_DURATION}s. Target CPU: user+system time of the target's own process per request."
	echo
	echo "Vegeta saturation: vegeta -rate=0 -max-workers $SAT_CONNS for ${VSAT_DURATION}s right after; vegeta CPU: the load generator's own user+system time per request."
	echo
	echo "| target | req/s at saturation (wrk) | target CPU µs/req | p50 at saturation (µs) | p99 at saturation (µs) | vegeta saturation (req/s) | vegeta CPU µs/req |"
	echo "|---|---:|---:|---:|---:|---:|---:|"
	for t in "${TARGET_LIST[@]}"; do
		printf '| %s | %.0f | %s | %s | %s | %s | %s |\n' "$t" "${SAT[$t]}" "$(med "$t" 8 "$OUT/sat.tsv")" "$(med "$t" 4 "$OUT/sat.tsv")" "$(med "$t" 5 "$OUT/sat.tsv")" \
			"$(med "$t" 3 "$OUT/vsat.tsv")" "$(med "$t" 5 "$OUT/vsat.tsv")"
	done
	if [[ -s $OUT/lat.tsv ]]; then
		echo
		echo "Half-rate latency: vegeta -max-workers $SAT_CONNS, constant rate = $HALF x the target's median vegeta saturation, ${LAT_DURATION}s;"
		echo "upstream alone = vegeta straight to the upstream at the same rate, right after; added = target - upstream alone, per pair, median of the differences."
		echo "Achieved: median achieved throughput (a run below 95% of the rate was not sustained; its latencies then exclude the client-side backlog)."
		echo
		echo "| target | rate (req/s) | achieved (req/s) | success % | p50 (µs) | p99 (µs) | upstream alone p50 / p99 (µs) | added p50 (µs) | added p99 (µs) |"
		echo "|---|---:|---:|---:|---:|---:|---:|---:|---:|"
		for t in "${TARGET_LIST[@]}"; do
			[[ $t == none ]] && continue
			printf '| %s | %s | %s | %s | %s | %s | %s / %s | %s | %s |\n' "$t" "${RATE[$t]}" \
				"$(med "$t" 6 "$OUT/lat.tsv")" "$(med "$t" 7 "$OUT/lat.tsv")" \
				"$(med "$t" 4 "$OUT/lat.tsv")" "$(med "$t" 5 "$OUT/lat.tsv")" \
				"$(med "$t" 8 "$OUT/lat.tsv")" "$(med "$t" 9 "$OUT/lat.tsv")" \
				"$(med "$t" 10 "$OUT/lat.tsv")" "$(med "$t" 11 "$OUT/lat.tsv")"
		done
	fi
	echo
	echo "Low-concurrency probe: wrk -t1 -c$PROBE_CONNS -d${PROBE_DURATION}s (not rate-limited); added = target - none, same round, median of the differences."
	echo
	echo "| target | req/s | p50 (µs) | p99 (µs) | added p50 (µs) | added p99 (µs) |"
	echo "|---|---:|---:|---:|---:|---:|"
	for t in "${TARGET_LIST[@]}"; do
		printf '| %s | %s | %s | %s | %s | %s |\n' "$t" "$(med "$t" 3 "$OUT/probe.tsv")" \
			"$(med "$t" 4 "$OUT/probe.tsv")" "$(med "$t" 5 "$OUT/probe.tsv")" \
			"$(probe_added "$t" 4)" "$(probe_added "$t" 5)"
	done
	echo
	echo "Throughput ratios at saturation (median of the per-round ratios, same round):"
	for a in keyward keyward-nocache; do
		has "$a" || continue
		for b in oauth2-proxy jwtproxy none; do
			has "$b" && echo "- $a / $b: $(ratio_med "$a" "$b")"
		done
	done
	echo
	echo "Targets:"
	for a in keyward keyward-nocache; do
		has "$a" || continue
		if has oauth2-proxy; then
			x=$(ratio_med "$a" oauth2-proxy)
			echo "- $a throughput >= 2x oauth2-proxy: $x -> $(awk -v x="$x" 'BEGIN {print (x >= 2 ? "PASS" : "MISS")}')"
		fi
		if has jwtproxy; then
			x=$(ratio_med "$a" jwtproxy)
			echo "- $a throughput >= jwtproxy: $x -> $(awk -v x="$x" 'BEGIN {print (x >= 1 ? "PASS" : "MISS")}')"
		fi
		if [[ -s $OUT/lat.tsv ]]; then
			x=$(med "$a" 11 "$OUT/lat.tsv")
			echo "- $a added p99 <= 500 µs at half of saturation (vegeta): $x µs -> $(awk -v x="$x" 'BEGIN {print (x <= 500 ? "PASS" : "MISS")}')"
		fi
		if has none; then
			x=$(probe_added "$a" 5)
			echo "- (probe) $a added p99 at -c$PROBE_CONNS: $x µs -> $(awk -v x="$x" 'BEGIN {print (x <= 500 ? "PASS" : "MISS")}')"
		fi
	done
	echo
	echo "Raw: sat.tsv (round target rps p50_us p99_us non2xx sock_errors cpu_us_per_req);"
	echo "lat.tsv (round target rate p50_us p99_us achieved success% base_p50_us base_p99_us added_p50_us added_p99_us base_achieved base_success%);"
	echo "probe.tsv (round target rps p50_us p99_us non2xx sock_errors)."
} >"$OUT/summary.md"
cat "$OUT/summary.md"
log "results in $OUT"
