# Keyward — build, generate, test.
#   make test   unit + envtest suites against a real kube-apiserver and etcd (built on first use)
#   make demo   the local single-node cluster demo (see README)
SHELL := /usr/bin/env bash -o pipefail
.SHELLFLAGS := -ec
.DEFAULT_GOAL := help

BIN            := $(CURDIR)/bin
VERSION        ?= 0.1.0
CONTROLLER_GEN_VERSION := v0.23.0
GOLANGCI_LINT_VERSION  := v2.15.0
K8S_VERSION    := v1.37.2
ETCD_VERSION   := v3.6.16
CONTROLLER_GEN := $(BIN)/controller-gen-$(CONTROLLER_GEN_VERSION)
GOLANGCI_LINT  := $(BIN)/golangci-lint-$(GOLANGCI_LINT_VERSION)
HELM_VERSION   := v3.22.0
HELM           := $(BIN)/helm-$(HELM_VERSION)
ENVTEST_ASSETS := $(BIN)/k8s
GO_TEST_FLAGS  ?= -count=1 -timeout 20m

.PHONY: help
help: ## Show the targets.
	@awk 'BEGIN{FS=":.*##"} /^[a-zA-Z_-]+:.*##/{printf "  %-12s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

##@ Development

.PHONY: manifests
manifests: $(CONTROLLER_GEN) ## Generate CRDs and RBAC into config/ and copy both into the chart.
	$(CONTROLLER_GEN) rbac:roleName=keyward-manager crd:allowDangerousTypes=false paths="./api/..." paths="./controllers/..." paths="./internal/webhook/..." \
		output:crd:artifacts:config=config/crd/bases output:rbac:artifacts:config=config/rbac
	hack/chart-crds.sh

.PHONY: generate
generate: $(CONTROLLER_GEN) ## Generate DeepCopy methods.
	$(CONTROLLER_GEN) object:headerFile="hack/boilerplate.go.txt" paths="./api/..."

.PHONY: fmt
fmt: ## go fmt.
	go fmt ./...

.PHONY: vet
vet: ## go vet.
	go vet ./...

.PHONY: lint
lint: $(GOLANGCI_LINT) ## golangci-lint (config in .golangci.yml).
	$(GOLANGCI_LINT) run ./...

.PHONY: envtest-assets
envtest-assets: ## Build kube-apiserver, kubectl and etcd for envtest into bin/k8s (skipped when present).
	K8S_VERSION=$(K8S_VERSION) ETCD_VERSION=$(ETCD_VERSION) hack/envtest-assets.sh $(ENVTEST_ASSETS)

.PHONY: helm
helm: ## Build the helm CLI into bin/ (skipped when present); bin/helm links to it.
	HELM_VERSION=$(HELM_VERSION) hack/helm.sh $(HELM)

.PHONY: test
test: manifests generate vet envtest-assets node-assets helm ## Run every test that fits a 2-core machine (unit, fuzz seeds, envtest, chart, PostgreSQL store, then e2e on the local cluster).
	hack/postgres.sh start >/dev/null
	KEYWARD_PG_DSN="$$(hack/postgres.sh dsn)" KEYWARD_REQUIRE_PG=1 KUBEBUILDER_ASSETS=$(ENVTEST_ASSETS) KEYWARD_REQUIRE_HELM=1 go test $(GO_TEST_FLAGS) ./...
	VERSION=$(VERSION) hack/e2e.sh

.PHONY: e2e
e2e: node-assets helm ## End-to-end tests on the local single-node cluster (hack/e2e.sh).
	VERSION=$(VERSION) hack/e2e.sh

.PHONY: node-assets
node-assets: envtest-assets ## Build kubelet, kube-controller-manager, kube-scheduler, kube-proxy into bin/k8s (skipped when present).
	K8S_VERSION=$(K8S_VERSION) hack/envtest-assets.sh $(ENVTEST_ASSETS) node

.PHONY: verify
verify: manifests generate fmt ## Regenerate everything and fail on a diff.
	hack/verify-clean.sh

.PHONY: scale
scale: envtest-assets ## Steady state for 1,000 SigningKeys and 10,000 RevocationEntries (time and manager RSS).
	KUBEBUILDER_ASSETS=$(ENVTEST_ASSETS) go run ./test/scale $(SCALE_FLAGS)

##@ Build and run

.PHONY: build
build: ## Build the manager into bin/.
	CGO_ENABLED=0 go build -trimpath -o $(BIN)/manager .

.PHONY: kubectl-plugin
kubectl-plugin: ## Build the kubectl plugin into bin/: kubectl-keyward and its completion helper kubectl_complete-keyward.
	CGO_ENABLED=0 go build -trimpath -ldflags "-s -w -X main.version=$(VERSION)" -o $(BIN)/kubectl-keyward ./cmd/kubectl-keyward
	install -m 0755 cmd/kubectl-keyward/kubectl_complete-keyward $(BIN)/kubectl_complete-keyward

.PHONY: run
run: manifests generate ## Run the manager against the current kubeconfig.
	go run . --leader-elect=false

.PHONY: images
images: ## Build the container images into bin/images/*.tar (no Docker needed).
	VERSION=$(VERSION) hack/images.sh

.PHONY: cluster-up
cluster-up: ## Start the local single-node cluster (root; kubeconfig .cluster/kubeconfig).
	hack/cluster.sh up

.PHONY: cluster-down
cluster-down: ## Stop the local cluster and clean up after it.
	hack/cluster.sh down

.PHONY: demo
demo: ## Local single-node cluster (or the current context), the operator, a sample app behind the sidecar, rotation and revocation.
	hack/demo.sh

.PHONY: demo-down
demo-down: ## Tear the demo down (and the local cluster, if the demo started it).
	hack/demo.sh down

.PHONY: postgres
postgres: ## Start the private PostgreSQL for the pgstore tests (bin/pg, 127.0.0.1:55432); prints the DSN.
	hack/postgres.sh start

$(CONTROLLER_GEN):
	mkdir -p $(BIN)/.tmp
	GOBIN=$(BIN)/.tmp go install sigs.k8s.io/controller-tools/cmd/controller-gen@$(CONTROLLER_GEN_VERSION)
	mv $(BIN)/.tmp/controller-gen $@

$(GOLANGCI_LINT):
	mkdir -p $(BIN)/.tmp
	GOBIN=$(BIN)/.tmp go install github.com/golangci/golangci-lint/v2/cmd/golangci-lint@$(GOLANGCI_LINT_VERSION)
	mv $(BIN)/.tmp/golangci-lint $@
