// This file tests the shim's one body-forwarding path: an identity provider's back-channel
// logout POST (backchannel.go), against a fake sidecar that answers the decision request for
// /backchannel-logout with the forward-body cue, as the real sidecar does.

package traefikoidcsidecar

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
)

// logoutSidecar is a fake sidecar with both routes the back-channel path uses.
type logoutSidecar struct {
	srv       *httptest.Server
	mu        sync.Mutex
	decisions int
	posts     []logoutPost
	answer    string // body of the back-channel route's answer; "big" sends more than the shim reads
}

// logoutPost is one request to the back-channel route as the fake saw it.
type logoutPost struct {
	path        string
	contentType string
	cookie      string
	body        string
	middleware  string // X-Oidc-Sidecar-Middleware (inline blocks only)
}

func newLogoutSidecar(t *testing.T) *logoutSidecar {
	t.Helper()
	f := &logoutSidecar{}
	f.srv = httptest.NewServer(http.HandlerFunc(f.serve))
	t.Cleanup(func() { f.srv.Close() })
	return f
}

func (f *logoutSidecar) serve(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	if strings.HasPrefix(r.URL.Path, "/auth/") {
		f.mu.Lock()
		f.decisions++
		f.mu.Unlock()
		if strings.HasPrefix(r.Header.Get("X-Forwarded-Uri"), "/backchannel-logout") {
			w.Header().Set("Content-Type", "application/problem+json")
			w.Header().Set(forwardBodyHeader, "1")
			w.WriteHeader(http.StatusBadRequest)
			_, _ = io.WriteString(w, `{"title":"Back-channel logout needs its own route"}`)
			return
		}
		w.WriteHeader(http.StatusOK)
		return
	}
	f.mu.Lock()
	f.posts = append(f.posts, logoutPost{
		path:        r.URL.Path,
		contentType: r.Header.Get("Content-Type"),
		cookie:      r.Header.Get("Cookie"),
		body:        string(body),
		middleware:  r.Header.Get(middlewareHeader),
	})
	answer := f.answer
	f.mu.Unlock()
	w.Header().Set("Cache-Control", "no-store")
	if answer == "big" {
		w.WriteHeader(http.StatusOK)
		_, _ = io.WriteString(w, strings.Repeat("x", maxSidecarBody+1))
		return
	}
	if r.Method == http.MethodPost && string(body) == "logout_token=good" {
		w.WriteHeader(http.StatusOK)
		return
	}
	w.Header().Set("Content-Type", "application/problem+json")
	w.WriteHeader(http.StatusBadRequest)
	_, _ = io.WriteString(w, `{"title":"Logout token refused"}`)
}

func (f *logoutSidecar) received() []logoutPost {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := make([]logoutPost, len(f.posts))
	copy(out, f.posts)
	return out
}

func logoutRequest(method, body string) *http.Request {
	req := httptest.NewRequest(method, "http://app.example.test/backchannel-logout", strings.NewReader(body))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Cookie", "session=secret")
	return req
}

func TestBackchannelLogoutBodyReachesTheSidecar(t *testing.T) {
	f := newLogoutSidecar(t)
	up := &upstream{}
	h := newTestShim(t, f.srv.URL, up, func(c *Config) { c.Middleware = "my mw" })

	rec := serve(h, logoutRequest(http.MethodPost, "logout_token=good"))
	if rec.Code != http.StatusOK {
		t.Fatalf("status = %d, want 200; body %q", rec.Code, rec.Body.String())
	}
	if got := rec.Header().Get("Cache-Control"); got != "no-store" {
		t.Errorf("Cache-Control = %q, want no-store", got)
	}
	if got := rec.Header().Get(forwardBodyHeader); got != "" {
		t.Errorf("the cue reached the client: %q", got)
	}
	if up.count() != 0 {
		t.Fatalf("upstream called %d times", up.count())
	}
	posts := f.received()
	if len(posts) != 1 {
		t.Fatalf("back-channel route got %d requests, want 1", len(posts))
	}
	p := posts[0]
	if p.path != "/backchannel-logout/my mw" {
		t.Errorf("path = %q", p.path)
	}
	if p.body != "logout_token=good" || p.contentType != "application/x-www-form-urlencoded" {
		t.Errorf("forwarded %q as %q", p.body, p.contentType)
	}
	if p.cookie != "" {
		t.Errorf("the client's cookies were forwarded: %q", p.cookie)
	}
}

func TestBackchannelLogoutRefusalIsRelayed(t *testing.T) {
	f := newLogoutSidecar(t)
	up := &upstream{}
	h := newTestShim(t, f.srv.URL, up, nil)
	rec := serve(h, logoutRequest(http.MethodPost, "logout_token=forged"))
	if rec.Code != http.StatusBadRequest {
		t.Fatalf("status = %d, want 400", rec.Code)
	}
	if !strings.Contains(rec.Body.String(), "Logout token refused") {
		t.Errorf("body = %q, want the back-channel route's answer", rec.Body.String())
	}
	if up.count() != 0 || len(f.received()) != 1 {
		t.Fatalf("upstream %d, back-channel %d", up.count(), len(f.received()))
	}
}

func TestBackchannelLogoutOversizedBodyIsRefusedHere(t *testing.T) {
	f := newLogoutSidecar(t)
	up := &upstream{}
	h := newTestShim(t, f.srv.URL, up, nil)
	rec := serve(h, logoutRequest(http.MethodPost, "logout_token="+strings.Repeat("a", maxLogoutBody)))
	if rec.Code != http.StatusBadRequest {
		t.Fatalf("status = %d, want 400", rec.Code)
	}
	if got := rec.Header().Get("Content-Type"); got != "application/problem+json" {
		t.Errorf("Content-Type = %q", got)
	}
	if len(f.received()) != 0 || up.count() != 0 {
		t.Fatalf("forwarded %d, upstream %d", len(f.received()), up.count())
	}
	// Exactly at the cap is forwarded.
	body := "logout_token=" + strings.Repeat("a", maxLogoutBody-len("logout_token="))
	if rec := serve(h, logoutRequest(http.MethodPost, body)); rec.Code != http.StatusBadRequest {
		t.Fatalf("status = %d, want the sidecar's 400", rec.Code)
	}
	if posts := f.received(); len(posts) != 1 || len(posts[0].body) != maxLogoutBody {
		t.Fatalf("the body at the cap was not forwarded whole")
	}
}

func TestBackchannelCueOnOtherMethodsIsRelayedOnly(t *testing.T) {
	f := newLogoutSidecar(t)
	up := &upstream{}
	h := newTestShim(t, f.srv.URL, up, nil)
	rec := serve(h, logoutRequest(http.MethodGet, ""))
	if rec.Code != http.StatusBadRequest || len(f.received()) != 0 || up.count() != 0 {
		t.Fatalf("status %d, forwarded %d, upstream %d", rec.Code, len(f.received()), up.count())
	}
}

func TestBackchannelBrokenAnswerGives503(t *testing.T) {
	f := newLogoutSidecar(t)
	f.answer = "big"
	up := &upstream{}
	h := newTestShim(t, f.srv.URL, up, nil)
	rec := serve(h, logoutRequest(http.MethodPost, "logout_token=good"))
	if rec.Code != http.StatusServiceUnavailable || up.count() != 0 {
		t.Fatalf("status %d, upstream %d", rec.Code, up.count())
	}
}

func TestOtherPathsNeverSendTheBody(t *testing.T) {
	f := newLogoutSidecar(t)
	up := &upstream{}
	h := newTestShim(t, f.srv.URL, up, nil)
	req := httptest.NewRequest(http.MethodPost, "http://app.example.test/upload", strings.NewReader("logout_token=good"))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	rec := serve(h, req)
	if rec.Code != http.StatusOK || up.count() != 1 || len(f.received()) != 0 {
		t.Fatalf("status %d, upstream %d, forwarded %d", rec.Code, up.count(), len(f.received()))
	}
}

func TestBackchannelLogoutOfAnInlineBlock(t *testing.T) {
	f := newLogoutSidecar(t)
	up := &upstream{}
	h := newTestShim(t, f.srv.URL, up, func(c *Config) { c.Block = typedBlock() })
	_, hash := mustCanonical(t, typedBlock())
	rec := serve(h, logoutRequest(http.MethodPost, "logout_token=good"))
	if rec.Code != http.StatusOK || up.count() != 0 {
		t.Fatalf("status %d, upstream %d; want 200 and 0", rec.Code, up.count())
	}
	posts := f.received()
	if len(posts) != 1 {
		t.Fatalf("%d back-channel posts, want 1", len(posts))
	}
	if want := "/backchannel-logout/inline/" + hash; posts[0].path != want {
		t.Errorf("posted to %s, want %s", posts[0].path, want)
	}
	if posts[0].middleware != "test@file" {
		t.Errorf("%s = %q, want test@file", middlewareHeader, posts[0].middleware)
	}
}
