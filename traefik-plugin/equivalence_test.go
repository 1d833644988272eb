// This file owns the differential test of the allowed-request path. ServeHTTP handles header
// names through a precomputed table and one pass per request (headers.go), which is fast under
// Yaegi but harder to read than the rules it implements. The reference model below is the
// plain reading of those rules (the shim's code before that optimisation): copy everything,
// remove hop-by-hop headers, remove every other spelling of each X-Forwarded-* header, and on
// a 2xx remove every spelling of the identity headers and of Cookie. The test runs many
// generated requests, sidecar answers and configurations through both and wants the same
// sidecar request headers, upstream request headers and client Set-Cookie, exactly.

package traefikoidcsidecar

import (
	"crypto/tls"
	"net"
	"net/http"
	"net/http/httptest"
	"sort"
	"strings"
	"testing"
)

// refProtectedHeaders is the reference model's list of message headers (normalised).
var refProtectedHeaders = map[string]bool{
	"cookie":           true,
	"set-cookie":       true,
	"host":             true,
	"date":             true,
	"content-type":     true,
	"content-encoding": true,
	"content-length":   true,
	"content-range":    true,
	"content-language": true,
	"content-location": true,
}

func refRemoveHopHeaders(h http.Header) {
	for _, value := range h.Values("Connection") {
		for _, name := range strings.Split(value, ",") {
			name = strings.TrimSpace(name)
			if name != "" {
				h.Del(name)
			}
		}
	}
	for _, name := range hopHeaders {
		h.Del(name)
	}
}

func refDeleteSpellings(h http.Header, names map[string]bool) {
	var doomed []string
	for key := range h {
		if names[foldForTest(key)] {
			doomed = append(doomed, key)
		}
	}
	for _, key := range doomed {
		delete(h, key)
	}
}

func refDeleteOtherSpellings(h http.Header, canonical string) {
	want := foldForTest(canonical)
	var doomed []string
	for key := range h {
		if key != canonical && foldForTest(key) == want {
			doomed = append(doomed, key)
		}
	}
	for _, key := range doomed {
		delete(h, key)
	}
}

func refCopyValues(values []string) []string {
	out := make([]string, len(values))
	copy(out, values)
	return out
}

func refIsProtected(name string) bool {
	n := foldForTest(name)
	if refProtectedHeaders[n] {
		return true
	}
	for _, h := range hopHeaders {
		if foldForTest(h) == n {
			return true
		}
	}
	return false
}

func refMatchesRegex(s *settings, name string) bool {
	if s.headerRegex == nil || refIsProtected(name) {
		return false
	}
	return s.headerRegex.MatchString(name) || s.headerRegex.MatchString(http.CanonicalHeaderKey(foldForTest(name)))
}

func refSidecarRequestHeaders(req *http.Request) http.Header {
	h := make(http.Header, len(req.Header)+5)
	for key, values := range req.Header {
		h[key] = refCopyValues(values)
	}
	refRemoveHopHeaders(h)
	for _, name := range []string{headerXForwardedFor, headerXForwardedMethod, headerXForwardedProto, headerXForwardedHost, headerXForwardedURI} {
		refDeleteOtherSpellings(h, name)
	}
	if clientIP, _, err := net.SplitHostPort(req.RemoteAddr); err == nil {
		if prior, ok := h[headerXForwardedFor]; ok && len(prior) > 0 {
			clientIP = strings.Join(prior, ", ") + ", " + clientIP
		}
		h.Set(headerXForwardedFor, clientIP)
	}
	h.Set(headerXForwardedMethod, req.Method)
	h.Set(headerXForwardedHost, req.Host)
	h.Set(headerXForwardedURI, req.URL.RequestURI())
	h.Set(headerXForwardedProto, refForwardedProto(req))
	if _, ok := h["User-Agent"]; !ok {
		h["User-Agent"] = []string{""}
	}
	return h
}

func refForwardedProto(req *http.Request) string {
	values := req.Header.Values(headerXForwardedProto)
	if len(values) == 0 {
		if req.TLS != nil {
			return "https"
		}
		return "http"
	}
	if len(values) == 1 {
		switch strings.ToLower(strings.TrimSpace(values[0])) {
		case "ws":
			return "http"
		case "wss":
			return "https"
		}
	}
	return strings.Join(values, ", ")
}

func refCopyToUpstream(s *settings, req *http.Request, resp http.Header) {
	refDeleteSpellings(req.Header, s.stripNames)
	if s.headerRegex != nil {
		var doomed []string
		for key := range req.Header {
			if refMatchesRegex(s, key) {
				doomed = append(doomed, key)
			}
		}
		for _, key := range doomed {
			delete(req.Header, key)
		}
	}
	for _, name := range s.copyHeaders {
		if values := resp[name]; len(values) > 0 {
			req.Header[name] = refCopyValues(values)
		}
	}
	if s.headerRegex != nil {
		for key, values := range resp {
			if refMatchesRegex(s, key) {
				req.Header[key] = refCopyValues(values)
			}
		}
	}
	var cookies []string
	for _, v := range resp["Cookie"] {
		if strings.TrimSpace(v) != "" {
			cookies = append(cookies, v)
		}
	}
	refDeleteOtherSpellings(req.Header, "Cookie")
	if len(cookies) == 0 {
		req.Header.Del("Cookie")
	} else {
		req.Header["Cookie"] = cookies
	}
}

// headerDiff describes how got differs from want ("" if they hold the same keys and values;
// a nil and an empty value list count as the same, as they do on the wire).
func headerDiff(got, want http.Header) string {
	var keys []string
	for key := range got {
		keys = append(keys, key)
	}
	for key := range want {
		if _, ok := got[key]; !ok {
			keys = append(keys, key)
		}
	}
	sort.Strings(keys)
	var out []string
	for _, key := range keys {
		g, gok := got[key]
		w, wok := want[key]
		if gok != wok || !sameValues(g, w) {
			out = append(out, key+": got "+describeValues(g, gok)+", want "+describeValues(w, wok))
		}
	}
	return strings.Join(out, "; ")
}

func describeValues(values []string, present bool) string {
	if !present {
		return "absent"
	}
	return "[" + strings.Join(values, " | ") + "]"
}

// requestPool holds the client headers the generated requests draw from: ordinary names, the
// special ones in their canonical spelling, and other spellings a client or an earlier
// middleware could use (raw keys, which Go would never produce itself).
var requestPool = []struct {
	key    string
	values []string
}{
	{"Accept", []string{"text/html"}},
	{"User-Agent", []string{"Mozilla/5.0"}},
	{"user-agent", []string{"raw lower-case agent"}},
	{"Cookie", []string{"__oidc_session=SECRET; theme=dark"}},
	{"cookie", []string{"raw=1"}},
	{"COOKIE", []string{"upper=1"}},
	{"Cookie_", []string{"not-a-cookie=1"}},
	{"Connection", []string{"keep-alive, X-Secret-Hop, x_custom", "x-forwarded-proto"}},
	{"connection", []string{"close"}},
	{"X-Secret-Hop", []string{"1"}},
	{"X_custom", []string{"hop by name"}},
	{"Keep-Alive", []string{"timeout=5"}},
	{"Te", []string{"trailers"}},
	{"TE", []string{"raw upper"}},
	{"Upgrade", []string{"websocket"}},
	{"Transfer-Encoding", []string{"chunked"}},
	{"Content-Length", []string{"11"}},
	{"Expect", []string{"100-continue"}},
	{"Proxy-Connection", []string{"keep-alive"}},
	{"Proxy-Authorization", []string{"Basic eA=="}},
	{"Content-Type", []string{"application/json"}},
	{"content_type", []string{"text/evil"}},
	{"X-Forwarded-For", []string{"198.51.100.1", "10.0.0.1"}},
	{"X_Forwarded_For", []string{"6.6.6.6"}},
	{"x-forwarded-for", []string{"7.7.7.7"}},
	{"X-Forwarded-Proto", []string{"https"}},
	{"X.Forwarded.Proto", []string{"http"}},
	{"X-Forwarded-Host", []string{"public.example.test"}},
	{"x_forwarded_host", []string{"evil.example.test"}},
	{"X-Forwarded-Method", []string{"GET"}},
	{"X-Forwarded-Uri", []string{"/public"}},
	{"x.forwarded.uri", []string{"/evil"}},
	{"X-Forwarded-Port", []string{"443"}},
	{"X-Real-Ip", []string{"203.0.113.7"}},
	{"X-Forwarded-User", []string{"mallory"}},
	{"x_forwarded_user", []string{"mallory"}},
	{"X.FORWARDED.EMAIL", []string{"mallory@example.test"}},
	{"X-Forwarded-Groups", []string{"admins"}},
	{"X-Auth-User", []string{"mallory"}},
	{"x.auth.user", []string{"mallory"}},
	{"X-Auth-Role", []string{"admin"}},
	{"X_auth_role", []string{"admin"}},
	{"X-Custom", []string{"kept"}},
	{"X-Empty", []string{}},
	{"Sec-Fetch-Mode", []string{"navigate"}},
}

// protoValues are the X-Forwarded-Proto values the generated requests carry, besides none.
var protoValues = [][]string{{"http"}, {"https"}, {"ws"}, {" WSS "}, {"http", "https"}, {"gopher"}}

// sidecarReplies are the 2xx answers the generated requests get.
var sidecarReplies = []http.Header{
	{
		"X-Forwarded-User":   {"alice"},
		"X-Forwarded-Email":  {"alice@example.test"},
		"X-Forwarded-Groups": {"admins,devs"},
		"Cookie":             {"theme=dark"},
	},
	{
		"X-Forwarded-User": {"bob"},
		"Cookie":           {"  "},
		"Set-Cookie":       {"__oidc_session=new; Path=/", "__oidc_session_1=more; Path=/"},
		"X-Auth-Role":      {"viewer"},
		"X_Auth_Tenant":    {"acme"},
		"Content-Type":     {"text/plain"},
		"Date":             {"Mon, 02 Jan 2006 15:04:05 GMT"},
	},
	{
		"Cookie":         {"", "a=1", "b=2"},
		"X-Auth-User":    {"carol"},
		"x-auth-lower":   {"raw"},
		"Content-Length": {"0"},
	},
	{},
}

// nextRand is a small deterministic generator (xorshift), so failures are reproducible.
func nextRand(x uint32) uint32 {
	x ^= x << 13
	x ^= x >> 17
	x ^= x << 5
	return x
}

// generatedRequest builds request number i: a pseudo-random subset of requestPool, plus
// varying method, remote address, TLS and X-Forwarded-Proto.
func generatedRequest(i int) *http.Request {
	method := http.MethodGet
	if i%3 == 1 {
		method = http.MethodPost
	}
	req := httptest.NewRequest(method, "http://app.example.test:8443/a/b?c=d&e=%2F", nil)
	remotes := []string{"203.0.113.7:5555", "[2001:db8::7]:443", "no-port"}
	req.RemoteAddr = remotes[i%len(remotes)]
	if i%4 == 0 {
		req.TLS = &tls.ConnectionState{}
	}
	req.Header = http.Header{}
	x := uint32(2463534242 + i*7919)
	for _, entry := range requestPool {
		x = nextRand(x)
		if x%3 == 0 {
			req.Header[entry.key] = append([]string{}, entry.values...)
		}
	}
	if p := i % (len(protoValues) + 1); p < len(protoValues) {
		req.Header[headerXForwardedProto] = append([]string{}, protoValues[p]...)
	}
	// Every fifth request carries a lone Connection token, with the headers such tokens name:
	// the shim skips the Connection pass for tokens that only name hop-by-hop headers
	// (hopTokens) and must not for any other.
	if i%5 == 3 {
		req.Header["Connection"] = []string{loneConnectionTokens[(i/5)%len(loneConnectionTokens)]}
		req.Header["Keep-Alive"] = []string{"timeout=5"}
		req.Header["Upgrade"] = []string{"websocket"}
		req.Header["Close"] = []string{"named by Connection: close"}
		req.Header["X-Secret-Hop"] = []string{"1"}
	}
	return req
}

// loneConnectionTokens are the single Connection values of the generated requests.
var loneConnectionTokens = []string{"keep-alive", "Upgrade", "close", "Keep-Alive", "x-secret-hop", "upgrade", "keep-alive, close"}

func TestAllowedPathMatchesReferenceModel(t *testing.T) {
	configs := []struct {
		name string
		edit func(c *Config)
	}{
		{"defaults", nil},
		{"other names", func(c *Config) {
			c.AuthResponseHeaders = []string{"X-Auth-User", "x_forwarded_host", "X-Forwarded-User"}
		}},
		{"no names", func(c *Config) { c.AuthResponseHeaders = nil }},
		{"regex", func(c *Config) { c.AuthResponseHeadersRegex = "^X-Auth-" }},
		{"broad regex", func(c *Config) { c.AuthResponseHeadersRegex = ".*" }},
		{"case-insensitive regex", func(c *Config) { c.AuthResponseHeadersRegex = "(?i)user|auth-(role|lower)" }},
	}
	const requests = 60
	for _, cf := range configs {
		cf := cf
		t.Run(cf.name, func(t *testing.T) {
			failures := 0
			for i := 0; i < requests && failures < 5; i++ {
				reply := sidecarReplies[i%len(sidecarReplies)]
				sidecar := &memorySidecar{status: http.StatusOK, header: reply}
				up := &upstream{}
				m := newMemoryShim(t, sidecar, up, cf.edit)

				req := generatedRequest(i)
				model := generatedRequest(i)
				rec := httptest.NewRecorder()
				rec.Header().Add("Set-Cookie", "early=1")
				m.ServeHTTP(rec, req)
				if up.count() != 1 {
					t.Fatalf("request %d: upstream called %d times, want 1", i, up.count())
				}

				wantSidecar := refSidecarRequestHeaders(model)
				if d := headerDiff(sidecar.seen, wantSidecar); d != "" {
					failures++
					t.Errorf("request %d: sidecar headers differ from the model: %s", i, d)
				}
				refCopyToUpstream(m.cfg, model, reply)
				if d := headerDiff(req.Header, model.Header); d != "" {
					failures++
					t.Errorf("request %d: upstream headers differ from the model: %s", i, d)
				}
				// An earlier middleware's cookie, the sidecar's, then the upstream's own.
				wantCookies := append([]string{"early=1"}, reply["Set-Cookie"]...)
				wantCookies = append(wantCookies, "app=1")
				if got := rec.Header()["Set-Cookie"]; !sameValues(got, wantCookies) {
					failures++
					t.Errorf("request %d: client Set-Cookie = %q, want %q", i, got, wantCookies)
				}
			}
		})
	}
}
