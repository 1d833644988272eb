// This file owns the header rules of the shim: which headers go to the sidecar, which come
// back to the client or the upstream, and how header names are compared so that a client
// cannot slip an identity header past the shim under another spelling.
//
// Traefik runs the shim under Yaegi, where every interpreted statement, loop iteration and
// function call costs hundreds of nanoseconds, while calls into the compiled standard library
// (http.Header.Clone, strings.*) run at native speed. So the request path makes one pass over
// the client's header names and looks each name up in a table built by New (see
// headerClasses); the name-folding rules run per request only for names the table lacks.

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
	removeConnectionTokens(h, h.Values("Connection"))
	for _, name := range hopHeaders {
		h.Del(name)
	}
}

// hopTokens are the Connection values, as whole values, that name nothing but a header in
// hopHeaders (spelled as http.Header.Del would find it), so that removeConnectionTokens has
// nothing to do for them once hop-by-hop headers are gone. Read-only.
var hopTokens = map[string]bool{
	"keep-alive": true,
	"Keep-Alive": true,
	"upgrade":    true,
	"Upgrade":    true,
}

// removeConnectionTokens deletes from h the headers that Connection header values name.
func removeConnectionTokens(h http.Header, connection []string) {
	for _, value := range connection {
		for _, name := range strings.Split(value, ",") {
			name = strings.TrimSpace(name)
			if name != "" {
				h.Del(name)
			}
		}
	}
}

// normalizeName folds a header name for comparison: lower case, with '_' and '.' read as
// '-'. Go keeps X_Forwarded_User and X-Forwarded-User as different keys, but many servers and
// frameworks (CGI-style environments, PHP, some Python and Node stacks) treat them as the same
// header, so a spoofed X_Forwarded_User could otherwise reach an upstream as the user name.
//
// Compiled standard-library calls instead of a byte loop: under Yaegi every interpreted loop
// iteration is expensive. The request path calls this only for names missing from the
// precomputed table (see classify).
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

// protectedHeaders (normalised) are never removed from the request or copied onto it as
// identity headers: they describe the message itself (its body, its cookies, its host), so a
// broad regex such as ".*" must not turn the sidecar's empty-body response metadata into the
// upstream request's, nor drop the client's. Cookie has its own rule in ServeHTTP.
// newProtectedNames adds the hop-by-hop headers, which cannot carry identity either.
var protectedHeaders = newProtectedNames(
	"Cookie",
	"Set-Cookie",
	"Host",
	"Date",
	"Content-Type",
	"Content-Encoding",
	"Content-Length",
	"Content-Range",
	"Content-Language",
	"Content-Location",
)

// newProtectedNames returns the normalised names of the given headers and of hopHeaders.
func newProtectedNames(names ...string) map[string]bool {
	out := map[string]bool{}
	for _, name := range names {
		out[normalizeName(name)] = true
	}
	for _, name := range hopHeaders {
		out[normalizeName(name)] = true
	}
	return out
}

// isProtected reports whether a header name may not be an identity header: a protected
// header or a hop-by-hop one, in any spelling.
func isProtected(name string) bool {
	return protectedHeaders[normalizeName(name)]
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

// What the shim does with a header name, as bits. classify computes them; New precomputes them
// for common names (headerClasses), so that a request usually costs one map lookup per header.
const (
	// classKnown is set on every result, so that 0 means "not in the table" and a name with no
	// rule at all is exactly classKnown.
	classKnown uint8 = 1 << iota
	// classHop: a hop-by-hop header in its canonical spelling. Not sent to the sidecar (the
	// same names http.Header.Del would remove).
	classHop
	// classForwardedAlt: another spelling of an X-Forwarded-* header the shim computes
	// (X_Forwarded_Host, x.forwarded.uri, x-forwarded-for). Not sent to the sidecar, where it
	// could contradict the shim's value; the canonical spelling itself is not in this class.
	classForwardedAlt
	// classIdentity: an identity header in any spelling (the configured and the default
	// names). Removed from the upstream request on a 2xx, so only the sidecar's value arrives.
	classIdentity
	// classRegex: selected by authResponseHeadersRegex. Removed from the upstream request on a
	// 2xx, and copied from the sidecar's 2xx answer.
	classRegex
	// classCookieAlt: a spelling of Cookie other than Cookie itself. Removed from the upstream
	// request on a 2xx: the upstream gets exactly the sidecar's Cookie answer.
	classCookieAlt
)

// Class masks of the two places a client header name can be dropped.
const (
	notToSidecar  = classHop | classForwardedAlt
	notToUpstream = classIdentity | classRegex | classCookieAlt
)

// forwardedHeaders are the X-Forwarded-* headers the shim computes for the sidecar, by
// normalised name.
var forwardedHeaders = map[string]string{
	normalizeName(headerXForwardedFor):    headerXForwardedFor,
	normalizeName(headerXForwardedMethod): headerXForwardedMethod,
	normalizeName(headerXForwardedProto):  headerXForwardedProto,
	normalizeName(headerXForwardedHost):   headerXForwardedHost,
	normalizeName(headerXForwardedURI):    headerXForwardedURI,
}

// isHopHeader reports whether name is one of hopHeaders, spelled exactly as listed.
func isHopHeader(name string) bool {
	for _, hop := range hopHeaders {
		if name == hop {
			return true
		}
	}
	return false
}

// classify returns the classes of a header name, exactly as spelled in the request or the
// sidecar response. It is the one definition of the header rules; headerClasses only caches
// its answers.
func (s *settings) classify(name string) uint8 {
	class := classKnown
	if isHopHeader(name) {
		class |= classHop
	}
	n := normalizeName(name)
	if canonical, ok := forwardedHeaders[n]; ok && name != canonical {
		class |= classForwardedAlt
	}
	if s.stripNames[n] {
		class |= classIdentity
	}
	if matchesRegex(s, name) {
		class |= classRegex
	}
	if n == "cookie" && name != "Cookie" {
		class |= classCookieAlt
	}
	return class
}

// commonHeaderNames are names found on most requests (browsers, Traefik's entrypoint, tracing)
// and on the sidecar's answers, in the canonical spelling Go's server gives them. New
// classifies them once, so that they cost a map lookup per request instead of classify. The
// list only saves time: a name missing from it gets the same answer from classify.
var commonHeaderNames = []string{
	"Accept", "Accept-Encoding", "Accept-Language", "Authorization", "Cache-Control",
	"Content-Type", "Cookie", "Dnt", "Forwarded", "If-Match", "If-Modified-Since",
	"If-None-Match", "If-Range", "If-Unmodified-Since", "Origin", "Pragma", "Priority",
	"Proxy-Authorization", "Range", "Referer", "Sec-Ch-Ua", "Sec-Ch-Ua-Mobile",
	"Sec-Ch-Ua-Platform", "Sec-Fetch-Dest", "Sec-Fetch-Mode", "Sec-Fetch-Site",
	"Sec-Fetch-User", "Sec-Gpc", "Sec-Purpose", "Sec-Websocket-Extensions", "Sec-Websocket-Key",
	"Sec-Websocket-Protocol", "Sec-Websocket-Version", "Upgrade-Insecure-Requests",
	"User-Agent", "Via", "X-Forwarded-For", "X-Forwarded-Host", "X-Forwarded-Method",
	"X-Forwarded-Port", "X-Forwarded-Prefix", "X-Forwarded-Proto", "X-Forwarded-Server",
	"X-Forwarded-Uri", "X-Real-Ip", "X-Request-Id", "X-Requested-With", "Traceparent",
	"Tracestate", "Baggage",
	// The sidecar's answers.
	"Date", "Set-Cookie", "Location", "Www-Authenticate", "Vary", "X-Content-Type-Options",
}

// headerClasses precomputes classify for the hop-by-hop, common, default identity and
// configured names. It runs in New, after stripNames, copyHeaders and headerRegex are set; the
// table is read-only afterwards, so requests share it without locking.
func (s *settings) headerClasses() map[string]uint8 {
	classes := map[string]uint8{}
	lists := [][]string{hopHeaders, commonHeaderNames, DefaultAuthResponseHeaders(), s.copyHeaders}
	for _, names := range lists {
		for _, name := range names {
			classes[name] = s.classify(name)
		}
	}
	return classes
}

// sidecarRequestHeaders builds the headers of the sidecar request from the client request:
// everything the client sent except hop-by-hop headers, then the X-Forwarded-* set computed
// as Traefik's forwardAuth computes it; uri is req.URL.RequestURI(). In the same pass over the
// client's header names it returns the names to remove from the request before it goes
// upstream (identity headers in any spelling, regex matches, other spellings of Cookie), which
// ServeHTTP applies only if the sidecar allows the request.
func sidecarRequestHeaders(s *settings, req *http.Request, uri string) (h http.Header, notUpstream []string) {
	// Named results and plain assignments: under Yaegi every := and var allocates anew each
	// time it runs.
	h = req.Header.Clone()
	classes := s.classes
	for key := range req.Header {
		// Most names are in the table with no rule at all and cost this one lookup.
		if classes[key] != classKnown {
			notUpstream = sortName(s, h, key, notUpstream)
		}
	}
	// Headers the Connection header names are hop-by-hop too (Connection itself is gone). A
	// lone token naming a hop-by-hop header (a browser's keep-alive, the Upgrade Traefik
	// leaves on websocket handshakes) names a header the loop above has already dropped.
	if connection := req.Header["Connection"]; len(connection) > 1 || (len(connection) == 1 && !hopTokens[connection[0]]) {
		removeConnectionTokens(h, connection)
	}

	// X-Forwarded-For: the chain so far plus the client, as forwardAuth does. Traefik's
	// entrypoint has already dropped a chain sent by an untrusted client.
	if clientIP, _, err := net.SplitHostPort(req.RemoteAddr); err == nil {
		if len(h[headerXForwardedFor]) > 0 {
			clientIP = appendForwardedFor(h[headerXForwardedFor], clientIP)
		}
		h[headerXForwardedFor] = []string{clientIP}
	}

	// Method, host and URI always describe this very request: the decision must be about what
	// Traefik routed and will send upstream, not about what a header claims. Assigned directly
	// rather than with h.Set: the names are canonical constants, and a compiled call costs
	// more than the assignment under Yaegi.
	h[headerXForwardedMethod] = []string{req.Method}
	h[headerXForwardedHost] = []string{req.Host}
	h[headerXForwardedURI] = []string{uri}
	// A single http or https, which Traefik's entrypoint sets, is already in h as the client
	// request had it, and is what forwardedProto would return; anything else (including a
	// value removed above because Connection named it) is left to forwardedProto.
	if proto := h[headerXForwardedProto]; len(proto) != 1 || (proto[0] != "http" && proto[0] != "https") {
		h[headerXForwardedProto] = []string{forwardedProto(req)}
	}

	// Go's client would otherwise send its own User-Agent; the sidecar should see the
	// client's, or none, as with forwardAuth. (A User-Agent key holding nil is sent as no
	// User-Agent either way.)
	if h["User-Agent"] == nil {
		h["User-Agent"] = []string{""}
	}
	return h, notUpstream
}

// appendForwardedFor returns the X-Forwarded-For chain prior followed by clientIP. Out of
// line because Traefik's entrypoint usually sends none, and under Yaegi even code that does
// not run costs its function a little on every call (see ServeHTTP).
func appendForwardedFor(prior []string, clientIP string) string {
	return strings.Join(prior, ", ") + ", " + clientIP
}

// sortName applies the header rules to a client header name that is not a plain known name:
// it is dropped from h, the sidecar request's headers, or appended to notUpstream (to be
// dropped upstream on a 2xx), or both. A plain function rather than a method of settings:
// under Yaegi a call of an interpreted method costs several times a function call.
func sortName(s *settings, h http.Header, key string, notUpstream []string) []string {
	class := s.classes[key]
	if class == 0 {
		class = s.classify(key)
	}
	// A second spelling of an X-Forwarded-* header (X_Forwarded_Host) must not be able to
	// contradict the value the shim sets: the sidecar reads each as exactly one value.
	if class&notToSidecar != 0 {
		delete(h, key)
	}
	if class&notToUpstream != 0 {
		notUpstream = append(notUpstream, key)
	}
	return notUpstream
}

// forwardedProto returns the X-Forwarded-Proto value for the sidecar. Like forwardAuth, the
// shim keeps an incoming value: Traefik's entrypoint deletes X-Forwarded-Proto from clients
// outside forwardedHeaders.trustedIPs and sets its own, so what arrives here is either
// Traefik's or a trusted proxy's (a TLS-terminating load balancer in front). Traefik labels
// websocket handshakes ws or wss; the handshake itself is HTTP(S) and the sidecar accepts only
// http and https, so those two are mapped. Without an incoming value the TLS state decides.
func forwardedProto(req *http.Request) string {
	values := req.Header[headerXForwardedProto]
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

// deleteNames deletes the given names from h.
func deleteNames(h http.Header, names []string) {
	for _, name := range names {
		delete(h, name)
	}
}

// copyRegexMatches copies onto the upstream request the sidecar response headers that
// authResponseHeadersRegex selects. A function of its own so that configurations without a
// regex do not pay for it under Yaegi (see ServeHTTP).
func copyRegexMatches(s *settings, dst, resp http.Header) {
	for key, values := range resp {
		class := s.classes[key]
		if class == 0 {
			class = s.classify(key)
		}
		if class&classRegex != 0 {
			dst[key] = values
		}
	}
}

// upstreamCookies sets the upstream Cookie header from the sidecar's Cookie values other than
// a single non-blank one: no non-blank value from the sidecar means no cookies are left for
// the upstream.
func upstreamCookies(dst http.Header, cookies []string) {
	cookies = nonEmpty(cookies)
	if len(cookies) == 0 {
		delete(dst, "Cookie")
	} else {
		dst["Cookie"] = cookies
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
	// A compiled deep copy, so the values below need no further copying.
	framing := src.Clone()
	removeHopHeaders(framing)
	for key, values := range framing {
		if key == "Set-Cookie" {
			// Keep cookies that earlier middlewares set; the sidecar's are added.
			for _, v := range values {
				dst.Add(key, v)
			}
			continue
		}
		dst[key] = values
	}
}
