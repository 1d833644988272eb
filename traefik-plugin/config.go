// Package traefikoidcsidecar is the Traefik middleware plugin ("shim") that asks the
// traefik-oidc-sidecar whether a request may pass, the way Traefik's forwardAuth middleware
// would, but without wrapping the ResponseWriter so websockets and streaming keep working.
//
// This file owns the plugin configuration: the Config struct Traefik decodes the dynamic
// configuration into, its defaults (CreateConfig) and its validation.
package traefikoidcsidecar

import (
	"errors"
	"fmt"
	"net/url"
	"regexp"
	"strings"
	"time"
)

// Default configuration values.
const (
	// DefaultMiddleware is the sidecar middleware asked when Middleware is not set.
	DefaultMiddleware = "default"
	// DefaultTimeout bounds one sidecar round trip when Timeout is not set.
	DefaultTimeout = "5s"
)

// DefaultAuthResponseHeaders returns the sidecar's identity headers, which go upstream when
// AuthResponseHeaders is not set. The shim strips client-sent copies of these names on every
// allowed request even when AuthResponseHeaders lists other names: upstreams are built to trust
// them, so a client must never be able to set them.
func DefaultAuthResponseHeaders() []string {
	return []string{"X-Forwarded-User", "X-Forwarded-Email", "X-Forwarded-Groups"}
}

// Config is the plugin configuration. Traefik decodes the middleware's dynamic configuration
// into it with mapstructure, which matches keys to field names case-insensitively
// (sidecarUrl, SIDECARURL and SidecarUrl are the same key) and ignores the json tags; the tags
// only document the usual spelling.
type Config struct {
	// SidecarUrl is the sidecar's base URL (http or https), e.g. http://oidc-sidecar:4181.
	// Required. The shim calls {SidecarUrl}/auth/{Middleware}, or {SidecarUrl}/auth/inline/{hash}
	// with an inline block.
	SidecarUrl string `json:"sidecarUrl,omitempty"`
	// Middleware is the name of the sidecar middleware (its OIDC client configuration) to ask.
	// Not used when the configuration holds an inline block (see Block).
	Middleware string `json:"middleware,omitempty"`
	// Timeout bounds the whole sidecar round trip, as a Go duration string such as "5s".
	Timeout string `json:"timeout,omitempty"`
	// AuthResponseHeaders lists the sidecar response headers that are copied onto the upstream
	// request when the sidecar allows it. Client-sent copies of these names are removed first,
	// in any case and in the _ and . spellings. Left at its default, an inline block's own
	// Headers names are copied (and stripped) as well; a list set to anything else is used as
	// it is, without them.
	AuthResponseHeaders []string `json:"authResponseHeaders,omitempty"`
	// AuthResponseHeadersRegex selects further sidecar response headers to copy upstream;
	// client-sent request headers matching it are removed first. Unanchored, as in Traefik's
	// forwardAuth: use ^...$ to match whole names.
	AuthResponseHeadersRegex string `json:"authResponseHeadersRegex,omitempty"`
	// RegistrationToken is sent as a bearer token when the shim registers an inline block
	// with the sidecar; it must equal the sidecar's inline.registrationToken when that is set.
	RegistrationToken string `json:"registrationToken,omitempty"`
	// Block holds every key that is not one of the above: the inline traefik-oidc-auth
	// middleware block (Provider, Secret, Scopes, ...), as Traefik delivered it. mapstructure's
	// ",remain" collects the keys no other field claimed, and Traefik's loader keeps the tag
	// under Yaegi. When it is empty the shim asks the sidecar's named Middleware instead.
	Block map[string]interface{} `json:"-" mapstructure:",remain"`
}

// CreateConfig returns the default configuration. Traefik decodes the user's configuration
// on top of it, so it must return a pointer.
func CreateConfig() *Config {
	return &Config{
		Middleware:          DefaultMiddleware,
		Timeout:             DefaultTimeout,
		AuthResponseHeaders: DefaultAuthResponseHeaders(),
	}
}

// settings is a validated Config, ready for the request path.
type settings struct {
	authURL     string           // {SidecarUrl}/auth/{escaped Middleware} or /auth/inline/{hash}
	logoutURL   string           // {SidecarUrl}/backchannel-logout/{escaped Middleware} or .../inline/{hash}
	inline      *inlineBlock     // nil unless the config holds an inline block (inline.go)
	timeout     time.Duration    // whole round trip
	copyHeaders []string         // canonical names copied from a 2xx sidecar response
	stripNames  map[string]bool  // normalised names removed from the request on a 2xx
	headerRegex *regexp.Regexp   // nil when AuthResponseHeadersRegex is empty
	classes     map[string]uint8 // precomputed classify answers by exact header name (headers.go)
}

// validate checks a Config and derives the request-path settings. Every problem is a
// configuration error: Traefik then leaves out the routers that use the middleware, so a
// mistake never turns into unauthenticated traffic.
func validate(cfg *Config) (*settings, error) {
	if cfg == nil {
		return nil, errors.New("missing configuration")
	}

	base, err := parseSidecarURL(cfg.SidecarUrl)
	if err != nil {
		return nil, err
	}

	body, hash, err := canonicalBlock(cfg.Block)
	if err != nil {
		return nil, err
	}
	// With an inline block the sidecar middleware is named by the block's hash; the fixed
	// segment "inline" cannot be a middleware name there because the hash follows it.
	mw := cfg.Middleware
	path := url.PathEscape(mw)
	if hash != "" {
		path = "inline/" + hash
	} else {
		if mw == "" {
			return nil, errors.New("middleware: must not be empty (the sidecar middleware name, e.g. \"default\")")
		}
		// "." and ".." survive path escaping and would be collapsed by path normalisation, so
		// /auth/.. could reach a different sidecar route than the middleware check.
		if mw == "." || mw == ".." {
			return nil, fmt.Errorf("middleware: %q is not a valid middleware name", mw)
		}
	}
	if strings.ContainsAny(cfg.RegistrationToken, "\r\n") {
		return nil, errors.New("registrationToken: must be one line")
	}

	timeout, err := time.ParseDuration(strings.TrimSpace(cfg.Timeout))
	if err != nil {
		return nil, fmt.Errorf("timeout: %q is not a duration such as \"5s\" or \"1500ms\"", cfg.Timeout)
	}
	if timeout <= 0 {
		return nil, fmt.Errorf("timeout: %q must be greater than zero", cfg.Timeout)
	}

	root := strings.TrimRight(base.String(), "/")
	s := &settings{
		authURL:    root + "/auth/" + path,
		logoutURL:  root + "/backchannel-logout/" + path,
		timeout:    timeout,
		stripNames: map[string]bool{},
	}
	if hash != "" {
		s.inline = newInlineBlock(root, hash, body, cfg.RegistrationToken)
	}

	// Docker labels arrive as one comma-separated string that Traefik splits without trimming,
	// so blanks around names are tolerated and empty entries skipped.
	for _, raw := range cfg.AuthResponseHeaders {
		name := strings.TrimSpace(raw)
		if name == "" {
			continue
		}
		if !isToken(name) {
			return nil, fmt.Errorf("authResponseHeaders: %q is not a valid header name", raw)
		}
		if isProtected(name) {
			return nil, fmt.Errorf("authResponseHeaders: %q describes the message itself and cannot carry identity", raw)
		}
		s.addCopyName(name)
	}
	// An inline block's own Headers (traefik-oidc-auth sets them on the request it forwards)
	// reach the upstream too, as they do with traefik-oidc-auth, unless AuthResponseHeaders was
	// set: an explicit list is the whole list. The names are worked out here, once, so requests
	// pay only for the longer list. Names the shim cannot carry (not a token, or protected) are
	// skipped: the sidecar refuses the former with a 422, and the latter describe the message.
	if s.inline != nil && isDefaultNames(cfg.AuthResponseHeaders) {
		for _, name := range blockHeaderNames(body) {
			if isToken(name) && !isProtected(name) {
				s.addCopyName(name)
			}
		}
	}
	for _, name := range DefaultAuthResponseHeaders() {
		s.stripNames[normalizeName(name)] = true
	}

	if cfg.AuthResponseHeadersRegex != "" {
		re, err := regexp.Compile(cfg.AuthResponseHeadersRegex)
		if err != nil {
			return nil, fmt.Errorf("authResponseHeadersRegex: %q does not compile: %v", cfg.AuthResponseHeadersRegex, err)
		}
		s.headerRegex = re
	}

	// Last: the table caches classify, which reads the settings above.
	s.classes = s.headerClasses()
	return s, nil
}

// addCopyName adds a valid, unprotected header name to the names copied from the sidecar's 2xx
// answer (once, in canonical form) and to the names stripped from the client's request.
func (s *settings) addCopyName(name string) {
	canonical := canonicalName(name)
	if _, dup := s.stripNames[normalizeName(canonical)]; !dup {
		s.copyHeaders = append(s.copyHeaders, canonical)
	}
	s.stripNames[normalizeName(canonical)] = true
}

// isDefaultNames reports whether an AuthResponseHeaders value is the default list
// (CreateConfig's, blanks aside, in any case), which is how the shim tells that the user did
// not set it: Traefik decodes the user's list over CreateConfig's, element by element, so
// nothing else marks the list as the user's own. Writing the default list out counts as not
// setting it.
func isDefaultNames(names []string) bool {
	defaults := DefaultAuthResponseHeaders()
	i := 0
	for _, raw := range names {
		name := strings.TrimSpace(raw)
		if name == "" {
			continue
		}
		if i >= len(defaults) || canonicalName(name) != defaults[i] {
			return false
		}
		i++
	}
	return i == len(defaults)
}

// parseSidecarURL checks SidecarUrl. A base path is allowed and kept, so http://h/prefix/
// gives http://h/prefix/auth/{name}.
func parseSidecarURL(raw string) (*url.URL, error) {
	if raw == "" {
		return nil, errors.New("sidecarUrl: required (e.g. http://oidc-sidecar:4181)")
	}
	u, err := url.Parse(raw)
	if err != nil {
		return nil, fmt.Errorf("sidecarUrl: %q is not a valid URL: %v", raw, err)
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return nil, fmt.Errorf("sidecarUrl: %q must use http or https", raw)
	}
	if u.Host == "" || u.Hostname() == "" {
		return nil, fmt.Errorf("sidecarUrl: %q has no host", raw)
	}
	// Credentials in the URL would be sent on every request and end up in error logs.
	if u.User != nil {
		return nil, fmt.Errorf("sidecarUrl: must not contain user information")
	}
	// The shim appends /auth/{name}; a query or fragment would end up in the wrong place.
	if u.RawQuery != "" || u.ForceQuery || u.Fragment != "" {
		return nil, fmt.Errorf("sidecarUrl: %q must not have a query or fragment", raw)
	}
	return u, nil
}
