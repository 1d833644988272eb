// This file owns the tests of the decision path: what the upstream receives on a 2xx, what
// the client receives on a denial, and that every failure is answered with 503 and never
// reaches the upstream.

package traefikoidcsidecar

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestAllowForwardsIdentityHeaders(t *testing.T) {
	sidecar := newFakeSidecar(t, allow(
		"X-Forwarded-User", "alice",
		"X-Forwarded-Email", "alice@example.test",
		"X-Forwarded-Groups", "admins,devs",
		"X-Not-Configured", "leak",
	))
	up := &upstream{}
	h := newTestShim(t, sidecar.srv.URL, up, nil)

	req := httptest.NewRequest(http.MethodGet, "http://app.example.test/dashboard", nil)
	req.Header.Set("Cookie", "session=abc")
	rec := serve(h, req)

	if rec.Code != http.StatusOK || rec.Body.String() != "upstream ok" {
		t.Fatalf("client got %d %q, want the upstream's 200", rec.Code, rec.Body.String())
	}
	if up.count() != 1 {
		t.Fatalf("upstream called %d times, want 1", up.count())
	}
	got := up.seen()
	want := map[string]string{
		"X-Forwarded-User":   "alice",
		"X-Forwarded-Email":  "alice@example.test",
		"X-Forwarded-Groups": "admins,devs",
	}
	for name, value := range want {
		if !sameValues(got[name], []string{value}) {
			t.Errorf("upstream %s = %q, want %q", name, got[name], value)
		}
	}
	if v, ok := got["X-Not-Configured"]; ok {
		t.Errorf("unconfigured sidecar header reached the upstream: %q", v)
	}
	if sidecar.only(t).method != http.MethodGet {
		t.Errorf("sidecar was asked with %s, want GET", sidecar.only(t).method)
	}
}

func TestSpoofedIdentityHeadersNeverReachUpstream(t *testing.T) {
	spellings := []string{
		"X-Forwarded-User",
		"x-forwarded-user",
		"X-FORWARDED-USER",
		"X_Forwarded_User",
		"x_forwarded_user",
		"X.Forwarded.User",
		"x.forwarded_user",
		"X-Forwarded-Email",
		"X_forwarded_email",
		"X.Forwarded.Groups",
		"x_forwarded_groups",
	}
	replies := []struct {
		name     string
		reply    func(w http.ResponseWriter, r *http.Request)
		wantUser []string
	}{
		{"sidecar sends the user", allow("X-Forwarded-User", "alice"), []string{"alice"}},
		{"sidecar sends no identity", allow(), nil},
	}
	configs := []struct {
		name string
		edit func(c *Config)
	}{
		{"default headers", nil},
		{"other headers configured", func(c *Config) { c.AuthResponseHeaders = []string{"X-Auth-User"} }},
		{"no headers configured", func(c *Config) { c.AuthResponseHeaders = nil }},
	}
	for _, rp := range replies {
		for _, cf := range configs {
			for _, spelling := range spellings {
				rp, cf, spelling := rp, cf, spelling
				t.Run(rp.name+"/"+cf.name+"/"+spelling, func(t *testing.T) {
					sidecar := newFakeSidecar(t, rp.reply)
					up := &upstream{}
					h := newTestShim(t, sidecar.srv.URL, up, cf.edit)

					req := httptest.NewRequest(http.MethodGet, "http://app.example.test/", nil)
					// Set the raw key: Go would canonicalise it, a client need not.
					req.Header[spelling] = []string{"mallory"}
					rec := serve(h, req)
					if rec.Code != http.StatusOK || up.count() != 1 {
						t.Fatalf("got %d with %d upstream calls, want 200 and 1", rec.Code, up.count())
					}
					got := up.seen()
					for _, identity := range DefaultAuthResponseHeaders() {
						for _, key := range keysLike(got, identity) {
							values := got[key]
							allowed := cf.edit == nil && key == "X-Forwarded-User" && sameValues(values, rp.wantUser)
							if !allowed {
								t.Errorf("upstream got %s: %q", key, values)
							}
						}
					}
					if cf.edit == nil && rp.wantUser != nil && !sameValues(got["X-Forwarded-User"], rp.wantUser) {
						t.Errorf("upstream X-Forwarded-User = %q, want %q", got["X-Forwarded-User"], rp.wantUser)
					}
				})
			}
		}
	}
}

func TestRegexSelectsAndStripsHeaders(t *testing.T) {
	sidecar := newFakeSidecar(t, allow(
		"X-Auth-Role", "viewer",
		"X-Auth-Tenant", "acme",
		"Content-Type", "text/plain",
		"X-Other", "no",
	))
	up := &upstream{}
	h := newTestShim(t, sidecar.srv.URL, up, func(c *Config) { c.AuthResponseHeadersRegex = "^X-Auth-" })

	req := httptest.NewRequest(http.MethodPost, "http://app.example.test/api", strings.NewReader(`{"a":1}`))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("X-Auth-Role", "admin")
	req.Header["X_auth_role"] = []string{"admin"}
	req.Header["x.auth.debug"] = []string{"on"}
	rec := serve(h, req)
	if rec.Code != http.StatusOK || up.count() != 1 {
		t.Fatalf("got %d with %d upstream calls, want 200 and 1", rec.Code, up.count())
	}
	got := up.seen()
	if !sameValues(got["X-Auth-Role"], []string{"viewer"}) {
		t.Errorf("X-Auth-Role = %q, want the sidecar's viewer", got["X-Auth-Role"])
	}
	if !sameValues(got["X-Auth-Tenant"], []string{"acme"}) {
		t.Errorf("X-Auth-Tenant = %q, want acme", got["X-Auth-Tenant"])
	}
	for _, key := range []string{"X_auth_role", "x.auth.debug", "X-Other"} {
		if v, ok := got[key]; ok {
			t.Errorf("upstream got %s: %q", key, v)
		}
	}
	if !sameValues(got["Content-Type"], []string{"application/json"}) {
		t.Errorf("request Content-Type = %q, want the client's application/json", got["Content-Type"])
	}
}

func TestCookieHeaderReplacedBySidecar(t *testing.T) {
	tests := []struct {
		name  string
		reply func(w http.ResponseWriter, r *http.Request)
		want  []string // nil: no Cookie header at all
	}{
		{"other cookies kept", allow("Cookie", "theme=dark; lang=en"), []string{"theme=dark; lang=en"}},
		{"no Cookie from sidecar", allow(), nil},
		{"empty Cookie from sidecar", func(w http.ResponseWriter, r *http.Request) {
			w.Header()["Cookie"] = []string{""}
			w.WriteHeader(http.StatusOK)
		}, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			sidecar := newFakeSidecar(t, tc.reply)
			up := &upstream{}
			h := newTestShim(t, sidecar.srv.URL, up, nil)

			req := httptest.NewRequest(http.MethodGet, "http://app.example.test/", nil)
			req.Header.Set("Cookie", "__oidc_session=SECRET; theme=dark; lang=en")
			req.Header["cookie_"] = []string{"ignored"}
			serve(h, req)
			if up.count() != 1 {
				t.Fatalf("upstream called %d times, want 1", up.count())
			}
			if got := sidecar.only(t).header.Get("Cookie"); got != "__oidc_session=SECRET; theme=dark; lang=en" {
				t.Errorf("sidecar got Cookie %q, want the client's", got)
			}
			got, present := up.seen()["Cookie"]
			if tc.want == nil {
				if present {
					t.Errorf("upstream got Cookie %q, want none", got)
				}
				return
			}
			if !sameValues(got, tc.want) {
				t.Errorf("upstream Cookie = %q, want %q", got, tc.want)
			}
		})
	}
}

func TestSetCookieFromAllowReachesClient(t *testing.T) {
	sidecar := newFakeSidecar(t, allow(
		"Set-Cookie", "__oidc_session=new; Path=/; HttpOnly; Secure",
		"Set-Cookie", "__oidc_session_1=more; Path=/; HttpOnly; Secure",
		"X-Forwarded-User", "alice",
	))
	up := &upstream{}
	h := newTestShim(t, sidecar.srv.URL, up, nil)

	rec := serve(h, httptest.NewRequest(http.MethodGet, "http://app.example.test/", nil))
	if rec.Code != http.StatusOK || up.count() != 1 {
		t.Fatalf("got %d with %d upstream calls, want 200 and 1", rec.Code, up.count())
	}
	want := []string{
		"__oidc_session=new; Path=/; HttpOnly; Secure",
		"__oidc_session_1=more; Path=/; HttpOnly; Secure",
		"app=1",
	}
	if got := rec.Header().Values("Set-Cookie"); !sameValues(got, want) {
		t.Errorf("client Set-Cookie = %q, want %q", got, want)
	}
	if v, ok := up.seen()["Set-Cookie"]; ok {
		t.Errorf("Set-Cookie ended up on the upstream request: %q", v)
	}
}

func TestDenialIsRelayedAndUpstreamNotCalled(t *testing.T) {
	tests := []struct {
		name    string
		status  int
		headers []string // name, value pairs
		body    string
	}{
		{
			name:   "302 to the identity provider",
			status: http.StatusFound,
			headers: []string{
				"Location", "https://idp.example.test/authorize?client_id=app&state=xyz",
				"Set-Cookie", "__oidc_flow=abc; Path=/; HttpOnly; Secure",
				"Cache-Control", "no-store",
			},
		},
		{
			name:    "302 with a relative Location kept verbatim",
			status:  http.StatusFound,
			headers: []string{"Location", "/_oidc/start?rd=%2Fdocs"},
		},
		{
			name:   "401 with WWW-Authenticate",
			status: http.StatusUnauthorized,
			headers: []string{
				"WWW-Authenticate", `Bearer realm="app"`,
				"Content-Type", "application/problem+json",
				"Set-Cookie", "__oidc_session=; Max-Age=0; Path=/",
			},
			body: `{"title":"Unauthorized"}`,
		},
		{
			name:    "403 page",
			status:  http.StatusForbidden,
			headers: []string{"Content-Type", "text/html; charset=utf-8"},
			body:    "<h1>Forbidden</h1>",
		},
		{
			name:    "sidecar's own 500 page",
			status:  http.StatusInternalServerError,
			headers: []string{"Content-Type", "text/plain"},
			body:    "internal error",
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			sidecar := newFakeSidecar(t, func(w http.ResponseWriter, r *http.Request) {
				for i := 0; i+1 < len(tc.headers); i += 2 {
					w.Header().Add(tc.headers[i], tc.headers[i+1])
				}
				// A hop-by-hop header announced through Connection must not be relayed.
				w.Header().Set("Connection", "X-Hop")
				w.Header().Set("X-Hop", "1")
				w.WriteHeader(tc.status)
				_, _ = w.Write([]byte(tc.body))
			})
			up := &upstream{}
			h := newTestShim(t, sidecar.srv.URL, up, nil)

			rec := serve(h, httptest.NewRequest(http.MethodGet, "http://app.example.test/docs", nil))
			if up.count() != 0 {
				t.Fatalf("upstream called %d times on a %d", up.count(), tc.status)
			}
			if rec.Code != tc.status {
				t.Errorf("client status = %d, want %d", rec.Code, tc.status)
			}
			if rec.Body.String() != tc.body {
				t.Errorf("client body = %q, want %q", rec.Body.String(), tc.body)
			}
			for i := 0; i+1 < len(tc.headers); i += 2 {
				if got := rec.Header().Values(tc.headers[i]); !sameValues(got, []string{tc.headers[i+1]}) {
					t.Errorf("client %s = %q, want %q", tc.headers[i], got, tc.headers[i+1])
				}
			}
			for _, name := range []string{"X-Hop", "Connection", "Content-Length", "Transfer-Encoding"} {
				if v, ok := rec.Header()[name]; ok {
					t.Errorf("client got %s: %q", name, v)
				}
			}
		})
	}
}

func TestSidecarRedirectIsNotFollowed(t *testing.T) {
	for _, status := range []int{http.StatusFound, http.StatusTemporaryRedirect, http.StatusPermanentRedirect} {
		status := status
		t.Run(http.StatusText(status), func(t *testing.T) {
			var sidecar *fakeSidecar
			sidecar = newFakeSidecar(t, func(w http.ResponseWriter, r *http.Request) {
				if r.URL.Path == "/landing" {
					// Following the redirect would reach this 200 and let the request in.
					w.Header().Set("X-Forwarded-User", "admin")
					w.WriteHeader(http.StatusOK)
					return
				}
				w.Header().Set("Location", sidecar.srv.URL+"/landing")
				w.WriteHeader(status)
			})
			up := &upstream{}
			h := newTestShim(t, sidecar.srv.URL, up, nil)

			rec := serve(h, httptest.NewRequest(http.MethodGet, "http://app.example.test/", nil))
			if up.count() != 0 {
				t.Fatalf("upstream called after a %d", status)
			}
			if call := sidecar.only(t); call.requestURI != "/auth/default" {
				t.Fatalf("sidecar was asked for %q", call.requestURI)
			}
			if rec.Code != status {
				t.Errorf("client status = %d, want %d", rec.Code, status)
			}
			if got := rec.Header().Get("Location"); got != sidecar.srv.URL+"/landing" {
				t.Errorf("client Location = %q", got)
			}
		})
	}
}

// assertUnavailable checks the fail-closed answer.
func assertUnavailable(t *testing.T, rec *httptest.ResponseRecorder, up *upstream) {
	t.Helper()
	if up.count() != 0 {
		t.Fatalf("upstream called %d times without a decision", up.count())
	}
	if rec.Code != http.StatusServiceUnavailable {
		t.Errorf("client status = %d, want 503", rec.Code)
	}
	if ct := rec.Header().Get("Content-Type"); !strings.HasPrefix(ct, "text/plain") {
		t.Errorf("Content-Type = %q, want text/plain", ct)
	}
	if rec.Body.Len() == 0 || rec.Body.Len() > 200 {
		t.Errorf("body = %q, want a short message", rec.Body.String())
	}
	if v := rec.Header().Values("Set-Cookie"); len(v) != 0 {
		t.Errorf("503 carries Set-Cookie %q", v)
	}
}

func TestSidecarDownGives503(t *testing.T) {
	dead := httptest.NewServer(http.NotFoundHandler())
	deadURL := dead.URL
	dead.Close()

	up := &upstream{}
	h := newTestShim(t, deadURL, up, nil)
	req := httptest.NewRequest(http.MethodGet, "http://app.example.test/", nil)
	req.Header.Set("Cookie", "__oidc_session=TOPSECRET")
	assertUnavailable(t, serve(h, req), up)
}

func TestSlowSidecarGives503(t *testing.T) {
	tests := []struct {
		name  string
		reply func(w http.ResponseWriter, r *http.Request)
	}{
		{"no response headers in time", func(w http.ResponseWriter, r *http.Request) {
			select {
			case <-r.Context().Done():
			case <-time.After(5 * time.Second):
			}
		}},
		{"denial headers but the body stalls", func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Length", "100")
			w.WriteHeader(http.StatusUnauthorized)
			_, _ = w.Write([]byte("partial"))
			w.(http.Flusher).Flush()
			select {
			case <-r.Context().Done():
			case <-time.After(5 * time.Second):
			}
		}},
		{"2xx headers but the body stalls", func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("X-Forwarded-User", "alice")
			w.WriteHeader(http.StatusOK)
			_, _ = w.Write([]byte("partial"))
			w.(http.Flusher).Flush()
			select {
			case <-r.Context().Done():
			case <-time.After(5 * time.Second):
			}
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			sidecar := newFakeSidecar(t, tc.reply)
			up := &upstream{}
			h := newTestShim(t, sidecar.srv.URL, up, func(c *Config) { c.Timeout = "300ms" })

			start := time.Now()
			rec := serve(h, httptest.NewRequest(http.MethodGet, "http://app.example.test/", nil))
			elapsed := time.Since(start)
			assertUnavailable(t, rec, up)
			if elapsed > 3*time.Second {
				t.Errorf("took %v with a 300ms timeout", elapsed)
			}
		})
	}
}

func TestOversizedSidecarBodyGives503(t *testing.T) {
	// A 2xx body is never used, but it is read all the same so that a broken or oversized
	// one fails closed instead of letting the request through.
	for _, status := range []int{http.StatusUnauthorized, http.StatusOK} {
		status := status
		t.Run(http.StatusText(status), func(t *testing.T) {
			sidecar := newFakeSidecar(t, func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("X-Forwarded-User", "alice")
				w.WriteHeader(status)
				_, _ = w.Write([]byte(strings.Repeat("x", maxSidecarBody+1)))
			})
			up := &upstream{}
			h := newTestShim(t, sidecar.srv.URL, up, nil)
			assertUnavailable(t, serve(h, httptest.NewRequest(http.MethodGet, "http://app.example.test/", nil)), up)
		})
	}
}

func TestAllowWithSmallBodyLetsThrough(t *testing.T) {
	sidecar := newFakeSidecar(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Forwarded-User", "alice")
		w.WriteHeader(http.StatusOK)
		_, _ = w.Write([]byte("ok"))
	})
	up := &upstream{}
	h := newTestShim(t, sidecar.srv.URL, up, nil)
	rec := serve(h, httptest.NewRequest(http.MethodGet, "http://app.example.test/", nil))
	if rec.Code != http.StatusOK || up.count() != 1 {
		t.Fatalf("got %d with %d upstream calls, want 200 and 1", rec.Code, up.count())
	}
	if rec.Body.String() != "upstream ok" {
		t.Errorf("client body = %q, want the upstream's", rec.Body.String())
	}
	if got := up.seen()["X-Forwarded-User"]; !sameValues(got, []string{"alice"}) {
		t.Errorf("upstream X-Forwarded-User = %q, want alice", got)
	}
}

func TestUnexpectedSidecarStatusGives503(t *testing.T) {
	// Statuses an HTTP server does not send as a final answer; an in-memory sidecar can.
	for _, status := range []int{0, 100, 199, 600, 999} {
		status := status
		t.Run(strconv.Itoa(status), func(t *testing.T) {
			sidecar := &memorySidecar{status: status, header: http.Header{
				"X-Forwarded-User": {"alice"},
				"Set-Cookie":       {"__oidc_session=x"},
				"Location":         {"https://elsewhere.example.test/"},
			}, body: "odd"}
			up := &upstream{}
			m := newMemoryShim(t, sidecar, up, nil)
			rec := serve(m, httptest.NewRequest(http.MethodGet, "http://app.example.test/", nil))
			assertUnavailable(t, rec, up)
			if v := rec.Header().Get("Location"); v != "" {
				t.Errorf("503 carries Location %q", v)
			}
		})
	}
}

func TestFailureLogHasNoSecrets(t *testing.T) {
	logFile, err := os.CreateTemp(t.TempDir(), "stderr")
	if err != nil {
		t.Fatal(err)
	}
	saved := os.Stderr
	os.Stderr = logFile
	defer func() { os.Stderr = saved }()

	dead := httptest.NewServer(http.NotFoundHandler())
	deadURL := dead.URL
	dead.Close()
	up := &upstream{}
	h := newTestShim(t, deadURL, up, nil)
	req := httptest.NewRequest(http.MethodGet, "http://app.example.test/?token=TOPSECRET", nil)
	req.Header.Set("Cookie", "__oidc_session=TOPSECRET")
	req.Header.Set("Authorization", "Bearer TOPSECRET")
	serve(h, req)

	os.Stderr = saved
	logged, err := os.ReadFile(logFile.Name())
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(logged), "test@file") {
		t.Errorf("failure not logged with the middleware name: %q", logged)
	}
	if strings.Contains(string(logged), "TOPSECRET") {
		t.Errorf("log leaks request secrets: %q", logged)
	}
}

func TestRegexNeverTouchesMessageHeaders(t *testing.T) {
	sidecar := newFakeSidecar(t, allow(
		"X-Auth-Role", "viewer",
		"Content-Type", "text/plain",
		"Set-Cookie", "__oidc_session=x",
	))
	up := &upstream{}
	h := newTestShim(t, sidecar.srv.URL, up, func(c *Config) {
		c.AuthResponseHeadersRegex = "(?i)^(x-auth-.*|content-type|set-cookie|host|transfer-encoding)$"
	})

	req := httptest.NewRequest(http.MethodPost, "http://app.example.test/api", strings.NewReader(`{"a":1}`))
	req.Header.Set("Content-Type", "application/json")
	serve(h, req)
	if up.count() != 1 {
		t.Fatalf("upstream called %d times, want 1", up.count())
	}
	got := up.seen()
	if !sameValues(got["Content-Type"], []string{"application/json"}) {
		t.Errorf("request Content-Type = %q, want the client's application/json", got["Content-Type"])
	}
	if v, ok := got["Set-Cookie"]; ok {
		t.Errorf("Set-Cookie copied onto the upstream request: %q", v)
	}
	if !sameValues(got["X-Auth-Role"], []string{"viewer"}) {
		t.Errorf("X-Auth-Role = %q, want viewer", got["X-Auth-Role"])
	}
}

func TestDenialKeepsEarlierSetCookie(t *testing.T) {
	sidecar := newFakeSidecar(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Location", "https://idp.example.test/authorize")
		w.Header().Add("Set-Cookie", "__oidc_flow=abc")
		w.WriteHeader(http.StatusFound)
	})
	up := &upstream{}
	h := newTestShim(t, sidecar.srv.URL, up, nil)

	rec := httptest.NewRecorder()
	// A middleware earlier in the chain already set a cookie.
	rec.Header().Add("Set-Cookie", "earlier=1")
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "http://app.example.test/", nil))
	want := []string{"earlier=1", "__oidc_flow=abc"}
	if got := rec.Header().Values("Set-Cookie"); !sameValues(got, want) {
		t.Errorf("client Set-Cookie = %q, want %q", got, want)
	}
	if up.count() != 0 {
		t.Errorf("upstream called on a denial")
	}
}

func TestConcurrentRequestsKeepTheirIdentity(t *testing.T) {
	// The sidecar names the user after a test header; the upstream echoes what it got. Under
	// Yaegi this also checks that one interpreted handler serves concurrent requests safely.
	sidecar := newFakeSidecar(t, func(w http.ResponseWriter, r *http.Request) {
		user := r.Header.Get("X-Test-User")
		if strings.HasSuffix(user, "-denied") {
			w.WriteHeader(http.StatusForbidden)
			_, _ = w.Write([]byte("no " + user))
			return
		}
		w.Header().Set("X-Forwarded-User", user)
		w.WriteHeader(http.StatusOK)
	})
	echo := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = w.Write([]byte("hello " + r.Header.Get("X-Forwarded-User")))
	})
	front := httptest.NewServer(newTestShim(t, sidecar.srv.URL, echo, nil))
	defer front.Close()

	const workers = 40
	errs := make(chan string, workers)
	var wg sync.WaitGroup
	for i := 0; i < workers; i++ {
		wg.Add(1)
		// i is passed as an argument: Yaegi v0.16.1 keeps the pre-Go-1.22 shared loop variable.
		go func(n int) {
			defer wg.Done()
			user := "user" + strconv.Itoa(n)
			wantCode, wantBody := http.StatusOK, "hello "+user
			if n%3 == 0 {
				user += "-denied"
				wantCode, wantBody = http.StatusForbidden, "no "+user
			}
			req, err := http.NewRequest(http.MethodGet, front.URL+"/", nil)
			if err != nil {
				errs <- err.Error()
				return
			}
			req.Header.Set("X-Test-User", user)
			req.Header.Set("X-Forwarded-User", "mallory")
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				errs <- err.Error()
				return
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != wantCode || string(body) != wantBody {
				errs <- fmt.Sprintf("%s: got %d %q, want %d %q", user, resp.StatusCode, body, wantCode, wantBody)
			}
		}(i)
	}
	wg.Wait()
	close(errs)
	for e := range errs {
		t.Error(e)
	}
}
