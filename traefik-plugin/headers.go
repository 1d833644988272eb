// This file owns the header rules of the shim: which headers go to the sidecar, which come
// back to the client or the upstream, and how header names are compared so that a client
// cannot slip an identity header past the shim under another spelling.

package traefikoidcsidecar

import (
	"net"
	"net/http"
	"strings"
)

// Canonical names of the X-Forwarded-* headers the shim computes for the sidecar.
const (
	headerXForwardedFor    = "X-Forwarded-For"
	headerXForwardedMethod = "X-Forwarded-Method"
	headerXForwardedProto  = "X-Forwarded-Proto"
	headerXForwardedHost   = "X-Forwarded-Host"
	headerXForwardedURI    = "X-Forwarded-Uri"
)

// hopHeaders are removed from what the shim forwards in either direction. They describe one
// connection, not the request (RFC 9110 §7.6.1), which is also Traefik forwardAuth's list,
// plus Content-Length and Expect because the shim never forwards a body, and the legacy
// Proxy-Connection. Proxy-Authorization is deliberately kept, as Traefik does: the sidecar
// may be the one that checks it.
var hopHeaders = []string{
	"Connection",
	"Proxy-Connection",
	"Keep-Alive",
	"Te",
	"Trailer",
	"Trailers",
	"Transfer-Encoding",
	"Upgrade",
	"Http2-Settings",
	"Content-Length",
	"Expect",
}

// removeHopHeaders deletes the hop-by-hop headers from h, including every header that the
// Connection header names.
func removeHopHeaders(h http.Header) {
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

// normalizeName folds a header name for comparison: lower case, with '_' and '.' read as
// '-'. Go keeps X_Forwarded_User and X-Forwarded-User as different keys, but many servers and
// frameworks (CGI-style environments, PHP, some Python and Node stacks) treat them as the same
// header, so a spoofed X_Forwarded_User could otherwise reach an upstream as the user name.
//
// Compiled standard-library calls instead of a byte loop: under Yaegi every interpreted loop
// iteration is expensive, and this runs for every header several times per request (the
// benchmarks measured the loop as the shim's hot spot).
func normalizeName(name string) string {
	return nameSeparators.Replace(strings.ToLower(name))
}

// nameSeparators maps the separators servers confuse with '-' onto '-'. Built once.
var nameSeparators = strings.NewReplacer("_", "-", ".", "-")

// canonicalName returns the canonical form of a header name (X-Forwarded-User).
func canonicalName(name string) string {
	return http.CanonicalHeaderKey(name)
}

// isToken reports whether name is a valid HTTP header field name (an RFC 9110 token).
// Written as if statements on purpose: Yaegi v0.16.1 only evaluates the first expression of
// a comma-separated case list in a switch without a tag, so `case a, b, c:` silently turns
// into `case a:` inside Traefik.
func isToken(name string) bool {
	if name == "" {
		return false
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		if (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') {
			continue
		}
		if strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0 {
			continue
		}
		return false
	}
	return true
}

// deleteSpellings removes from h every header whose normalised name is in names.
func deleteSpellings(h http.Header, names map[string]bool) {
	var doomed []string
	for key := range h {
		if names[normalizeName(key)] {
			doomed = append(doomed, key)
		}
	}
	for _, key := range doomed {
		delete(h, key)
	}
}

// deleteOtherSpellings removes every spelling of canonical from h except canonical itself.
func deleteOtherSpellings(h http.Header, canonical string) {
	want := normalizeName(canonical)
	var doomed []string
	for key := range h {
		if key != canonical && normalizeName(key) == want {
			doomed = append(doomed, key)
		}
	}
	for _, key := range doomed {
		delete(h, key)
	}
}

// copyValues returns a copy of values, so that the request and the sidecar response never
// share a backing array.
func copyValues(values []string) []string {
	out := make([]string, len(values))
	copy(out, values)
	return out
}

// protectedHeaders (normalised) are never removed from the request or copied onto it as
// identity headers: they describe the message itself (its body, its cookies, its host), so a
// broad regex such as ".*" must not turn the sidecar's empty-body response metadata into the
// upstream request's, nor drop the client's. Cookie has its own rule in copyToUpstream.
var protectedHeaders = map[string]bool{
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

// isProtected reports whether a header name may not be an identity header: a protected
// header or a hop-by-hop one, in any spelling.
func isProtected(name string) bool {
	n := normalizeName(name)
	if protectedHeaders[n] {
		return true
	}
	for _, h := range hopHeaders {
		if normalizeName(h) == n {
			return true
		}
	}
	return false
}

// matchesRegex reports whether the identity-header regex selects a header name. A name is
// also tried in canonical form with '_' and '.' read as '-', so X_Auth_Role cannot dodge a
// regex written for X-Auth-Role.
func matchesRegex(s *settings, name string) bool {
	if s.headerRegex == nil || isProtected(name) {
		return false
	}
	return s.headerRegex.MatchString(name) || s.headerRegex.MatchString(canonicalName(normalizeName(name)))
}

// sidecarRequestHeaders builds the headers of the sidecar request from the client request:
// everything the client sent except hop-by-hop headers, then the X-Forwarded-* set computed
// as Traefik's forwardAuth computes it.
func sidecarRequestHeaders(req *http.Request) http.Header {
	h := make(http.Header, len(req.Header)+5)
	for key, values := range req.Header {
		h[key] = copyValues(values)
	}
	removeHopHeaders(h)

	// The sidecar reads each of these as exactly one value; a second spelling (X_Forwarded_Host)
	// must not be able to contradict the value the shim sets.
	for _, name := range []string{headerXForwardedFor, headerXForwardedMethod, headerXForwardedProto, headerXForwardedHost, headerXForwardedURI} {
		deleteOtherSpellings(h, name)
	}

	// X-Forwarded-For: the chain so far plus the client, as forwardAuth does. Traefik's
	// entrypoint has already dropped a chain sent by an untrusted client.
	if clientIP, _, err := net.SplitHostPort(req.RemoteAddr); err == nil {
		if prior, ok := h[headerXForwardedFor]; ok && len(prior) > 0 {
			clientIP = strings.Join(prior, ", ") + ", " + clientIP
		}
		h.Set(headerXForwardedFor, clientIP)
	}

	// Method, host and URI always describe this very request: the decision must be about what
	// Traefik routed and will send upstream, not about what a header claims.
	h.Set(headerXForwardedMethod, req.Method)
	h.Set(headerXForwardedHost, req.Host)
	h.Set(headerXForwardedURI, req.URL.RequestURI())
	h.Set(headerXForwardedProto, forwardedProto(req))

	// Go's client would otherwise send its own User-Agent; the sidecar should see the
	// client's, or none, as with forwardAuth.
	if _, ok := h["User-Agent"]; !ok {
		h["User-Agent"] = []string{""}
	}
	return h
}

// forwardedProto returns the X-Forwarded-Proto value for the sidecar. Like forwardAuth, the
// shim keeps an incoming value: Traefik's entrypoint deletes X-Forwarded-Proto from clients
// outside forwardedHeaders.trustedIPs and sets its own, so what arrives here is either
// Traefik's or a trusted proxy's (a TLS-terminating load balancer in front). Traefik labels
// websocket handshakes ws or wss; the handshake itself is HTTP(S) and the sidecar accepts only
// http and https, so those two are mapped. Without an incoming value the TLS state decides.
func forwardedProto(req *http.Request) string {
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
	// Anything else is passed on as Traefik sent it; the sidecar refuses values it cannot
	// read (lists, unknown schemes) rather than guessing, which fails closed.
	return strings.Join(values, ", ")
}

// copyToUpstream applies a 2xx sidecar answer to the upstream request: identity headers are
// replaced by the sidecar's, and the request's cookies by the sidecar's Cookie header.
func copyToUpstream(s *settings, req *http.Request, resp http.Header) {
	// Remove every client-sent spelling of an identity header first, so that only the
	// sidecar's values can reach the upstream.
	deleteSpellings(req.Header, s.stripNames)
	if s.headerRegex != nil {
		var doomed []string
		for key := range req.Header {
			if matchesRegex(s, key) {
				doomed = append(doomed, key)
			}
		}
		for _, key := range doomed {
			delete(req.Header, key)
		}
	}

	for _, name := range s.copyHeaders {
		if values := resp[name]; len(values) > 0 {
			req.Header[name] = copyValues(values)
		}
	}
	if s.headerRegex != nil {
		for key, values := range resp {
			if matchesRegex(s, key) {
				req.Header[key] = copyValues(values)
			}
		}
	}

	// The sidecar answers with the request's cookies minus its own session cookies, so the
	// upstream never sees (and can never leak) the session. No Cookie header from the
	// sidecar means no cookies are left for the upstream.
	cookies := nonEmpty(resp["Cookie"])
	deleteOtherSpellings(req.Header, "Cookie")
	if len(cookies) == 0 {
		req.Header.Del("Cookie")
	} else {
		req.Header["Cookie"] = cookies
	}
}

// nonEmpty returns the non-empty values, in order.
func nonEmpty(values []string) []string {
	var out []string
	for _, v := range values {
		if strings.TrimSpace(v) != "" {
			out = append(out, v)
		}
	}
	return out
}

// copyToClient copies a denying sidecar answer's headers onto the client response, without
// hop-by-hop headers or Content-Length (the shim writes the body itself). Location is copied
// verbatim rather than resolved against the sidecar URL as forwardAuth does by default: the
// sidecar builds public URLs itself, and its internal address must not reach browsers.
func copyToClient(dst, src http.Header) {
	framing := http.Header{}
	for key, values := range src {
		framing[key] = values
	}
	removeHopHeaders(framing)
	for key, values := range framing {
		if key == "Set-Cookie" {
			// Keep cookies that earlier middlewares set; the sidecar's are added.
			for _, v := range values {
				dst.Add(key, v)
			}
			continue
		}
		dst[key] = copyValues(values)
	}
}
