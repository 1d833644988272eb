// This file owns the canonical form of an inline traefik-oidc-auth block (issue 12): the keys
// of the plugin configuration that are not the shim's own, turned into one byte string that is
// the same however Traefik delivered them (file provider with typed YAML values, or docker
// labels where every value is a string and lists are comma-joined or indexed), and its SHA-256.
// The rules are fixed in the project's inline protocol (shim side and sidecar side implement
// the same text); the sidecar parses the canonical JSON with its own traefik-oidc-auth parser,
// so only spelling and shape are normalised here, never meaning.
//
// Everything here is pure and runs in New, which must make no network call (Traefik and the
// Plugin Catalog call New at load time).

package traefikoidcsidecar

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"reflect"
	"sort"
	"strconv"
	"strings"
)

// Shapes of the keys the canonical form knows.
const (
	shapeScalar  = 1 // one value, serialised as a JSON string
	shapeObject  = 2 // a mapping of known keys
	shapeList    = 3 // a list of scalars
	shapeObjList = 4 // a list of mappings of known keys
	shapeFreeMap = 5 // a mapping whose keys are the user's own (AuthorizationParams)
	shapeDecimal = 6 // a scalar that is a fractional number (TokenRenewalThreshold)
)

// blockKey is one known key: its traefik-oidc-auth spelling and its shape.
type blockKey struct {
	name  string
	shape int
}

// blockKeys maps the lower-cased dotted path of every known key to its canonical spelling and
// shape. The elements of a list of objects are addressed with "[]". The table is flat rather
// than a tree of nested structs because Yaegi handles flat maps of plain structs most reliably.
// The spellings are traefik-oidc-auth's own (its README and the sidecar's key tables).
var blockKeys = buildBlockKeys()

func buildBlockKeys() map[string]blockKey {
	k := map[string]blockKey{}
	add := func(parent string, shape int, names ...string) {
		for _, n := range names {
			p := strings.ToLower(n)
			if parent != "" {
				p = parent + "." + p
			}
			k[p] = blockKey{name: n, shape: shape}
		}
	}
	add("", shapeScalar, "Secret", "CallbackUri", "LogoutUri", "BackchannelLogoutUri",
		"PostLogoutRedirectUri", "CookieNamePrefix", "UnauthenticatedBehavior",
		"UnauthorizedBehavior", "LogLevel", "BypassAuthenticationRule", "LoginUri",
		"PostLoginRedirectUri", "SessionStorageType", "SilentLogin")
	add("", shapeList, "Scopes", "ValidPostLogoutRedirectUris", "ValidPostLoginRedirectUris",
		"RequestedResources", "PreviousSecrets")
	add("", shapeObject, "Provider", "SessionCookie", "Authorization", "AuthorizationHeader",
		"AuthorizationCookie", "ErrorPages", "StepUp")
	add("", shapeObjList, "Headers")
	add("", shapeFreeMap, "AuthorizationParams")
	add("provider", shapeScalar, "Url", "ClientId", "ClientSecret", "UsePkce", "ValidateIssuer",
		"ValidIssuer", "ValidateAudience", "ValidAudience", "InsecureSkipVerify", "CABundleFile",
		"CABundle", "TokenValidation", "UseClaimsFromUserInfo",
		"ClientJwtPrivateKey", "ClientJwtPrivateKeyId")
	add("provider", shapeDecimal, "TokenRenewalThreshold")
	add("sessioncookie", shapeScalar, "Path", "Domain", "Secure", "HttpOnly", "SameSite", "MaxAge",
		"IdleTimeout")
	add("authorization", shapeScalar, "CheckOnEveryRequest")
	add("authorization", shapeObjList, "AssertClaims")
	add("authorization.assertclaims[]", shapeScalar, "Name")
	add("authorization.assertclaims[]", shapeList, "AnyOf", "AllOf")
	add("headers[]", shapeScalar, "Name", "Value", "Values", "IncludeWhen")
	add("stepup", shapeList, "AcrValues")
	add("stepup", shapeScalar, "MaxAge")
	add("authorizationheader", shapeScalar, "Name")
	add("authorizationcookie", shapeScalar, "Name")
	add("errorpages", shapeObject, "Unauthenticated", "Unauthorized")
	add("errorpages.unauthenticated", shapeScalar, "FilePath", "RedirectTo")
	add("errorpages.unauthorized", shapeScalar, "FilePath", "RedirectTo")
	return k
}

// canonicalBlock returns the canonical JSON bytes of block and their lowercase hex SHA-256.
// An empty or nil block gives no bytes and no hash: the shim then works as without issue 12.
// The only error is a key given twice in different cases, which has no single meaning.
func canonicalBlock(block map[string]interface{}) ([]byte, string, error) {
	if len(block) == 0 {
		return nil, "", nil
	}
	obj, err := canonObject("", "", block)
	if err != nil {
		return nil, "", err
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	// The sidecar hashes the bytes it receives; '<', '>' and '&' are kept as they are so that a
	// rule such as PathPrefix(`/a`) && Host(`b`) reads the same on both sides.
	enc.SetEscapeHTML(false)
	if err := enc.Encode(obj); err != nil {
		return nil, "", fmt.Errorf("inline block: %v", err)
	}
	out := bytes.TrimSuffix(buf.Bytes(), []byte("\n"))
	sum := sha256.Sum256(out)
	return out, hex.EncodeToString(sum[:]), nil
}

// canonObject canonicalises a mapping found at path (lower-cased, "" for the block itself;
// shown is the user's spelling, for error messages). encoding/json sorts the keys bytewise.
func canonObject(path, shown string, m map[string]interface{}) (map[string]interface{}, error) {
	out := make(map[string]interface{}, len(m))
	given := make(map[string]string, len(m))
	for key, v := range m {
		lower := strings.ToLower(key)
		full := lower
		if path != "" {
			full = path + "." + lower
		}
		spec, known := blockKeys[full]
		name := lower
		if known {
			name = spec.name
		}
		if prev, dup := given[name]; dup {
			return nil, fmt.Errorf("inline block: %q and %q are the same key (keys are case-insensitive)", join(shown, prev), join(shown, key))
		}
		given[name] = key
		cv, err := canonValue(full, join(shown, key), spec.shape, v)
		if err != nil {
			return nil, err
		}
		out[name] = cv
	}
	return out, nil
}

// join appends a key to a dotted path shown in error messages.
func join(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

// canonValue canonicalises v for a key of the given shape (0: unknown key).
func canonValue(path, shown string, shape int, v interface{}) (interface{}, error) {
	switch shape {
	case shapeObject:
		if m, ok := asMap(v); ok {
			// Not "return canonObject(...)": Yaegi v0.16.1 drops the error when the results
			// of a call are returned directly as (interface{}, error).
			o, err := canonObject(path, shown, m)
			if err != nil {
				return nil, err
			}
			return o, nil
		}
	case shapeList:
		if list, ok := asList(v, true); ok {
			out := make([]interface{}, len(list))
			for i, e := range list {
				cv, err := canonValue("", shown, 0, e)
				if err != nil {
					return nil, err
				}
				out[i] = cv
			}
			return out, nil
		}
	case shapeObjList:
		if list, ok := asList(v, false); ok {
			out := make([]interface{}, len(list))
			for i, e := range list {
				if m, ok := asMap(e); ok {
					cv, err := canonObject(path+"[]", fmt.Sprintf("%s[%d]", shown, i), m)
					if err != nil {
						return nil, err
					}
					out[i] = cv
					continue
				}
				cv, err := canonValue("", shown, 0, e)
				if err != nil {
					return nil, err
				}
				out[i] = cv
			}
			return out, nil
		}
	case shapeDecimal:
		// Traefik's file provider hands a YAML 0.8 over as the string "0.800000" (paerser
		// formats floats with six decimals), labels as "0.8": a plain decimal string is written
		// in Go's shortest form so both give one hash. Anything else stays as given.
		if str, ok := v.(string); ok && isPlainDecimal(str) {
			if f, err := strconv.ParseFloat(str, 64); err == nil {
				return strconv.FormatFloat(f, 'f', -1, 64), nil
			}
		}
	case shapeFreeMap:
		// Keys are the authorize request's parameter names: kept exactly as given.
		if m, ok := asMap(v); ok {
			out := make(map[string]interface{}, len(m))
			for key, e := range m {
				cv, err := canonValue("", join(shown, key), 0, e)
				if err != nil {
					return nil, err
				}
				out[key] = cv
			}
			return out, nil
		}
	}
	// A scalar key, an unknown key, or a known key of the wrong shape: the shape is kept and
	// the sidecar reports what is wrong with its path. Mappings below an unknown key get
	// lower-cased keys, like the unknown key itself.
	if m, ok := asMap(v); ok {
		o, err := canonObject("\x00", shown, m)
		if err != nil {
			return nil, err
		}
		return o, nil
	}
	if list, ok := asList(v, false); ok {
		out := make([]interface{}, len(list))
		for i, e := range list {
			cv, err := canonValue("", shown, 0, e)
			if err != nil {
				return nil, err
			}
			out[i] = cv
		}
		return out, nil
	}
	return scalarString(v), nil
}

// asMap returns v as a string-keyed mapping. Traefik hands the plugin map[string]interface{};
// other map types are accepted so that tests and other loaders see the same rules.
func asMap(v interface{}) (map[string]interface{}, bool) {
	if m, ok := v.(map[string]interface{}); ok {
		return m, true
	}
	rv := reflect.ValueOf(v)
	if !rv.IsValid() || rv.Kind() != reflect.Map || rv.Type().Key().Kind() != reflect.String {
		return nil, false
	}
	out := make(map[string]interface{}, rv.Len())
	iter := rv.MapRange()
	for iter.Next() {
		out[iter.Key().String()] = iter.Value().Interface()
	}
	return out, true
}

// asList returns v as a list: a list stays a list; a mapping whose keys are all decimal
// indices ("0", "1", ..., as indexed docker labels give) becomes a list ordered by index; and,
// when split is set (lists of scalars), a string is split on commas with each element trimmed
// (the empty string is the empty list), which is how labels carry lists.
func asList(v interface{}, split bool) ([]interface{}, bool) {
	if list, ok := v.([]interface{}); ok {
		return list, true
	}
	if s, ok := v.(string); ok {
		if !split {
			return nil, false
		}
		if s == "" {
			return []interface{}{}, true
		}
		parts := strings.Split(s, ",")
		out := make([]interface{}, len(parts))
		for i, p := range parts {
			out[i] = strings.TrimSpace(p)
		}
		return out, true
	}
	if m, ok := asMap(v); ok {
		return indexedList(m)
	}
	rv := reflect.ValueOf(v)
	if rv.IsValid() && (rv.Kind() == reflect.Slice || rv.Kind() == reflect.Array) {
		out := make([]interface{}, rv.Len())
		for i := 0; i < rv.Len(); i++ {
			out[i] = rv.Index(i).Interface()
		}
		return out, true
	}
	return nil, false
}

// indexedList turns {"0": a, "1": b} into [a, b]. Any key that is not a decimal index means
// the mapping is not a list. The empty mapping is the empty list.
func indexedList(m map[string]interface{}) ([]interface{}, bool) {
	idx := make([]int, 0, len(m))
	byIdx := make(map[int]interface{}, len(m))
	for key, e := range m {
		if key == "" || strings.TrimLeft(key, "0123456789") != "" || len(key) > 9 {
			return nil, false
		}
		n, err := strconv.Atoi(key)
		if err != nil {
			return nil, false
		}
		if _, dup := byIdx[n]; dup {
			// "1" and "01" name the same element: not a list.
			return nil, false
		}
		byIdx[n] = e
		idx = append(idx, n)
	}
	sort.Ints(idx)
	out := make([]interface{}, len(idx))
	for i, n := range idx {
		out[i] = byIdx[n]
	}
	return out, true
}

// isPlainDecimal reports whether s is digits with an optional sign and decimal part, such as
// "0.75" or "-1" (not "1e3", "inf", "0x1p-2" or " 1", which strconv would also read).
func isPlainDecimal(s string) bool {
	digits, dot := 0, false
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= '0' && c <= '9':
			digits++
		case c == '.' && !dot && digits > 0 && i < len(s)-1:
			dot = true
		case c == '-' && i == 0:
		default:
			return false
		}
	}
	return digits > 0
}

// scalarString is a scalar's canonical string: strings as given (untrimmed), booleans as
// "true"/"false", integers in decimal, other numbers in Go's shortest decimal form, null as "".
func scalarString(v interface{}) string {
	switch x := v.(type) {
	case nil:
		return ""
	case string:
		return x
	case bool:
		return strconv.FormatBool(x)
	case float64:
		return strconv.FormatFloat(x, 'f', -1, 64)
	case float32:
		return strconv.FormatFloat(float64(x), 'f', -1, 32)
	case int:
		return strconv.Itoa(x)
	case int64:
		return strconv.FormatInt(x, 10)
	case uint64:
		return strconv.FormatUint(x, 10)
	case json.Number:
		return x.String()
	}
	rv := reflect.ValueOf(v)
	switch rv.Kind() {
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return strconv.FormatInt(rv.Int(), 10)
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uintptr:
		return strconv.FormatUint(rv.Uint(), 10)
	case reflect.String:
		return rv.String()
	case reflect.Bool:
		return strconv.FormatBool(rv.Bool())
	}
	return fmt.Sprint(v)
}
