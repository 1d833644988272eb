// This file owns the middleware itself: New, the shared sidecar HTTP client, and ServeHTTP,
// which asks the sidecar about each request and either lets it through to the upstream or
// answers the client with the sidecar's response.

package traefikoidcsidecar

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"time"
)

// maxSidecarBody caps how much of a sidecar response body the shim reads. The sidecar's
// bodies are small error pages; anything larger is treated as a sidecar failure rather than
// buffered without limit.
const maxSidecarBody = 1 << 20

// sidecarTransport is the keep-alive connection pool used to reach the sidecar. It is shared
// by every middleware instance of this plugin (Traefik runs New again for every router and on
// every configuration reload), so reloads do not pile up idle connections; IdleConnTimeout
// closes connections nobody uses any more. It is safe for concurrent use.
var sidecarTransport = newSidecarTransport()

// newSidecarTransport returns a transport for the sidecar. Proxy is off: the sidecar is an
// internal service, and the requests carry the user's cookies and Authorization header, which
// must not detour through an egress proxy set in Traefik's environment. Compression is off so
// that a body and its Content-Encoding always reach the client exactly as the sidecar sent them.
func newSidecarTransport() *http.Transport {
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.Proxy = nil
	t.DisableCompression = true
	t.MaxIdleConns = 512
	t.MaxIdleConnsPerHost = 128
	t.IdleConnTimeout = 90 * time.Second
	return t
}

// noRedirect stops the client at the sidecar's first response. Following a redirect could
// turn a "go and log in" 302 into a 200 from wherever it points, which would let the request
// through; the 302 belongs to the browser. This must stay a package-level function with named
// parameters: under Yaegi a function literal with unnamed parameters panics on the first
// redirect (see the project's yaegi notes).
func noRedirect(req *http.Request, via []*http.Request) error {
	return http.ErrUseLastResponse
}

// shim is one middleware instance. Its fields are read-only after New, so ServeHTTP is safe
// for concurrent use.
type shim struct {
	name   string
	next   http.Handler
	client *http.Client
	cfg    *settings
}

// New validates config and returns the middleware. It makes no network call: Traefik and the
// Plugin Catalog call it at load time, when the sidecar may not be up yet.
func New(ctx context.Context, next http.Handler, config *Config, name string) (http.Handler, error) {
	if next == nil {
		return nil, errors.New("traefik-oidc-sidecar: no next handler")
	}
	s, err := validate(config)
	if err != nil {
		return nil, fmt.Errorf("traefik-oidc-sidecar %s: %w", name, err)
	}
	return &shim{
		name: name,
		next: next,
		client: &http.Client{
			Transport:     sidecarTransport,
			CheckRedirect: noRedirect,
			Timeout:       s.timeout,
		},
		cfg: s,
	}, nil
}

// ServeHTTP asks the sidecar about req. Only a 2xx answer calls the upstream; every other
// outcome, including any error, answers the client here (fail closed).
func (m *shim) ServeHTTP(rw http.ResponseWriter, req *http.Request) {
	// No body: the sidecar decides on headers alone, and reading the body here would break
	// streaming uploads and could let a large upload through before the decision.
	sidecarReq, err := http.NewRequestWithContext(req.Context(), http.MethodGet, m.cfg.authURL, nil)
	if err != nil {
		m.unavailable(rw, req, "cannot build the sidecar request", err)
		return
	}
	sidecarReq.Header = sidecarRequestHeaders(req)

	resp, err := m.client.Do(sidecarReq)
	if err != nil {
		m.unavailable(rw, req, "sidecar request failed", err)
		return
	}
	body, err := readCapped(resp.Body, maxSidecarBody)
	resp.Body.Close()
	if err != nil {
		m.unavailable(rw, req, "cannot read the sidecar response", err)
		return
	}

	switch {
	case resp.StatusCode >= 200 && resp.StatusCode < 300:
		copyToUpstream(m.cfg, req, resp.Header)
		// Refreshed session cookies go to the browser. They are added before next runs,
		// instead of wrapping rw, so the upstream gets the server's own ResponseWriter with
		// http.Hijacker and http.Flusher intact (websockets, SSE, gRPC streaming).
		for _, c := range resp.Header.Values("Set-Cookie") {
			rw.Header().Add("Set-Cookie", c)
		}
		req.RequestURI = req.URL.RequestURI()
		m.next.ServeHTTP(rw, req)

	case resp.StatusCode >= 300 && resp.StatusCode <= 599:
		// A denial (login redirect, 401, 403, the sidecar's own error page): the client gets
		// it as the sidecar sent it, and the upstream never sees the request.
		copyToClient(rw.Header(), resp.Header)
		rw.WriteHeader(resp.StatusCode)
		if len(body) > 0 {
			if _, err := rw.Write(body); err != nil {
				m.log("writing the sidecar response to the client failed", err)
			}
		}

	default:
		// 1xx as a final answer, or a status outside HTTP's range: not something the sidecar
		// sends, so nobody is let through and nothing odd is relayed.
		m.unavailable(rw, req, "sidecar answered with an unexpected status", fmt.Errorf("status %d", resp.StatusCode))
	}
}

// readCapped reads r to the end, failing if it holds more than limit bytes.
func readCapped(r io.Reader, limit int64) ([]byte, error) {
	body, err := io.ReadAll(io.LimitReader(r, limit+1))
	if err != nil {
		return nil, err
	}
	if int64(len(body)) > limit {
		return nil, fmt.Errorf("response body larger than %d bytes", limit)
	}
	return body, nil
}

// unavailable answers 503 when the sidecar cannot give a decision (down, too slow, broken
// response). The upstream is not called: without a decision nobody is let in.
func (m *shim) unavailable(rw http.ResponseWriter, req *http.Request, what string, err error) {
	if req.Context().Err() != nil {
		what += " (client went away)"
	}
	m.log(what, err)
	h := rw.Header()
	h.Set("Content-Type", "text/plain; charset=utf-8")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Cache-Control", "no-store")
	rw.WriteHeader(http.StatusServiceUnavailable)
	_, _ = io.WriteString(rw, "503 Service Unavailable: the authentication service cannot be reached.\n")
}

// log writes one line to stderr, which Traefik shows in its log. Only the middleware name,
// the sidecar URL (no credentials: New refuses them) and the error go in; never headers or
// cookies, which hold session secrets.
func (m *shim) log(what string, err error) {
	_, _ = os.Stderr.WriteString(fmt.Sprintf("traefik-oidc-sidecar[%s]: %s: %v\n", m.name, what, err))
}
