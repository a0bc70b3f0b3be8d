#!/usr/bin/env bash
# hack/bench/hydra/build.sh: builds Ory Hydra (default v2.3.0) into bin/bench/hydra for the
# refresh-token benchmark (hack/bench/refresh.sh). Benchmarking only.
#
# Hydra is built in a scratch module outside the repository's module,
# bin/bench/hydra-build (`go mod init x && go get -tool github.com/ory/hydra/v2@VERSION`),
# with two adjustments, both taken from Hydra itself:
#   - Hydra's go.mod replaces github.com/gobuffalo/pop/v6 with Ory's fork. Go ignores the
#     replace directives of a dependency, so the scratch module repeats it; without it the
#     build fails with
#       persistence/sql/persister.go:181:22: p.conn.Store.SQLDB undefined
#       (type pop.store has no field or method SQLDB)
#     Hydra's other replace (hydra-client-go/v2 => ./internal/httpclient) names a nested
#     module that module zips leave out; the hydra-client-go/v2 that `go get` resolves
#     (v2.2.1) builds.
#   - the build tags of Hydra's Makefile, sqlite,sqlite_omit_load_extension: without
#     `sqlite`, Hydra refuses DSN=memory and sqlite:// DSNs (it needs cgo and gcc).
#
#   hack/bench/hydra/build.sh            # HYDRA_VERSION=v2.3.0
set -euo pipefail

cd "$(dirname "$0")/../../.."
BIN=$PWD/bin/bench
HYDRA_VERSION=${HYDRA_VERSION:-v2.3.0}
POP_FORK=github.com/ory/pop/v6@v6.2.1-0.20241121111754-e5dfc0f3344b # Hydra v2.3.0's go.mod
d=$BIN/hydra-build
mkdir -p "$d"
cd "$d"
[[ -f go.mod ]] || go mod init x
if ! grep -q 'ory/pop/v6' go.mod; then
	printf '\n// From the go.mod of github.com/ory/hydra/v2 %s (dependencies'"'"' replace directives are ignored).\nreplace github.com/gobuffalo/pop/v6 => %s\n' \
		"$HYDRA_VERSION" "${POP_FORK/@/ }" >>go.mod
fi
GOFLAGS=-mod=mod go get -tool "github.com/ory/hydra/v2@$HYDRA_VERSION"
go build -tags sqlite,sqlite_omit_load_extension -o "$BIN/hydra" github.com/ory/hydra/v2
echo "built $BIN/hydra (Hydra $HYDRA_VERSION)" >&2
