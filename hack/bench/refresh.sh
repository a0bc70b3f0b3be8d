#!/usr/bin/env bash
# hack/bench/refresh.sh: refresh-token rotation throughput of the Keyward token service
# (cmd/issuer, embedded bbolt store and PostgreSQL) against Ory Hydra v2.3.0 (in-memory
# SQLite, SQLite file, PostgreSQL; opaque and JWT access tokens), on loopback only, in one
# run. Benchmarking only; results are documented in docs/benchmarks.md (section 4).
#
# One invocation (about 6-7 minutes with the defaults, Hydra already built):
#   1. builds the manager (.), the token service (./cmd/issuer) and
#      hack/bench/refreshload into bin/bench, and, when bin/bench/hydra is missing, Hydra
#      v2.3.0 with hack/bench/hydra/build.sh (a scratch module in bin/bench/hydra-build);
#   2. starts the private PostgreSQL (hack/postgres.sh start) and creates one database
#      per PostgreSQL target;
#   3. starts a control plane for the token service (refreshload env: envtest's
#      kube-apiserver and etcd from bin/k8s, namespace bench with a SigningKey, a
#      TokenPolicy with spec.issuance, all defaults, and the mint client's ServiceAccount),
#      the manager and two token services against it, as their own processes, as in a
#      cluster:
#        keyward-bolt   issuer --store bolt:<file>                (one replica's store)
#        keyward-pg     issuer --store postgres://…/keyward_bench_…
#      and Hydra (hydra serve all --dev --sqa-opt-out, each with its own ports):
#        hydra-memory   DSN=memory (SQLite in memory)
#        hydra-sqlite   DSN=sqlite://<file>?_fk=true
#        hydra-pg       DSN=postgres://…/hydra_bench_…
#        hydra-pg-jwt   the same, strategies.access_token=jwt (its own database)
#      and, when named in TARGETS, the same without per-request records (what logging
#      costs): keyward-pg-quiet (--audit-file /dev/null), hydra-pg-quiet (LOG_LEVEL=error,
#      so no request log lines); each shares the database of its loud sibling;
#   4. ROUNDS rounds, round-robin over the targets (the order rotates each round): for
#      each, `refreshload run` seeds WORKERS refresh-token chains (Keyward: POST
#      <issuer>/mint as the login service; Hydra: a public OAuth client and the
#      authorization-code flow, login and consent accepted through its admin API), warms
#      up WARMUP seconds, and rotates the chains for DURATION seconds, each worker on its
#      own chain; then checks that a spent refresh token is refused;
#   5. writes results.tsv and summary.md (medians of the rounds, and ratios taken within
#      each round, median over the rounds) into bin/bench/results/refresh-<timestamp>/.
#
# Knobs (environment): ROUNDS=3 WORKERS=8 DURATION=15 WARMUP=3 BASE_PORT=18400
# TARGETS="keyward-bolt keyward-pg hydra-memory hydra-sqlite hydra-pg hydra-pg-jwt"
# HYDRA_CLIENT_AUTH=none (or client_secret_basic: Hydra then bcrypt-checks the secret of
# every refresh; the Keyward token service's refresh grant has no client authentication).
set -euo pipefail

cd "$(dirname "$0")/../.."
ROOT=$PWD
BIN=$ROOT/bin/bench
STAMP=$(date -u +%Y%m%dT%H%M%SZ)
OUT=$BIN/results/refresh-$STAMP
mkdir -p "$OUT/env"

ROUNDS=${ROUNDS:-3}
WORKERS=${WORKERS:-8}
DURATION=${DURATION:-15}
WARMUP=${WARMUP:-3}
BASE_PORT=${BASE_PORT:-18400}
TARGETS=${TARGETS:-keyward-bolt keyward-pg hydra-memory hydra-sqlite hydra-pg hydra-pg-jwt}
HYDRA_CLIENT_AUTH=${HYDRA_CLIENT_AUTH:-none}
HYDRA_VERSION=v2.3.0
read -r -a TARGET_LIST <<<"$TARGETS"
DBSUFFIX=$(echo "$STAMP" | tr '[:upper:]' '[:lower:]')

log() { printf '[%s] %s\n' "$(date -u +%H:%M:%S)" "$*" | tee -a "$OUT/log.txt" >&2; }
die() { log "ERROR: $*"; exit 1; }
has() { [[ " ${TARGET_LIST[*]} " == *" $1 "* ]]; }
loadavg() { cut -d' ' -f1-3 /proc/loadavg; }

# ---- processes: every one we start is recorded and stopped by its PID -------------------
PIDS=()
NAMES=()
DBS=()
declare -A PID_OF
cleanup() {
	local i
	for i in "${!PIDS[@]}"; do kill "${PIDS[$i]}" 2>/dev/null || true; done
	for i in "${!PIDS[@]}"; do wait "${PIDS[$i]}" 2>/dev/null || true; done
	for db in "${DBS[@]}"; do "$BIN/refreshload" dropdb -dsn "$PG_DSN" -name "$db" 2>/dev/null || true; done
}
trap cleanup EXIT
trap 'exit 130' INT TERM
start() { # start NAME CMD...: runs CMD in the background, output to $OUT/NAME.log
	local name=$1
	shift
	"$@" >"$OUT/$name.log" 2>&1 &
	PIDS+=("$!")
	NAMES+=("$name")
	PID_OF[$name]=$!
	log "started $name (pid $!)"
}
check_alive() {
	local i
	for i in "${!PIDS[@]}"; do
		if ! kill -0 "${PIDS[$i]}" 2>/dev/null; then
			tail -5 "$OUT/${NAMES[$i]}.log" >&2 || true
			die "${NAMES[$i]} (pid ${PIDS[$i]}) exited; see $OUT/${NAMES[$i]}.log"
		fi
	done
}
wait_http() { # wait_http URL [WANT]: 90 s at most
	local url=$1 want=${2:-200} code i
	for i in $(seq 1 900); do
		check_alive
		code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 1 "$url" || true)
		[[ $code == "$want" ]] && return 0
		sleep 0.1
	done
	die "$url did not answer $want within 90 s"
}
next_port=$BASE_PORT
port_in_use() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
alloc_port() { # alloc_port VAR
	while port_in_use "$next_port"; do next_port=$((next_port + 1)); done
	printf -v "$1" '%s' "$next_port"
	next_port=$((next_port + 1))
}

# ---- 1. build ----------------------------------------------------------------------------
log "building the manager, the token service and refreshload"
go build -o "$BIN/manager" .
go build -o "$BIN/keyward-issuer" ./cmd/issuer
go build -o "$BIN/refreshload" ./hack/bench/refreshload
HYDRA_OK=1
if [[ " $TARGETS " == *" hydra-"* && ! -x $BIN/hydra ]]; then
	log "building Hydra $HYDRA_VERSION with hack/bench/hydra/build.sh (log: $OUT/hydra-build.log)"
	if ! HYDRA_VERSION=$HYDRA_VERSION hack/bench/hydra/build.sh >"$OUT/hydra-build.log" 2>&1; then
		HYDRA_OK=0
		log "Hydra did not build; its targets are skipped. The error:"
		tail -5 "$OUT/hydra-build.log" | tee -a "$OUT/log.txt" >&2
	fi
fi
if [[ $HYDRA_OK == 0 ]]; then
	read -r -a TARGET_LIST <<<"$(printf '%s ' "${TARGET_LIST[@]}" | sed -E 's/hydra-[a-z-]+ ?//g')"
fi

{
	echo "date: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
	echo "cpu: $(nproc) x $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //')"
	echo "go: $(go version | cut -d' ' -f3-)"
	echo "kernel: $(uname -r)"
	echo "hydra: $HYDRA_VERSION (bin/bench/hydra, built with -tags sqlite,sqlite_omit_load_extension), client auth: $HYDRA_CLIENT_AUTH"
	echo "postgresql: $(psql --version 2>/dev/null || echo unknown) (hack/postgres.sh, fsync and synchronous_commit at their defaults)"
	echo "keyward: $(git rev-parse --short HEAD 2>/dev/null || echo unknown)$(git diff --quiet 2>/dev/null || echo ' + uncommitted changes')"
	echo "workers: $WORKERS, duration: ${DURATION}s, warm-up: ${WARMUP}s, rounds: $ROUNDS"
	echo "loadavg at start: $(loadavg)"
} >"$OUT/machine.txt"

# ---- 2. PostgreSQL -----------------------------------------------------------------------
needs_pg=0
for t in "${TARGET_LIST[@]}"; do [[ $t == *-pg* ]] && needs_pg=1; done
PG_DSN=
PG_PID=0
if [[ $needs_pg == 1 ]]; then
	hack/postgres.sh start >/dev/null
	PG_DSN=$(hack/postgres.sh dsn)
	PG_PID=$(head -1 "$ROOT/bin/pg/data/postmaster.pid")
	# createdb VAR NAME: creates database NAME (dropped at exit) and sets VAR to its DSN.
	# Not in a command substitution: DBS must grow in this shell for the cleanup.
	createdb() {
		local dsn
		DBS+=("$2")
		dsn=$("$BIN/refreshload" createdb -dsn "$PG_DSN" -name "$2") || die "creating database $2 failed"
		printf -v "$1" '%s' "$dsn"
	}
	if has keyward-pg || has keyward-pg-quiet; then createdb KW_PG_DSN "keyward_bench_$DBSUFFIX"; fi
	if has hydra-pg || has hydra-pg-quiet; then createdb HY_PG_DSN "hydra_bench_$DBSUFFIX"; fi
	if has hydra-pg-jwt; then createdb HYJ_PG_DSN "hydra_jwt_bench_$DBSUFFIX"; fi
	log "PostgreSQL postmaster pid $PG_PID, databases: ${DBS[*]}"
fi

# ---- 3. the targets ----------------------------------------------------------------------
declare -A TOKEN_URL PID_T DB_PID EXTRA
if has keyward-bolt || has keyward-pg || has keyward-pg-quiet; then
	alloc_port KB_PORT
	alloc_port KB_METRICS
	alloc_port KP_PORT
	alloc_port KP_METRICS
	alloc_port KQ_PORT
	alloc_port KQ_METRICS
	ISSUER_PATH=/bench
	start env env KUBEBUILDER_ASSETS="$ROOT/bin/k8s" "$BIN/refreshload" env -dir "$OUT/env" -issuer-url "http://127.0.0.1:$KB_PORT$ISSUER_PATH"
	for i in $(seq 1 900); do [[ -f $OUT/env/ready ]] && break; check_alive; sleep 0.1; done
	[[ -f $OUT/env/ready ]] || die "the control plane did not start"
	export KUBECONFIG=$OUT/env/kubeconfig
	start manager "$BIN/manager" --leader-elect=false --enable-webhook=false --metrics-bind-address=127.0.0.1:0 --health-probe-bind-address=127.0.0.1:0
	(umask 077 && "$BIN/keyward-issuer" replay-key >"$OUT/replay-key")
	# Both token services serve the one TokenPolicy (its issuer URL names keyward-bolt's
	# address; the refresh grant does not depend on the Host).
	if has keyward-bolt; then
		start keyward-bolt "$BIN/keyward-issuer" --listen "127.0.0.1:$KB_PORT" --metrics-listen "127.0.0.1:$KB_METRICS" \
			--store "bolt:$OUT/issuer.db" --replay-key-file "$OUT/replay-key" --audit-file "$OUT/keyward-bolt-audit.jsonl" --namespaces bench
		TOKEN_URL[keyward-bolt]="http://127.0.0.1:$KB_PORT$ISSUER_PATH"
		PID_T[keyward-bolt]=${PID_OF[keyward-bolt]}
		wait_http "http://127.0.0.1:$KB_METRICS/readyz"
	fi
	if has keyward-pg; then
		start keyward-pg "$BIN/keyward-issuer" --listen "127.0.0.1:$KP_PORT" --metrics-listen "127.0.0.1:$KP_METRICS" \
			--store "$KW_PG_DSN" --replay-key-file "$OUT/replay-key" --audit-file "$OUT/keyward-pg-audit.jsonl" --namespaces bench
		TOKEN_URL[keyward-pg]="http://127.0.0.1:$KP_PORT$ISSUER_PATH"
		PID_T[keyward-pg]=${PID_OF[keyward-pg]}
		DB_PID[keyward-pg]=$PG_PID
		wait_http "http://127.0.0.1:$KP_METRICS/readyz"
	fi
	if has keyward-pg-quiet; then
		start keyward-pg-quiet "$BIN/keyward-issuer" --listen "127.0.0.1:$KQ_PORT" --metrics-listen "127.0.0.1:$KQ_METRICS" \
			--store "$KW_PG_DSN" --replay-key-file "$OUT/replay-key" --audit-file /dev/null --namespaces bench
		TOKEN_URL[keyward-pg-quiet]="http://127.0.0.1:$KQ_PORT$ISSUER_PATH"
		PID_T[keyward-pg-quiet]=${PID_OF[keyward-pg-quiet]}
		DB_PID[keyward-pg-quiet]=$PG_PID
		wait_http "http://127.0.0.1:$KQ_METRICS/readyz"
	fi
fi
HYDRA_SECRET=$(head -c 32 /dev/urandom | base64 | tr -d '=+/' | head -c 32)
start_hydra() { # start_hydra NAME DSN [KEY=VALUE...]: migrate (not memory), then serve all
	local name=$1 dsn=$2 pub adm
	shift 2
	alloc_port pub
	alloc_port adm
	if [[ $dsn != memory ]]; then
		env DSN="$dsn" "$BIN/hydra" migrate sql up -e --yes >"$OUT/$name-migrate.log" 2>&1 || die "hydra migrate for $name failed; see $OUT/$name-migrate.log"
	fi
	start "$name" env DSN="$dsn" SECRETS_SYSTEM="$HYDRA_SECRET" URLS_SELF_ISSUER="http://127.0.0.1:$pub" \
		URLS_LOGIN="http://127.0.0.1:9/login" URLS_CONSENT="http://127.0.0.1:9/consent" \
		SERVE_PUBLIC_HOST=127.0.0.1 SERVE_PUBLIC_PORT="$pub" SERVE_ADMIN_HOST=127.0.0.1 SERVE_ADMIN_PORT="$adm" \
		"$@" "$BIN/hydra" serve all --dev --sqa-opt-out
	wait_http "http://127.0.0.1:$pub/health/ready"
	TOKEN_URL[$name]="http://127.0.0.1:$pub/oauth2/token"
	EXTRA[$name]="-hydra-public http://127.0.0.1:$pub -hydra-admin http://127.0.0.1:$adm -hydra-client-auth $HYDRA_CLIENT_AUTH"
	PID_T[$name]=${PID_OF[$name]}
}
has hydra-memory && start_hydra hydra-memory memory
has hydra-sqlite && start_hydra hydra-sqlite "sqlite://$OUT/hydra.sqlite?_fk=true"
has hydra-pg && { start_hydra hydra-pg "$HY_PG_DSN"; DB_PID[hydra-pg]=$PG_PID; }
has hydra-pg-jwt && { start_hydra hydra-pg-jwt "$HYJ_PG_DSN" STRATEGIES_ACCESS_TOKEN=jwt; DB_PID[hydra-pg-jwt]=$PG_PID; }
has hydra-pg-quiet && { start_hydra hydra-pg-quiet "$HY_PG_DSN" LOG_LEVEL=error; DB_PID[hydra-pg-quiet]=$PG_PID; }

# ---- 4. rounds ---------------------------------------------------------------------------
run_target() { # run_target TARGET ROUND
	local t=$1 r=$2 args
	if [[ $t == keyward-* ]]; then
		args=(-target keyward -token-url "${TOKEN_URL[$t]}/token" -mint-url "${TOKEN_URL[$t]}/mint" -sa-token-file "$OUT/env/login.token")
	else
		# shellcheck disable=SC2206
		args=(-target hydra -token-url "${TOKEN_URL[$t]}" ${EXTRA[$t]})
	fi
	"$BIN/refreshload" run "${args[@]}" -label "$t" -subject "r$r" -workers "$WORKERS" -duration "${DURATION}s" -warmup "${WARMUP}s" \
		-pid "${PID_T[$t]}" -db-pid "${DB_PID[$t]:-0}" 2>>"$OUT/refreshload-$t.log" | tee -a "$OUT/results.txt" | grep '^RESULT'
}
rotate() { local n=${#TARGET_LIST[@]} i; for ((i = 0; i < n; i++)); do printf '%s\n' "${TARGET_LIST[$(((i + $1) % n))]}"; done; }
field() { sed -n "s/.* $1=\([^ ]*\).*/\1/p"; }
echo -e "round\ttarget\trps\tp50_ms\tp99_ms\tretried\treuse\ttarget_cpu_us\tdb_cpu_us\tclient_cpu_us\tloadavg\trefreshes\tbroken_chains\twarmup_retried" >"$OUT/results.tsv"
log "measuring: $ROUNDS rounds x ${#TARGET_LIST[@]} targets, $WORKERS workers, ${DURATION}s each after ${WARMUP}s warm-up (load $(loadavg))"
for ((r = 1; r <= ROUNDS; r++)); do
	for t in $(rotate $((r - 1))); do
		check_alive
		line=$(run_target "$t" "$r") || die "refreshload failed for $t in round $r; see $OUT/refreshload-$t.log"
		printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$r" "$t" \
			"$(field rps <<<"$line")" "$(field p50_ms <<<"$line")" "$(field p99_ms <<<"$line")" "$(field retried <<<"$line")" \
			"$(field reuse <<<"$line")" "$(field target_cpu_us <<<"$line")" "$(field db_cpu_us <<<"$line")" \
			"$(field client_cpu_us <<<"$line")" "$(field loadavg <<<"$line")" "$(field refreshes <<<"$line")" \
			"$(field broken_chains <<<"$line")" "$(field warmup_retried <<<"$line")" >>"$OUT/results.tsv"
		log "  r$r $line"
	done
done
echo "loadavg at end: $(loadavg)" >>"$OUT/machine.txt"

# ---- 5. summary --------------------------------------------------------------------------
median() { sort -g | awk '{a[NR] = $1} END {if (NR == 0) {print "nan"} else if (NR % 2) {print a[(NR + 1) / 2]} else {print (a[NR / 2] + a[NR / 2 + 1]) / 2}}'; }
med() { awk -F'\t' -v t="$1" -v c="$2" 'NR > 1 && $2 == t && $c != "na" {print $c}' "$OUT/results.tsv" | median; }
all() { awk -F'\t' -v t="$1" -v c="$2" 'NR > 1 && $2 == t {printf "%s%s", sep, $c; sep = ", "}' "$OUT/results.tsv"; }
ratio() { # ratio A B COL: median over rounds of A/B in the same round
	awk -F'\t' -v a="$1" -v b="$2" -v c="$3" 'NR > 1 && $2 == a {x[$1] = $c} NR > 1 && $2 == b {y[$1] = $c}
		END {for (r in x) if (r in y && y[r] > 0 && x[r] != "na" && y[r] != "na") print x[r] / y[r]}' "$OUT/results.tsv" | median |
		awk '{if ($1 == "nan") print $1; else printf "%.2f\n", $1}'
}
{
	echo "# Refresh-token rotation $STAMP"
	echo
	sed 's/^/    /' "$OUT/machine.txt"
	echo
	echo "Medians of $ROUNDS rounds (the rounds in brackets). $WORKERS workers, each rotating its own chain, ${DURATION}s per run."
	echo "CPU µs per refresh: the target process; db: the PostgreSQL server's processes (the whole server); client: refreshload."
	echo
	echo "Retried: failed answers retried with the same refresh token (5xx, or a 4xx other than invalid_grant) per 1,000 completed refreshes, all rounds; broken: chains ended by another failure (all rounds, warm-up included)."
	echo
	echo "| target | refreshes/s | p50 ms | p99 ms | target CPU µs | db CPU µs | client CPU µs | retried per 1,000 | broken chains | spent token presented again |"
	echo "|---|---:|---:|---:|---:|---:|---:|---:|---:|---|"
	for t in "${TARGET_LIST[@]}"; do
		printf '| %s | %.0f (%s) | %s | %s | %s | %s | %s | %s | %s | %s |\n' "$t" "$(med "$t" 3)" "$(all "$t" 3)" "$(med "$t" 4)" "$(med "$t" 5)" \
			"$(med "$t" 8)" "$(med "$t" 9)" "$(med "$t" 10)" \
			"$(awk -F'\t' -v t="$t" 'NR > 1 && $2 == t {e += $6; n += $12} END {printf "%.1f", n ? e * 1000 / n : 0}' "$OUT/results.tsv")" \
			"$(awk -F'\t' -v t="$t" 'NR > 1 && $2 == t {s += $13} END {print s + 0}' "$OUT/results.tsv")" \
			"$(awk -F'\t' -v t="$t" 'NR > 1 && $2 == t {print $7}' "$OUT/results.tsv" | sort -u | paste -sd/)"
	done
	echo
	echo "Ratios (median over the rounds of the ratio within each round):"
	echo
	echo "| pair | refreshes/s | p50 | p99 | target CPU µs per refresh |"
	echo "|---|---:|---:|---:|---:|"
	for pair in keyward-bolt:hydra-sqlite keyward-bolt:hydra-memory keyward-pg:hydra-pg keyward-pg:hydra-pg-jwt keyward-bolt:keyward-pg \
		keyward-pg-quiet:hydra-pg-quiet keyward-pg-quiet:keyward-pg hydra-pg-quiet:hydra-pg; do
		a=${pair%%:*} b=${pair##*:}
		if ! has "$a" || ! has "$b"; then continue; fi
		printf '| %s / %s | %s | %s | %s | %s |\n' "$a" "$b" "$(ratio "$a" "$b" 3)" "$(ratio "$a" "$b" 4)" "$(ratio "$a" "$b" 5)" "$(ratio "$a" "$b" 8)"
	done
	echo
	echo "Raw: results.tsv (one line per run), results.txt (the RESULT lines), logs of every process."
} >"$OUT/summary.md"
cat "$OUT/summary.md"
log "results in $OUT"
