// This file owns the tests of the configuration: CreateConfig's defaults and New's
// validation errors.

package traefikoidcsidecar

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"
)

func TestCreateConfigDefaults(t *testing.T) {
	cfg := CreateConfig()
	if cfg == nil {
		t.Fatal("CreateConfig returned nil")
	}
	if cfg.SidecarUrl != "" {
		t.Errorf("SidecarUrl default = %q, want empty (required)", cfg.SidecarUrl)
	}
	if cfg.Middleware != "default" {
		t.Errorf("Middleware default = %q, want %q", cfg.Middleware, "default")
	}
	if cfg.Timeout != "5s" {
		t.Errorf("Timeout default = %q, want %q", cfg.Timeout, "5s")
	}
	want := []string{"X-Forwarded-User", "X-Forwarded-Email", "X-Forwarded-Groups"}
	if !sameValues(cfg.AuthResponseHeaders, want) {
		t.Errorf("AuthResponseHeaders default = %q, want %q", cfg.AuthResponseHeaders, want)
	}
	if cfg.AuthResponseHeadersRegex != "" {
		t.Errorf("AuthResponseHeadersRegex default = %q, want empty", cfg.AuthResponseHeadersRegex)
	}

	// Each call returns fresh values: Traefik decodes user config into the result, and one
	// router's config must not leak into another's.
	cfg.AuthResponseHeaders[0] = "X-Changed"
	if again := CreateConfig(); again.AuthResponseHeaders[0] != "X-Forwarded-User" {
		t.Errorf("CreateConfig shares its default slice: got %q", again.AuthResponseHeaders[0])
	}
}

func TestNewRejectsBadConfig(t *testing.T) {
	tests := []struct {
		name    string
		edit    func(c *Config)
		wantErr string
	}{
		{"missing url", func(c *Config) { c.SidecarUrl = "" }, "sidecarUrl: required"},
		{"unparsable url", func(c *Config) { c.SidecarUrl = "http://[::1" }, "not a valid URL"},
		{"ftp scheme", func(c *Config) { c.SidecarUrl = "ftp://sidecar:4181" }, "must use http or https"},
		{"no scheme", func(c *Config) { c.SidecarUrl = "sidecar:4181" }, "must use http or https"},
		{"no host", func(c *Config) { c.SidecarUrl = "http:///auth" }, "has no host"},
		{"port only", func(c *Config) { c.SidecarUrl = "http://:4181" }, "has no host"},
		{"user info", func(c *Config) { c.SidecarUrl = "http://u:p@sidecar:4181" }, "user information"},
		{"query", func(c *Config) { c.SidecarUrl = "http://sidecar:4181/?a=b" }, "query or fragment"},
		{"fragment", func(c *Config) { c.SidecarUrl = "http://sidecar:4181/#x" }, "query or fragment"},
		{"bad duration", func(c *Config) { c.Timeout = "five seconds" }, "timeout:"},
		{"duration without unit", func(c *Config) { c.Timeout = "5" }, "timeout:"},
		{"empty duration", func(c *Config) { c.Timeout = "" }, "timeout:"},
		{"zero duration", func(c *Config) { c.Timeout = "0s" }, "greater than zero"},
		{"negative duration", func(c *Config) { c.Timeout = "-1s" }, "greater than zero"},
		{"bad regex", func(c *Config) { c.AuthResponseHeadersRegex = "(" }, "authResponseHeadersRegex"},
		{"empty middleware", func(c *Config) { c.Middleware = "" }, "middleware: must not be empty"},
		{"dot-dot middleware", func(c *Config) { c.Middleware = ".." }, "not a valid middleware name"},
		{"bad header name", func(c *Config) { c.AuthResponseHeaders = []string{"X Forwarded User"} }, "not a valid header name"},
		{"cookie as identity header", func(c *Config) { c.AuthResponseHeaders = []string{"Cookie"} }, "cannot carry identity"},
		{"hop header as identity header", func(c *Config) { c.AuthResponseHeaders = []string{"transfer_encoding"} }, "cannot carry identity"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cfg := CreateConfig()
			cfg.SidecarUrl = "http://sidecar:4181"
			tc.edit(cfg)
			h, err := New(context.Background(), http.NotFoundHandler(), cfg, "bad@file")
			if err == nil {
				t.Fatalf("New accepted %+v", *cfg)
			}
			if h != nil {
				t.Errorf("New returned a handler along with error %v", err)
			}
			if !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("error %q does not mention %q", err, tc.wantErr)
			}
		})
	}
}

func TestNewRejectsNilArguments(t *testing.T) {
	if _, err := New(context.Background(), http.NotFoundHandler(), nil, "x"); err == nil {
		t.Error("New accepted a nil config")
	}
	cfg := CreateConfig()
	cfg.SidecarUrl = "http://sidecar:4181"
	if _, err := New(context.Background(), nil, cfg, "x"); err == nil {
		t.Error("New accepted a nil next handler")
	}
}

func TestNewAcceptsValidConfig(t *testing.T) {
	tests := []struct {
		name        string
		edit        func(c *Config)
		wantURL     string
		wantTimeout time.Duration
		wantCopy    []string
	}{
		{
			name:        "defaults",
			edit:        func(c *Config) {},
			wantURL:     "http://sidecar:4181/auth/default",
			wantTimeout: 5 * time.Second,
			wantCopy:    []string{"X-Forwarded-User", "X-Forwarded-Email", "X-Forwarded-Groups"},
		},
		{
			name: "https with base path and odd middleware name",
			edit: func(c *Config) {
				c.SidecarUrl = "HTTPS://auth.internal:8443/oidc/"
				c.Middleware = "team a/b"
				c.Timeout = "1500ms"
			},
			wantURL:     "https://auth.internal:8443/oidc/auth/team%20a%2Fb",
			wantTimeout: 1500 * time.Millisecond,
			wantCopy:    []string{"X-Forwarded-User", "X-Forwarded-Email", "X-Forwarded-Groups"},
		},
		{
			name: "label-style header list",
			edit: func(c *Config) {
				c.AuthResponseHeaders = []string{"x-auth-user", " X-Auth-Email", "", "X-AUTH-USER"}
			},
			wantURL:     "http://sidecar:4181/auth/default",
			wantTimeout: 5 * time.Second,
			wantCopy:    []string{"X-Auth-User", "X-Auth-Email"},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cfg := CreateConfig()
			cfg.SidecarUrl = "http://sidecar:4181"
			tc.edit(cfg)
			h, err := New(context.Background(), http.NotFoundHandler(), cfg, "ok@file")
			if err != nil {
				t.Fatalf("New: %v", err)
			}
			m, ok := h.(*shim)
			if !ok {
				t.Fatalf("New returned %T", h)
			}
			if m.cfg.authURL != tc.wantURL {
				t.Errorf("auth URL = %q, want %q", m.cfg.authURL, tc.wantURL)
			}
			if m.client.Timeout != tc.wantTimeout || m.timeout != tc.wantTimeout {
				t.Errorf("client timeout = %v, decision timeout = %v, want %v", m.client.Timeout, m.timeout, tc.wantTimeout)
			}
			if !sameValues(m.cfg.copyHeaders, tc.wantCopy) {
				t.Errorf("copied headers = %q, want %q", m.cfg.copyHeaders, tc.wantCopy)
			}
			// The default identity names are always stripped, whatever is configured.
			for _, name := range DefaultAuthResponseHeaders() {
				if !m.cfg.stripNames[foldForTest(name)] {
					t.Errorf("%s is not stripped from client requests", name)
				}
			}
		})
	}
}
