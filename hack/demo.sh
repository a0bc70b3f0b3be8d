#!/usr/bin/env bash
# make demo: Keyward end to end on a real cluster, narrated.
#
#   hack/demo.sh          (make demo)       bring it up and show it
#   hack/demo.sh down     (make demo-down)  remove the sample and Keyward; stop the local
#                                           cluster if the demo started it
#
# Uses the current kubeconfig context when one is set (the images must then be pullable
# there: push bin/images/*.tar and set IMAGE_REPOSITORY); otherwise it brings up the local
# single-node cluster (hack/cluster.sh, needs root) and imports the images into it. Then:
# builds the images without Docker, `helm install`s Keyward, deploys the sample (a
# SigningKey, a TokenPolicy, an echo app injected with the verifier sidecar) and runs
# hack/demo: 200 with a valid token, 401 with a forged one, a rotation with requests
# flowing and none failing, a revocation and the measured delay until the 401.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
VERSION=${VERSION:-0.1.0}
HELM=$root/bin/helm
NAMESPACE=keyward-system
marker=$root/.cluster/demo-started-cluster
export PATH=$root/bin/k8s:$PATH

make --no-print-directory envtest-assets helm >/dev/null
context=$(kubectl config current-context 2>/dev/null || true)

if [[ ${1:-} == down ]]; then
  if [[ -f $marker ]]; then
    echo "==> Stopping the local cluster the demo started"
    hack/cluster.sh down
    rm -f "$marker"
    exit 0
  fi
  if [[ -z $context ]]; then export KUBECONFIG=$root/.cluster/kubeconfig; fi
  echo "==> Removing the sample and the keyward release"
  kubectl delete -f hack/demo/manifests.yaml --ignore-not-found --wait=false
  "$HELM" uninstall keyward --namespace "$NAMESPACE" --ignore-not-found
  exit 0
fi
if [[ -n $context ]]; then
  echo "==> Using the current kubeconfig context: $context"
  local_cluster=0
else
  echo "==> No kubeconfig context: starting the local single-node cluster (hack/cluster.sh)"
  status=$(hack/cluster.sh status 2>&1 || true)
  hack/cluster.sh up
  if [[ $status == *"cluster is down"* ]]; then mkdir -p "$(dirname "$marker")" && touch "$marker"; fi
  export KUBECONFIG=$root/.cluster/kubeconfig
  local_cluster=1
fi

echo "==> Building the images without Docker (bin/images)"
VERSION=$VERSION hack/images.sh
repo=${IMAGE_REPOSITORY:-ghcr.io/keyward-dev}
if [[ $local_cluster == 1 ]]; then
  hack/cluster.sh load-images
else
  echo "    (not imported: the cluster must be able to pull $repo/keyward:$VERSION and $repo/keyward-echo:$VERSION)"
fi

digest=$(sha256sum "bin/images/keyward-$VERSION.tar" | cut -c1-16)
echo "==> helm upgrade --install keyward charts/keyward --namespace $NAMESPACE"
"$HELM" upgrade --install keyward charts/keyward --namespace "$NAMESPACE" --create-namespace \
  --set image.repository="$repo/keyward" --set image.tag="$VERSION" \
  --set-string "manager.podAnnotations.keyward\.dev/image-tar=$digest" --wait --timeout 5m
kubectl get pods -n "$NAMESPACE"

echo "==> Deploying the sample (hack/demo/manifests.yaml)"
sed "s|ghcr.io/keyward-dev/keyward-echo:0.1.0|$repo/keyward-echo:$VERSION|" hack/demo/manifests.yaml | kubectl apply -f -
kubectl rollout status -n keyward-demo deployment/echo --timeout 3m

KUBECTL=$(command -v kubectl) go run ./hack/demo
echo
echo "Tear down with: make demo-down"
