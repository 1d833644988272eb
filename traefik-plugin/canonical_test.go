// This file owns the tests of the canonical form of inline blocks (canonical.go): the same
// block given with other key order, key case, typed or docker-label string values, comma lists
// or indexed maps must give the same bytes and hash, and the bytes follow the protocol's rules.

package traefikoidcsidecar

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"strings"
	"testing"
)

// typedBlock is a block as the file provider hands it over from typed YAML.
func typedBlock() map[string]interface{} {
	return map[string]interface{}{
		"Secret": "0123456789abcdef0123456789abcdef",
		"Provider": map[string]interface{}{
			"Url":                   "https://sso.example.com/realms/main",
			"ClientId":              "app",
			"ClientSecret":          "${OIDC_CLIENT_SECRET}",
			"UsePkce":               true,
			"TokenRenewalThreshold": 0.75,
		},
		"Scopes": []interface{}{"openid", "profile", "email"},
		"SessionCookie": map[string]interface{}{
			"Secure": false,
			"MaxAge": 3600,
		},
		"Authorization": map[string]interface{}{
			"CheckOnEveryRequest": true,
			"AssertClaims": []interface{}{
				map[string]interface{}{"Name": "groups", "AnyOf": []interface{}{"admins", "ops"}},
				map[string]interface{}{"Name": "email_verified"},
			},
		},
		"Headers": []interface{}{
			map[string]interface{}{"Name": "X-User", "Value": "{{ .claims.sub }}"},
		},
		"AuthorizationParams":      map[string]interface{}{"acr_values": "mfa", "Prompt": "login"},
		"BypassAuthenticationRule": "PathPrefix(`/public`) && Host(`a.example.com`)",
	}
}

// labelBlock is the same block as docker labels deliver it: every value a string, other key
// case, lists as comma-joined strings with blanks, or as maps with index keys.
func labelBlock() map[string]interface{} {
	return map[string]interface{}{
		"secret": "0123456789abcdef0123456789abcdef",
		"PROVIDER": map[string]interface{}{
			"url":                   "https://sso.example.com/realms/main",
			"clientid":              "app",
			"clientSecret":          "${OIDC_CLIENT_SECRET}",
			"usepkce":               "true",
			"tokenRenewalThreshold": "0.75",
		},
		"scopes": "openid, profile,email",
		"sessioncookie": map[string]interface{}{
			"secure": "false",
			"maxage": "3600",
		},
		"authorization": map[string]interface{}{
			"checkOnEveryRequest": "true",
			"assertClaims": map[string]interface{}{
				"1": map[string]interface{}{"name": "email_verified"},
				"0": map[string]interface{}{"NAME": "groups", "anyof": map[string]interface{}{"1": "ops", "0": "admins"}},
			},
		},
		"headers": map[string]interface{}{
			"0": map[string]interface{}{"name": "X-User", "value": "{{ .claims.sub }}"},
		},
		"authorizationparams":      map[string]interface{}{"acr_values": "mfa", "Prompt": "login"},
		"bypassauthenticationrule": "PathPrefix(`/public`) && Host(`a.example.com`)",
	}
}

// wantCanonical is the canonical form of typedBlock, written out by hand from the protocol.
const wantCanonical = `{"Authorization":{"AssertClaims":[{"AnyOf":["admins","ops"],"Name":"groups"},{"Name":"email_verified"}],"CheckOnEveryRequest":"true"},` +
	`"AuthorizationParams":{"Prompt":"login","acr_values":"mfa"},"BypassAuthenticationRule":"PathPrefix(` + "`/public`) && Host(`a.example.com`)" + `",` +
	`"Headers":[{"Name":"X-User","Value":"{{ .claims.sub }}"}],` +
	`"Provider":{"ClientId":"app","ClientSecret":"${OIDC_CLIENT_SECRET}","TokenRenewalThreshold":"0.75","Url":"https://sso.example.com/realms/main","UsePkce":"true"},` +
	`"Scopes":["openid","profile","email"],"Secret":"0123456789abcdef0123456789abcdef","SessionCookie":{"MaxAge":"3600","Secure":"false"}}`

func mustCanonical(t *testing.T, block map[string]interface{}) ([]byte, string) {
	t.Helper()
	body, hash, err := canonicalBlock(block)
	if err != nil {
		t.Fatalf("canonicalBlock: %v", err)
	}
	return body, hash
}

func TestCanonicalTypedForm(t *testing.T) {
	body, hash := mustCanonical(t, typedBlock())
	if string(body) != wantCanonical {
		t.Fatalf("canonical form\n got %s\nwant %s", body, wantCanonical)
	}
	sum := sha256.Sum256([]byte(wantCanonical))
	if want := hex.EncodeToString(sum[:]); hash != want {
		t.Errorf("hash %s, want %s", hash, want)
	}
	if len(hash) != 64 || strings.ToLower(hash) != hash {
		t.Errorf("hash %q is not lowercase hex SHA-256", hash)
	}
}

func TestCanonicalLabelFormIsTheSame(t *testing.T) {
	body, _ := mustCanonical(t, labelBlock())
	if string(body) != wantCanonical {
		t.Fatalf("label form\n got %s\nwant %s", body, wantCanonical)
	}
}

func TestCanonicalIgnoresKeyOrder(t *testing.T) {
	// Go's map order is random per iteration; many runs cover many insertion orders.
	first, _ := mustCanonical(t, typedBlock())
	for i := 0; i < 50; i++ {
		again, _ := mustCanonical(t, typedBlock())
		if string(again) != string(first) {
			t.Fatalf("run %d differs:\n%s\n%s", i, again, first)
		}
	}
}

func TestCanonicalScalars(t *testing.T) {
	cases := []struct {
		in   interface{}
		want string
	}{
		{true, `"true"`},
		{false, `"false"`},
		{0.75, `"0.75"`},
		{float64(3600), `"3600"`},
		{3600, `"3600"`},
		{int64(-5), `"-5"`},
		{uint64(7), `"7"`},
		{1e21, `"1000000000000000000000"`},
		{" spaced ", `" spaced "`},
		{"a<b&c>", `"a<b&c>"`},
		{nil, `""`},
	}
	for _, c := range cases {
		body, _ := mustCanonical(t, map[string]interface{}{"Secret": c.in})
		want := `{"Secret":` + c.want + `}`
		if string(body) != want {
			t.Errorf("%#v: got %s, want %s", c.in, body, want)
		}
	}
}

func TestCanonicalDecimalFromTraefiksFileProvider(t *testing.T) {
	cases := []struct {
		in   interface{}
		want string
	}{
		{"0.800000", "0.8"}, // Traefik's file provider
		{"0.8", "0.8"},      // labels
		{0.8, "0.8"},        // typed
		{"1", "1"},
		{"-0.5", "-0.5"},
		{"1e3", "1e3"}, // not a plain decimal: as given, for the sidecar to judge
		{" 0.8", " 0.8"},
		{"0.", "0."},
		{"abc", "abc"},
	}
	for _, c := range cases {
		body, _ := mustCanonical(t, map[string]interface{}{"provider": map[string]interface{}{"tokenrenewalthreshold": c.in}})
		want := `{"Provider":{"TokenRenewalThreshold":"` + c.want + `"}}`
		if string(body) != want {
			t.Errorf("%#v: got %s, want %s", c.in, body, want)
		}
	}
}

func TestCanonicalLists(t *testing.T) {
	cases := []struct {
		name string
		in   interface{}
		want string
	}{
		{"list", []interface{}{"openid", "email"}, `["openid","email"]`},
		{"string list", []string{"openid", "email"}, `["openid","email"]`},
		{"comma string", " openid ,email", `["openid","email"]`},
		{"one string", "openid", `["openid"]`},
		{"empty string", "", `[]`},
		{"empty list", []interface{}{}, `[]`},
		{"empty map", map[string]interface{}{}, `[]`},
		{"indexed map", map[string]interface{}{"10": "c", "2": "b", "0": "a"}, `["a","b","c"]`},
		{"typed elements", []interface{}{1, true}, `["1","true"]`},
		{"not indexed", map[string]interface{}{"0": "a", "x": "b"}, `{"0":"a","x":"b"}`},
	}
	for _, c := range cases {
		body, _ := mustCanonical(t, map[string]interface{}{"scopes": c.in})
		want := `{"Scopes":` + c.want + `}`
		if string(body) != want {
			t.Errorf("%s: got %s, want %s", c.name, body, want)
		}
	}
}

func TestCanonicalUnknownKeysAreKeptLowerCased(t *testing.T) {
	body, _ := mustCanonical(t, map[string]interface{}{
		"Secret":   "s",
		"ScOpEz":   "openid",
		"Provider": map[string]interface{}{"Url": "u", "ClientID2": "x"},
		"Extra":    map[string]interface{}{"InnerKey": 1, "List": []interface{}{map[string]interface{}{"A": false}}},
		// A known key with the wrong shape keeps its shape for the sidecar to report.
		"SessionCookie": "secure",
	})
	want := `{"Provider":{"Url":"u","clientid2":"x"},"Secret":"s","SessionCookie":"secure","extra":{"innerkey":"1","list":[{"a":"false"}]},"scopez":"openid"}`
	if string(body) != want {
		t.Errorf("got  %s\nwant %s", body, want)
	}
}

func TestCanonicalErrorPagesAndBearerNames(t *testing.T) {
	body, _ := mustCanonical(t, map[string]interface{}{
		"errorpages": map[string]interface{}{
			"unauthenticated": map[string]interface{}{"redirectto": "https://x/login"},
			"UNAUTHORIZED":    map[string]interface{}{"filepath": "/p.html"},
		},
		"authorizationheader": map[string]interface{}{"name": "Authorization"},
		"authorizationcookie": map[string]interface{}{"NAME": "tok"},
		"requestedresources":  "https://api.example.com",
	})
	want := `{"AuthorizationCookie":{"Name":"tok"},"AuthorizationHeader":{"Name":"Authorization"},` +
		`"ErrorPages":{"Unauthenticated":{"RedirectTo":"https://x/login"},"Unauthorized":{"FilePath":"/p.html"}},` +
		`"RequestedResources":["https://api.example.com"]}`
	if string(body) != want {
		t.Errorf("got  %s\nwant %s", body, want)
	}
}

func TestCanonicalRefusesTheSameKeyTwice(t *testing.T) {
	_, _, err := canonicalBlock(map[string]interface{}{"Secret": "a", "secret": "b"})
	if err == nil || !strings.Contains(err.Error(), "same key") {
		t.Fatalf("err = %v, want a duplicate-key error", err)
	}
	_, _, err = canonicalBlock(map[string]interface{}{"Provider": map[string]interface{}{"url": "a", "URL": "b"}})
	if err == nil || !strings.Contains(err.Error(), "Provider.") {
		t.Fatalf("err = %v, want a duplicate-key error naming Provider", err)
	}
	cfg := CreateConfig()
	cfg.SidecarUrl = "http://sidecar:4181"
	cfg.Block = map[string]interface{}{"Secret": "a", "SECRET": "b"}
	if _, err := New(context.Background(), &upstream{}, cfg, "dup@file"); err == nil {
		t.Fatal("New accepted a block with a key given twice")
	}
}

func TestCanonicalIsValidJSONObject(t *testing.T) {
	body, _ := mustCanonical(t, labelBlock())
	var v map[string]interface{}
	if err := json.Unmarshal(body, &v); err != nil {
		t.Fatalf("canonical bytes are not JSON: %v", err)
	}
	if strings.ContainsAny(string(body), "\n\t") {
		t.Errorf("canonical bytes hold whitespace: %q", body)
	}
}

func TestEmptyBlockKeepsTheNamedMiddleware(t *testing.T) {
	body, hash, err := canonicalBlock(nil)
	if err != nil || body != nil || hash != "" {
		t.Fatalf("empty block: %q %q %v", body, hash, err)
	}
	s := mustSettings(t, func(c *Config) { c.Block = map[string]interface{}{} })
	if s.inline != nil || !strings.HasSuffix(s.authURL, "/auth/default") {
		t.Errorf("empty block changed the auth URL to %s", s.authURL)
	}
}

func TestInlineBlockSettings(t *testing.T) {
	s := mustSettings(t, func(c *Config) {
		c.Middleware = ""
		c.Block = typedBlock()
	})
	_, hash := mustCanonical(t, typedBlock())
	if s.inline == nil {
		t.Fatal("no inline block")
	}
	if want := "/auth/inline/" + hash; !strings.HasSuffix(s.authURL, want) {
		t.Errorf("authURL %s, want suffix %s", s.authURL, want)
	}
	if want := "/backchannel-logout/inline/" + hash; !strings.HasSuffix(s.logoutURL, want) {
		t.Errorf("logoutURL %s, want suffix %s", s.logoutURL, want)
	}
	if want := "/inline/" + hash; !strings.HasSuffix(s.inline.registerURL, want) || strings.Contains(s.inline.registerURL, "/auth/") {
		t.Errorf("registerURL %s, want .../inline/%s", s.inline.registerURL, hash)
	}
}
