// This file owns the shim's benchmarks. They measure what the shim itself costs per request,
// and they are meant to be run under Yaegi as well as compiled, because Traefik interprets the
// shim and interpretation, not the HTTP round trip, is what made it slower than forwardAuth:
//
//	go test -run XXX -bench . -benchmem ./traefik-plugin
//	yaegi test -run XXX -bench . -benchmem .   (GOPATH layout, see scripts/test-plugin.sh)
//
// BenchmarkServeHTTPAllow and BenchmarkServeHTTPAllowRegex answer from an in-memory sidecar
// (memorySidecar, no network), so they show the shim's own work with little noise;
// BenchmarkServeHTTPAllowNetwork goes through a real loopback HTTP server like Traefik does.
// Under Yaegi the benchmark loop and memorySidecar are interpreted too, which adds a constant.

package traefikoidcsidecar

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// benchAllowHeader is the sidecar's answer for a logged-in user.
func benchAllowHeader() http.Header {
	h := http.Header{}
	h.Set("X-Forwarded-User", "alice")
	h.Set("X-Forwarded-Email", "alice@example.test")
	h.Set("X-Forwarded-Groups", "admins,devs")
	h.Set("Cookie", "theme=dark; lang=en")
	h.Set("Content-Length", "0")
	h.Set("Date", "Mon, 02 Jan 2006 15:04:05 GMT")
	return h
}

// benchBrowserRequest is a browser navigation as Traefik hands it to the middleware: the
// browser's headers, a 1.5 KB Cookie (session chunks plus application cookies) and the
// X-Forwarded-* headers Traefik's entrypoint adds.
func benchBrowserRequest() *http.Request {
	r := httptest.NewRequest(http.MethodGet, "http://app.example.test/dashboard/projects?page=2", nil)
	r.RemoteAddr = "203.0.113.7:51234"
	h := r.Header
	h.Set("User-Agent", "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0 Safari/537.36")
	h.Set("Accept", "text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,image/webp,*/*;q=0.8")
	h.Set("Accept-Language", "en-GB,en;q=0.9")
	h.Set("Accept-Encoding", "gzip, deflate, br")
	h.Set("Connection", "keep-alive")
	h.Set("Referer", "http://app.example.test/dashboard")
	h.Set("Upgrade-Insecure-Requests", "1")
	h.Set("Sec-Fetch-Dest", "document")
	h.Set("Sec-Fetch-Mode", "navigate")
	h.Set("Sec-Fetch-Site", "same-origin")
	h.Set("Sec-Fetch-User", "?1")
	h.Set("Cookie", "__oidc_session="+strings.Repeat("A", 1300)+"; theme=dark; lang=en; _ga=GA1.2.123456789.1700000000")
	h.Set("X-Forwarded-Proto", "http")
	h.Set("X-Forwarded-Host", "app.example.test")
	h.Set("X-Forwarded-Port", "80")
	h.Set("X-Forwarded-Server", "traefik-1")
	h.Set("X-Real-Ip", "203.0.113.7")
	return r
}

// benchWriter is a ResponseWriter that keeps nothing but a header map.
type benchWriter struct {
	h      http.Header
	status int
}

func (w *benchWriter) Header() http.Header         { return w.h }
func (w *benchWriter) Write(p []byte) (int, error) { return len(p), nil }
func (w *benchWriter) WriteHeader(status int)      { w.status = status }

// benchUpstream counts the requests that got through.
type benchUpstream struct {
	calls int
}

func (u *benchUpstream) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	u.calls++
	w.WriteHeader(http.StatusOK)
}

// runServeBench sends b.N copies of the browser request through m and checks that they
// all reached the upstream with the sidecar's identity.
func runServeBench(b *testing.B, m *shim, up *benchUpstream) {
	runServeBenchWith(b, m, up, nil)
}

// runServeBenchWith is runServeBench with edit, if not nil, applied to the browser request.
func runServeBenchWith(b *testing.B, m *shim, up *benchUpstream, edit func(r *http.Request)) {
	template := benchBrowserRequest()
	if edit != nil {
		edit(template)
	}
	ctx := context.Background()
	w := &benchWriter{}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		req := template.Clone(ctx)
		w.h = http.Header{}
		m.ServeHTTP(w, req)
		if i == 0 && req.Header.Get("X-Forwarded-User") != "alice" {
			b.Fatalf("upstream request has X-Forwarded-User %q, want alice", req.Header.Get("X-Forwarded-User"))
		}
	}
	b.StopTimer()
	if up.calls != b.N {
		b.Fatalf("upstream got %d of %d requests", up.calls, b.N)
	}
}

func BenchmarkServeHTTPAllow(b *testing.B) {
	up := &benchUpstream{}
	m := newMemoryShim(b, &memorySidecar{status: http.StatusOK, header: benchAllowHeader()}, up, nil)
	runServeBench(b, m, up)
}

// BenchmarkServeHTTPAllowTraefik sends the browser request as Traefik v3 hands it to a plugin:
// its entrypoint has already removed Connection (and the headers it names), unless the
// request is an upgrade.
func BenchmarkServeHTTPAllowTraefik(b *testing.B) {
	up := &benchUpstream{}
	m := newMemoryShim(b, &memorySidecar{status: http.StatusOK, header: benchAllowHeader()}, up, nil)
	runServeBenchWith(b, m, up, func(r *http.Request) { r.Header.Del("Connection") })
}

func BenchmarkServeHTTPAllowRegex(b *testing.B) {
	up := &benchUpstream{}
	m := newMemoryShim(b, &memorySidecar{status: http.StatusOK, header: benchAllowHeader()}, up, func(c *Config) {
		c.AuthResponseHeadersRegex = "^X-Auth-"
	})
	runServeBench(b, m, up)
}

// benchServeSidecar answers like the Rust sidecar for a logged-in user, over loopback HTTP.
func benchServeSidecar(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	h.Set("X-Forwarded-User", "alice")
	h.Set("X-Forwarded-Email", "alice@example.test")
	h.Set("X-Forwarded-Groups", "admins,devs")
	h.Set("Cookie", "theme=dark; lang=en")
	w.WriteHeader(http.StatusOK)
}

func BenchmarkServeHTTPAllowNetwork(b *testing.B) {
	srv := httptest.NewServer(http.HandlerFunc(benchServeSidecar))
	defer srv.Close()
	up := &benchUpstream{}
	cfg := CreateConfig()
	cfg.SidecarUrl = srv.URL
	h, err := New(context.Background(), up, cfg, "bench@file")
	if err != nil {
		b.Fatalf("New: %v", err)
	}
	runServeBench(b, h.(*shim), up)
}
