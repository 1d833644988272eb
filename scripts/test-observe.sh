#!/usr/bin/env bash
# Observability: the latency histograms, the metrics documentation, the Grafana dashboard and
# OpenTelemetry traces received by a real Jaeger v2 (OTLP/HTTP receiver, in-memory store, query
# API), all in tests/observe.rs against the real OP and a real redis-server; tests/observe_down.rs
# checks that a hanging collector drops and counts spans and never slows a request.
#
# Builds Jaeger from its Go module when it is not cached (scripts/install-jaeger.sh: several
# minutes on two cores the first time, cached in ~/go/bin afterwards), then runs the test binary
# with OBSERVE_REQUIRE_JAEGER=1 so a missing receiver fails instead of skipping.
set -euo pipefail
cd "$(dirname "$0")/.."
started=$(date +%s)

jaeger="$(bash scripts/install-jaeger.sh)"
echo "test-observe: Jaeger ready after $(( $(date +%s) - started ))s: $jaeger"

JAEGER_BIN="$jaeger" OBSERVE_REQUIRE_JAEGER=1 cargo test --test observe --test observe_down -- --test-threads=1
echo "test-observe: done in $(( $(date +%s) - started ))s"
