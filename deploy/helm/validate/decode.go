// This file splits a manifest into its documents and decodes each one strictly into the Go type
// the API server would use for its apiVersion and kind.

package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"regexp"
	"strings"

	monitoringv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	apimachineryvalidation "k8s.io/apimachinery/pkg/api/validation"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation/field"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	sigsjson "sigs.k8s.io/json"
	"sigs.k8s.io/yaml"
)

// builtin maps "apiVersion/kind" of the built-in kinds the chart may render to a constructor of
// their Go type and the rule their names follow (Services are DNS-1035 labels: they become DNS
// names and environment variable prefixes; the rest are DNS subdomains).
var builtin = map[string]struct {
	make func() any
	name apimachineryvalidation.ValidateNameFunc
}{
	"v1/ConfigMap":                           {func() any { return &corev1.ConfigMap{} }, apimachineryvalidation.NameIsDNSSubdomain},
	"v1/Secret":                              {func() any { return &corev1.Secret{} }, apimachineryvalidation.NameIsDNSSubdomain},
	"v1/Service":                             {func() any { return &corev1.Service{} }, apimachineryvalidation.NameIsDNS1035Label},
	"v1/ServiceAccount":                      {func() any { return &corev1.ServiceAccount{} }, apimachineryvalidation.NameIsDNSSubdomain},
	"apps/v1/Deployment":                     {func() any { return &appsv1.Deployment{} }, apimachineryvalidation.NameIsDNSSubdomain},
	"apps/v1/StatefulSet":                    {func() any { return &appsv1.StatefulSet{} }, apimachineryvalidation.NameIsDNSSubdomain},
	"policy/v1/PodDisruptionBudget":          {func() any { return &policyv1.PodDisruptionBudget{} }, apimachineryvalidation.NameIsDNSSubdomain},
	"networking.k8s.io/v1/NetworkPolicy":     {func() any { return &networkingv1.NetworkPolicy{} }, apimachineryvalidation.NameIsDNSSubdomain},
	"autoscaling/v2/HorizontalPodAutoscaler": {func() any { return &autoscalingv2.HorizontalPodAutoscaler{} }, apimachineryvalidation.NameIsDNSSubdomain},
	// Not a built-in, but prometheus-operator publishes its API as Go types: decoding into
	// them strictly is as exact as its CRD's schema (which is generated from these types).
	"monitoring.coreos.com/v1/ServiceMonitor": {func() any { return &monitoringv1.ServiceMonitor{} }, apimachineryvalidation.NameIsDNSSubdomain},
}

// object is one decoded document.
type object struct {
	source string // helm's "# Source:" comment, or the document's index
	gvk    string // apiVersion/kind
	meta   metav1.ObjectMeta
	typed  any            // the k8s.io/api value for built-in kinds, nil for custom resources
	raw    map[string]any // the document as the API server's unstructured form
}

func (o *object) String() string {
	return fmt.Sprintf("%s %s/%s (%s)", o.gvk, o.meta.Namespace, o.meta.Name, o.source)
}

var sourceComment = regexp.MustCompile(`(?m)^# Source: (.+)$`)

// documents splits a multi-document YAML stream as kubectl does.
func documents(data []byte) ([][]byte, error) {
	r := utilyaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(data)))
	var docs [][]byte
	for {
		doc, err := r.Read()
		if errors.Is(err, io.EOF) {
			return docs, nil
		}
		if err != nil {
			return nil, err
		}
		docs = append(docs, doc)
	}
}

// decode turns one document into an object; a nil object with no error is an empty document.
func (v *validator) decode(doc []byte, index int) (*object, []string) {
	source := fmt.Sprintf("document %d", index)
	if m := sourceComment.FindSubmatch(doc); m != nil {
		source = string(m[1])
	}
	// YAMLToJSONStrict refuses duplicate keys, which plain YAML decoding silently resolves to
	// the last one (a Deployment with two `replicas:` would otherwise pass).
	js, err := yaml.YAMLToJSONStrict(doc)
	if err != nil {
		return nil, []string{fmt.Sprintf("%s: %v", source, err)}
	}
	if bytes.Equal(bytes.TrimSpace(js), []byte("null")) {
		return nil, nil
	}
	var raw map[string]any
	// Case-sensitive and integer-preserving: the unstructured form the API server builds.
	if err := sigsjson.UnmarshalCaseSensitivePreserveInts(js, &raw); err != nil {
		return nil, []string{fmt.Sprintf("%s: not an object: %v", source, err)}
	}
	apiVersion, _ := raw["apiVersion"].(string)
	kind, _ := raw["kind"].(string)
	o := &object{source: source, gvk: apiVersion + "/" + kind, raw: raw}
	if apiVersion == "" || kind == "" {
		return nil, []string{fmt.Sprintf("%s: apiVersion and kind are required", source)}
	}
	metaJSON, err := json.Marshal(raw["metadata"])
	if err == nil {
		err = strictInto(metaJSON, &o.meta)
	}
	if err != nil {
		return nil, []string{fmt.Sprintf("%s: metadata: %v", o.gvk, err)}
	}

	var problems []string
	add := func(format string, a ...any) { problems = append(problems, o.String()+": "+fmt.Sprintf(format, a...)) }
	nameFn := apimachineryvalidation.NameIsDNSSubdomain
	if b, ok := builtin[o.gvk]; ok {
		o.typed = b.make()
		nameFn = b.name
		if err := strictInto(js, o.typed); err != nil {
			add("%v", err)
		}
	} else if c, ok := v.crds[o.gvk]; ok {
		for _, e := range c.validate(raw) {
			add("%v", e)
		}
	} else {
		add("no schema for this apiVersion/kind: the validator knows only %s", v.knownKinds())
	}
	for _, e := range apimachineryvalidation.ValidateObjectMeta(&o.meta, true, nameFn, field.NewPath("metadata")) {
		add("%v", e)
	}
	return o, problems
}

// strictInto decodes JSON into out the way `kubectl apply --validate=strict` judges it:
// case-sensitive field names, no unknown fields, no duplicate fields, exact types.
func strictInto(js []byte, out any) error {
	strict, err := sigsjson.UnmarshalStrict(js, out, sigsjson.DisallowDuplicateFields, sigsjson.DisallowUnknownFields)
	if err != nil {
		return err
	}
	if len(strict) > 0 {
		msgs := make([]string, len(strict))
		for i, e := range strict {
			msgs[i] = e.Error()
		}
		return errors.New(strings.Join(msgs, "; "))
	}
	return nil
}
