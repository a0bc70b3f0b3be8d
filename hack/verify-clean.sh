#!/usr/bin/env bash
# Fails when regeneration (make manifests generate fmt) changed tracked files.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! git diff --quiet --exit-code; then
  echo "Generated files are out of date; run 'make manifests generate fmt' and commit:" >&2
  git --no-pager diff --stat >&2
  exit 1
fi
