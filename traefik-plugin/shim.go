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
	"net/url"
	"os"
	"strings"
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
	name       string
	nameValue  []string // {name}, the X-Oidc-Sidecar-Middleware value of inline requests
	next       http.Handler
	client     *http.Client // for the registration, back-channel and retried requests
	cfg        *settings
	sidecarReq *http.Request // GET {authURL} without headers or context; copied per request

	// Copies of settings that ServeHTTP reads on every request: under Yaegi each selector
	// and comparison in a function costs on every call (see ServeHTTP).
	inline      bool     // cfg.inline != nil
	regex       bool     // cfg.headerRegex != nil
	copyHeaders []string // cfg.copyHeaders

	// The decision request goes straight to client's transport, with client's timeout as a
	// context deadline: http.Client would copy the whole header map for the redirects it
	// never follows here (see noRedirect), which costs more than the interpreted lines that
	// replace it.
	transport http.RoundTripper // client.Transport
	timeout   time.Duration     // client.Timeout
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
	// Parsed once here instead of by http.NewRequest on every request.
	sidecarReq, err := http.NewRequest(http.MethodGet, s.authURL, nil)
	if err != nil {
		return nil, fmt.Errorf("traefik-oidc-sidecar %s: sidecarUrl: %w", name, err)
	}
	return &shim{
		name:      name,
		nameValue: []string{name},
		next:      next,
		client: &http.Client{
			Transport:     sidecarTransport,
			CheckRedirect: noRedirect,
			Timeout:       s.timeout,
		},
		transport:   sidecarTransport,
		timeout:     s.timeout,
		cfg:         s,
		sidecarReq:  sidecarReq,
		inline:      s.inline != nil,
		regex:       s.headerRegex != nil,
		copyHeaders: s.copyHeaders,
	}, nil
}

// ServeHTTP asks the sidecar about req. Only a 2xx answer calls the upstream; every other
// outcome, including any error, answers the client (fail closed).
//
// Traefik interprets this code with Yaegi v0.16.1, which charges hundreds of nanoseconds per
// statement and per call into compiled code, several times that per call of an interpreted
// method, and which allocates on every call of a function a slot for each local and
// temporary value of the whole function body, branches that do not run included (and once
// more for each := or var as it runs). So the usual outcome (an empty 200) runs through two
// functions holding only its own work, ServeHTTP and sidecarRequestHeaders, and whatever
// serves other answers, denials, errors and rare headers lives in functions of its own
// (decide, refuse, unavailable, sortName, ...), which cost nothing until they are called.
func (m *shim) ServeHTTP(rw http.ResponseWriter, req *http.Request) {
	uri := req.URL.RequestURI()

	// No body: the sidecar decides on headers alone, and reading the body here would break
	// streaming uploads and could let a large upload through before the decision.
	// WithContext makes a shallow copy of the template New built, whose URL nothing modifies.
	// The deadline bounds the whole exchange, reading any body included, as http.Client's
	// Timeout does; cancel runs once the response is consumed, on every path.
	ctx, cancel := context.WithTimeout(req.Context(), m.timeout)
	sidecarReq := m.sidecarReq.WithContext(ctx)
	var notUpstream []string
	sidecarReq.Header, notUpstream = sidecarRequestHeaders(m.cfg, req, uri)
	if m.inline {
		// Set, not added: a client-sent copy must not name another middleware in the logs.
		sidecarReq.Header[middlewareHeader] = m.nameValue
	}

	// A transport never follows redirects: a 3xx comes back as it is, like every denial.
	resp, err := m.transport.RoundTrip(sidecarReq)
	// The sidecar's usual allow is a 200 with an empty body (Content-Length: 0, which Go's
	// transport turns into http.NoBody). decide handles everything else.
	if err != nil || resp.StatusCode != http.StatusOK || resp.ContentLength != 0 {
		if resp = m.decide(rw, req, sidecarReq, resp, err); resp == nil {
			cancel()
			return
		}
	}
	resp.Body.Close()
	cancel()

	// The sidecar's answer replaces the identity headers and the cookies of the request.
	answer := resp.Header
	header := req.Header
	if notUpstream != nil {
		// Every client-sent spelling of an identity header (and of Cookie) goes first, so
		// that only the sidecar's values can reach the upstream.
		deleteNames(header, notUpstream)
	}
	// The value slices are handed over, not copied: answer was parsed by the transport for
	// this request alone, and nothing reads it after this (Go's header parser gives every
	// name a slice of its own capacity, so an append to one cannot overwrite another).
	for _, name := range m.copyHeaders {
		if values := answer[name]; len(values) > 0 {
			header[name] = values
		}
	}
	if m.regex {
		copyRegexMatches(m.cfg, header, answer)
	}
	// The sidecar answers with the request's cookies minus its own session cookies, so the
	// upstream never sees (and can never leak) the session. The usual single value is
	// checked here; upstreamCookies handles the rest.
	cookies := answer["Cookie"]
	if len(cookies) == 1 && strings.TrimSpace(cookies[0]) != "" {
		header["Cookie"] = cookies
	} else {
		upstreamCookies(header, cookies)
	}
	// Refreshed session cookies go to the browser. They are added before next runs,
	// instead of wrapping rw, so the upstream gets the server's own ResponseWriter with
	// http.Hijacker and http.Flusher intact (websockets, SSE, gRPC streaming).
	if cookies := answer["Set-Cookie"]; len(cookies) > 0 {
		addSetCookies(rw.Header(), cookies)
	}
	req.RequestURI = uri
	m.next.ServeHTTP(rw, req)
}

// addSetCookies adds the sidecar's Set-Cookie values to the client response's headers.
func addSetCookies(out http.Header, cookies []string) {
	out["Set-Cookie"] = append(out["Set-Cookie"], cookies...)
}

// decide handles every sidecar outcome other than an empty 200: a transport error, the inline
// unknown-block cue (a 404, inline.go), a denial, and a 2xx with another status or a body. It
// returns the 2xx answer that lets req through, or nil when it has answered the client itself
// (and then the upstream must not be called).
func (m *shim) decide(rw http.ResponseWriter, req *http.Request, sidecarReq *http.Request, resp *http.Response, err error) *http.Response {
	if err != nil {
		// Reported as http.Client reports it. The wrapping also keeps Yaegi v0.16.1 from
		// panicking in unavailable: its type assertion breaks on an error whose dynamic type
		// is an empty struct, such as context.DeadlineExceeded.
		m.unavailable(rw, req, "sidecar request failed", &url.Error{Op: "Get", URL: m.cfg.authURL, Err: err})
		return nil
	}
	if resp.StatusCode == http.StatusNotFound && m.cfg.inline != nil {
		// Maybe the sidecar's cue that it does not know this inline block (inline.go). The
		// retried request goes through client, with a timeout of its own as before.
		resp, err = m.retryUnknown(sidecarReq.WithContext(req.Context()), resp)
	}
	if err != nil {
		m.unavailable(rw, req, "sidecar request failed", err)
		return nil
	}
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		m.refuse(rw, req, resp)
		return nil
	}
	// A 2xx from the sidecar has an empty body; any other body is read, capped, only so that
	// a broken one fails closed.
	if resp.ContentLength != 0 {
		if _, err := readCapped(resp.Body, maxSidecarBody); err != nil {
			resp.Body.Close()
			m.unavailable(rw, req, "cannot read the sidecar response", err)
			return nil
		}
	}
	return resp
}

// refuse answers the client when the sidecar's status is not 2xx. A denial (3xx to 5xx: a
// login redirect, 401, 403, the sidecar's own error page) is relayed as the sidecar sent it,
// body included; the upstream never sees the request. Anything else (1xx as a final answer,
// a status outside HTTP's range) is not something the sidecar sends, so nobody is let
// through and nothing odd is relayed.
func (m *shim) refuse(rw http.ResponseWriter, req *http.Request, resp *http.Response) {
	body, err := readCapped(resp.Body, maxSidecarBody)
	resp.Body.Close()
	if err != nil {
		m.unavailable(rw, req, "cannot read the sidecar response", err)
		return
	}
	if resp.StatusCode < 300 || resp.StatusCode > 599 {
		m.unavailable(rw, req, "sidecar answered with an unexpected status", fmt.Errorf("status %d", resp.StatusCode))
		return
	}
	// The request is the IdP's back-channel logout POST (the sidecar's BackchannelLogoutUri):
	// the sidecar needs its body, which the decision request never carries (backchannel.go).
	if resp.Header.Get(forwardBodyHeader) != "" && req.Method == http.MethodPost {
		m.forwardLogout(rw, req)
		return
	}
	copyToClient(rw.Header(), resp.Header)
	rw.WriteHeader(resp.StatusCode)
	if len(body) > 0 {
		if _, err := rw.Write(body); err != nil {
			m.log("writing the sidecar response to the client failed", err)
		}
	}
}

// readCapped reads r to the end, failing if it holds more than limit bytes. A read error is
// wrapped: the body's deadline error can be context.DeadlineExceeded, which Yaegi v0.16.1
// cannot type-assert (see decide), and every caller hands the error to such an assertion.
func readCapped(r io.Reader, limit int64) ([]byte, error) {
	body, err := io.ReadAll(io.LimitReader(r, limit+1))
	if err != nil {
		return nil, fmt.Errorf("after %d bytes: %w", len(body), err)
	}
	if int64(len(body)) > limit {
		return nil, fmt.Errorf("response body larger than %d bytes", limit)
	}
	return body, nil
}

// unavailable answers 503 when the sidecar cannot give a decision (down, too slow, broken
// response), or 500 when an inline block cannot be used because of a configuration problem
// (registrationError, already logged where it happened). The upstream is not called: without
// a decision nobody is let in.
func (m *shim) unavailable(rw http.ResponseWriter, req *http.Request, what string, err error) {
	status := http.StatusServiceUnavailable
	text := "503 Service Unavailable: the authentication service cannot be reached.\n"
	if re, ok := err.(*registrationError); ok {
		status = re.status
		if status == http.StatusInternalServerError {
			text = "500 Internal Server Error: the authentication middleware is misconfigured.\n"
		}
	} else {
		if req.Context().Err() != nil {
			what += " (client went away)"
		}
		m.log(what, err)
	}
	h := rw.Header()
	h.Set("Content-Type", "text/plain; charset=utf-8")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Cache-Control", "no-store")
	rw.WriteHeader(status)
	_, _ = io.WriteString(rw, text)
}

// log writes one line to stderr, which Traefik shows in its log. Only the middleware name,
// the sidecar URL (no credentials: New refuses them) and the error go in; never headers or
// cookies, which hold session secrets.
func (m *shim) log(what string, err error) {
	_, _ = os.Stderr.WriteString(fmt.Sprintf("traefik-oidc-sidecar[%s]: %s: %v\n", m.name, what, err))
}
