// This file owns the tests of an inline block's own Headers on the shim's side (issue 18):
// with AuthResponseHeaders left at its default, the names the block lists are copied from the
// sidecar's 2xx answer onto the upstream request, and client-sent copies of them never reach
// the upstream; an explicit AuthResponseHeaders is used as it is.

package traefikoidcsidecar

import (
	"net/http"
	"net/http/httptest"
	"testing"
)

// headersBlock is a traefik-oidc-auth block whose Headers are the kinds users paste: a
// templated Authorization, a static value, and the README's migration example.
func headersBlock() map[string]interface{} {
	block := typedBlock()
	block["Headers"] = []interface{}{
		map[string]interface{}{"Name": "Authorization", "Value": "Bearer: {{ .accessToken }}"},
		map[string]interface{}{"Name": "X-Static-Header", "Value": "42"},
		map[string]interface{}{"Name": "x-oidc-username", "Value": "{{ .claims.preferred_username }}"},
	}
	return block
}

// headersSidecar answers 200 with the identity headers and what the sidecar renders for
// headersBlock.
func headersSidecar() *memorySidecar {
	return &memorySidecar{status: http.StatusOK, header: http.Header{
		"X-Forwarded-User": {"alice"},
		"Authorization":    {"Bearer: at-from-sidecar"},
		"X-Static-Header":  {"42"},
		"X-Oidc-Username":  {"alice"},
	}}
}

// spoofingRequest carries client-made copies of the block's headers, in several spellings.
func spoofingRequest() *http.Request {
	req := httptest.NewRequest(http.MethodGet, "http://app.example.test/page", nil)
	req.Header["Authorization"] = []string{"Bearer: forged"}
	req.Header["X-Static-Header"] = []string{"666"}
	req.Header["X_static_header"] = []string{"666"}
	req.Header["X-Oidc-Username"] = []string{"mallory"}
	req.Header["X.Oidc.Username"] = []string{"mallory"}
	return req
}

// inlineMemoryShim builds the shim with block inline and edit applied, against sidecar.
func inlineMemoryShim(t *testing.T, sidecar *memorySidecar, up http.Handler, block map[string]interface{}, edit func(c *Config)) *shim {
	t.Helper()
	return newMemoryShim(t, sidecar, up, func(c *Config) {
		c.Middleware = ""
		c.Block = block
		if edit != nil {
			edit(c)
		}
	})
}

// wantOnly fails unless h holds exactly value under name and no other spelling of it.
func wantOnly(t *testing.T, h http.Header, name, value string) {
	t.Helper()
	keys := keysLike(h, name)
	if len(keys) != 1 || !sameValues(h[keys[0]], []string{value}) {
		got := map[string][]string{}
		for _, k := range keys {
			got[k] = h[k]
		}
		t.Errorf("upstream %s: got %q, want only %q", name, got, value)
	}
}

func TestInlineBlockHeadersReachUpstreamAndSpoofsDoNot(t *testing.T) {
	cases := []struct {
		name  string
		block map[string]interface{}
	}{
		{"typed", headersBlock()},
		// Docker labels: keys lower-cased, every value a string, lists of objects indexed.
		{"labels", map[string]interface{}{
			"provider": map[string]interface{}{"url": "https://sso.example.com/realms/main", "clientid": "app"},
			"secret":   "0123456789abcdef0123456789abcdef",
			"headers": map[string]interface{}{
				"0": map[string]interface{}{"name": "Authorization", "value": "Bearer: {{ .accessToken }}"},
				"1": map[string]interface{}{"name": " X-Static-Header ", "value": "42"},
				"2": map[string]interface{}{"name": "X-Oidc-Username", "value": "{{ .claims.preferred_username }}"},
			},
		}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			up := &upstream{}
			m := inlineMemoryShim(t, headersSidecar(), up, c.block, nil)
			rec := serve(m, spoofingRequest())
			if rec.Code != http.StatusOK || up.count() != 1 {
				t.Fatalf("status %d, upstream calls %d; want 200 and 1", rec.Code, up.count())
			}
			seen := up.seen()
			wantOnly(t, seen, "Authorization", "Bearer: at-from-sidecar")
			wantOnly(t, seen, "X-Static-Header", "42")
			wantOnly(t, seen, "X-Oidc-Username", "alice")
			wantOnly(t, seen, "X-Forwarded-User", "alice")
		})
	}
}

func TestInlineBlockHeaderMissingFromAnswerIsStripped(t *testing.T) {
	// IncludeWhen or an empty rendering can leave a header out of the sidecar's answer: the
	// client's copy must not stand in for it.
	sidecar := headersSidecar()
	sidecar.header.Del("X-Static-Header")
	up := &upstream{}
	// A variable, not a call inside serve's arguments: Yaegi v0.16.1 cannot pass an
	// interpreted *shim returned by a call straight on as an http.Handler.
	m := inlineMemoryShim(t, sidecar, up, headersBlock(), nil)
	serve(m, spoofingRequest())
	if keys := keysLike(up.seen(), "X-Static-Header"); len(keys) != 0 {
		t.Errorf("a client-sent X-Static-Header reached the upstream: %q", keys)
	}
}

func TestInlineBlockHeaderNamesAreWorkedOutInNew(t *testing.T) {
	m := inlineMemoryShim(t, headersSidecar(), &upstream{}, headersBlock(), nil)
	want := []string{"X-Forwarded-User", "X-Forwarded-Email", "X-Forwarded-Groups", "Authorization", "X-Static-Header", "X-Oidc-Username"}
	if !sameValues(m.copyHeaders, want) {
		t.Errorf("copyHeaders = %q, want %q", m.copyHeaders, want)
	}
	// In the precomputed table, so a request pays one map lookup for them.
	for _, name := range want {
		if m.cfg.classes[name]&classIdentity == 0 {
			t.Errorf("classes[%q] = %b, want the identity class", name, m.cfg.classes[name])
		}
	}
}

func TestInlineDefaultListWrittenOutStillAddsBlockHeaders(t *testing.T) {
	// Labels deliver the list as one string that Traefik splits without trimming.
	m := inlineMemoryShim(t, headersSidecar(), &upstream{}, headersBlock(), func(c *Config) {
		c.AuthResponseHeaders = []string{"x-forwarded-user", " X-Forwarded-Email", "", "X-FORWARDED-GROUPS "}
	})
	if len(m.copyHeaders) != 6 {
		t.Errorf("copyHeaders = %q, want the defaults and the block's three", m.copyHeaders)
	}
}

func TestInlineExplicitAuthResponseHeadersWin(t *testing.T) {
	cases := []struct {
		name  string
		names []string
	}{
		{"one name", []string{"X-Forwarded-User"}},
		{"defaults reordered", []string{"X-Forwarded-Email", "X-Forwarded-User", "X-Forwarded-Groups"}},
		{"defaults and more", []string{"X-Forwarded-User", "X-Forwarded-Email", "X-Forwarded-Groups", "X-Other"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			up := &upstream{}
			m := inlineMemoryShim(t, headersSidecar(), up, headersBlock(), func(cfg *Config) {
				cfg.AuthResponseHeaders = c.names
			})
			serve(m, spoofingRequest())
			seen := up.seen()
			// Not copied, not stripped: the list says what the upstream gets from the sidecar.
			if got := seen["X-Static-Header"]; !sameValues(got, []string{"666"}) {
				t.Errorf("X-Static-Header upstream = %q, want the client's own", got)
			}
			if got := seen["Authorization"]; !sameValues(got, []string{"Bearer: forged"}) {
				t.Errorf("Authorization upstream = %q, want the client's own", got)
			}
			wantOnly(t, seen, "X-Forwarded-User", "alice")
		})
	}
}

func TestNamedMiddlewareCopiesOnlyTheDefaults(t *testing.T) {
	// Without an inline block the shim knows no Headers: the defaults only, as before.
	up := &upstream{}
	m := newMemoryShim(t, headersSidecar(), up, nil)
	serve(m, spoofingRequest())
	if got := up.seen()["X-Static-Header"]; !sameValues(got, []string{"666"}) {
		t.Errorf("X-Static-Header upstream = %q, want the client's own", got)
	}
	if len(m.copyHeaders) != 3 {
		t.Errorf("copyHeaders = %q, want the three defaults", m.copyHeaders)
	}
}

func TestBlockHeaderNames(t *testing.T) {
	cases := []struct {
		name      string
		canonical string
		want      []string
	}{
		{"names in order, blanks dropped", `{"Headers":[{"Name":"A"},{"Name":" "},{"Name":" B "},{"Value":"v"}]}`, []string{"A", "B"}},
		{"no Headers", `{"Secret":"s"}`, nil},
		{"Headers of another shape", `{"Headers":"X-A"}`, nil},
		{"no block", ``, nil},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if got := blockHeaderNames([]byte(c.canonical)); !sameValues(got, c.want) {
				t.Errorf("blockHeaderNames = %q, want %q", got, c.want)
			}
		})
	}
}

func TestInlineBlockHeaderNamesTheShimCannotCarryAreSkipped(t *testing.T) {
	block := typedBlock()
	block["Headers"] = []interface{}{
		map[string]interface{}{"Name": "Host", "Value": "x"},
		map[string]interface{}{"Name": "Bad Name", "Value": "x"},
		map[string]interface{}{"Name": "X-Ok", "Value": "x"},
	}
	m := inlineMemoryShim(t, headersSidecar(), &upstream{}, block, nil)
	want := []string{"X-Forwarded-User", "X-Forwarded-Email", "X-Forwarded-Groups", "X-Ok"}
	if !sameValues(m.copyHeaders, want) {
		t.Errorf("copyHeaders = %q, want %q", m.copyHeaders, want)
	}
}
