// This file owns the tests of the inline-block request flow (inline.go) against a real HTTP
// server that plays the sidecar's side of the protocol: unknown hash → 404 cue, registration
// checked (hash of the body, headers, token), then the auth route answers for known hashes.

package traefikoidcsidecar

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"testing"
	"time"
)

// inlineSidecar is a fake sidecar that implements the registration protocol.
type inlineSidecar struct {
	srv *httptest.Server

	mu        sync.Mutex
	known     map[string]bool
	posts     int
	auths     int
	regStatus int           // answer to a registration; 0 means register and answer 201
	regBody   string        // body sent with a refused registration
	regDelay  time.Duration // how long a registration takes
	authReply int           // status for a known hash; 0 means 200
	forgetful bool          // never learns a block (the 404 cue keeps coming)
	problems  []string      // every protocol violation seen
	lastMW    []string      // X-Oidc-Sidecar-Middleware values seen
	lastToken string
}

func newInlineSidecar(t *testing.T) *inlineSidecar {
	t.Helper()
	f := &inlineSidecar{known: map[string]bool{}}
	f.srv = httptest.NewServer(http.HandlerFunc(f.serve))
	t.Cleanup(func() { f.srv.Close() })
	return f
}

func (f *inlineSidecar) violation(s string) {
	f.mu.Lock()
	f.problems = append(f.problems, s)
	f.mu.Unlock()
}

func (f *inlineSidecar) serve(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	f.lastMW = append(f.lastMW, r.Header.Get(middlewareHeader))
	f.mu.Unlock()
	switch {
	case r.Method == http.MethodPost && strings.HasPrefix(r.URL.Path, "/inline/"):
		f.register(w, r)
	case r.Method == http.MethodGet && strings.HasPrefix(r.URL.Path, "/auth/inline/"):
		hash := strings.TrimPrefix(r.URL.Path, "/auth/inline/")
		f.mu.Lock()
		f.auths++
		known := f.known[hash]
		reply := f.authReply
		f.mu.Unlock()
		if !known {
			w.Header().Set("Content-Type", "application/problem+json")
			w.Header().Set(unknownBlockHeader, hash)
			w.WriteHeader(http.StatusNotFound)
			_, _ = io.WriteString(w, `{"title":"Unknown inline block","status":404}`)
			return
		}
		if reply == 0 {
			w.Header().Set("X-Forwarded-User", "alice")
			w.WriteHeader(http.StatusOK)
			return
		}
		w.Header().Set("Location", "https://sso.example.com/auth")
		w.WriteHeader(reply)
	default:
		f.violation("unexpected request " + r.Method + " " + r.URL.Path)
		w.WriteHeader(http.StatusTeapot)
	}
}

func (f *inlineSidecar) register(w http.ResponseWriter, r *http.Request) {
	hash := strings.TrimPrefix(r.URL.Path, "/inline/")
	body, _ := io.ReadAll(r.Body)
	sum := sha256.Sum256(body)
	if hex.EncodeToString(sum[:]) != hash {
		f.violation("body hash differs from " + hash)
	}
	if ct := r.Header.Get("Content-Type"); ct != "application/json" {
		f.violation("registration Content-Type " + ct)
	}
	f.mu.Lock()
	f.posts++
	f.lastToken = r.Header.Get("Authorization")
	status, text, delay, forgetful := f.regStatus, f.regBody, f.regDelay, f.forgetful
	f.mu.Unlock()
	time.Sleep(delay)
	if status != 0 {
		w.Header().Set("Content-Type", "application/problem+json")
		w.WriteHeader(status)
		_, _ = io.WriteString(w, text)
		return
	}
	f.mu.Lock()
	if !forgetful {
		f.known[hash] = true
	}
	f.mu.Unlock()
	w.WriteHeader(http.StatusCreated)
}

func (f *inlineSidecar) counts() (posts, auths int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.posts, f.auths
}

func (f *inlineSidecar) set(edit func(f *inlineSidecar)) {
	f.mu.Lock()
	edit(f)
	f.mu.Unlock()
}

func (f *inlineSidecar) checkClean(t *testing.T) {
	t.Helper()
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, p := range f.problems {
		t.Error("sidecar saw: " + p)
	}
	for _, mw := range f.lastMW {
		if mw != "inline@docker" {
			t.Errorf("X-Oidc-Sidecar-Middleware = %q, want inline@docker", mw)
		}
	}
}

// newInlineShim builds the shim with the typed test block against f.
func newInlineShim(t *testing.T, f *inlineSidecar, next http.Handler, token string) *shim {
	t.Helper()
	cfg := CreateConfig()
	cfg.SidecarUrl = f.srv.URL
	cfg.Middleware = ""
	cfg.RegistrationToken = token
	cfg.Block = typedBlock()
	h, err := New(context.Background(), next, cfg, "inline@docker")
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return h.(*shim)
}

func appRequest() *http.Request {
	req := httptest.NewRequest(http.MethodGet, "http://app.example.test/page", nil)
	// A client cannot choose the middleware name the sidecar logs.
	req.Header.Set(middlewareHeader, "spoofed")
	return req
}

// captureStderr runs fn with os.Stderr sent to a file and returns what was written.
func captureStderr(t *testing.T, fn func()) string {
	t.Helper()
	logFile, err := os.CreateTemp(t.TempDir(), "stderr")
	if err != nil {
		t.Fatal(err)
	}
	saved := os.Stderr
	os.Stderr = logFile
	defer func() { os.Stderr = saved }()
	fn()
	os.Stderr = saved
	logged, err := os.ReadFile(logFile.Name())
	if err != nil {
		t.Fatal(err)
	}
	return string(logged)
}

func TestInlineUnknownRegistersThenRetries(t *testing.T) {
	f := newInlineSidecar(t)
	up := &upstream{}
	m := newInlineShim(t, f, up, "reg-token")
	rec := serve(m, appRequest())
	if rec.Code != http.StatusOK || up.count() != 1 {
		t.Fatalf("status %d, upstream calls %d; want 200 and 1", rec.Code, up.count())
	}
	if got := up.seen().Get("X-Forwarded-User"); got != "alice" {
		t.Errorf("X-Forwarded-User upstream = %q", got)
	}
	if posts, auths := f.counts(); posts != 1 || auths != 2 {
		t.Errorf("registrations %d, auth requests %d; want 1 and 2", posts, auths)
	}
	if f.lastToken != "Bearer reg-token" {
		t.Errorf("registration Authorization = %q", f.lastToken)
	}
	// Known now: the next request is one auth request, no registration.
	rec = serve(m, appRequest())
	if rec.Code != http.StatusOK {
		t.Fatalf("second request: %d", rec.Code)
	}
	if posts, auths := f.counts(); posts != 1 || auths != 3 {
		t.Errorf("after a second request: registrations %d, auth requests %d; want 1 and 3", posts, auths)
	}
	f.checkClean(t)
}

func TestInlineNoTokenSendsNoAuthorization(t *testing.T) {
	f := newInlineSidecar(t)
	m := newInlineShim(t, f, &upstream{}, "")
	serve(m, appRequest())
	if f.lastToken != "" {
		t.Errorf("registration without a token sent Authorization %q", f.lastToken)
	}
}

func TestInlineConcurrentFirstRequestsRegisterOnce(t *testing.T) {
	f := newInlineSidecar(t)
	f.regDelay = 150 * time.Millisecond
	up := &upstream{}
	m := newInlineShim(t, f, up, "")
	const n = 16
	codes := make(chan int, n)
	var wg sync.WaitGroup
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			codes <- serve(m, appRequest()).Code
		}()
	}
	wg.Wait()
	close(codes)
	for c := range codes {
		if c != http.StatusOK {
			t.Errorf("a concurrent first request got %d", c)
		}
	}
	if posts, _ := f.counts(); posts != 1 {
		t.Errorf("%d registrations for %d concurrent first requests, want 1", posts, n)
	}
	if up.count() != n {
		t.Errorf("upstream calls %d, want %d", up.count(), n)
	}
	f.checkClean(t)
}

func TestInlineInvalidBlockAnswers500AndLogsOnce(t *testing.T) {
	f := newInlineSidecar(t)
	f.regStatus = http.StatusUnprocessableEntity
	f.regBody = `{"type":"about:blank","title":"Invalid inline block","status":422,` +
		`"problems":[{"path":"Provider.Url","message":"not in allowedProviderUrls"},{"path":"Secret","message":"at least 32 bytes"}]}`
	up := &upstream{}
	m := newInlineShim(t, f, up, "")
	var codes []int
	logged := captureStderr(t, func() {
		for i := 0; i < 3; i++ {
			codes = append(codes, serve(m, appRequest()).Code)
		}
	})
	for _, c := range codes {
		if c != http.StatusInternalServerError {
			t.Errorf("status %d, want 500", c)
		}
	}
	if up.count() != 0 {
		t.Fatalf("upstream called %d times with an invalid block", up.count())
	}
	if posts, _ := f.counts(); posts != 1 {
		t.Errorf("%d registrations within 30 s of a 422, want 1", posts)
	}
	if strings.Count(logged, "Provider.Url: not in allowedProviderUrls; Secret: at least 32 bytes") != 1 {
		t.Errorf("problems not logged exactly once:\n%s", logged)
	}
	if !strings.Contains(logged, "inline@docker") {
		t.Errorf("log does not name the middleware:\n%s", logged)
	}

	// 30 s later the shim asks again; this time the sidecar accepts the block.
	f.set(func(f *inlineSidecar) { f.regStatus = 0 })
	m.cfg.inline.mu.Lock()
	m.cfg.inline.invalidUntil = time.Now().Add(-time.Second)
	m.cfg.inline.mu.Unlock()
	if c := serve(m, appRequest()).Code; c != http.StatusOK {
		t.Fatalf("after the retry period: %d, want 200", c)
	}
	if posts, _ := f.counts(); posts != 2 {
		t.Errorf("%d registrations, want 2", posts)
	}
}

func TestInlineRefusedRegistrationFailsClosed(t *testing.T) {
	cases := []struct {
		status int
		want   int
	}{
		{http.StatusBadRequest, http.StatusInternalServerError},
		{http.StatusForbidden, http.StatusInternalServerError},
		{http.StatusRequestEntityTooLarge, http.StatusInternalServerError},
		{http.StatusInternalServerError, http.StatusServiceUnavailable},
		{http.StatusServiceUnavailable, http.StatusServiceUnavailable},
		{http.StatusFound, http.StatusInternalServerError},
	}
	for _, c := range cases {
		f := newInlineSidecar(t)
		f.regStatus = c.status
		f.regBody = `{"title":"refused","detail":"peer not in trustedProxies"}`
		up := &upstream{}
		m := newInlineShim(t, f, up, "secret-token-value")
		var rec *httptest.ResponseRecorder
		logged := captureStderr(t, func() { rec = serve(m, appRequest()) })
		if rec.Code != c.want {
			t.Errorf("registration %d: client got %d, want %d", c.status, rec.Code, c.want)
		}
		if up.count() != 0 {
			t.Errorf("registration %d: upstream called", c.status)
		}
		if c.status != http.StatusFound && !strings.Contains(logged, "peer not in trustedProxies") {
			t.Errorf("registration %d: refusal not logged:\n%s", c.status, logged)
		}
		if strings.Contains(logged, "secret-token-value") {
			t.Errorf("registration %d: the token reached the log", c.status)
		}
		// Not an invalid block: the next request tries again at once.
		captureStderr(t, func() { serve(m, appRequest()) })
		if posts, _ := f.counts(); posts != 2 {
			t.Errorf("registration %d: %d registrations after two requests, want 2", c.status, posts)
		}
	}
}

func TestInlineSidecarDownFailsClosed(t *testing.T) {
	f := newInlineSidecar(t)
	up := &upstream{}
	m := newInlineShim(t, f, up, "")
	f.srv.Close()
	var rec *httptest.ResponseRecorder
	captureStderr(t, func() { rec = serve(m, appRequest()) })
	if rec.Code != http.StatusServiceUnavailable || up.count() != 0 {
		t.Fatalf("status %d, upstream %d; want 503 and 0", rec.Code, up.count())
	}
}

func TestInlineSidecarRestartReRegisters(t *testing.T) {
	f := newInlineSidecar(t)
	up := &upstream{}
	m := newInlineShim(t, f, up, "")
	if c := serve(m, appRequest()).Code; c != http.StatusOK {
		t.Fatalf("first request %d", c)
	}
	// The sidecar restarts and forgets every inline block.
	f.set(func(f *inlineSidecar) { f.known = map[string]bool{} })
	if c := serve(m, appRequest()).Code; c != http.StatusOK {
		t.Fatalf("request after the restart: %d, want 200", c)
	}
	if posts, auths := f.counts(); posts != 2 || auths != 4 {
		t.Errorf("registrations %d, auth requests %d; want 2 and 4", posts, auths)
	}
	if up.count() != 2 {
		t.Errorf("upstream calls %d, want 2", up.count())
	}
	f.checkClean(t)
}

func TestInlineRetriedAnswerIsRelayed(t *testing.T) {
	f := newInlineSidecar(t)
	f.authReply = http.StatusFound
	up := &upstream{}
	m := newInlineShim(t, f, up, "")
	rec := serve(m, appRequest())
	if rec.Code != http.StatusFound || rec.Header().Get("Location") != "https://sso.example.com/auth" {
		t.Fatalf("status %d Location %q; want the sidecar's login redirect", rec.Code, rec.Header().Get("Location"))
	}
	if up.count() != 0 {
		t.Error("upstream called on a redirect")
	}
}

func TestInlineRetriesOnlyOnce(t *testing.T) {
	f := newInlineSidecar(t)
	f.forgetful = true
	up := &upstream{}
	m := newInlineShim(t, f, up, "")
	var rec *httptest.ResponseRecorder
	captureStderr(t, func() { rec = serve(m, appRequest()) })
	if rec.Code != http.StatusServiceUnavailable || up.count() != 0 {
		t.Fatalf("status %d, upstream %d; want 503 and 0", rec.Code, up.count())
	}
	if posts, auths := f.counts(); posts != 1 || auths != 2 {
		t.Errorf("registrations %d, auth requests %d; want 1 and 2", posts, auths)
	}
}

func TestInline404WithoutTheCueIsRelayed(t *testing.T) {
	for _, cue := range []string{"", strings.Repeat("0", 64)} {
		sidecar := newFakeSidecar(t, func(w http.ResponseWriter, r *http.Request) {
			if cue != "" {
				w.Header().Set(unknownBlockHeader, cue)
			}
			w.WriteHeader(http.StatusNotFound)
			_, _ = io.WriteString(w, "no such route")
		})
		up := &upstream{}
		h := newTestShim(t, sidecar.srv.URL, up, func(c *Config) { c.Block = typedBlock() })
		rec := serve(h, appRequest())
		if rec.Code != http.StatusNotFound || rec.Body.String() != "no such route" || up.count() != 0 {
			t.Errorf("cue %q: status %d body %q upstream %d; want the 404 relayed", cue, rec.Code, rec.Body.String(), up.count())
		}
		if call := sidecar.only(t); call.method != http.MethodGet {
			t.Errorf("cue %q: registered although the cue named another hash", cue)
		}
	}
}

func TestNamedMiddlewareNeverRegisters(t *testing.T) {
	// Without an inline block, even the cue for some hash is only a denial.
	sidecar := newFakeSidecar(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set(unknownBlockHeader, strings.Repeat("a", 64))
		w.WriteHeader(http.StatusNotFound)
	})
	up := &upstream{}
	h := newTestShim(t, sidecar.srv.URL, up, nil)
	rec := serve(h, appRequest())
	call := sidecar.only(t)
	if rec.Code != http.StatusNotFound || call.requestURI != "/auth/default" {
		t.Errorf("status %d, sidecar URI %s", rec.Code, call.requestURI)
	}
	if got := call.header.Get(middlewareHeader); got != "spoofed" && got != "" {
		t.Errorf("unexpected %s: %q", middlewareHeader, got)
	}
}
