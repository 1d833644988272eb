// This file owns the load test's check of the Docker Compose example's plugin door: the labels
// of examples/docker-compose/docker-compose.yml go through Traefik's label decoding (as the
// docker provider does), then Traefik's plugin loader step and New under Yaegi, and one request
// must make the shim ask the sidecar's named middleware. A misspelt key would land in the
// shim's inline-block map and make it register a block instead, so it fails here.

package main

import (
	"fmt"
	"net/http/httptest"
	"os"
	"reflect"
	"sort"
	"strings"

	"gopkg.in/yaml.v3"
)

// composeFile is the part of a compose file the check reads: each service's labels, in the
// list form ("key=value") the example uses.
type composeFile struct {
	Services map[string]struct {
		Labels []string `yaml:"labels"`
	} `yaml:"services"`
}

// composeChecks runs every plugin middleware declared in file's labels through the shim.
func composeChecks(r *report, file string, fnCreateConfig, fnNew reflect.Value) {
	data, err := os.ReadFile(file)
	if !r.check("read "+file, err) {
		return
	}
	var c composeFile
	if !r.check("parse "+file, yaml.Unmarshal(data, &c)) {
		return
	}
	sidecar := &hashRecorder{}
	srv := httptest.NewServer(sidecar)
	defer srv.Close()

	found := 0
	var services []string
	for name := range c.Services {
		services = append(services, name)
	}
	sort.Strings(services)
	for _, service := range services {
		// The labels of each plugin middleware (the checked structs hold middlewares only).
		middlewares := map[string]map[string]string{}
		for _, l := range c.Services[service].Labels {
			k, v, ok := strings.Cut(l, "=")
			if !ok {
				r.check(service+": label "+l, fmt.Errorf("not key=value"))
				continue
			}
			if mw, ok := strings.CutPrefix(k, "traefik.http.middlewares."); ok {
				if name, rest, ok := strings.Cut(mw, "."); ok && strings.HasPrefix(rest, "plugin."+pluginName+".") {
					if middlewares[name] == nil {
						middlewares[name] = map[string]string{}
					}
					middlewares[name][k] = v
				}
			}
		}
		var names []string
		for mw := range middlewares {
			names = append(names, mw)
		}
		sort.Strings(names)
		for _, mw := range names {
			labels := middlewares[mw]
			found++
			r.check(fmt.Sprintf("compose %s: middleware %s from labels asks the sidecar's named middleware", service, mw), func() error {
				cfg, err := decodeLabels(copyLabels(labels), mw, nil)
				if err != nil {
					return err
				}
				named, ok := cfg["middleware"].(string)
				if !ok || named == "" {
					return fmt.Errorf("no middleware key in %v", cfg)
				}
				cfg, err = decodeLabels(copyLabels(labels), mw, map[string]string{"sidecarurl": srv.URL})
				if err != nil {
					return err
				}
				return askShim(fnCreateConfig, fnNew, cfg, mw+"@docker", sidecar, "/auth/"+named)
			}())
		}
	}
	if found == 0 {
		r.check("compose plugin middlewares", fmt.Errorf("no %s plugin middleware in the labels of %s", pluginName, file))
	}
}

func copyLabels(labels map[string]string) map[string]string {
	out := make(map[string]string, len(labels))
	for k, v := range labels {
		out[k] = v
	}
	return out
}
