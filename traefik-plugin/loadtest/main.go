// Command loadtest loads the shim the way Traefik v3 and the Plugin Catalog do, and fails if
// they would refuse it. It owns the "catalog-style" check of scripts/test-plugin.sh:
//
//  1. .traefik.yml and the root go.mod pass the manifest and module rules (type, import under
//     the module path, basePkg equal to the package clause, testData, no requirements).
//  2. The package is copied, without its tests, into a fresh GOPATH as
//     $GOPATH/src/<module path>/..., and imported by Yaegi v0.16.1 with only the stdlib
//     symbols, as Traefik's newInterpreter does.
//  3. CreateConfig() is called, testData is decoded into it with mapstructure using Traefik's
//     options (WeaklyTypedInput, comma-splitting hook), New's signature is checked, and New
//     must return a handler and no error within 10 s without any DNS lookup.
//  4. The interpreted handler is then run the way Traefik runs it: a compiled HTTP server in
//     front, a compiled next handler behind, and a loopback fake sidecar. Allow, redirect
//     (not followed), deny, sidecar down and a websocket-style hijack are exercised.
//  5. With -compose FILE, the plugin middlewares FILE declares with labels are decoded as the
//     docker provider does and must make the shim ask the sidecar's named middleware (compose.go).
//
// It lives in its own module so the root go.mod stays free of requirements (the catalog
// rejects a plugin that requires yaegi), and a nested module is left out of the plugin's
// module zip.
package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"go/parser"
	"go/token"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/mitchellh/mapstructure"
	"github.com/traefik/yaegi/interp"
	"github.com/traefik/yaegi/stdlib"
	"gopkg.in/yaml.v3"
)

// catalogLimit is the Plugin Catalog's limit for importing the plugin and for calling New.
const catalogLimit = 10 * time.Second

// manifest holds the .traefik.yml fields Traefik and the catalog read.
type manifest struct {
	DisplayName string                 `yaml:"displayName"`
	Type        string                 `yaml:"type"`
	Runtime     string                 `yaml:"runtime"`
	Import      string                 `yaml:"import"`
	BasePkg     string                 `yaml:"basePkg"`
	Summary     string                 `yaml:"summary"`
	UseUnsafe   bool                   `yaml:"useUnsafe"`
	TestData    map[string]interface{} `yaml:"testData"`
}

// report collects check results.
type report struct {
	passed, failed int
}

func (r *report) check(name string, err error) bool {
	if err != nil {
		r.failed++
		fmt.Printf("FAIL  %s: %v\n", name, err)
		return false
	}
	r.passed++
	fmt.Printf("ok    %s\n", name)
	return true
}

// dnsLookups counts every DNS lookup the process attempts; New must cause none.
var dnsLookups int64

func main() {
	root := flag.String("root", ".", "repository root (holds .traefik.yml and go.mod)")
	compose := flag.String("compose", "", "also run the plugin middlewares a compose file declares with labels through the shim")
	flag.Parse()

	// Any DNS lookup through Go's resolver now fails and is counted, so a New that tried to
	// reach the sidecar (or anything else) by name is caught. Loopback IP literals used by the
	// runtime checks below need no lookup.
	net.DefaultResolver = &net.Resolver{
		PreferGo: true,
		Dial: func(ctx context.Context, network, address string) (net.Conn, error) {
			atomic.AddInt64(&dnsLookups, 1)
			return nil, errors.New("loadtest: network access is not allowed here")
		},
	}

	r := &report{}
	run(r, *root, *compose)
	fmt.Printf("\nloadtest: %d passed, %d failed\n", r.passed, r.failed)
	if r.failed > 0 {
		os.Exit(1)
	}
}

func run(r *report, root, compose string) {
	root, err := filepath.Abs(root)
	if !r.check("repository root", err) {
		return
	}

	var m manifest
	if !r.check("read .traefik.yml", readManifest(filepath.Join(root, ".traefik.yml"), &m)) {
		return
	}
	r.check("manifest fields", checkManifest(&m))

	module, err := readModule(filepath.Join(root, "go.mod"))
	if !r.check("root go.mod: module path, no requirements", err) {
		return
	}
	if !r.check("import is inside the module", checkImport(module, m.Import)) {
		return
	}
	pkgDir := filepath.Join(root, filepath.FromSlash(strings.TrimPrefix(m.Import, module)))
	basePkg := m.BasePkg
	if basePkg == "" {
		basePkg = strings.ReplaceAll(path.Base(m.Import), "-", "_")
	}
	if !r.check("basePkg matches the package clause", checkPackageName(pkgDir, basePkg)) {
		return
	}

	gopath, err := os.MkdirTemp("", "loadtest-gopath-")
	if !r.check("temporary GOPATH", err) {
		return
	}
	defer os.RemoveAll(gopath)
	if !r.check("lay out $GOPATH/src/"+module, layout(root, module, m.Import, gopath)) {
		return
	}

	// What Traefik's newInterpreter does: stdlib symbols only, then import the plugin.
	i := interp.New(interp.Options{GoPath: gopath, Env: os.Environ()})
	if !r.check("load stdlib symbols", i.Use(stdlib.Symbols)) {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), catalogLimit)
	start := time.Now()
	_, err = i.EvalWithContext(ctx, fmt.Sprintf("import %q", m.Import))
	cancel()
	if !r.check(fmt.Sprintf("yaegi import %s (%v)", m.Import, time.Since(start).Round(time.Millisecond)), err) {
		return
	}

	fnCreateConfig, err := i.Eval(basePkg + ".CreateConfig")
	if !r.check("eval "+basePkg+".CreateConfig", err) {
		return
	}
	fnNew, err := i.Eval(basePkg + ".New")
	if !r.check("eval "+basePkg+".New", err) {
		return
	}
	if !r.check("New has Traefik's signature", checkNewSignature(fnNew, fnCreateConfig)) {
		return
	}

	// The catalog's check: testData decoded into CreateConfig(), New within 10 s, no network.
	cfg, err := createConfig(fnCreateConfig, m.TestData)
	if !r.check("decode testData into CreateConfig()", err) {
		return
	}
	before := atomic.LoadInt64(&dnsLookups)
	start = time.Now()
	_, err = callNew(fnNew, http.NotFoundHandler(), cfg, "loadtest@file")
	r.check(fmt.Sprintf("New(testData) returns a handler within %v (%v)", catalogLimit, time.Since(start).Round(time.Millisecond)), err)
	if n := atomic.LoadInt64(&dnsLookups) - before; n != 0 {
		r.check("New(testData) makes no network call", fmt.Errorf("%d DNS lookups", n))
	} else {
		r.check("New(testData) makes no network call", nil)
	}

	runtimeChecks(r, fnCreateConfig, fnNew)
	inlineChecks(r, pkgDir, fnCreateConfig, fnNew)
	if compose != "" {
		composeChecks(r, compose, fnCreateConfig, fnNew)
	}
}

func readManifest(file string, m *manifest) error {
	data, err := os.ReadFile(file)
	if err != nil {
		return err
	}
	return yaml.Unmarshal(data, m)
}

func checkManifest(m *manifest) error {
	var problems []string
	if m.DisplayName == "" {
		problems = append(problems, "missing displayName")
	}
	if m.Summary == "" {
		problems = append(problems, "missing summary")
	}
	if m.Type != "middleware" {
		problems = append(problems, fmt.Sprintf("type is %q, want middleware", m.Type))
	}
	if m.Runtime != "" && m.Runtime != "yaegi" {
		problems = append(problems, fmt.Sprintf("runtime is %q, want yaegi", m.Runtime))
	}
	if m.Import == "" {
		problems = append(problems, "missing import")
	}
	if m.UseUnsafe {
		problems = append(problems, "useUnsafe is set (the catalog then skips its check, and users must opt in)")
	}
	if m.TestData == nil {
		problems = append(problems, "missing testData")
	}
	if len(problems) > 0 {
		return errors.New(strings.Join(problems, "; "))
	}
	return nil
}

// readModule returns the module path of a go.mod that requires nothing.
func readModule(file string) (string, error) {
	data, err := os.ReadFile(file)
	if err != nil {
		return "", err
	}
	module := ""
	for _, line := range strings.Split(string(data), "\n") {
		fields := strings.Fields(line)
		if len(fields) == 0 || strings.HasPrefix(fields[0], "//") {
			continue
		}
		switch fields[0] {
		case "module":
			if len(fields) > 1 {
				module = strings.Trim(fields[1], `"`)
			}
		case "require", "replace", "toolchain":
			return "", fmt.Errorf("go.mod has a %s directive; the shim must be standard library only", fields[0])
		}
	}
	if module == "" {
		return "", errors.New("go.mod has no module line")
	}
	if !strings.HasPrefix(module, "github.com/") || strings.Count(module, "/") < 2 {
		return "", fmt.Errorf("module %q does not start with github.com/<owner>/<repo>", module)
	}
	return module, nil
}

func checkImport(module, imp string) error {
	if imp != module && !strings.HasPrefix(imp, module+"/") {
		return fmt.Errorf("import %q is not inside module %q", imp, module)
	}
	return nil
}

// checkPackageName compares basePkg with the package clause of every non-test file.
func checkPackageName(dir, basePkg string) error {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return err
	}
	fset := token.NewFileSet()
	found := 0
	for _, e := range entries {
		name := e.Name()
		if e.IsDir() || !strings.HasSuffix(name, ".go") || strings.HasSuffix(name, "_test.go") {
			continue
		}
		f, err := parser.ParseFile(fset, filepath.Join(dir, name), nil, parser.PackageClauseOnly)
		if err != nil {
			return err
		}
		if f.Name.Name != basePkg {
			return fmt.Errorf("%s has package %s, but basePkg is %s", name, f.Name.Name, basePkg)
		}
		found++
	}
	if found == 0 {
		return fmt.Errorf("no Go files in %s", dir)
	}
	return nil
}

// layout copies go.mod, .traefik.yml and the plugin package (without tests or nested
// directories) to $GOPATH/src/<module>, which is what Traefik unzips a plugin into.
func layout(root, module, imp, gopath string) error {
	dst := filepath.Join(gopath, "src", filepath.FromSlash(module))
	for _, name := range []string{"go.mod", ".traefik.yml"} {
		if err := copyFile(filepath.Join(root, name), filepath.Join(dst, name)); err != nil {
			return err
		}
	}
	rel := filepath.FromSlash(strings.TrimPrefix(strings.TrimPrefix(imp, module), "/"))
	entries, err := os.ReadDir(filepath.Join(root, rel))
	if err != nil {
		return err
	}
	for _, e := range entries {
		name := e.Name()
		if e.IsDir() || !strings.HasSuffix(name, ".go") || strings.HasSuffix(name, "_test.go") {
			continue
		}
		if err := copyFile(filepath.Join(root, rel, name), filepath.Join(dst, rel, name)); err != nil {
			return err
		}
	}
	return nil
}

func copyFile(src, dst string) error {
	data, err := os.ReadFile(src)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return err
	}
	return os.WriteFile(dst, data, 0o644)
}

// checkNewSignature applies the catalog's rules: New(context.Context, http.Handler, <config>,
// string) (http.Handler, error), with <config> assignable from CreateConfig's result.
func checkNewSignature(fnNew, fnCreateConfig reflect.Value) error {
	if fnNew.Kind() != reflect.Func || fnCreateConfig.Kind() != reflect.Func {
		return errors.New("New or CreateConfig is not a function")
	}
	tc := fnCreateConfig.Type()
	if tc.NumIn() != 0 || tc.NumOut() != 1 {
		return fmt.Errorf("CreateConfig has type %v, want func() *Config", tc)
	}
	if tc.Out(0).Kind() != reflect.Ptr {
		return fmt.Errorf("CreateConfig returns %v; it must return a pointer for the decoder", tc.Out(0))
	}
	tn := fnNew.Type()
	ctxType := reflect.TypeOf((*context.Context)(nil)).Elem()
	handlerType := reflect.TypeOf((*http.Handler)(nil)).Elem()
	errorType := reflect.TypeOf((*error)(nil)).Elem()
	if tn.NumIn() != 4 || tn.NumOut() != 2 {
		return fmt.Errorf("New has type %v", tn)
	}
	if tn.In(0) != ctxType || tn.In(1) != handlerType || !tc.Out(0).AssignableTo(tn.In(2)) || tn.In(3).Kind() != reflect.String {
		return fmt.Errorf("New has inputs %v, %v, %v, %v", tn.In(0), tn.In(1), tn.In(2), tn.In(3))
	}
	if tn.Out(0) != handlerType || tn.Out(1) != errorType {
		return fmt.Errorf("New has outputs %v, %v", tn.Out(0), tn.Out(1))
	}
	return nil
}

// createConfig is Traefik's createConfig: CreateConfig() then mapstructure with the same
// decoder options (pkg/plugins/middlewareyaegi.go).
func createConfig(fnCreateConfig reflect.Value, data map[string]interface{}) (reflect.Value, error) {
	results := fnCreateConfig.Call(nil)
	if len(results) != 1 {
		return reflect.Value{}, fmt.Errorf("CreateConfig returned %d values", len(results))
	}
	cfg := results[0]
	if len(data) == 0 {
		return cfg, nil
	}
	decoder, err := mapstructure.NewDecoder(&mapstructure.DecoderConfig{
		DecodeHook:       mapstructure.StringToSliceHookFunc(","),
		WeaklyTypedInput: true,
		Result:           cfg.Interface(),
	})
	if err != nil {
		return reflect.Value{}, err
	}
	if err := decoder.Decode(data); err != nil {
		return reflect.Value{}, err
	}
	return cfg, nil
}

// callNew calls New as Traefik does, and gives up after catalogLimit.
func callNew(fnNew reflect.Value, next http.Handler, cfg reflect.Value, name string) (http.Handler, error) {
	type result struct {
		h   http.Handler
		err error
	}
	done := make(chan result, 1)
	go func() {
		defer func() {
			if p := recover(); p != nil {
				done <- result{err: fmt.Errorf("New panicked: %v", p)}
			}
		}()
		out := fnNew.Call([]reflect.Value{reflect.ValueOf(context.Background()), reflect.ValueOf(next), cfg, reflect.ValueOf(name)})
		if e := out[1].Interface(); e != nil {
			done <- result{err: fmt.Errorf("New returned an error: %v", e)}
			return
		}
		h, ok := out[0].Interface().(http.Handler)
		if !ok || h == nil {
			done <- result{err: fmt.Errorf("New returned %T, not an http.Handler", out[0].Interface())}
			return
		}
		done <- result{h: h}
	}()
	select {
	case res := <-done:
		return res.h, res.err
	case <-time.After(catalogLimit):
		return nil, fmt.Errorf("New did not return within %v", catalogLimit)
	}
}

// nextHandler is the compiled handler behind the plugin, standing in for Traefik's proxy.
type nextHandler struct {
	mu      sync.Mutex
	calls   int
	headers http.Header
}

func (n *nextHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	n.mu.Lock()
	n.calls++
	n.headers = r.Header.Clone()
	n.mu.Unlock()
	_, flusher := w.(http.Flusher)
	hj, hijacker := w.(http.Hijacker)
	if !flusher || !hijacker {
		http.Error(w, fmt.Sprintf("writer %T lost Flusher (%v) or Hijacker (%v)", w, flusher, hijacker), http.StatusInternalServerError)
		return
	}
	if !strings.EqualFold(r.Header.Get("Upgrade"), "websocket") {
		w.WriteHeader(http.StatusOK)
		_, _ = w.Write([]byte("upstream ok"))
		return
	}
	conn, brw, err := hj.Hijack()
	if err != nil {
		return
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
	_, _ = brw.WriteString("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n")
	_ = brw.Flush()
	line, err := brw.ReadString('\n')
	if err != nil {
		return
	}
	_, _ = brw.WriteString("echo: " + line)
	_ = brw.Flush()
}

func (n *nextHandler) snapshot() (int, http.Header) {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.calls, n.headers
}

// runtimeChecks runs the interpreted handler between compiled code, as inside Traefik.
func runtimeChecks(r *report, fnCreateConfig, fnNew reflect.Value) {
	var landings int64
	sidecar := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		if req.URL.Path == "/landing" {
			atomic.AddInt64(&landings, 1)
			w.Header().Set("X-Forwarded-User", "admin")
			return
		}
		switch req.Header.Get("X-Loadtest-Case") {
		case "allow", "websocket":
			w.Header().Set("X-Forwarded-User", "alice")
			w.Header().Set("Cookie", "theme=dark")
			w.Header().Add("Set-Cookie", "__oidc_session=refreshed; Path=/")
		case "redirect":
			w.Header().Set("Location", "/landing")
			w.WriteHeader(http.StatusFound)
		default:
			w.Header().Set("WWW-Authenticate", `Bearer realm="app"`)
			w.WriteHeader(http.StatusUnauthorized)
			_, _ = w.Write([]byte("denied"))
		}
	}))
	defer sidecar.Close()

	// Shaped like Docker labels: keys in any case, a list as one comma-separated string.
	labels := map[string]interface{}{
		"SIDECARURL":          sidecar.URL,
		"middleware":          "default",
		"timeout":             "2s",
		"authresponseheaders": "X-Forwarded-User,X-Forwarded-Email",
	}
	cfg, err := createConfig(fnCreateConfig, labels)
	if !r.check("decode label-style config", err) {
		return
	}
	next := &nextHandler{}
	h, err := callNew(fnNew, next, cfg, "runtime@docker")
	if !r.check("New(label-style config)", err) {
		return
	}
	front := httptest.NewServer(h)
	defer front.Close()
	client := &http.Client{
		Timeout: 5 * time.Second,
		CheckRedirect: func(req *http.Request, via []*http.Request) error {
			return http.ErrUseLastResponse
		},
	}

	do := func(c string, edit func(req *http.Request)) (*http.Response, string, error) {
		req, err := http.NewRequest(http.MethodGet, front.URL+"/app?x=1", nil)
		if err != nil {
			return nil, "", err
		}
		req.Header.Set("X-Loadtest-Case", c)
		if edit != nil {
			edit(req)
		}
		resp, err := client.Do(req)
		if err != nil {
			return nil, "", err
		}
		defer resp.Body.Close()
		buf := make([]byte, 4096)
		n, _ := resp.Body.Read(buf)
		return resp, string(buf[:n]), nil
	}

	// Allow: identity from the sidecar only, cookies replaced, Set-Cookie passed on.
	r.check("runtime: 2xx lets the request through with the sidecar's identity", func() error {
		resp, body, err := do("allow", func(req *http.Request) {
			req.Header["X_Forwarded_User"] = []string{"mallory"}
			req.Header.Set("Cookie", "__oidc_session=SECRET; theme=dark")
		})
		if err != nil {
			return err
		}
		calls, seen := next.snapshot()
		if resp.StatusCode != http.StatusOK || body != "upstream ok" || calls != 1 {
			return fmt.Errorf("got %d %q after %d upstream calls", resp.StatusCode, body, calls)
		}
		var spoofed []string
		for k := range seen {
			if strings.EqualFold(strings.NewReplacer("_", "-", ".", "-").Replace(k), "x-forwarded-user") && k != "X-Forwarded-User" {
				spoofed = append(spoofed, k)
			}
		}
		sort.Strings(spoofed)
		switch {
		case seen.Get("X-Forwarded-User") != "alice":
			return fmt.Errorf("upstream X-Forwarded-User = %q", seen.Get("X-Forwarded-User"))
		case len(spoofed) > 0:
			return fmt.Errorf("spoofed spellings reached the upstream: %v", spoofed)
		case seen.Get("Cookie") != "theme=dark":
			return fmt.Errorf("upstream Cookie = %q", seen.Get("Cookie"))
		case resp.Header.Get("Set-Cookie") != "__oidc_session=refreshed; Path=/":
			return fmt.Errorf("client Set-Cookie = %q", resp.Header.Values("Set-Cookie"))
		}
		return nil
	}())

	r.check("runtime: sidecar redirect reaches the client and is not followed", func() error {
		before, _ := next.snapshot()
		resp, _, err := do("redirect", nil)
		if err != nil {
			return err
		}
		after, _ := next.snapshot()
		if resp.StatusCode != http.StatusFound || resp.Header.Get("Location") != "/landing" {
			return fmt.Errorf("got %d Location %q", resp.StatusCode, resp.Header.Get("Location"))
		}
		if atomic.LoadInt64(&landings) != 0 || after != before {
			return fmt.Errorf("redirect followed (%d landings, %d upstream calls)", atomic.LoadInt64(&landings), after-before)
		}
		return nil
	}())

	r.check("runtime: denial relayed, upstream not called", func() error {
		before, _ := next.snapshot()
		resp, body, err := do("deny", nil)
		if err != nil {
			return err
		}
		after, _ := next.snapshot()
		if resp.StatusCode != http.StatusUnauthorized || body != "denied" || resp.Header.Get("WWW-Authenticate") == "" || after != before {
			return fmt.Errorf("got %d %q, %d upstream calls", resp.StatusCode, body, after-before)
		}
		return nil
	}())

	r.check("runtime: websocket-style hijack works through the shim", func() error {
		conn, err := net.DialTimeout("tcp", front.Listener.Addr().String(), 5*time.Second)
		if err != nil {
			return err
		}
		defer conn.Close()
		_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
		_, err = conn.Write([]byte("GET /socket HTTP/1.1\r\nHost: app.example.test\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n" +
			"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nX-Loadtest-Case: websocket\r\n\r\n"))
		if err != nil {
			return err
		}
		br := bufio.NewReader(conn)
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			return err
		}
		if resp.StatusCode != http.StatusSwitchingProtocols {
			buf := make([]byte, 300)
			n, _ := resp.Body.Read(buf)
			return fmt.Errorf("handshake got %d: %s", resp.StatusCode, buf[:n])
		}
		if _, err := conn.Write([]byte("ping\n")); err != nil {
			return err
		}
		line, err := br.ReadString('\n')
		if err != nil {
			return err
		}
		if strings.TrimSpace(line) != "echo: ping" {
			return fmt.Errorf("echo %q", line)
		}
		return nil
	}())

	r.check("runtime: sidecar down gives 503", func() error {
		dead := httptest.NewServer(http.NotFoundHandler())
		deadURL := dead.URL
		dead.Close()
		cfg, err := createConfig(fnCreateConfig, map[string]interface{}{"sidecarUrl": deadURL})
		if err != nil {
			return err
		}
		down := &nextHandler{}
		h, err := callNew(fnNew, down, cfg, "down@file")
		if err != nil {
			return err
		}
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "http://app.example.test/", nil))
		if calls, _ := down.snapshot(); rec.Code != http.StatusServiceUnavailable || calls != 0 {
			return fmt.Errorf("got %d with %d upstream calls", rec.Code, calls)
		}
		return nil
	}())
}
