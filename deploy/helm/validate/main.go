// Command validate checks rendered Kubernetes manifests offline, the way an API server would
// judge them, so a broken chart fails in CI rather than at `kubectl apply` time:
//
//   - built-in kinds (ConfigMap, Secret, Service, Deployment, PodDisruptionBudget, NetworkPolicy,
//     HorizontalPodAutoscaler, …) are decoded STRICTLY into the k8s.io/api Go types: an unknown
//     field, a duplicate key, a wrong type or a wrong letter case is an error, as with
//     `kubectl apply --validate=strict`;
//   - custom resources (Traefik's Middleware and IngressRoute) are checked against the
//     openAPIV3Schema of the CRD shipped in the Traefik module, with the apiextensions-apiserver
//     code the API server runs: schema validation, pruning (unknown fields) and the CEL rules;
//   - ServiceMonitor (monitoring.coreos.com/v1) is decoded strictly into prometheus-operator's
//     own Go types;
//   - metadata goes through apimachinery's ObjectMeta validation, and the objects of one run are
//     checked against each other (selectors select the pods, named ports exist), which no
//     schema can see.
//
// Usage:
//
//	validate -crd FILE [-crd FILE…] [-plugin NAME -plugin-keys k1,k2,…] [-dump DIR] [-expect-invalid] MANIFEST…
//
// Each MANIFEST is a multi-document YAML file (`helm template` output); the objects of one file
// are one release. It exits 0 when every file is valid, 1 otherwise. With -expect-invalid the
// sense is inverted per file: every file must be rejected (the negative cases), and the reasons
// are printed so a reviewer can see that the right thing was caught. -dump writes the
// `config.yaml` of every ConfigMap of a valid file to DIR/<file name>.<ConfigMap name>, so the
// sidecar's own --check-config can judge the configuration the chart rendered.
package main

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	corev1 "k8s.io/api/core/v1"
)

// listFlag collects a repeatable flag.
type listFlag []string

func (l *listFlag) String() string     { return strings.Join(*l, ",") }
func (l *listFlag) Set(v string) error { *l = append(*l, v); return nil }

func main() {
	var crds listFlag
	flag.Var(&crds, "crd", "a CustomResourceDefinition YAML file (repeatable)")
	plugin := flag.String("plugin", "", "the Traefik plugin name whose Middleware config keys are checked")
	pluginKeys := flag.String("plugin-keys", "", "comma-separated keys the plugin accepts (case-insensitive)")
	expectInvalid := flag.Bool("expect-invalid", false, "every MANIFEST must be rejected")
	dump := flag.String("dump", "", "write every ConfigMap's config.yaml of a valid file into this directory")
	flag.Parse()
	if flag.NArg() == 0 {
		fmt.Fprintln(os.Stderr, "usage: validate -crd FILE… [-plugin NAME -plugin-keys k,…] [-expect-invalid] MANIFEST…")
		os.Exit(2)
	}

	v, err := newValidator(crds, *plugin, *pluginKeys)
	if err != nil {
		fmt.Fprintln(os.Stderr, "validate:", err)
		os.Exit(2)
	}

	failed := 0
	for _, path := range flag.Args() {
		data, err := os.ReadFile(path)
		if err != nil {
			fmt.Fprintln(os.Stderr, "validate:", err)
			os.Exit(2)
		}
		problems, r := v.validateFile(data)
		count := len(r.objects)
		switch {
		case *expectInvalid && len(problems) == 0:
			fmt.Printf("FAIL %s: accepted (%d objects), but it must be rejected\n", path, count)
			failed++
		case *expectInvalid:
			fmt.Printf("ok   %s: rejected as it must be:\n", path)
			printProblems(problems)
		case len(problems) > 0:
			fmt.Printf("FAIL %s:\n", path)
			printProblems(problems)
			failed++
		default:
			fmt.Printf("ok   %s: %d objects valid\n", path, count)
			if *dump != "" {
				if err := dumpConfigs(r, *dump, filepath.Base(path)); err != nil {
					fmt.Fprintln(os.Stderr, "validate:", err)
					os.Exit(2)
				}
			}
		}
	}
	if failed > 0 {
		fmt.Printf("%d of %d manifest files failed\n", failed, flag.NArg())
		os.Exit(1)
	}
}

func printProblems(problems []string) {
	for _, p := range problems {
		fmt.Printf("       - %s\n", p)
	}
}

// dumpConfigs writes the sidecar configuration file of each ConfigMap in r.
func dumpConfigs(r *release, dir, base string) error {
	for _, o := range r.objects {
		cm, ok := o.typed.(*corev1.ConfigMap)
		if !ok {
			continue
		}
		if text, ok := cm.Data["config.yaml"]; ok {
			if err := os.WriteFile(filepath.Join(dir, base+"."+cm.Name), []byte(text), 0o600); err != nil {
				return err
			}
		}
	}
	return nil
}
