// This file owns the golden-file test of the canonical form: every traefik-oidc-auth block of
// the README and examples/ (extracted into testdata/inline/, layout in its README.md) gives the
// committed canonical bytes and hash, from its typed form and from both docker-label shapes.
// The sidecar's own test parses the same canonical files, which is how the two sides are held
// to one format. UPDATE_GOLDEN=1 go test -run Golden rewrites NAME.canonical.json and NAME.sha256.

package traefikoidcsidecar

import (
	"encoding/json"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
)

const goldenDir = "testdata/inline"

// goldenNames lists the fixtures: every NAME.json beside a NAME.yaml.
func goldenNames(t *testing.T) []string {
	t.Helper()
	entries, err := os.ReadDir(goldenDir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		n := e.Name()
		if !strings.HasSuffix(n, ".yaml") {
			continue
		}
		names = append(names, strings.TrimSuffix(n, ".yaml"))
	}
	sort.Strings(names)
	if len(names) < 5 {
		t.Fatalf("only %d fixtures in %s", len(names), goldenDir)
	}
	return names
}

// readBlock decodes a JSON fixture the way Traefik hands values over: objects as
// map[string]interface{}, numbers as float64.
func readBlock(t *testing.T, file string) map[string]interface{} {
	t.Helper()
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	var block map[string]interface{}
	if err := json.Unmarshal(data, &block); err != nil {
		t.Fatalf("%s: %v", file, err)
	}
	return block
}

func TestGoldenCanonicalForms(t *testing.T) {
	update := os.Getenv("UPDATE_GOLDEN") == "1"
	for _, name := range goldenNames(t) {
		base := filepath.Join(goldenDir, name)
		body, hash := mustCanonical(t, readBlock(t, base+".json"))
		if update {
			if err := os.WriteFile(base+".canonical.json", body, 0o644); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(base+".sha256", []byte(hash+"\n"), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		want, err := os.ReadFile(base + ".canonical.json")
		if err != nil {
			t.Errorf("%s: %v (UPDATE_GOLDEN=1 writes it)", name, err)
			continue
		}
		if string(body) != string(want) {
			t.Errorf("%s: canonical form changed\n got %s\nwant %s", name, body, want)
		}
		wantHash, err := os.ReadFile(base + ".sha256")
		if err != nil {
			t.Fatal(err)
		}
		if hash+"\n" != string(wantHash) {
			t.Errorf("%s: hash %s, golden %s", name, hash, strings.TrimSpace(string(wantHash)))
		}
		// The label shapes, as Traefik's own label parser builds them (written by the load
		// test, which runs that parser), canonicalise to the same bytes.
		for _, variant := range []string{".labels.json", ".indexed.labels.json"} {
			if _, err := os.Stat(base + variant); err != nil {
				t.Errorf("%s: %v (the load test writes it with -update-golden)", name, err)
				continue
			}
			labelBody, _ := mustCanonical(t, readBlock(t, base+variant))
			if string(labelBody) != string(want) {
				t.Errorf("%s%s: label shape gives another canonical form\n got %s\nwant %s", name, variant, labelBody, want)
			}
		}
	}
}
