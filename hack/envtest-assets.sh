#!/usr/bin/env bash
# Builds the envtest control plane (kube-apiserver, kubectl, etcd) from the Go module proxy,
# because no download site (setup-envtest's bucket, GitHub releases) is reachable here.
#
#   hack/envtest-assets.sh [BIN_DIR] [all|etcd|k8s|node]     default BIN_DIR: bin/k8s
#
# "node" builds what the local single-node cluster (hack/cluster.sh) needs on top:
# kubelet, kube-controller-manager, kube-scheduler and kube-proxy.
#
# kube-apiserver and kubectl come from k8s.io/kubernetes in a throwaway wrapper module that
# pins every staging module (k8s.io/api, k8s.io/apiserver, ...) to the matching v0.x release;
# etcd is built from go.etcd.io/etcd/server/v3. A binary already present at the right version
# is kept. Build the heavy binaries one at a time: the kube-apiserver link peaks near 3 GiB.
set -euo pipefail

K8S_VERSION=${K8S_VERSION:-v1.37.2}
ETCD_VERSION=${ETCD_VERSION:-v3.6.16}
root=$(cd "$(dirname "$0")/.." && pwd)
out=${1:-$root/bin/k8s}
mkdir -p "$out"
out=$(cd "$out" && pwd)
staging_version="v0.${K8S_VERSION#v1.}"

have() { # have BINARY VERSION: the stamp written after a successful build matches
  [[ -x "$out/$1" && -f "$out/.$1.version" && "$(cat "$out/.$1.version")" == "$2" ]]
}

build_k8s() { # build_k8s BINARY...
  local work="$out/.build/k8s-$K8S_VERSION"
  mkdir -p "$work"
  cd "$work"
  # tools.go names every cmd/ package either mode builds, so one tidy records all checksums.
  if [[ ! -f go.sum || ! -f .tools-v2 ]]; then
    echo "==> Preparing wrapper module for k8s.io/kubernetes $K8S_VERSION"
    cat > go.mod <<GOMOD
module keyward.dev/envtest-assets

go 1.26

require k8s.io/kubernetes $K8S_VERSION
GOMOD
    # Every staging module that k8s.io/kubernetes requires at v0.0.0 needs a replace.
    local gomod
    gomod=$(go mod download -json "k8s.io/kubernetes@$K8S_VERSION" | sed -n 's/.*"GoMod": "\(.*\)".*/\1/p')
    local mods
    mods=$(awk '/^replace \(/{r=1;next} r&&/^\)/{r=0} r&&$1 ~ /^k8s.io\//{print $1}' "$gomod" | sort -u)
    if [[ -z "$mods" ]]; then
      mods=$(grep -oE '^\s+k8s\.io/[a-z0-9-]+ v0\.0\.0' "$gomod" | awk '{print $1}' | sort -u)
    fi
    for m in $mods; do
      echo "replace $m => $m $staging_version" >> go.mod
    done
    cat > tools.go <<'GOSRC'
//go:build tools

package tools

import (
	_ "k8s.io/kubernetes/cmd/kube-apiserver"
	_ "k8s.io/kubernetes/cmd/kube-controller-manager"
	_ "k8s.io/kubernetes/cmd/kube-proxy"
	_ "k8s.io/kubernetes/cmd/kube-scheduler"
	_ "k8s.io/kubernetes/cmd/kubectl"
	_ "k8s.io/kubernetes/cmd/kubelet"
)
GOSRC
    go mod tidy
    touch .tools-v2
  fi
  local minor=${K8S_VERSION#v1.}; minor=${minor%%.*}
  local ld="-s -w"
  for p in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    ld+=" -X $p.gitVersion=$K8S_VERSION -X $p.gitMajor=1 -X $p.gitMinor=$minor"
    ld+=" -X $p.gitTreeState=clean -X $p.buildDate=1970-01-01T00:00:00Z"
  done
  for b in "$@"; do
    if have "$b" "$K8S_VERSION"; then echo "==> $b $K8S_VERSION present"; continue; fi
    echo "==> Building $b $K8S_VERSION (several minutes cold)"
    CGO_ENABLED=0 go build -trimpath -ldflags "$ld" -o "$out/$b" "k8s.io/kubernetes/cmd/$b"
    echo "$K8S_VERSION" > "$out/.$b.version"
  done
}

build_etcd() {
  if have etcd "$ETCD_VERSION"; then echo "==> etcd $ETCD_VERSION present"; return; fi
  local work="$out/.build/etcd-$ETCD_VERSION"
  mkdir -p "$work"
  cd "$work"
  echo "==> Building etcd $ETCD_VERSION"
  cat > go.mod <<GOMOD
module keyward.dev/etcd-build

go 1.26

require go.etcd.io/etcd/server/v3 $ETCD_VERSION
GOMOD
  for m in api/v3 client/pkg/v3 client/v3 pkg/v3; do
    echo "replace go.etcd.io/etcd/$m => go.etcd.io/etcd/$m $ETCD_VERSION" >> go.mod
  done
  cat > main.go <<'GOSRC'
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() { etcdmain.Main(os.Args) }
GOSRC
  go mod tidy
  CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" -o "$out/etcd" .
  echo "$ETCD_VERSION" > "$out/.etcd.version"
}

case "${2:-all}" in
  all) build_etcd; build_k8s kube-apiserver kubectl ;;
  etcd) build_etcd ;;
  k8s) build_k8s kube-apiserver kubectl ;;
  node) build_k8s kubelet kube-controller-manager kube-scheduler kube-proxy ;;
esac
echo "==> envtest assets in $out"
