// This file owns the unit tests of the header-name rules in headers.go: the classes classify
// gives a name, the table New precomputes from it, the X-Forwarded-Proto value and the
// Connection-named hop-by-hop headers.

package traefikoidcsidecar

import (
	"crypto/tls"
	"net/http"
	"net/http/httptest"
	"testing"
)

// mustSettings validates a config with edit applied, failing the test on an error.
func mustSettings(t *testing.T, edit func(c *Config)) *settings {
	t.Helper()
	cfg := CreateConfig()
	cfg.SidecarUrl = "http://sidecar:4181"
	if edit != nil {
		edit(cfg)
	}
	s, err := validate(cfg)
	if err != nil {
		t.Fatalf("validate: %v", err)
	}
	return s
}

func TestClassify(t *testing.T) {
	defaults := func(c *Config) {}
	regex := func(c *Config) { c.AuthResponseHeadersRegex = "^X-Auth-" }
	broad := func(c *Config) { c.AuthResponseHeadersRegex = ".*" }
	tests := []struct {
		name  string
		edit  func(c *Config)
		key   string
		class uint8
	}{
		{"ordinary header", defaults, "Accept", classKnown},
		{"ordinary header, odd spelling", defaults, "x_custom", classKnown},
		{"hop-by-hop header", defaults, "Connection", classKnown | classHop},
		{"hop-by-hop header Te", defaults, "Te", classKnown | classHop},
		{"content length is hop-by-hop for the shim", defaults, "Content-Length", classKnown | classHop},
		// Go's server only produces canonical keys; like http.Header.Del, the rule covers
		// the canonical spelling.
		{"hop-by-hop header, raw lower case", defaults, "connection", classKnown},
		{"X-Forwarded-For itself", defaults, "X-Forwarded-For", classKnown},
		{"X-Forwarded-For, underscores", defaults, "X_Forwarded_For", classKnown | classForwardedAlt},
		{"X-Forwarded-For, lower case", defaults, "x-forwarded-for", classKnown | classForwardedAlt},
		{"X-Forwarded-Uri, dots", defaults, "x.forwarded.uri", classKnown | classForwardedAlt},
		{"X-Forwarded-Port is not computed by the shim", defaults, "X_Forwarded_Port", classKnown},
		{"identity header", defaults, "X-Forwarded-User", classKnown | classIdentity},
		{"identity header, underscores", defaults, "X_Forwarded_User", classKnown | classIdentity},
		{"identity header, dots and upper case", defaults, "X.FORWARDED.EMAIL", classKnown | classIdentity},
		{"Cookie itself", defaults, "Cookie", classKnown},
		{"Cookie, lower case", defaults, "cookie", classKnown | classCookieAlt},
		{"Cookie, upper case", defaults, "COOKIE", classKnown | classCookieAlt},
		{"not Cookie", defaults, "Cookie_", classKnown},
		{"configured identity header", func(c *Config) { c.AuthResponseHeaders = []string{"X-Auth-User"} }, "x_auth_user", classKnown | classIdentity},
		{"default identity names stay stripped", func(c *Config) { c.AuthResponseHeaders = []string{"X-Auth-User"} }, "X-Forwarded-Groups", classKnown | classIdentity},
		{"X-Forwarded-Host configured as identity", func(c *Config) { c.AuthResponseHeaders = []string{"X-Forwarded-Host"} }, "X_Forwarded_Host", classKnown | classForwardedAlt | classIdentity},
		{"regex match", regex, "X-Auth-Role", classKnown | classRegex},
		{"regex match, other spelling", regex, "x_auth_role", classKnown | classRegex},
		{"regex miss", regex, "X-Other", classKnown},
		{"broad regex spares message headers", broad, "Content-Type", classKnown},
		{"broad regex spares hop-by-hop headers", broad, "Keep-Alive", classKnown | classHop},
		{"broad regex spares Cookie spellings", broad, "cookie", classKnown | classCookieAlt},
		{"broad regex takes identity headers", broad, "X-Forwarded-User", classKnown | classIdentity | classRegex},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := mustSettings(t, tc.edit)
			if got := s.classify(tc.key); got != tc.class {
				t.Errorf("classify(%q) = %05b, want %05b", tc.key, got, tc.class)
			}
		})
	}
}

func TestHeaderClassesAgreeWithClassify(t *testing.T) {
	configs := []struct {
		name string
		edit func(c *Config)
	}{
		{"defaults", nil},
		{"other names", func(c *Config) { c.AuthResponseHeaders = []string{"X-Auth-User", "accept"} }},
		{"regex", func(c *Config) { c.AuthResponseHeadersRegex = "(?i)^(x-auth-|accept)" }},
	}
	for _, cf := range configs {
		t.Run(cf.name, func(t *testing.T) {
			s := mustSettings(t, cf.edit)
			names := append([]string{}, hopHeaders...)
			names = append(names, commonHeaderNames...)
			names = append(names, DefaultAuthResponseHeaders()...)
			names = append(names, s.copyHeaders...)
			for _, name := range names {
				class, ok := s.classes[name]
				if !ok {
					t.Errorf("%s is not in the table", name)
					continue
				}
				if want := s.classify(name); class != want {
					t.Errorf("table has %s as %05b, classify says %05b", name, class, want)
				}
			}
			if len(s.classes) > len(names) {
				t.Errorf("table has %d names, more than the %d it is built from", len(s.classes), len(names))
			}
		})
	}
}

func TestCommonHeaderNamesAreCanonical(t *testing.T) {
	// A name in a spelling Go's server never produces would only waste a table entry.
	for _, name := range commonHeaderNames {
		if http.CanonicalHeaderKey(name) != name {
			t.Errorf("%q is not canonical (%q)", name, http.CanonicalHeaderKey(name))
		}
	}
}

func TestForwardedProtoForSidecar(t *testing.T) {
	tests := []struct {
		name   string
		values []string // nil: no X-Forwarded-Proto
		tls    bool
		want   string
	}{
		{"none, plain connection", nil, false, "http"},
		{"none, TLS connection", nil, true, "https"},
		{"http from Traefik", []string{"http"}, true, "http"},
		{"https from a trusted proxy", []string{"https"}, false, "https"},
		{"ws", []string{"ws"}, false, "http"},
		{"wss, odd case and blanks", []string{" WSS "}, false, "https"},
		{"HTTP upper case is passed on", []string{"HTTP"}, false, "HTTP"},
		{"list is passed on", []string{"http", "https"}, false, "http, https"},
		{"unknown scheme is passed on", []string{"gopher"}, false, "gopher"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			req := httptest.NewRequest(http.MethodGet, "http://app.example.test/", nil)
			if tc.values != nil {
				req.Header[headerXForwardedProto] = tc.values
			}
			if tc.tls {
				req.TLS = &tls.ConnectionState{}
			}
			s := mustSettings(t, nil)
			h, _ := sidecarRequestHeaders(s, req, "/")
			if got := h[headerXForwardedProto]; !sameValues(got, []string{tc.want}) {
				t.Errorf("sidecar X-Forwarded-Proto = %q, want %q", got, tc.want)
			}
			if got := forwardedProto(req); got != tc.want {
				t.Errorf("forwardedProto = %q, want %q", got, tc.want)
			}
		})
	}
}

func TestRemoveConnectionTokens(t *testing.T) {
	tests := []struct {
		name       string
		connection []string
		removed    []string
		kept       []string
	}{
		{"none", nil, nil, []string{"X-A", "Keep-Alive"}},
		{"one token", []string{"keep-alive"}, []string{"Keep-Alive"}, []string{"X-A"}},
		{"list with blanks and empty entries", []string{" x-a ,, keep-alive "}, []string{"X-A", "Keep-Alive"}, []string{"X-B"}},
		{"several values", []string{"X-A", "x-b"}, []string{"X-A", "X-B"}, []string{"Keep-Alive"}},
		{"token in another spelling names that spelling only", []string{"x_b"}, []string{"X_b"}, []string{"X-B"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := http.Header{}
			for _, name := range []string{"X-A", "X-B", "X_b", "Keep-Alive"} {
				h[name] = []string{"1"}
			}
			removeConnectionTokens(h, tc.connection)
			for _, name := range tc.removed {
				if _, ok := h[name]; ok {
					t.Errorf("%s survived", name)
				}
			}
			for _, name := range tc.kept {
				if _, ok := h[name]; !ok {
					t.Errorf("%s was removed", name)
				}
			}
		})
	}
}

func TestSidecarRequestHeadersListsNamesToStrip(t *testing.T) {
	s := mustSettings(t, func(c *Config) { c.AuthResponseHeadersRegex = "^X-Auth-" })
	req := httptest.NewRequest(http.MethodGet, "http://app.example.test/", nil)
	for _, key := range []string{"Accept", "X-Forwarded-User", "x_forwarded_email", "cookie", "Cookie", "X-Auth-Role", "X_Forwarded_Host", "Connection"} {
		req.Header[key] = []string{"v"}
	}
	h, notUpstream := sidecarRequestHeaders(s, req, "/")
	want := map[string]bool{"X-Forwarded-User": true, "x_forwarded_email": true, "cookie": true, "X-Auth-Role": true}
	if len(notUpstream) != len(want) {
		t.Errorf("names to strip = %q, want the %d of %v", notUpstream, len(want), want)
	}
	for _, key := range notUpstream {
		if !want[key] {
			t.Errorf("%s would be stripped from the upstream request", key)
		}
	}
	// The sidecar still gets what the client sent, except hop-by-hop headers and other
	// spellings of the X-Forwarded-* headers the shim sets.
	for _, key := range []string{"Accept", "X-Forwarded-User", "x_forwarded_email", "cookie", "Cookie", "X-Auth-Role"} {
		if !sameValues(h[key], []string{"v"}) {
			t.Errorf("sidecar %s = %q, want the client's", key, h[key])
		}
	}
	for _, key := range []string{"X_Forwarded_Host", "Connection"} {
		if v, ok := h[key]; ok {
			t.Errorf("sidecar got %s: %q", key, v)
		}
	}
	// The client's request itself is untouched until the sidecar allows it.
	if len(req.Header) != 8 {
		t.Errorf("client request has %d headers, want its 8", len(req.Header))
	}
}
