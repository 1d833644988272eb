// This file owns the shim's test against the real sidecar closing idle connections: 1 000
// requests spaced around the sidecar's idle timeout must all pass, with no 503 from a request
// sent into a connection the sidecar had just closed. It needs a running sidecar, so it runs
// only when SIDECAR_URL is set: tests/listener.rs starts the sidecar with a short
// limits.idleTimeout and runs this test; plain `go test` and `yaegi test` skip it.

package traefikoidcsidecar

import (
	"net/http"
	"net/http/httptest"
	"os"
	"testing"
	"time"
)

func TestRealSidecarClosingIdleConnections(t *testing.T) {
	base := os.Getenv("SIDECAR_URL")
	if base == "" {
		t.Skip("SIDECAR_URL is not set (tests/listener.rs sets it)")
	}
	idle, err := time.ParseDuration(os.Getenv("SIDECAR_IDLE_TIMEOUT"))
	if err != nil || idle <= 0 {
		t.Fatalf("SIDECAR_IDLE_TIMEOUT: %q is not a duration", os.Getenv("SIDECAR_IDLE_TIMEOUT"))
	}
	up := &upstream{}
	// The sidecar middleware "public" lets /public/... through without a session.
	h := newTestShim(t, base, up, func(c *Config) { c.Middleware = "public" })

	// One request at a time: the shim's pool hands the same kept-alive connection back each
	// time, so every pause below is that connection's idle time. Pauses run from 0.7 to 1.3
	// times the sidecar's idle timeout in 13 steps, so requests go out just before, at and
	// just after the moment the sidecar closes the connection.
	const total = 1000
	failed := 0
	for i := 0; i < total; i++ {
		step := time.Duration(i % 13)
		time.Sleep(idle*7/10 + idle*6*step/(10*12))
		req := httptest.NewRequest(http.MethodGet, "http://app.test/public/item", nil)
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if rec.Code != http.StatusOK {
			failed++
			if failed <= 10 {
				t.Errorf("request %d (pause step %d): status %d: %s", i, step, rec.Code, rec.Body.String())
			}
		}
	}
	if failed > 0 {
		t.Fatalf("%d of %d requests failed", failed, total)
	}
	if up.count() != total {
		t.Fatalf("upstream saw %d requests, want %d", up.count(), total)
	}
}
