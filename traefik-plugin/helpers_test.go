// This file owns the test doubles shared by the shim's tests: a fake sidecar (a real
// httptest server that records what it was sent), an in-memory sidecar transport for tests
// that need many requests or answers no HTTP server sends, and a recording upstream handler. The tests
// run under `go test` and under `yaegi test`, so they stay within what Yaegi v0.16.1 handles
// (no generics, no range-over-int, no parallel subtests capturing loop variables).

package traefikoidcsidecar

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
)

// sidecarCall is one request as the fake sidecar saw it.
type sidecarCall struct {
	method        string
	requestURI    string
	header        http.Header
	bodyLen       int64
	contentLength int64
}

// fakeSidecar is a real HTTP server standing in for the Rust sidecar.
type fakeSidecar struct {
	srv   *httptest.Server
	mu    sync.Mutex
	calls []sidecarCall
	reply func(w http.ResponseWriter, r *http.Request)
}

// newFakeSidecar starts a fake sidecar that records each request and answers with reply.
func newFakeSidecar(t *testing.T, reply func(w http.ResponseWriter, r *http.Request)) *fakeSidecar {
	t.Helper()
	f := &fakeSidecar{reply: reply}
	f.srv = httptest.NewServer(http.HandlerFunc(f.serve))
	// A closure rather than the method value f.srv.Close: Yaegi v0.16.1 types a method value
	// of a compiled type as func(*httptest.Server) and refuses it as a func().
	t.Cleanup(func() { f.srv.Close() })
	return f
}

func (f *fakeSidecar) serve(w http.ResponseWriter, r *http.Request) {
	n, _ := io.Copy(io.Discard, r.Body)
	call := sidecarCall{
		method:        r.Method,
		requestURI:    r.RequestURI,
		header:        r.Header.Clone(),
		bodyLen:       n,
		contentLength: r.ContentLength,
	}
	f.mu.Lock()
	f.calls = append(f.calls, call)
	f.mu.Unlock()
	f.reply(w, r)
}

// only returns the single recorded call, failing the test if there was not exactly one.
func (f *fakeSidecar) only(t *testing.T) sidecarCall {
	t.Helper()
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.calls) != 1 {
		t.Fatalf("sidecar got %d requests, want 1", len(f.calls))
	}
	return f.calls[0]
}

// allow is a sidecar reply: 200 with the given headers (name, value, name, value...).
func allow(pairs ...string) func(w http.ResponseWriter, r *http.Request) {
	return func(w http.ResponseWriter, r *http.Request) {
		for i := 0; i+1 < len(pairs); i += 2 {
			w.Header().Add(pairs[i], pairs[i+1])
		}
		w.WriteHeader(http.StatusOK)
	}
}

// memorySidecar is an http.RoundTripper that answers the shim's sidecar requests in memory
// with status and a copy of header (and body, if any), recording the last request's headers.
type memorySidecar struct {
	status int
	header http.Header
	body   string
	seen   http.Header
}

func (s *memorySidecar) RoundTrip(req *http.Request) (*http.Response, error) {
	s.seen = req.Header.Clone()
	resp := &http.Response{
		Status:        http.StatusText(s.status),
		StatusCode:    s.status,
		Proto:         "HTTP/1.1",
		ProtoMajor:    1,
		ProtoMinor:    1,
		Header:        s.header.Clone(),
		Body:          http.NoBody,
		ContentLength: 0,
		Request:       req,
	}
	if s.body != "" {
		resp.Body = io.NopCloser(strings.NewReader(s.body))
		resp.ContentLength = int64(len(s.body))
	}
	return resp, nil
}

// newMemoryShim builds the middleware with sidecar as its transport; edit may change the
// config. The field is assigned rather than set in a composite literal: Yaegi v0.16.1 refuses
// an interpreted type as an http.RoundTripper field of a literal http.Client.
func newMemoryShim(t testing.TB, sidecar *memorySidecar, next http.Handler, edit func(c *Config)) *shim {
	t.Helper()
	cfg := CreateConfig()
	cfg.SidecarUrl = "http://sidecar.invalid:4181"
	if edit != nil {
		edit(cfg)
	}
	h, err := New(context.Background(), next, cfg, "memory@file")
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	m := h.(*shim)
	var transport http.RoundTripper = sidecar
	m.client = &http.Client{Transport: transport, CheckRedirect: noRedirect, Timeout: m.cfg.timeout}
	m.transport = transport
	return m
}

// upstream records the requests that got through the shim.
type upstream struct {
	mu     sync.Mutex
	calls  int
	header http.Header
}

func (u *upstream) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	u.mu.Lock()
	u.calls++
	u.header = r.Header.Clone()
	u.mu.Unlock()
	w.Header().Add("Set-Cookie", "app=1")
	w.WriteHeader(http.StatusOK)
	_, _ = io.WriteString(w, "upstream ok")
}

func (u *upstream) count() int {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.calls
}

// seen returns the headers of the last request that reached the upstream.
func (u *upstream) seen() http.Header {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.header
}

// newTestShim builds the middleware against sidecarURL; edit may change the config.
func newTestShim(t *testing.T, sidecarURL string, next http.Handler, edit func(c *Config)) http.Handler {
	t.Helper()
	cfg := CreateConfig()
	cfg.SidecarUrl = sidecarURL
	if edit != nil {
		edit(cfg)
	}
	h, err := New(context.Background(), next, cfg, "test@file")
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return h
}

// serve runs one request through h and returns the recorded response.
func serve(h http.Handler, req *http.Request) *httptest.ResponseRecorder {
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return rec
}

// foldForTest is the tests' own reading of "the same header name": case-insensitive, with
// '_' and '.' read as '-'. It is written independently of the shim's normalizeName.
func foldForTest(name string) string {
	return strings.NewReplacer("_", "-", ".", "-").Replace(strings.ToLower(name))
}

// keysLike returns the keys of h that fold to the same name as want.
func keysLike(h http.Header, want string) []string {
	var out []string
	for k := range h {
		if foldForTest(k) == foldForTest(want) {
			out = append(out, k)
		}
	}
	return out
}

// sameValues reports whether got holds exactly want, in order.
func sameValues(got, want []string) bool {
	if len(got) != len(want) {
		return false
	}
	for i := range got {
		if got[i] != want[i] {
			return false
		}
	}
	return true
}
