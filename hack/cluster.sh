#!/usr/bin/env bash
# A real single-node Kubernetes on this machine, without Docker: etcd, kube-apiserver,
# kube-controller-manager, kube-scheduler, kubelet and kube-proxy (built from the Go module
# proxy into bin/k8s by hack/envtest-assets.sh), containerd, runc and the CNI plugins from
# Debian, all traffic kept on loopback and the kw0 bridge. Needs root.
#
#   hack/cluster.sh up                 start (idempotent); builds what is missing first
#   hack/cluster.sh down               stop what `up` started and clean up after it (idempotent)
#   hack/cluster.sh status             what runs, its memory, the node
#   hack/cluster.sh load-images [TAR...]   import bin/images/*.tar (or the given tarballs)
#   hack/cluster.sh kubeconfig         print the admin kubeconfig path
#   hack/cluster.sh clean              down, then delete .cluster (certificates, images, logs)
#
# Work dir .cluster/ (pki, kubeconfigs, logs/, pids/, etcd and kubelet state, containerd's
# root). `down` keeps the certificates, the imported images and the logs; the next `up` starts
# from an empty etcd. Env: KUBELET_SYNC_FREQUENCY (10s), CLUSTER_DIR (.cluster).
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
W=${CLUSTER_DIR:-$root/.cluster}
BIN=$root/bin/k8s
NODE=keyward-node
BRIDGE=kw0
NODE_IP=10.88.0.1
POD_CIDR=10.88.0.0/16
SVC_CIDR=10.96.0.0/16
API_SVC_IP=10.96.0.1
CNI_NET=keyward
SYNC_FREQUENCY=${KUBELET_SYNC_FREQUENCY:-10s}
CRICTL_VERSION=v1.37.0
PAUSE_IMAGE=registry.k8s.io/pause:keyward
SOCK=$W/containerd/containerd.sock
KCFG=$W/kubeconfig
RULE_TAG=keyward-cluster
# Stop order is the reverse: control loops first, storage last.
COMPONENTS=(etcd containerd kube-apiserver kube-controller-manager kube-scheduler kubelet kube-proxy)
# The cluster binaries first; keep the caller's PATH (it has go) and add the sbin dirs.
export PATH="$BIN:$PATH:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

t0=$(date +%s.%N)
elapsed() { awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN{printf "%.1f", b-a}'; }
log() { echo "[$(elapsed)s] $*"; }
die() { echo "cluster: $*" >&2; exit 1; }
kc() { kubectl --kubeconfig "$KCFG" "$@"; }
ctr_() { ctr --address "$SOCK" -n k8s.io "$@"; }
crictl_() { crictl --config "$W/crictl.yaml" "$@"; }

put() { # put FILE < CONTENT: replace FILE atomically, and only when the content changed
  # (kube-proxy exits when its config file changes; containerd reloads CNI config on writes).
  local tmp=$1.tmp.$$
  cat > "$tmp"
  if [[ -f $1 ]] && cmp -s "$tmp" "$1"; then rm -f "$tmp"; else mv -f "$tmp" "$1"; fi
}

# ---------------------------------------------------------------- processes, by recorded PID

starttime() { # starttime PID: field 22 of /proc/PID/stat (guards against PID reuse); fails
  local s        # for a process that is gone or a zombie nobody reaped yet
  s=$(cat "/proc/$1/stat" 2> /dev/null) || return 1
  local fields
  read -ra fields <<< "${s##*) }"
  [[ ${fields[0]} != Z && ${fields[0]} != X ]] || return 1
  echo "${fields[19]}"
}
pid_of() { # pid_of NAME: the recorded PID if that process still runs
  local f=$W/pids/$1.pid pid st now
  [[ -f $f ]] || return 1
  read -r pid st < "$f" || return 1
  now=$(starttime "$pid") || return 1
  [[ $now == "$st" ]] || return 1
  echo "$pid"
}
running() { pid_of "$1" > /dev/null; }

start() { # start NAME CMD...: run detached (own session), log to logs/NAME.log, record PID
  local name=$1 pid
  shift
  if pid=$(pid_of "$name"); then
    log "$name already running (pid $pid)"
    return
  fi
  mkdir -p "$W/logs" "$W/pids"
  [[ -f $W/logs/$name.log ]] && mv -f "$W/logs/$name.log" "$W/logs/$name.log.prev"
  setsid "$@" > "$W/logs/$name.log" 2>&1 < /dev/null &
  pid=$!
  echo "$pid $(starttime "$pid")" > "$W/pids/$name.pid"
  log "started $name (pid $pid)"
}

stop() { # stop TIMEOUT_S NAME...: SIGTERM the recorded PIDs together, SIGKILL after the timeout
  local timeout=$1 name pid i left
  shift
  local names=()
  for name in "$@"; do
    if pid=$(pid_of "$name"); then
      kill -TERM "$pid" 2> /dev/null || true
      names+=("$name")
    else
      rm -f "$W/pids/$name.pid"
    fi
  done
  [[ ${#names[@]} -gt 0 ]] || return 0
  for ((i = 0; i < timeout * 10; i++)); do
    left=""
    for name in "${names[@]}"; do running "$name" && left=1; done
    [[ -n $left ]] || break
    sleep 0.1
  done
  for name in "${names[@]}"; do
    if pid=$(pid_of "$name"); then
      log "$name did not stop in ${timeout}s, killing"
      kill -KILL "$pid" 2> /dev/null || true
    fi
    rm -f "$W/pids/$name.pid"
  done
  log "stopped ${names[*]}"
}

shim_pids() { # containerd shims of *this* containerd (their -address is our socket)
  local f
  while IFS= read -r f; do
    if grep -qas containerd-shim "$f"; then f=${f#/proc/}; echo "${f%/cmdline}"; fi
  done < <(grep -las -- "$SOCK" /proc/[0-9]*/cmdline)
  return 0
}

rss_mib() { # rss_mib: resident memory of everything the cluster runs (components, shims, pods)
  local roots="" c pid
  for c in "${COMPONENTS[@]}"; do
    if pid=$(pid_of "$c"); then roots+=" $pid"; fi
  done
  roots+=" $(shim_pids | tr '\n' ' ')"
  ps -e -o pid=,ppid=,rss= | awk -v roots="$roots" '
    { pid[NR]=$1; ppid[NR]=$2; rss[NR]=$3 }
    END {
      n=split(roots, r, " "); for (i=1;i<=n;i++) in_[r[i]]=1
      do { changed=0; for (i=1;i<=NR;i++) if (!(pid[i] in in_) && (ppid[i] in in_)) { in_[pid[i]]=1; changed=1 } } while (changed)
      for (i=1;i<=NR;i++) if (pid[i] in in_) total+=rss[i]
      printf "%d", total/1024
    }'
}

# ---------------------------------------------------------------- prerequisites

ensure_packages() {
  local missing=()
  command -v containerd > /dev/null || missing+=(containerd)
  command -v runc > /dev/null || missing+=(runc)
  [[ -x /usr/lib/cni/bridge && -x /usr/lib/cni/host-local && -x /usr/lib/cni/portmap ]] || missing+=(containernetworking-plugins)
  command -v iptables > /dev/null || missing+=(iptables)
  command -v openssl > /dev/null || missing+=(openssl)
  command -v ip > /dev/null || missing+=(iproute2)
  command -v conntrack > /dev/null || missing+=(conntrack)
  if [[ ${#missing[@]} -gt 0 ]]; then
    log "installing ${missing[*]} (apt-get)"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
  fi
}

ensure_binaries() {
  local b need_all="" need_node=""
  for b in etcd kube-apiserver kubectl; do [[ -x $BIN/$b ]] || need_all=1; done
  for b in kubelet kube-controller-manager kube-scheduler kube-proxy; do [[ -x $BIN/$b ]] || need_node=1; done
  if [[ -n $need_all ]]; then "$root/hack/envtest-assets.sh" "$BIN" all; fi
  if [[ -n $need_node ]]; then "$root/hack/envtest-assets.sh" "$BIN" node; fi
  if [[ ! -x $BIN/crictl || "$(cat "$BIN/.crictl.version" 2> /dev/null)" != "$CRICTL_VERSION" ]]; then
    log "building crictl $CRICTL_VERSION"
    mkdir -p "$root/bin/.tmp"
    CGO_ENABLED=0 GOBIN="$root/bin/.tmp" go install -trimpath \
      -ldflags "-s -w -X sigs.k8s.io/cri-tools/pkg/version.Version=$CRICTL_VERSION" \
      "sigs.k8s.io/cri-tools/cmd/crictl@$CRICTL_VERSION"
    mv "$root/bin/.tmp/crictl" "$BIN/crictl"
    echo "$CRICTL_VERSION" > "$BIN/.crictl.version"
  fi
  if [[ ! -f $root/bin/images/pause.tar ]]; then "$root/hack/images.sh" pause; fi
}

# ---------------------------------------------------------------- certificates

P=$W/pki
cert() { # cert NAME SUBJECT EXT_KEY_USAGE [SANS]: EC key + certificate signed by the cluster CA
  local name=$1 subj=$2 eku=$3 sans=${4:-}
  [[ -f $P/$name.crt && -f $P/$name.key ]] && return
  openssl ecparam -name prime256v1 -genkey -noout -out "$P/$name.key" 2> /dev/null
  openssl req -new -key "$P/$name.key" -subj "$subj" -out "$P/$name.csr" 2> /dev/null
  {
    echo "basicConstraints=critical,CA:FALSE"
    echo "keyUsage=critical,digitalSignature,keyEncipherment"
    echo "extendedKeyUsage=$eku"
    [[ -n $sans ]] && echo "subjectAltName=$sans"
  } > "$P/$name.ext"
  openssl x509 -req -in "$P/$name.csr" -CA "$P/ca.crt" -CAkey "$P/ca.key" -set_serial "0x$(openssl rand -hex 16)" \
    -days 3650 -extfile "$P/$name.ext" -out "$P/$name.crt" 2> /dev/null
  rm -f "$P/$name.csr" "$P/$name.ext"
}

gen_pki() {
  mkdir -p "$P"
  chmod 700 "$P"
  if [[ ! -f $P/ca.crt || ! -f $P/ca.key ]]; then
    openssl ecparam -name prime256v1 -genkey -noout -out "$P/ca.key" 2> /dev/null
    openssl req -x509 -new -key "$P/ca.key" -subj "/CN=keyward-local-ca" -days 3650 -out "$P/ca.crt" \
      -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign,digitalSignature" 2> /dev/null
    rm -f "$P"/*.crt.tmp
  fi
  cert apiserver "/CN=kube-apiserver" serverAuth \
    "DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local,DNS:localhost,DNS:$NODE,IP:$API_SVC_IP,IP:$NODE_IP,IP:127.0.0.1"
  cert apiserver-kubelet-client "/O=system:masters/CN=kube-apiserver-kubelet-client" clientAuth
  cert admin "/O=system:masters/CN=keyward-admin" clientAuth
  cert controller-manager "/CN=system:kube-controller-manager" clientAuth
  cert scheduler "/CN=system:kube-scheduler" clientAuth
  cert kube-proxy "/CN=system:kube-proxy" clientAuth
  cert kubelet-client "/O=system:nodes/CN=system:node:$NODE" clientAuth
  cert kubelet "/O=system:nodes/CN=system:node:$NODE" serverAuth "DNS:$NODE,DNS:localhost,IP:$NODE_IP,IP:127.0.0.1"
  # The apiserver's identity towards aggregated API servers (request-header authentication).
  cert front-proxy-client "/CN=front-proxy-client" clientAuth
  if [[ ! -f $P/sa.key ]]; then
    openssl genrsa -out "$P/sa.key" 2048 2> /dev/null
    openssl rsa -in "$P/sa.key" -pubout -out "$P/sa.pub" 2> /dev/null
  fi
  kubeconfig "$KCFG" admin embed
  kubeconfig "$W/controller-manager.kubeconfig" controller-manager
  kubeconfig "$W/scheduler.kubeconfig" scheduler
  kubeconfig "$W/kubelet.kubeconfig" kubelet-client
  kubeconfig "$W/kube-proxy.kubeconfig" kube-proxy
}

kubeconfig() { # kubeconfig FILE CERT [embed]
  local f=$1 c=$2
  [[ -f $f ]] && return
  if [[ ${3:-} == embed ]]; then
    cat > "$f" << EOF
apiVersion: v1
kind: Config
clusters:
- name: keyward
  cluster:
    server: https://$NODE_IP:6443
    certificate-authority-data: $(base64 -w0 < "$P/ca.crt")
users:
- name: $c
  user:
    client-certificate-data: $(base64 -w0 < "$P/$c.crt")
    client-key-data: $(base64 -w0 < "$P/$c.key")
contexts:
- name: keyward
  context: {cluster: keyward, user: $c, namespace: default}
current-context: keyward
EOF
  else
    cat > "$f" << EOF
apiVersion: v1
kind: Config
clusters:
- name: keyward
  cluster:
    server: https://$NODE_IP:6443
    certificate-authority: $P/ca.crt
users:
- name: $c
  user:
    client-certificate: $P/$c.crt
    client-key: $P/$c.key
contexts:
- name: keyward
  context: {cluster: keyward, user: $c}
current-context: keyward
EOF
  fi
  chmod 600 "$f"
}

# ---------------------------------------------------------------- network

ipt_has() { # ipt_has IPTABLES ARGS...: the rule exists (capture, no pipe into grep -q)
  "$@" > /dev/null 2>&1
}

net_up() {
  local out
  if ! ip link show "$BRIDGE" > /dev/null 2>&1; then
    ip link add "$BRIDGE" type bridge
  fi
  out=$(ip -4 -o addr show dev "$BRIDGE")
  [[ $out == *" $NODE_IP/16 "* ]] || ip addr add "$NODE_IP/16" dev "$BRIDGE"
  ip link set "$BRIDGE" up
  # Service IPs go to the bridge, never out of the machine's default route.
  ip route replace "$SVC_CIDR" dev "$BRIDGE" src "$NODE_IP"
  # Forwarding stays off globally (net.ipv4.ip_forward 0); only packets that come in on the
  # bridge may be forwarded (pod -> ClusterIP -> pod), and only back out to the bridge.
  sysctl -qw "net.ipv4.conf.$BRIDGE.forwarding=1"
  ipt_has iptables -C FORWARD -i "$BRIDGE" ! -o "$BRIDGE" -m comment --comment "$RULE_TAG" -j DROP ||
    iptables -I FORWARD 1 -i "$BRIDGE" ! -o "$BRIDGE" -m comment --comment "$RULE_TAG" -j DROP
  ipt_has iptables -C FORWARD ! -i "$BRIDGE" -o "$BRIDGE" -m comment --comment "$RULE_TAG" -j DROP ||
    iptables -I FORWARD 1 ! -i "$BRIDGE" -o "$BRIDGE" -m comment --comment "$RULE_TAG" -j DROP

  mkdir -p "$W/cni/net.d"
  put "$W/cni/net.d/10-keyward.conflist" << EOF
{
  "cniVersion": "1.0.0",
  "name": "$CNI_NET",
  "plugins": [
    {
      "type": "bridge",
      "bridge": "$BRIDGE",
      "isGateway": false,
      "ipMasq": false,
      "hairpinMode": true,
      "ipam": {
        "type": "host-local",
        "ranges": [[{"subnet": "$POD_CIDR", "gateway": "$NODE_IP", "rangeStart": "10.88.0.10"}]],
        "routes": [{"dst": "$SVC_CIDR", "gw": "$NODE_IP"}]
      }
    },
    {"type": "portmap", "capabilities": {"portMappings": true}}
  ]
}
EOF
}

# clean_chains: every KUBE-* and CNI-* chain (and the jumps to them) in both families.
clean_chains() {
  local fam table rules line chain
  for fam in iptables ip6tables; do
    command -v "$fam" > /dev/null || continue
    for table in filter nat mangle raw; do
      rules=$("$fam" -t "$table" -S 2> /dev/null) || continue
      # Jumps from built-in (or other) chains into ours, and our tagged rules.
      while IFS= read -r line; do
        [[ $line == "-A "* ]] || continue
        chain=${line#-A }
        chain=${chain%% *}
        [[ $chain == KUBE-* || $chain == CNI-* ]] && continue
        if [[ $line == *" -j KUBE-"* || $line == *" -j CNI-"* || $line == *" -g CNI-"* || $line == *"$RULE_TAG"* ]]; then
          eval "$fam -t $table -D ${line#-A }" 2> /dev/null || true
        fi
      done <<< "$rules"
      local chains=()
      while IFS= read -r line; do
        if [[ $line == "-N KUBE-"* || $line == "-N CNI-"* ]]; then chains+=("${line#-N }"); fi
      done <<< "$rules"
      for chain in "${chains[@]}"; do "$fam" -t "$table" -F "$chain" 2> /dev/null || true; done
      for chain in "${chains[@]}"; do "$fam" -t "$table" -X "$chain" 2> /dev/null || true; done
    done
  done
}

net_down() {
  clean_chains
  if ip link show "$BRIDGE" > /dev/null 2>&1; then ip link del "$BRIDGE"; fi
  rm -rf "/var/lib/cni/networks/$CNI_NET"
  rm -f /var/lib/cni/results/"$CNI_NET"-*
}

# ---------------------------------------------------------------- components

containerd_up() {
  mkdir -p "$W/containerd/root" "$W/containerd/state" "$W/containerd/opt"
  [[ ${#SOCK} -lt 100 ]] || die "containerd socket path too long (${#SOCK}): $SOCK; set CLUSTER_DIR"
  put "$W/containerd/config.toml" << EOF
version = 2
root = "$W/containerd/root"
state = "$W/containerd/state"
disabled_plugins = ["io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs",
  "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper",
  "io.containerd.tracing.processor.v1.otlp", "io.containerd.internal.v1.tracing"]

[grpc]
  address = "$SOCK"

[ttrpc]
  address = ""

[debug]
  address = ""
  level = "info"

[metrics]
  address = ""

[plugins."io.containerd.internal.v1.opt"]
  path = "$W/containerd/opt"

[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "$PAUSE_IMAGE"
  restrict_oom_score_adj = true
  disable_apparmor = true
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  enable_selinux = false
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "$W/cni/net.d"
    max_conf_num = 1
EOF
  put "$W/crictl.yaml" << EOF
runtime-endpoint: unix://$SOCK
image-endpoint: unix://$SOCK
timeout: 30
EOF
  start containerd containerd --config "$W/containerd/config.toml"
  wait_for "containerd" 30 containerd_ready
}

# import_image TAR: import a docker-save tarball into containerd's k8s.io namespace, unless the
# same tarball was imported already and the image is still there.
import_image() {
  local tar=$1 ref sum stamp images
  [[ -f $tar ]] || die "no such image tarball: $tar"
  ref=$(tar -xOf "$tar" manifest.json | sed -n 's/.*"RepoTags":\["\([^"]*\)".*/\1/p')
  sum=$(sha256sum "$tar" | cut -d' ' -f1)
  stamp=$W/containerd/root/keyward-imported/$(basename "$tar").sha256
  images=$(ctr_ images ls -q)
  if [[ -f $stamp && "$(cat "$stamp")" == "$sum" && -n $ref && $'\n'$images$'\n' == *$'\n'$ref$'\n'* ]]; then
    log "image $ref up to date"
    return
  fi
  ctr_ images import "$tar" > /dev/null
  mkdir -p "$(dirname "$stamp")"
  echo "$sum" > "$stamp"
  log "imported ${ref:-$tar}"
}

control_plane_up() {
  mkdir -p "$W/etcd"
  chmod 700 "$W/etcd"
  start etcd etcd --name keyward --data-dir "$W/etcd" \
    --listen-client-urls http://127.0.0.1:2379 --advertise-client-urls http://127.0.0.1:2379 \
    --listen-peer-urls http://127.0.0.1:2380 --initial-advertise-peer-urls http://127.0.0.1:2380 \
    --initial-cluster keyward=http://127.0.0.1:2380 --listen-metrics-urls "" \
    --log-level warn
  wait_for etcd 30 tcp_open 127.0.0.1 2379

  start kube-apiserver kube-apiserver \
    --etcd-servers http://127.0.0.1:2379 \
    --advertise-address "$NODE_IP" --bind-address "$NODE_IP" --secure-port 6443 \
    --service-cluster-ip-range "$SVC_CIDR" \
    --client-ca-file "$P/ca.crt" \
    --tls-cert-file "$P/apiserver.crt" --tls-private-key-file "$P/apiserver.key" \
    --kubelet-client-certificate "$P/apiserver-kubelet-client.crt" \
    --kubelet-client-key "$P/apiserver-kubelet-client.key" \
    --kubelet-certificate-authority "$P/ca.crt" \
    --kubelet-preferred-address-types InternalIP,Hostname \
    --service-account-issuer https://kubernetes.default.svc.cluster.local \
    --service-account-key-file "$P/sa.pub" \
    --service-account-signing-key-file "$P/sa.key" \
    --authorization-mode Node,RBAC \
    --enable-admission-plugins NodeRestriction \
    --allow-privileged=true \
    --requestheader-client-ca-file "$P/ca.crt" \
    --requestheader-allowed-names front-proxy-client \
    --requestheader-username-headers X-Remote-User \
    --requestheader-group-headers X-Remote-Group \
    --requestheader-extra-headers-prefix X-Remote-Extra- \
    --proxy-client-cert-file "$P/front-proxy-client.crt" \
    --proxy-client-key-file "$P/front-proxy-client.key" \
    --profiling=false
  wait_for kube-apiserver 90 api_ready

  start kube-controller-manager kube-controller-manager \
    --kubeconfig "$W/controller-manager.kubeconfig" \
    --authentication-kubeconfig "$W/controller-manager.kubeconfig" \
    --authorization-kubeconfig "$W/controller-manager.kubeconfig" \
    --bind-address 127.0.0.1 --leader-elect=false \
    --cluster-name keyward \
    --cluster-signing-cert-file "$P/ca.crt" --cluster-signing-key-file "$P/ca.key" \
    --root-ca-file "$P/ca.crt" \
    --service-account-private-key-file "$P/sa.key" \
    --use-service-account-credentials=true \
    --service-cluster-ip-range "$SVC_CIDR" \
    --controllers '*' \
    --kube-api-qps 100 --kube-api-burst 200 \
    --profiling=false

  start kube-scheduler kube-scheduler \
    --kubeconfig "$W/scheduler.kubeconfig" \
    --authentication-kubeconfig "$W/scheduler.kubeconfig" \
    --authorization-kubeconfig "$W/scheduler.kubeconfig" \
    --bind-address 127.0.0.1 --leader-elect=false --profiling=false
}

# The kernel settings kubelet changes at start (it tunes them when protectKernelDefaults is
# false); `down` puts back what was there before the first `up`.
KERNEL_TUNABLES=(vm.overcommit_memory vm.panic_on_oom kernel.panic kernel.panic_on_oops kernel.keys.root_maxkeys kernel.keys.root_maxbytes)

node_up() {
  mkdir -p "$W/kubelet" "$W/pod-logs"
  if [[ ! -f $W/sysctl.orig ]]; then
    local k
    for k in "${KERNEL_TUNABLES[@]}"; do echo "$k=$(sysctl -n "$k")"; done > "$W/sysctl.orig"
  fi
  put "$W/kubelet-config.yaml" << EOF
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
address: $NODE_IP
port: 10250
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: 10248
authentication:
  anonymous:
    enabled: false
  webhook:
    enabled: true
  x509:
    clientCAFile: $P/ca.crt
authorization:
  mode: Webhook
tlsCertFile: $P/kubelet.crt
tlsPrivateKeyFile: $P/kubelet.key
containerRuntimeEndpoint: unix://$SOCK
imageServiceEndpoint: unix://$SOCK
cgroupDriver: cgroupfs
failCgroupV1: false
failSwapOn: false
oomScoreAdj: 0
resolvConf: ""
clusterDomain: cluster.local
syncFrequency: $SYNC_FREQUENCY
podLogsDir: $W/pod-logs
volumePluginDir: $W/kubelet/volume-plugins
staticPodPath: ""
shutdownGracePeriod: 0s
shutdownGracePeriodCriticalPods: 0s
serializeImagePulls: false
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
evictionHard:
  memory.available: 50Mi
  nodefs.available: 1%
  nodefs.inodesFree: 1%
  imagefs.available: 1%
  imagefs.inodesFree: 1%
evictionPressureTransitionPeriod: 30s
EOF
  start kubelet kubelet \
    --config "$W/kubelet-config.yaml" \
    --kubeconfig "$W/kubelet.kubeconfig" \
    --root-dir "$W/kubelet" \
    --hostname-override "$NODE" --node-ip "$NODE_IP"

  put "$W/kube-proxy-config.yaml" << EOF
apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
mode: iptables
clientConnection:
  kubeconfig: $W/kube-proxy.kubeconfig
hostnameOverride: $NODE
clusterCIDR: $POD_CIDR
nodePortAddresses: ["$NODE_IP/32"]
metricsBindAddress: 127.0.0.1:10249
healthzBindAddress: 127.0.0.1:10256
conntrack:
  maxPerCore: 0
  min: 0
  tcpEstablishedTimeout: 0s
  tcpCloseWaitTimeout: 0s
iptables:
  localhostNodePorts: false
  minSyncPeriod: 1s
  syncPeriod: 30s
EOF
  start kube-proxy kube-proxy --config "$W/kube-proxy-config.yaml"
}

# ---------------------------------------------------------------- waits

containerd_ready() { ctr_ version > /dev/null 2>&1; }
tcp_open() { (exec 3<> "/dev/tcp/$1/$2") 2> /dev/null; }
api_ready() { kc get --raw /readyz > /dev/null 2>&1; }
node_ready() {
  local s
  s=$(kc get node "$NODE" -o 'jsonpath={.status.conditions[?(@.type=="Ready")].status}' 2> /dev/null) || return 1
  [[ $s == True ]]
}
default_sa() { kc -n default get serviceaccount default > /dev/null 2>&1; }
proxy_synced() { # kube-proxy wrote the rules for the kubernetes Service
  local r
  r=$(iptables -t nat -S KUBE-SERVICES 2> /dev/null) || return 1
  [[ $r == *"default/kubernetes:https"* ]]
}

wait_for() { # wait_for WHAT TIMEOUT_S CMD...
  local what=$1 timeout=$2 deadline
  shift 2
  deadline=$(($(date +%s) + timeout))
  until "$@"; do
    if (($(date +%s) > deadline)); then
      echo "cluster: timed out after ${timeout}s waiting for $what; logs in $W/logs" >&2
      local f
      for f in "$W"/logs/*.log; do
        echo "--- tail ${f#"$W"/}" >&2
        tail -n 5 "$f" >&2 || true
      done
      exit 1
    fi
    sleep 0.2
  done
  log "$what ready"
}

# ---------------------------------------------------------------- commands

cmd_up() {
  [[ $(id -u) == 0 ]] || die "needs root"
  ensure_packages
  ensure_binaries
  t0=$(date +%s.%N)
  mkdir -p "$W" "$W/logs" "$W/pids"
  gen_pki
  net_up
  containerd_up
  # Leftovers of a run that was not brought down (e.g. a crash): no sandbox survives an up.
  local pods
  if ! running kubelet; then
    pods=$(crictl_ pods -q 2> /dev/null || true)
    if [[ -n $pods ]]; then
      log "removing $(wc -w <<< "$pods") leftover pod sandboxes"
      crictl_ rmp -f -a > /dev/null || true
    fi
  fi
  import_image "$root/bin/images/pause.tar"
  control_plane_up
  node_up
  wait_for "node $NODE" 120 node_ready
  wait_for "default ServiceAccount" 60 default_sa
  wait_for "kube-proxy rules" 60 proxy_synced
  log "cluster up in $(elapsed)s, ~$(rss_mib) MiB resident"
  echo "export KUBECONFIG=$KCFG"
}

cmd_down() {
  [[ $(id -u) == 0 ]] || die "needs root"
  t0=$(date +%s.%N)
  stop 20 kube-controller-manager kube-scheduler kubelet kube-proxy
  # Containers outlive a containerd that died (their shims keep them): restart it to remove them.
  if ! running containerd && [[ -n $(shim_pids) && -f $W/containerd/config.toml ]]; then
    log "containerd is gone but its shims are not; restarting it to remove the pods"
    start containerd containerd --config "$W/containerd/config.toml"
    wait_for containerd 30 containerd_ready
  fi
  if running containerd; then
    local pods
    pods=$(crictl_ pods -q 2> /dev/null || true)
    if [[ -n $pods ]]; then
      log "removing $(wc -w <<< "$pods") pod sandboxes"
      crictl_ rmp -f -a > /dev/null 2>&1 || log "crictl rmp failed; cleaning up by hand"
    fi
  fi
  stop 30 containerd kube-apiserver
  local shims
  mapfile -t shims < <(shim_pids)
  if [[ ${#shims[@]} -gt 0 ]]; then
    log "killing leftover shims of this containerd: ${shims[*]}"
    kill -KILL "${shims[@]}" 2> /dev/null || true
  fi
  stop 15 etcd

  # Everything still mounted under the work dir (pod volumes, rootfs, sandbox shm).
  local mounts m
  mounts=$(awk -v w="$W/" 'index($5, w) == 1 {print $5}' /proc/self/mountinfo | sort -r)
  for m in $mounts; do umount "$m" 2> /dev/null || umount -l "$m" 2> /dev/null || true; done

  if [[ -x $BIN/kube-proxy ]]; then kube-proxy --cleanup > /dev/null 2>&1 || true; fi
  net_down
  local d
  for d in /sys/fs/cgroup/*/kubepods /sys/fs/cgroup/kubepods; do
    if [[ -d $d ]]; then find "$d" -depth -type d -exec rmdir {} \; 2> /dev/null || true; fi
  done
  # Shim sockets, fifos and runc state of our containers (unless a system containerd runs).
  if [[ ! -S /run/containerd/containerd.sock ]]; then
    rm -rf /run/containerd/s /run/containerd/fifo /run/containerd/runc
    rmdir /run/containerd 2> /dev/null || true
  fi
  rmdir /var/lib/cni/networks /var/lib/cni/results /var/lib/cni /run/netns 2> /dev/null || true
  if [[ -f $W/sysctl.orig ]]; then
    local kv
    while IFS= read -r kv; do sysctl -qw "$kv" || true; done < "$W/sysctl.orig"
    rm -f "$W/sysctl.orig"
  fi
  mounts=$(awk -v w="$W/" 'index($5, w) == 1 {print $5}' /proc/self/mountinfo)
  if [[ -n $mounts ]]; then
    echo "cluster: still mounted under $W, keeping its state: $mounts" >&2
  else
    rm -rf "$W/etcd" "$W/kubelet" "$W/pod-logs" "$W/containerd/state" "$W/pids"
  fi
  log "cluster down in $(elapsed)s"
}

cmd_status() {
  local c pid any=""
  for c in "${COMPONENTS[@]}"; do
    if pid=$(pid_of "$c"); then
      printf "  %-24s pid %-8s %6d MiB\n" "$c" "$pid" "$(($(ps -o rss= -p "$pid") / 1024))"
      any=1
    else
      printf "  %-24s stopped\n" "$c"
    fi
  done
  [[ -n $any ]] || { echo "cluster is down"; return 0; }
  echo "  total (with shims and pods): $(rss_mib) MiB"
  if running kube-apiserver; then
    kc get nodes -o wide 2> /dev/null || true
    kc get pods -A 2> /dev/null || true
  fi
  echo "export KUBECONFIG=$KCFG"
}

cmd_load_images() {
  running containerd || die "containerd is not running (hack/cluster.sh up)"
  local tars=("$@")
  if [[ ${#tars[@]} -eq 0 ]]; then
    shopt -s nullglob
    tars=("$root"/bin/images/*.tar)
    shopt -u nullglob
    [[ ${#tars[@]} -gt 0 ]] || die "no tarballs in bin/images (make images)"
  fi
  local t
  for t in "${tars[@]}"; do import_image "$t"; done
}

cmd_clean() {
  cmd_down
  rm -rf "$W"
  log "removed $W"
}

case ${1:-} in
  up) cmd_up ;;
  down) cmd_down ;;
  status) cmd_status ;;
  load-images) shift; cmd_load_images "$@" ;;
  kubeconfig) echo "$KCFG" ;;
  clean) cmd_clean ;;
  *) sed -n '2,16p' "$0" | sed 's/^# \{0,1\}//'; exit 2 ;;
esac
