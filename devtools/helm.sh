#!/usr/bin/env bash
# The Helm chart check with a real helm binary (README.md: Kubernetes, CI check).
#   devtools/helm.sh build     builds helm v3.22.0 from the Go module proxy once, cached in
#                              var/tools/bin (ignored); prints its path
#   devtools/helm.sh check     build, then helm lint, helm template (default values and
#                              ci/scaled-values.yaml) and every rendered manifest validated
#                              against the Kubernetes schemas (kubernetes-validate, offline)
# The Go module and build caches live under $HOME (go env GOMODCACHE/GOCACHE) and persist.
set -euo pipefail
cd "$(dirname "$0")/.."
HELM_VERSION=v3.22.0
K8S_VERSION=${K8S_VERSION:-1.37.0}
CHART=deploy/helm/tracardi
BIN_DIR=$PWD/var/tools/bin
HELM_BIN=$BIN_DIR/helm

build() {
  if [ -n "${HELM:-}" ] && [ -x "$HELM" ]; then  # a helm given by the caller (devtools/test.sh, the test)
    echo "$HELM"
    return 0
  fi
  # go install stamps no version into helm (`helm version` says v3.22): read the module's.
  if [ -x "$HELM_BIN" ] && go version -m "$HELM_BIN" 2>/dev/null | grep -Eq "^\s+mod\s+helm.sh/helm/v3\s+$HELM_VERSION\s"; then
    echo "$HELM_BIN"
    return 0
  fi
  command -v go >/dev/null || { echo "helm.sh: go is missing: cannot build helm" >&2; return 1; }
  mkdir -p "$BIN_DIR"
  echo "helm.sh: building helm $HELM_VERSION from the Go module proxy (about 5 minutes the first time)" >&2
  GOBIN=$BIN_DIR GOFLAGS=-mod=mod go install "helm.sh/helm/v3/cmd/helm@$HELM_VERSION" >&2
  go version -m "$HELM_BIN" | grep -E "^\s+mod\s" >&2
  echo "$HELM_BIN"
}

validate() {  # files...
  .venv/bin/kubernetes-validate --strict -k "$K8S_VERSION" "$@"
}

check() {
  local helm out
  helm=$(build)
  out=var/helm-check
  rm -rf "$out" && mkdir -p "$out"
  "$helm" lint --strict "$CHART"
  "$helm" lint --strict "$CHART" -f "$CHART/ci/scaled-values.yaml"
  "$helm" template tracardi "$CHART" >"$out/default.yaml"
  "$helm" template tracardi "$CHART" -f "$CHART/ci/scaled-values.yaml" >"$out/scaled.yaml"
  validate "$out/default.yaml" "$out/scaled.yaml"
  echo "helm.sh: chart OK (lint, template, schemas of Kubernetes $K8S_VERSION)"
}

case "${1:-check}" in
  build) build ;;
  check) check ;;
  *) echo "usage: $0 [build|check]" >&2; exit 2 ;;
esac
