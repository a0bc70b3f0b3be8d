#!/usr/bin/env bash
# Builds the helm CLI from the Go module proxy, because no download site (get.helm.sh,
# GitHub releases) is reachable here.
#
#   hack/helm.sh [OUT]      default OUT: bin/helm-$HELM_VERSION (HELM_VERSION default v3.22.0)
#
# A symlink "helm" beside OUT points at it (bin/helm, which test/chart runs).
#
# helm.sh/helm/v3 is built in a throwaway wrapper module under bin/.build, with the same
# version ldflags as helm's own Makefile, so `helm version` and the default Kubernetes
# version that `helm lint` / `helm template` assume are right. A binary already present that
# reports the right version is kept.
set -euo pipefail

HELM_VERSION=${HELM_VERSION:-v3.22.0}
root=$(cd "$(dirname "$0")/.." && pwd)
out=${1:-$root/bin/helm-$HELM_VERSION}
mkdir -p "$(dirname "$out")"
out="$(cd "$(dirname "$out")" && pwd)/$(basename "$out")"

link() { ln -sfn "$(basename "$out")" "$(dirname "$out")/helm"; } # bin/helm, for the tests
if [[ -x "$out" && "$("$out" version --template '{{.Version}}' 2>/dev/null)" == "$HELM_VERSION" ]]; then
  echo "==> helm $HELM_VERSION present"
  link
  exit 0
fi

work="$root/bin/.build/helm-$HELM_VERSION"
mkdir -p "$work"
cd "$work"
if [[ ! -f go.sum ]]; then
  echo "==> Preparing wrapper module for helm.sh/helm/v3 $HELM_VERSION"
  cat > go.mod <<GOMOD
module keyward.dev/helm-build

go 1.26

require helm.sh/helm/v3 $HELM_VERSION
GOMOD
  cat > tools.go <<'GOSRC'
//go:build tools

package tools

import _ "helm.sh/helm/v3/cmd/helm"
GOSRC
  go mod tidy
fi

# helm's Makefile: the Kubernetes version helm assumes is that of the client-go it builds with.
client_go=$(go list -m -f '{{.Version}}' k8s.io/client-go) # v0.MINOR.PATCH
k8s_minor=${client_go#v0.}; k8s_minor=${k8s_minor%%.*}
ld="-s -w"
ld+=" -X helm.sh/helm/v3/internal/version.version=$HELM_VERSION"
ld+=" -X helm.sh/helm/v3/internal/version.metadata="
ld+=" -X helm.sh/helm/v3/internal/version.gitTreeState=clean"
for p in helm.sh/helm/v3/pkg/lint/rules helm.sh/helm/v3/pkg/chartutil; do
  ld+=" -X $p.k8sVersionMajor=1 -X $p.k8sVersionMinor=$k8s_minor"
done
echo "==> Building helm $HELM_VERSION"
CGO_ENABLED=0 go build -trimpath -ldflags "$ld" -o "$out" helm.sh/helm/v3/cmd/helm
link
"$out" version
