// This file checks custom resources against the openAPIV3Schema of their
// CustomResourceDefinition with the apiextensions-apiserver's own code, in the order the API
// server applies it on a create with fieldValidation=Strict: unknown fields (pruning), the
// OpenAPI schema, then the x-kubernetes-validations CEL rules.

package main

import (
	"context"
	"fmt"
	"os"
	"sort"
	"strings"

	"k8s.io/apiextensions-apiserver/pkg/apis/apiextensions"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	structuralschema "k8s.io/apiextensions-apiserver/pkg/apiserver/schema"
	"k8s.io/apiextensions-apiserver/pkg/apiserver/schema/cel"
	"k8s.io/apiextensions-apiserver/pkg/apiserver/schema/pruning"
	apiservervalidation "k8s.io/apiextensions-apiserver/pkg/apiserver/validation"
	"k8s.io/apimachinery/pkg/runtime"
	celconfig "k8s.io/apiserver/pkg/apis/cel"
	"sigs.k8s.io/yaml"
)

// crdVersion is one served version of a CRD, ready to validate objects.
type crdVersion struct {
	structural *structuralschema.Structural
	schema     apiservervalidation.SchemaValidator
	cel        *cel.Validator // nil when the schema has no CEL rules
}

// validator holds what every manifest is checked against.
type validator struct {
	crds       map[string]*crdVersion // "group/version/Kind"
	plugin     string                 // Traefik plugin name whose keys are checked, or ""
	pluginKeys map[string]bool        // lower-cased keys the plugin accepts
}

func newValidator(crdFiles []string, plugin, pluginKeys string) (*validator, error) {
	v := &validator{crds: map[string]*crdVersion{}, plugin: plugin, pluginKeys: map[string]bool{}}
	for _, k := range strings.Split(pluginKeys, ",") {
		if k = strings.TrimSpace(k); k != "" {
			v.pluginKeys[strings.ToLower(k)] = true
		}
	}
	if plugin != "" && len(v.pluginKeys) == 0 {
		return nil, fmt.Errorf("-plugin %s needs -plugin-keys", plugin)
	}
	for _, path := range crdFiles {
		if err := v.loadCRD(path); err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
	}
	return v, nil
}

func (v *validator) loadCRD(path string) error {
	data, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	docs, err := documents(data)
	if err != nil {
		return err
	}
	loaded := 0
	for _, doc := range docs {
		js, err := yaml.YAMLToJSONStrict(doc)
		if err != nil {
			return err
		}
		if strings.TrimSpace(string(js)) == "null" {
			continue
		}
		var crd apiextensionsv1.CustomResourceDefinition
		// The CRD file itself is decoded strictly, so a vendored schema cannot be half-read.
		if err := strictInto(js, &crd); err != nil {
			return fmt.Errorf("not a CustomResourceDefinition: %w", err)
		}
		if crd.Kind != "CustomResourceDefinition" {
			continue
		}
		for _, ver := range crd.Spec.Versions {
			if !ver.Served || ver.Schema == nil || ver.Schema.OpenAPIV3Schema == nil {
				continue
			}
			var internal apiextensions.JSONSchemaProps
			if err := apiextensionsv1.Convert_v1_JSONSchemaProps_To_apiextensions_JSONSchemaProps(ver.Schema.OpenAPIV3Schema, &internal, nil); err != nil {
				return err
			}
			s, err := structuralschema.NewStructural(&internal)
			if err != nil {
				return fmt.Errorf("%s %s: not a structural schema: %w", crd.Name, ver.Name, err)
			}
			sv, _, err := apiservervalidation.NewSchemaValidator(&internal)
			if err != nil {
				return err
			}
			key := crd.Spec.Group + "/" + ver.Name + "/" + crd.Spec.Names.Kind
			v.crds[key] = &crdVersion{structural: s, schema: sv, cel: cel.NewValidator(s, true, celconfig.PerCallLimit)}
			loaded++
		}
	}
	if loaded == 0 {
		return fmt.Errorf("no served version with an openAPIV3Schema")
	}
	return nil
}

// validate returns every problem of one custom resource.
func (c *crdVersion) validate(obj map[string]any) []string {
	var problems []string
	// Pruning works on a copy: it removes what it reports, and the schema checks below must
	// see the object as written.
	pruned := runtime.DeepCopyJSON(obj)
	unknown := pruning.PruneWithOptions(pruned, c.structural, true, structuralschema.UnknownFieldPathOptions{TrackUnknownFieldPaths: true})
	sort.Strings(unknown)
	for _, u := range unknown {
		problems = append(problems, fmt.Sprintf("unknown field %q", u))
	}
	for _, e := range apiservervalidation.ValidateCustomResource(nil, obj, c.schema) {
		problems = append(problems, e.Error())
	}
	if c.cel != nil {
		errs, _ := c.cel.Validate(context.Background(), nil, c.structural, obj, nil, celconfig.RuntimeCELCostBudget)
		for _, e := range errs {
			problems = append(problems, e.Error())
		}
	}
	return problems
}

func (v *validator) knownKinds() string {
	var kinds []string
	for k := range builtin {
		kinds = append(kinds, k)
	}
	for k := range v.crds {
		kinds = append(kinds, k)
	}
	sort.Strings(kinds)
	return strings.Join(kinds, ", ")
}
