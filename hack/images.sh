#!/usr/bin/env bash
# Builds the container images without Docker or a registry: static Go binaries packed into
# single-layer images by hack/tools/imagepack, written as docker-save tarballs that
# `hack/cluster.sh load-images` imports into the local cluster's containerd.
#
#   hack/images.sh [all|keyward|echo|pause]...      (make images; VERSION defaults to 0.1.0)
#
#   bin/images/keyward-$VERSION.tar       ghcr.io/keyward-dev/keyward:$VERSION  (/manager, /verifier)
#   bin/images/keyward-echo-$VERSION.tar  ghcr.io/keyward-dev/keyward-echo:$VERSION  (/echo)
#   bin/images/pause.tar                  registry.k8s.io/pause:keyward  (containerd's sandbox image)
#
# An image whose inputs (binaries, reference, layout) did not change is not packed again.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
VERSION=${VERSION:-0.1.0}
REGISTRY=${REGISTRY:-ghcr.io/keyward-dev}
out=$root/bin/images
bins=$out/.bin
mkdir -p "$bins"
export CGO_ENABLED=0 GOOS=linux

targets=("$@")
[[ ${#targets[@]} -eq 0 ]] && targets=(all)
want() { # want NAME: NAME or "all" was asked for
  local t
  for t in "${targets[@]}"; do [[ $t == all || $t == "$1" ]] && return 0; done
  return 1
}
for t in "${targets[@]}"; do
  case $t in all | keyward | echo | pause) ;; *) echo "unknown image: $t (all|keyward|echo|pause)" >&2; exit 2 ;; esac
done

# go build relinks only when something changed, so these are cheap when nothing did.
gobuild() { # gobuild OUT PKG [LDFLAGS]
  go build -trimpath -ldflags "-s -w ${3:-}" -o "$1" "$2"
}
gobuild_tools() { # gobuild_tools OUT PKG: a binary of the separate hack/tools module
  (cd "$root/hack/tools" && go build -trimpath -ldflags "-s -w" -o "$1" "$2")
}

# pack NAME TAR REF IMAGEPACK-ARGS...: pack unless the stamp of the same inputs is there.
pack() {
  local name=$1 tar=$2 ref=$3
  shift 3
  local stamp sum
  stamp=$out/.$(basename "$tar").inputs
  sum=$( {
    echo "$ref $*"
    sha256sum "$bins/imagepack"
    local a
    for a in "$@"; do if [[ $a == *=/* ]]; then sha256sum "${a%%=*}"; fi; done
  } | sha256sum | cut -d' ' -f1)
  if [[ -f $tar && -f $stamp && "$(cat "$stamp")" == "$sum" ]]; then
    echo "==> $name: $ref unchanged ($tar)"
    return
  fi
  echo "==> $name: packing $ref"
  "$bins/imagepack" -o "$tar" -tag "$ref" "$@"
  echo "$sum" > "$stamp"
}

start=$(date +%s)
gobuild_tools "$bins/imagepack" ./imagepack

if want pause; then
  gobuild_tools "$bins/pause" ./pause
  pack pause "$out/pause.tar" registry.k8s.io/pause:keyward \
    -entrypoint /pause "$bins/pause=/pause"
fi

if want keyward; then
  echo "==> keyward: building manager, verifier, issuer and kubectl-keyward"
  gobuild "$bins/manager" . "-X main.version=$VERSION"
  gobuild "$bins/verifier" ./cmd/verifier
  gobuild "$bins/kubectl-keyward" ./cmd/kubectl-keyward "-X main.version=$VERSION"
  gobuild "$bins/issuer" ./cmd/issuer "-X main.version=$VERSION"
  # /tmp is writable for the webhook certificate directory when no volume is mounted there.
  pack keyward "$out/keyward-$VERSION.tar" "$REGISTRY/keyward:$VERSION" \
    -entrypoint /manager -user 65532:65532 -dir /tmp:1777 \
    "$bins/manager=/manager" "$bins/verifier=/verifier" "$bins/kubectl-keyward=/kubectl-keyward" "$bins/issuer=/issuer"
fi

if want echo; then
  gobuild "$bins/echo" ./test/echo
  pack echo "$out/keyward-echo-$VERSION.tar" "$REGISTRY/keyward-echo:$VERSION" \
    -entrypoint /echo -user 65532:65532 "$bins/echo=/echo"
fi

echo "==> images in $out ($(($(date +%s) - start))s)"
