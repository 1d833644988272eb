// This file holds the checks a schema cannot make: within one object (a Deployment's selector
// must select its own pods, a probe's named port must exist) and across the objects of one
// release (a Service must select pods and name their ports, a NetworkPolicy must protect the
// pods it was written for, a Middleware must point at a Service port that exists).

package main

import (
	"fmt"
	"net/url"
	"strconv"
	"strings"

	monitoringv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	metav1validation "k8s.io/apimachinery/pkg/apis/meta/v1/validation"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/apimachinery/pkg/util/validation/field"
)

// release is the decoded objects of one manifest file.
type release struct {
	objects []*object
	// workloads' pod templates, for selectors and named ports
	pods []*corev1.PodTemplateSpec
}

// problems collects findings with the object they belong to.
type problems []string

func (p *problems) add(o *object, format string, a ...any) {
	*p = append(*p, o.String()+": "+fmt.Sprintf(format, a...))
}

// validateFile decodes every document and runs every check; it returns the problems and the
// decoded objects.
func (v *validator) validateFile(data []byte) ([]string, *release) {
	r := &release{}
	docs, err := documents(data)
	if err != nil {
		return []string{err.Error()}, r
	}
	var out problems
	for i, doc := range docs {
		o, ps := v.decode(doc, i)
		out = append(out, ps...)
		if o == nil {
			continue
		}
		r.objects = append(r.objects, o)
		switch t := o.typed.(type) {
		case *appsv1.Deployment:
			r.pods = append(r.pods, &t.Spec.Template)
		case *appsv1.StatefulSet:
			r.pods = append(r.pods, &t.Spec.Template)
		}
	}
	if len(r.objects) == 0 {
		out = append(out, "no objects at all")
	}
	if len(out) > 0 {
		// Cross-object checks on objects that did not decode would only add noise.
		return out, r
	}
	for _, o := range r.objects {
		r.check(v, o, &out)
	}
	return out, r
}

func (r *release) check(v *validator, o *object, out *problems) {
	switch t := o.typed.(type) {
	case *appsv1.Deployment:
		r.checkWorkload(o, t.Spec.Selector, &t.Spec.Template, nil, out)
		if t.Spec.Replicas != nil && *t.Spec.Replicas < 0 {
			out.add(o, "spec.replicas must not be negative")
		}
	case *appsv1.StatefulSet:
		var claims []string
		for _, c := range t.Spec.VolumeClaimTemplates {
			claims = append(claims, c.Name)
		}
		r.checkWorkload(o, t.Spec.Selector, &t.Spec.Template, claims, out)
	case *corev1.Service:
		r.checkService(o, t, out)
	case *networkingv1.NetworkPolicy:
		pods := r.selected(o, &t.Spec.PodSelector, "spec.podSelector", out)
		for i, rule := range t.Spec.Ingress {
			for j, p := range rule.Ports {
				if p.Port != nil && p.Port.Type == intstr.String && !hasPortName(pods, p.Port.StrVal) {
					out.add(o, "spec.ingress[%d].ports[%d]: no selected container has a port named %q", i, j, p.Port.StrVal)
				}
			}
			for j, peer := range rule.From {
				for _, s := range []*metav1.LabelSelector{peer.PodSelector, peer.NamespaceSelector} {
					if s != nil {
						r.selectorValid(o, s, fmt.Sprintf("spec.ingress[%d].from[%d]", i, j), out)
					}
				}
			}
		}
	case *policyv1.PodDisruptionBudget:
		r.selected(o, t.Spec.Selector, "spec.selector", out)
		if t.Spec.MinAvailable != nil && t.Spec.MaxUnavailable != nil {
			out.add(o, "spec: minAvailable and maxUnavailable are mutually exclusive")
		}
	case *autoscalingv2.HorizontalPodAutoscaler:
		ref := t.Spec.ScaleTargetRef
		if !r.has("apps/v1/"+ref.Kind, ref.Name) {
			out.add(o, "spec.scaleTargetRef: no %s %q in this release", ref.Kind, ref.Name)
		}
		if t.Spec.MinReplicas != nil && *t.Spec.MinReplicas > t.Spec.MaxReplicas {
			out.add(o, "spec.minReplicas is above spec.maxReplicas")
		}
	case *monitoringv1.ServiceMonitor:
		r.checkServiceMonitor(o, t, out)
	}
	if o.gvk == "traefik.io/v1alpha1/Middleware" {
		r.checkMiddleware(v, o, out)
	}
}

// checkWorkload: the selector selects the template's own pods (the API server refuses a
// Deployment whose selector does not match its template labels), and the pod spec's named
// references resolve. claims are a StatefulSet's volumeClaimTemplates, which are volumes too.
func (r *release) checkWorkload(o *object, sel *metav1.LabelSelector, tpl *corev1.PodTemplateSpec, claims []string, out *problems) {
	if sel == nil || (len(sel.MatchLabels) == 0 && len(sel.MatchExpressions) == 0) {
		out.add(o, "spec.selector is required and must not be empty")
		return
	}
	if s := r.selectorValid(o, sel, "spec.selector", out); s != nil && !s.Matches(labels.Set(tpl.Labels)) {
		out.add(o, "spec.selector does not match spec.template.metadata.labels")
	}
	for k, val := range tpl.Labels {
		for _, msg := range append(validation.IsQualifiedName(k), validation.IsValidLabelValue(val)...) {
			out.add(o, "spec.template.metadata.labels %q: %s", k, msg)
		}
	}
	volumes := map[string]bool{}
	for _, c := range claims {
		volumes[c] = true
	}
	for _, vol := range tpl.Spec.Volumes {
		volumes[vol.Name] = true
		if vol.ConfigMap != nil && !r.has("v1/ConfigMap", vol.ConfigMap.Name) {
			out.add(o, "volume %q: no ConfigMap %q in this release", vol.Name, vol.ConfigMap.Name)
		}
	}
	names := map[string]bool{}
	for _, c := range append(append([]corev1.Container{}, tpl.Spec.InitContainers...), tpl.Spec.Containers...) {
		for _, msg := range validation.IsDNS1123Label(c.Name) {
			out.add(o, "container %q: %s", c.Name, msg)
		}
		if names[c.Name] {
			out.add(o, "container %q: duplicate name", c.Name)
		}
		names[c.Name] = true
		if c.Image == "" {
			out.add(o, "container %q: image is required", c.Name)
		}
		ports := map[string]bool{}
		for _, p := range c.Ports {
			if p.ContainerPort < 1 || p.ContainerPort > 65535 {
				out.add(o, "container %q: containerPort %d out of range", c.Name, p.ContainerPort)
			}
			if p.Name != "" {
				for _, msg := range validation.IsValidPortName(p.Name) {
					out.add(o, "container %q port %q: %s", c.Name, p.Name, msg)
				}
				if ports[p.Name] {
					out.add(o, "container %q: duplicate port name %q", c.Name, p.Name)
				}
				ports[p.Name] = true
			}
		}
		for what, pr := range map[string]*corev1.Probe{"livenessProbe": c.LivenessProbe, "readinessProbe": c.ReadinessProbe, "startupProbe": c.StartupProbe} {
			if pr == nil {
				continue
			}
			var port *intstr.IntOrString
			if pr.HTTPGet != nil {
				port = &pr.HTTPGet.Port
			} else if pr.TCPSocket != nil {
				port = &pr.TCPSocket.Port
			}
			if port != nil && port.Type == intstr.String && !ports[port.StrVal] {
				out.add(o, "container %q %s: no port named %q", c.Name, what, port.StrVal)
			}
		}
		for _, m := range c.VolumeMounts {
			if !volumes[m.Name] {
				out.add(o, "container %q: volumeMount %q names no volume", c.Name, m.Name)
			}
		}
		for name, limit := range c.Resources.Limits {
			if req, ok := c.Resources.Requests[name]; ok && req.Cmp(limit) > 0 {
				out.add(o, "container %q: %s request %s is above its limit %s", c.Name, name, req.String(), limit.String())
			}
		}
		for _, e := range c.Env {
			if e.ValueFrom != nil && e.ValueFrom.SecretKeyRef != nil && e.ValueFrom.SecretKeyRef.Name == "" {
				out.add(o, "container %q env %s: secretKeyRef.name is required", c.Name, e.Name)
			}
		}
	}
}

// checkService: port names and numbers, and the selector selects pods that have every named
// targetPort (otherwise the Service has endpoints on no port at all).
func (r *release) checkService(o *object, s *corev1.Service, out *problems) {
	seen := map[string]bool{}
	for i, p := range s.Spec.Ports {
		if len(s.Spec.Ports) > 1 && p.Name == "" {
			out.add(o, "spec.ports[%d]: a Service with several ports must name each", i)
		}
		if p.Name != "" {
			for _, msg := range validation.IsDNS1123Label(p.Name) {
				out.add(o, "spec.ports[%d].name: %s", i, msg)
			}
		}
		if seen[p.Name] {
			out.add(o, "spec.ports[%d]: duplicate name %q", i, p.Name)
		}
		seen[p.Name] = true
		if p.Port < 1 || p.Port > 65535 {
			out.add(o, "spec.ports[%d].port %d out of range", i, p.Port)
		}
	}
	if len(s.Spec.Selector) == 0 {
		return
	}
	pods := r.selected(o, &metav1.LabelSelector{MatchLabels: s.Spec.Selector}, "spec.selector", out)
	for i, p := range s.Spec.Ports {
		if p.TargetPort.Type == intstr.String && !hasPortName(pods, p.TargetPort.StrVal) {
			out.add(o, "spec.ports[%d].targetPort: no selected container has a port named %q", i, p.TargetPort.StrVal)
		}
	}
}

func (r *release) checkServiceMonitor(o *object, sm *monitoringv1.ServiceMonitor, out *problems) {
	sel := r.selectorValid(o, &sm.Spec.Selector, "spec.selector", out)
	if sel == nil {
		return
	}
	var svcs []*corev1.Service
	for _, x := range r.objects {
		if s, ok := x.typed.(*corev1.Service); ok && sel.Matches(labels.Set(s.Labels)) {
			svcs = append(svcs, s)
		}
	}
	if len(svcs) == 0 {
		out.add(o, "spec.selector selects no Service of this release")
		return
	}
	for i, ep := range sm.Spec.Endpoints {
		if ep.Port == "" {
			continue
		}
		found := false
		for _, s := range svcs {
			for _, p := range s.Spec.Ports {
				found = found || p.Name == ep.Port
			}
		}
		if !found {
			out.add(o, "spec.endpoints[%d].port: no selected Service has a port named %q", i, ep.Port)
		}
	}
}

// checkMiddleware: a forwardAuth address or plugin sidecarUrl that names a Service of this
// release must name one of its ports, and the plugin's configuration holds only keys the shim
// knows (any other key would be taken for an inline middleware block).
func (r *release) checkMiddleware(v *validator, o *object, out *problems) {
	spec, _ := o.raw["spec"].(map[string]any)
	if fa, ok := spec["forwardAuth"].(map[string]any); ok {
		if addr, ok := fa["address"].(string); ok {
			r.checkServiceURL(o, "spec.forwardAuth.address", addr, out)
		}
	}
	plugins, _ := spec["plugin"].(map[string]any)
	if v.plugin == "" || plugins == nil {
		return
	}
	conf, ok := plugins[v.plugin].(map[string]any)
	if !ok {
		return
	}
	for k, val := range conf {
		if !v.pluginKeys[strings.ToLower(k)] {
			out.add(o, "spec.plugin.%s.%s: not one of the plugin's keys", v.plugin, k)
		}
		if strings.EqualFold(k, "sidecarUrl") {
			s, _ := val.(string)
			r.checkServiceURL(o, "spec.plugin."+v.plugin+"."+k, s, out)
		}
	}
}

// checkServiceURL checks a URL's host against the Services of this release: when its first
// DNS label is one of them, the port must be one of that Service's ports.
func (r *release) checkServiceURL(o *object, path, raw string, out *problems) {
	u, err := url.Parse(raw)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		out.add(o, "%s: %q is not an http(s) URL", path, raw)
		return
	}
	host := strings.SplitN(u.Hostname(), ".", 2)[0]
	for _, x := range r.objects {
		s, ok := x.typed.(*corev1.Service)
		if !ok || s.Name != host {
			continue
		}
		port, _ := strconv.Atoi(u.Port())
		for _, p := range s.Spec.Ports {
			if int(p.Port) == port {
				return
			}
		}
		out.add(o, "%s: Service %q has no port %q", path, host, u.Port())
	}
}

// selectorValid validates a label selector with apimachinery's rules and converts it.
func (r *release) selectorValid(o *object, s *metav1.LabelSelector, path string, out *problems) labels.Selector {
	errs := metav1validation.ValidateLabelSelector(s, metav1validation.LabelSelectorValidationOptions{}, field.NewPath(path))
	for _, e := range errs {
		out.add(o, "%v", e)
	}
	if len(errs) > 0 {
		return nil
	}
	sel, err := metav1.LabelSelectorAsSelector(s)
	if err != nil {
		out.add(o, "%s: %v", path, err)
		return nil
	}
	return sel
}

// selected returns the pod templates of this release a selector selects; selecting none is a
// problem (the object would protect, expose or budget nothing).
func (r *release) selected(o *object, s *metav1.LabelSelector, path string, out *problems) []*corev1.PodTemplateSpec {
	if s == nil {
		out.add(o, "%s is required", path)
		return nil
	}
	sel := r.selectorValid(o, s, path, out)
	if sel == nil {
		return nil
	}
	var pods []*corev1.PodTemplateSpec
	for _, p := range r.pods {
		if sel.Matches(labels.Set(p.Labels)) {
			pods = append(pods, p)
		}
	}
	if len(pods) == 0 {
		out.add(o, "%s selects no pods of this release", path)
	}
	return pods
}

func (r *release) has(gvk, name string) bool {
	for _, o := range r.objects {
		if o.gvk == gvk && o.meta.Name == name {
			return true
		}
	}
	return false
}

func hasPortName(pods []*corev1.PodTemplateSpec, name string) bool {
	for _, p := range pods {
		for _, c := range p.Spec.Containers {
			for _, port := range c.Ports {
				if port.Name == name {
					return true
				}
			}
		}
	}
	return false
}
