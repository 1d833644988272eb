// This file owns the tests of the sidecar request: its URL, method and body, the client
// headers it carries, and the X-Forwarded-* values the sidecar rebuilds the request from.

package traefikoidcsidecar

import (
	"crypto/tls"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

func TestSidecarRequest(t *testing.T) {
	tests := []struct {
		name       string
		sidecarURL string // path appended to the fake sidecar's URL
		middleware string
		build      func() *http.Request
		want       map[string]string // header -> exact single value
		absent     []string          // headers (any spelling) that must not be sent
		wantURI    string
	}{
		{
			name: "plain http POST with navigation headers",
			build: func() *http.Request {
				r := httptest.NewRequest(http.MethodPost, "http://app.example.test:8443/a/b?c=d&e=%2F", strings.NewReader("secret-body"))
				r.RemoteAddr = "203.0.113.7:5555"
				r.Header.Set("Cookie", "__oidc_session=abc; theme=dark")
				r.Header.Set("Authorization", "Bearer token")
				r.Header.Set("Proxy-Authorization", "Basic cHJveHk=")
				r.Header.Set("Accept", "text/html")
				r.Header.Set("Sec-Fetch-Mode", "navigate")
				r.Header.Set("Sec-Fetch-Dest", "document")
				r.Header.Set("User-Agent", "Mozilla/5.0 (test)")
				r.Header.Set("Content-Type", "text/plain")
				r.Header.Set("Content-Length", "11")
				r.Header.Set("X-Custom", "kept")
				return r
			},
			want: map[string]string{
				"X-Forwarded-Method":  "POST",
				"X-Forwarded-Proto":   "http",
				"X-Forwarded-Host":    "app.example.test:8443",
				"X-Forwarded-Uri":     "/a/b?c=d&e=%2F",
				"X-Forwarded-For":     "203.0.113.7",
				"Cookie":              "__oidc_session=abc; theme=dark",
				"Authorization":       "Bearer token",
				"Proxy-Authorization": "Basic cHJveHk=",
				"Accept":              "text/html",
				"Sec-Fetch-Mode":      "navigate",
				"Sec-Fetch-Dest":      "document",
				"User-Agent":          "Mozilla/5.0 (test)",
				"X-Custom":            "kept",
			},
			wantURI: "/auth/default",
		},
		{
			name: "TLS request",
			build: func() *http.Request {
				r := httptest.NewRequest(http.MethodGet, "https://app.example.test/", nil)
				r.TLS = &tls.ConnectionState{}
				return r
			},
			want:    map[string]string{"X-Forwarded-Proto": "https", "X-Forwarded-Host": "app.example.test", "X-Forwarded-Uri": "/"},
			wantURI: "/auth/default",
		},
		{
			name: "incoming X-Forwarded-Proto from Traefik's entrypoint is kept",
			build: func() *http.Request {
				r := httptest.NewRequest(http.MethodGet, "http://app.example.test/", nil)
				r.Header.Set("X-Forwarded-Proto", "https")
				return r
			},
			want:    map[string]string{"X-Forwarded-Proto": "https"},
			wantURI: "/auth/default",
		},
		{
			name: "websocket handshake labelled wss by Traefik",
			build: func() *http.Request {
				r := httptest.NewRequest(http.MethodGet, "http://app.example.test/socket", nil)
				r.Header.Set("X-Forwarded-Proto", "wss")
				r.Header.Set("Connection", "Upgrade")
				r.Header.Set("Upgrade", "websocket")
				r.Header.Set("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ==")
				return r
			},
			want:    map[string]string{"X-Forwarded-Proto": "https", "Sec-Websocket-Key": "dGhlIHNhbXBsZSBub25jZQ=="},
			absent:  []string{"Connection", "Upgrade"},
			wantURI: "/auth/default",
		},
		{
			name: "websocket handshake labelled ws by Traefik",
			build: func() *http.Request {
				r := httptest.NewRequest(http.MethodGet, "http://app.example.test/socket", nil)
				r.Header.Set("X-Forwarded-Proto", "ws")
				return r
			},
			want:    map[string]string{"X-Forwarded-Proto": "http"},
			wantURI: "/auth/default",
		},
		{
			name: "claimed method, host and URI are replaced by the real ones",
			build: func() *http.Request {
				r := httptest.NewRequest(http.MethodDelete, "http://app.example.test/private?x=1", nil)
				r.Header.Set("X-Forwarded-Method", "GET")
				r.Header.Set("X-Forwarded-Host", "public.example.test")
				r.Header.Set("X-Forwarded-Uri", "/public")
				r.Header["X_Forwarded_Host"] = []string{"evil.example.test"}
				r.Header["x.forwarded.uri"] = []string{"/evil"}
				r.Header["X_forwarded_proto"] = []string{"https"}
				return r
			},
			want: map[string]string{
				"X-Forwarded-Method": "DELETE",
				"X-Forwarded-Host":   "app.example.test",
				"X-Forwarded-Uri":    "/private?x=1",
				"X-Forwarded-Proto":  "http",
			},
			wantURI: "/auth/default",
		},
		{
			name: "X-Forwarded-For chain is extended",
			build: func() *http.Request {
				r := httptest.NewRequest(http.MethodGet, "http://app.example.test/", nil)
				r.RemoteAddr = "[2001:db8::7]:443"
				r.Header.Add("X-Forwarded-For", "198.51.100.1")
				r.Header.Add("X-Forwarded-For", "10.0.0.1")
				r.Header["X_Forwarded_For"] = []string{"6.6.6.6"}
				return r
			},
			want:    map[string]string{"X-Forwarded-For": "198.51.100.1, 10.0.0.1, 2001:db8::7"},
			wantURI: "/auth/default",
		},
		{
			name: "hop-by-hop headers are dropped",
			build: func() *http.Request {
				r := httptest.NewRequest(http.MethodGet, "http://app.example.test/", nil)
				r.Header.Set("Connection", "keep-alive, X-Secret-Hop")
				r.Header.Set("X-Secret-Hop", "1")
				r.Header.Set("Keep-Alive", "timeout=5")
				r.Header.Set("Te", "trailers")
				r.Header.Set("Trailer", "X-Checksum")
				r.Header.Set("Transfer-Encoding", "chunked")
				r.Header.Set("Upgrade", "h2c")
				r.Header.Set("Http2-Settings", "AAMAAABkAAQAAP__")
				r.Header.Set("Proxy-Connection", "keep-alive")
				r.Header.Set("Expect", "100-continue")
				return r
			},
			absent: []string{
				"Connection", "X-Secret-Hop", "Keep-Alive", "Te", "Trailer", "Upgrade",
				"Http2-Settings", "Proxy-Connection", "Expect", "Transfer-Encoding",
			},
			wantURI: "/auth/default",
		},
		{
			name: "no client User-Agent means none sent",
			build: func() *http.Request {
				r := httptest.NewRequest(http.MethodGet, "http://app.example.test/", nil)
				r.Header.Del("User-Agent")
				return r
			},
			absent:  []string{"User-Agent"},
			wantURI: "/auth/default",
		},
		{
			name:       "middleware name is path-escaped below a base path",
			sidecarURL: "/base/",
			middleware: "team a/b?c",
			build: func() *http.Request {
				return httptest.NewRequest(http.MethodGet, "http://app.example.test/", nil)
			},
			wantURI: "/base/auth/team%20a%2Fb%3Fc",
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			sidecar := newFakeSidecar(t, allow())
			up := &upstream{}
			h := newTestShim(t, sidecar.srv.URL+tc.sidecarURL, up, func(c *Config) {
				if tc.middleware != "" {
					c.Middleware = tc.middleware
				}
			})
			rec := serve(h, tc.build())
			if rec.Code != http.StatusOK {
				t.Fatalf("client status = %d, want 200", rec.Code)
			}

			call := sidecar.only(t)
			if call.method != http.MethodGet {
				t.Errorf("sidecar method = %s, want GET", call.method)
			}
			if call.bodyLen != 0 || call.contentLength > 0 {
				t.Errorf("sidecar got a body: %d bytes, Content-Length %d", call.bodyLen, call.contentLength)
			}
			if call.requestURI != tc.wantURI {
				t.Errorf("sidecar request URI = %q, want %q", call.requestURI, tc.wantURI)
			}
			for name, value := range tc.want {
				if got := call.header[name]; !sameValues(got, []string{value}) {
					t.Errorf("sidecar %s = %q, want %q", name, got, value)
				}
			}
			// Every X-Forwarded-* the sidecar reads arrives once, in one spelling.
			for _, name := range []string{"X-Forwarded-Method", "X-Forwarded-Proto", "X-Forwarded-Host", "X-Forwarded-Uri"} {
				keys := keysLike(call.header, name)
				if len(keys) != 1 || len(call.header[name]) != 1 {
					t.Errorf("sidecar got %s as %q", name, keys)
				}
			}
			for _, name := range tc.absent {
				for _, key := range keysLike(call.header, name) {
					if v := call.header[key]; len(v) > 0 && v[0] != "" {
						t.Errorf("sidecar got %s: %q", key, v)
					}
				}
			}
			if ua := call.header.Get("User-Agent"); strings.HasPrefix(ua, "Go-http-client") {
				t.Errorf("sidecar got Go's own User-Agent %q", ua)
			}
		})
	}
}

func TestRemoveHopHeaders(t *testing.T) {
	h := http.Header{}
	h.Set("Connection", "close, X-A")
	h.Add("Connection", "X-B")
	h.Set("X-A", "1")
	h.Set("X-B", "2")
	h.Set("Keep-Alive", "timeout=5")
	h.Set("Content-Length", "10")
	h.Set("Location", "/next")
	h.Set("Proxy-Authorization", "Basic x")
	removeHopHeaders(h)
	for _, name := range []string{"Connection", "X-A", "X-B", "Keep-Alive", "Content-Length"} {
		if _, ok := h[name]; ok {
			t.Errorf("%s survived", name)
		}
	}
	for _, name := range []string{"Location", "Proxy-Authorization"} {
		if _, ok := h[name]; !ok {
			t.Errorf("%s was removed", name)
		}
	}
}
