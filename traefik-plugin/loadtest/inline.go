// This file owns the load test's inline-block checks (issue 12): every fixture of
// traefik-plugin/testdata/inline goes through the same code Traefik v3.6 runs before the
// plugin sees it, and the interpreted shim must ask the sidecar for the fixture's golden hash.
//
//   - file provider: the block is written into a dynamic-configuration YAML file as typed
//     values and decoded with paerser's file decoder (Traefik's file provider calls it);
//   - docker labels: NAME.labels and NAME.indexed.labels are decoded with paerser's label
//     parser, with the filters of Traefik's label.DecodeConfiguration (the docker, swarm, ECS,
//     Nomad and Consul Catalog providers call it). The map the plugin receives is compared with
//     NAME.labels.json / NAME.indexed.labels.json, which the shim's stdlib-only golden test reads
//     (-update-golden writes them);
//   - then, for each, Traefik's plugin loader step: mapstructure into CreateConfig() with
//     Traefik's options (the ",remain" map collects the block), New under Yaegi, and one request
//     through the handler to a loopback sidecar that records the hash the shim asks for.
//
// The configuration structs mirror the path dynamic.Configuration gives the plugin map
// (http.middlewares.NAME.plugin.PLUGIN, with PluginConf a map[string]any): paerser works from
// reflection on those kinds only, and importing Traefik itself would pull its whole module graph.

package main

import (
	"bufio"
	"encoding/json"
	"flag"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"sync"

	"github.com/traefik/paerser/file"
	"github.com/traefik/paerser/parser"
	"gopkg.in/yaml.v3"
)

var updateGolden = flag.Bool("update-golden", false, "write testdata/inline/NAME*.labels.json from Traefik's label parser")

// pluginName is the plugin's key under `plugin:` in the fixtures' labels.
const pluginName = "oidcsidecar"

type pluginConf map[string]interface{}

type dynMiddleware struct {
	Plugin map[string]pluginConf `json:"plugin,omitempty" yaml:"plugin,omitempty"`
}

type dynHTTP struct {
	Middlewares map[string]*dynMiddleware `json:"middlewares,omitempty" yaml:"middlewares,omitempty"`
}

type dynConfig struct {
	HTTP *dynHTTP `json:"http,omitempty" yaml:"http,omitempty"`
}

// pluginMap returns the plugin configuration of middleware name in conf.
func pluginMap(conf *dynConfig, name string) (map[string]interface{}, error) {
	if conf.HTTP == nil || conf.HTTP.Middlewares[name] == nil || conf.HTTP.Middlewares[name].Plugin[pluginName] == nil {
		return nil, fmt.Errorf("no http.middlewares.%s.plugin.%s after decoding", name, pluginName)
	}
	return conf.HTTP.Middlewares[name].Plugin[pluginName], nil
}

// fromLabels runs Traefik's label decoding on a NAME*.labels file, plus extra labels.
func fromLabels(path, name string, extra map[string]string) (map[string]interface{}, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	labels := map[string]string{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		if line == "" {
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		if !ok {
			return nil, fmt.Errorf("%s: not a label: %q", path, line)
		}
		labels[k] = v
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	return decodeLabels(labels, name, extra)
}

// decodeLabels runs Traefik's label decoding on a container's labels, plus extra plugin keys of
// middleware name, and returns that middleware's plugin map.
func decodeLabels(labels map[string]string, name string, extra map[string]string) (map[string]interface{}, error) {
	prefix := "traefik.http.middlewares." + name + ".plugin." + pluginName + "."
	for k, v := range extra {
		labels[prefix+k] = v
	}
	conf := &dynConfig{HTTP: &dynHTTP{}}
	// The root name and filters of Traefik's label.DecodeConfiguration.
	if err := parser.Decode(labels, conf, parser.DefaultRootName, "traefik.http", "traefik.tcp", "traefik.udp", "traefik.tls.stores.default"); err != nil {
		return nil, err
	}
	return pluginMap(conf, name)
}

// fromFile writes block (plus extra keys) as a dynamic-configuration YAML file and runs
// Traefik's file-provider decoding on it.
func fromFile(block map[string]interface{}, name string, extra map[string]interface{}) (map[string]interface{}, error) {
	conf := map[string]interface{}{}
	for k, v := range block {
		conf[k] = v
	}
	for k, v := range extra {
		conf[k] = v
	}
	doc := map[string]interface{}{"http": map[string]interface{}{"middlewares": map[string]interface{}{
		name: map[string]interface{}{"plugin": map[string]interface{}{pluginName: conf}},
	}}}
	content, err := yaml.Marshal(doc)
	if err != nil {
		return nil, err
	}
	out := &dynConfig{}
	if err := file.DecodeContent(string(content), ".yaml", out); err != nil {
		return nil, err
	}
	return pluginMap(out, name)
}

// hashRecorder is a loopback sidecar that knows every hash (answers 200) and records the
// paths asked.
type hashRecorder struct {
	mu    sync.Mutex
	paths []string
}

func (h *hashRecorder) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h.mu.Lock()
	h.paths = append(h.paths, r.URL.Path)
	h.mu.Unlock()
	w.WriteHeader(http.StatusOK)
}

func (h *hashRecorder) last() string {
	h.mu.Lock()
	defer h.mu.Unlock()
	if len(h.paths) == 0 {
		return ""
	}
	return h.paths[len(h.paths)-1]
}

// inlineChecks runs every fixture through both decoders, Traefik's plugin decoding, New under
// Yaegi and one request. The fixtures sit next to the package (pkgDir/testdata/inline), which is
// traefik-plugin/ here and the module root in the plugin's own repository (scripts/plugin-repo.sh).
func inlineChecks(r *report, pkgDir string, fnCreateConfig, fnNew reflect.Value) {
	dir := filepath.Join(pkgDir, "testdata", "inline")
	entries, err := os.ReadDir(dir)
	if !r.check("read "+dir, err) {
		return
	}
	sidecar := &hashRecorder{}
	srv := httptest.NewServer(sidecar)
	defer srv.Close()

	var names []string
	for _, e := range entries {
		if n, ok := strings.CutSuffix(e.Name(), ".yaml"); ok {
			names = append(names, n)
		}
	}
	sort.Strings(names)
	if len(names) == 0 {
		r.check("inline fixtures", fmt.Errorf("none in %s", dir))
		return
	}
	for _, name := range names {
		base := filepath.Join(dir, name)
		want, err := os.ReadFile(base + ".sha256")
		if !r.check("inline "+name+": golden hash", err) {
			continue
		}
		wantPath := "/auth/inline/" + strings.TrimSpace(string(want))

		ask := func(cfg map[string]interface{}) error {
			return askShim(fnCreateConfig, fnNew, cfg, name+"@loadtest", sidecar, wantPath)
		}

		// File provider, typed values.
		r.check("inline "+name+": file provider (typed YAML) gives the golden hash", func() error {
			data, err := os.ReadFile(base + ".json")
			if err != nil {
				return err
			}
			var block map[string]interface{}
			if err := json.Unmarshal(data, &block); err != nil {
				return err
			}
			cfg, err := fromFile(block, name, map[string]interface{}{"sidecarUrl": srv.URL, "timeout": "2s"})
			if err != nil {
				return err
			}
			return ask(cfg)
		}())

		// Docker labels, both list shapes.
		for _, variant := range []string{".labels", ".indexed.labels"} {
			r.check("inline "+name+variant+": Traefik's label parser gives the golden hash", func() error {
				block, err := fromLabels(base+variant, name, nil)
				if err != nil {
					return err
				}
				if err := compareLabelGolden(base+variant+".json", block); err != nil {
					return err
				}
				cfg, err := fromLabels(base+variant, name, map[string]string{"sidecarurl": srv.URL, "timeout": "2s"})
				if err != nil {
					return err
				}
				return ask(cfg)
			}())
		}
	}
}

// askShim builds the shim from cfg as Traefik's plugin loader does, sends one request through it
// and checks that the request passed (the recording sidecar allows everything) after the shim
// asked the sidecar for wantPath.
func askShim(fnCreateConfig, fnNew reflect.Value, cfg map[string]interface{}, name string, sidecar *hashRecorder, wantPath string) error {
	c, err := createConfig(fnCreateConfig, cfg)
	if err != nil {
		return err
	}
	h, err := callNew(fnNew, http.NotFoundHandler(), c, name)
	if err != nil {
		return err
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "http://app.example.test/", nil))
	if rec.Code != http.StatusNotFound { // next is http.NotFoundHandler: the request passed
		return fmt.Errorf("request through the shim: status %d", rec.Code)
	}
	if got := sidecar.last(); got != wantPath {
		return fmt.Errorf("shim asked %s, want %s", got, wantPath)
	}
	return nil
}

// compareLabelGolden checks (or, with -update-golden, writes) the plugin map a label file
// decodes to, as indented JSON with sorted keys.
func compareLabelGolden(file string, block map[string]interface{}) error {
	got, err := json.MarshalIndent(block, "", "  ")
	if err != nil {
		return err
	}
	got = append(got, '\n')
	if *updateGolden {
		return os.WriteFile(file, got, 0o644)
	}
	want, err := os.ReadFile(file)
	if err != nil {
		return fmt.Errorf("%v (run the load test with -update-golden)", err)
	}
	if string(got) != string(want) {
		return fmt.Errorf("%s differs from what Traefik's label parser gives:\n%s", filepath.Base(file), got)
	}
	return nil
}
