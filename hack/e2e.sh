#!/usr/bin/env bash
# End-to-end tests on the local single-node cluster (hack/cluster.sh): the images built
# without Docker and imported into containerd, Keyward installed by its Helm chart, then
# test/e2e (injection through real admission, rotation under load, revocation
# propagation, the operator down). `make test` runs this after the other suites.
#
#   hack/e2e.sh            (make e2e)
#
# A cluster that is already up is used and left up; one this script starts is brought down
# at the end unless KEEP_CLUSTER=1. Results: bin/e2e-report.txt. Needs root (the cluster).
# Env: VERSION (0.1.0), KUBELET_SYNC_FREQUENCY (10s), E2E_RUN (a -run filter).
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
VERSION=${VERSION:-0.1.0}
HELM=${HELM:-$root/bin/helm}
NAMESPACE=keyward-system
export KUBELET_SYNC_FREQUENCY=${KUBELET_SYNC_FREQUENCY:-10s}
t0=$(date +%s)

status=$(hack/cluster.sh status 2>&1 || true)
started=0
if [[ $status == *"cluster is down"* ]]; then started=1; fi

diagnostics() {
  echo "==> Diagnostics"
  kubectl get pods -A -o wide || true
  kubectl get events -A --sort-by=.lastTimestamp 2>/dev/null | tail -40 || true
  kubectl -n "$NAMESPACE" logs -l app.kubernetes.io/name=keyward --tail=60 --prefix 2>/dev/null || true
}
finish() {
  local rc=$?
  if [[ $rc != 0 ]]; then diagnostics; fi
  if [[ $started == 1 && -z ${KEEP_CLUSTER:-} ]]; then hack/cluster.sh down || true; fi
  echo "==> e2e finished (rc $rc) in $(($(date +%s) - t0)) s"
  exit "$rc"
}
trap finish EXIT

hack/cluster.sh up
export KUBECONFIG=$root/.cluster/kubeconfig
export PATH=$root/bin/k8s:$PATH
VERSION=$VERSION hack/images.sh
hack/cluster.sh load-images

# The pod template carries the image's digest, so a rebuilt image (same tag) rolls out.
digest=$(sha256sum "bin/images/keyward-$VERSION.tar" | cut -c1-16)
echo "==> helm upgrade --install keyward charts/keyward (image digest $digest)"
"$HELM" upgrade --install keyward charts/keyward --namespace "$NAMESPACE" --create-namespace \
  --set image.tag="$VERSION" --set-string "manager.podAnnotations.keyward\.dev/image-tar=$digest" \
  --wait --timeout 5m

KEYWARD_E2E=1 KEYWARD_NAMESPACE=$NAMESPACE KEYWARD_E2E_REPORT="$root/bin/e2e-report.txt" \
  KEYWARD_ECHO_IMAGE="ghcr.io/keyward-dev/keyward-echo:$VERSION" \
  go test -count=1 -v -timeout 30m ${E2E_RUN:+-run "$E2E_RUN"} ./test/e2e/
echo "==> Report (bin/e2e-report.txt)"
cat bin/e2e-report.txt
