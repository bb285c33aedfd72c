package deploy

// deploy/kubernetes, checked offline: every manifest decodes strictly with
// the k8s.io/api types (the Gateway API's with gatewayapi_test.go's), each
// base and overlay builds (kustomize_test.go), and what they say agrees with
// the shop (shopsource_test.go) and with itself: environment names, probe
// paths, ports, selectors, references to Secrets and ConfigMaps, and the
// stop's timing. No cluster is needed.

import (
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/intstr"
	"sigs.k8s.io/yaml"
)

const kubeDir = "kubernetes"

// kubeBuilds are the kustomizations a user applies, and the session store
// each runs the shop with.
var kubeBuilds = []struct {
	dir, store string
}{
	{"base", "redis"},
	{"overlays/memory", "memory"},
	{"overlays/redis", "redis"},
	{"overlays/cookie", "cookie"},
}

// kubeComponents are the opt-in components (under kubeDir): the tests build
// every kustomization in kubeBuilds with all of them, as a user's own
// kustomization would add them. A new component goes here.
var kubeComponents = []string{
	"components/placeholder-secret",
	"components/network-policies",
}

// otherShopEnv are the variables besides SHOP_* the shop's container may
// set: the Go runtime's.
var otherShopEnv = []string{"GOMEMLIMIT", "GOGC", "GOMAXPROCS"}

// sessionStores are -session-store's values in the contract.
var sessionStores = []string{"memory", "redis", "cookie"}

// newKubeKind returns an empty typed object for apiVersion and kind, or nil for
// a kind these manifests have no business using.
func newKubeKind(apiVersion, kind string) any {
	switch apiVersion + " " + kind {
	case "apps/v1 Deployment":
		return &appsv1.Deployment{}
	case "apps/v1 StatefulSet":
		return &appsv1.StatefulSet{}
	case "v1 Service":
		return &corev1.Service{}
	case "v1 ConfigMap":
		return &corev1.ConfigMap{}
	case "v1 Secret":
		return &corev1.Secret{}
	case "autoscaling/v2 HorizontalPodAutoscaler":
		return &autoscalingv2.HorizontalPodAutoscaler{}
	case "policy/v1 PodDisruptionBudget":
		return &policyv1.PodDisruptionBudget{}
	case "networking.k8s.io/v1 NetworkPolicy":
		return &networkingv1.NetworkPolicy{}
	case "gateway.networking.k8s.io/v1 Gateway":
		return &gwGateway{}
	case "gateway.networking.k8s.io/v1 HTTPRoute":
		return &gwHTTPRoute{}
	}
	return nil
}

// decodeKubeStrict decodes o into its typed form; unknown or duplicate fields,
// and values of the wrong type, fail. A whole object (not a patch) is also
// validated where the tests know the API's rules (the Gateway API kinds).
func decodeKubeStrict(o kubeObject, whole bool) (any, error) {
	typed := newKubeKind(o.apiVersion(), o.kind())
	if typed == nil {
		return nil, fmt.Errorf("%s: %s %s is not a kind these tests know; add it to newKubeKind", o.Source, o.apiVersion(), o.kind())
	}
	b, err := yaml.Marshal(o.Body)
	if err != nil {
		return nil, err
	}
	if err := yaml.UnmarshalStrict(b, typed); err != nil {
		return nil, fmt.Errorf("%s: %s: %w", o.Source, o.id(), err)
	}
	if v, ok := typed.(interface{ validate() error }); ok && whole {
		if err := v.validate(); err != nil {
			return nil, fmt.Errorf("%s: %s: %w", o.Source, o.id(), err)
		}
	}
	return typed, nil
}

// withoutPatchDirectives copies v without its `$patch` keys, so a patch
// document decodes like the partial object it is.
func withoutPatchDirectives(v any) any {
	switch v := v.(type) {
	case map[string]any:
		out := make(map[string]any, len(v))
		for k, e := range v {
			if k != "$patch" {
				out[k] = withoutPatchDirectives(e)
			}
		}
		return out
	case []any:
		out := make([]any, len(v))
		for i, e := range v {
			out[i] = withoutPatchDirectives(e)
		}
		return out
	}
	return v
}

// kubeCluster is one build's objects, typed and by name.
type kubeCluster struct {
	deployments  map[string]*appsv1.Deployment
	statefulSets map[string]*appsv1.StatefulSet
	services     map[string]*corev1.Service
	configMaps   map[string]*corev1.ConfigMap
	secrets      map[string]*corev1.Secret
	hpas         map[string]*autoscalingv2.HorizontalPodAutoscaler
	pdbs         map[string]*policyv1.PodDisruptionBudget
	netpols      map[string]*networkingv1.NetworkPolicy
	gateways     map[string]*gwGateway
	routes       map[string]*gwHTTPRoute
}

func buildKubeCluster(t *testing.T, dir string) kubeCluster {
	t.Helper()
	var components []string
	for _, comp := range kubeComponents {
		components = append(components, filepath.Join(kubeDir, comp))
	}
	objs, err := kustomizeBuildWith(filepath.Join(kubeDir, dir), components)
	if err != nil {
		t.Fatal(err)
	}
	c := kubeCluster{
		deployments: map[string]*appsv1.Deployment{}, statefulSets: map[string]*appsv1.StatefulSet{},
		services: map[string]*corev1.Service{}, configMaps: map[string]*corev1.ConfigMap{},
		secrets: map[string]*corev1.Secret{}, hpas: map[string]*autoscalingv2.HorizontalPodAutoscaler{},
		pdbs: map[string]*policyv1.PodDisruptionBudget{}, netpols: map[string]*networkingv1.NetworkPolicy{}, gateways: map[string]*gwGateway{}, routes: map[string]*gwHTTPRoute{},
	}
	for _, o := range objs {
		typed, err := decodeKubeStrict(o, true)
		if err != nil {
			t.Error(err)
			continue
		}
		switch v := typed.(type) {
		case *appsv1.Deployment:
			c.deployments[v.Name] = v
		case *appsv1.StatefulSet:
			c.statefulSets[v.Name] = v
		case *corev1.Service:
			c.services[v.Name] = v
		case *corev1.ConfigMap:
			c.configMaps[v.Name] = v
		case *corev1.Secret:
			c.secrets[v.Name] = v
		case *autoscalingv2.HorizontalPodAutoscaler:
			c.hpas[v.Name] = v
		case *policyv1.PodDisruptionBudget:
			c.pdbs[v.Name] = v
		case *networkingv1.NetworkPolicy:
			c.netpols[v.Name] = v
		case *gwGateway:
			c.gateways[v.Name] = v
		case *gwHTTPRoute:
			c.routes[v.Name] = v
		}
	}
	if t.Failed() {
		t.FailNow()
	}
	return c
}

// kubeWorkload is a Deployment or StatefulSet as far as the checks care.
type kubeWorkload struct {
	kind, name string
	replicas   int32
	selector   *metav1.LabelSelector
	template   corev1.PodTemplateSpec
	claims     []corev1.PersistentVolumeClaim
}

func (c kubeCluster) workloads() []kubeWorkload {
	var ws []kubeWorkload
	for _, d := range c.deployments {
		n := replicaCount(d.Spec.Replicas)
		if h, ok := c.autoscaler(d.Name); ok && h.Spec.MinReplicas != nil {
			n = *h.Spec.MinReplicas // the fewest the autoscaler keeps
		}
		ws = append(ws, kubeWorkload{"Deployment", d.Name, n, d.Spec.Selector, d.Spec.Template, nil})
	}
	for _, s := range c.statefulSets {
		ws = append(ws, kubeWorkload{"StatefulSet", s.Name, replicaCount(s.Spec.Replicas), s.Spec.Selector, s.Spec.Template, s.Spec.VolumeClaimTemplates})
	}
	slices.SortFunc(ws, func(a, b kubeWorkload) int { return strings.Compare(a.kind+a.name, b.kind+b.name) })
	return ws
}

// autoscaler returns the HorizontalPodAutoscaler that scales Deployment name.
func (c kubeCluster) autoscaler(name string) (*autoscalingv2.HorizontalPodAutoscaler, bool) {
	for _, h := range c.hpas {
		if ref := h.Spec.ScaleTargetRef; ref.Kind == "Deployment" && ref.Name == name {
			return h, true
		}
	}
	return nil, false
}

func replicaCount(n *int32) int32 {
	if n == nil {
		return 1
	}
	return *n
}

// selecting returns the workloads whose pods sel selects.
func (c kubeCluster) selecting(sel labels.Selector) []kubeWorkload {
	var ws []kubeWorkload
	for _, w := range c.workloads() {
		if sel.Matches(labels.Set(w.template.Labels)) {
			ws = append(ws, w)
		}
	}
	return ws
}

// secretValue is a key of a Secret in the build, from data or stringData.
func (c kubeCluster) secretValue(name, key string) (string, bool) {
	s, ok := c.secrets[name]
	if !ok {
		return "", false
	}
	if v, ok := s.StringData[key]; ok {
		return v, true
	}
	v, ok := s.Data[key]
	return string(v), ok
}

// envValue is the value of a container's variable, through a secretKeyRef.
func (c kubeCluster) envValue(ctr corev1.Container, name string) (string, bool) {
	for _, e := range ctr.Env {
		if e.Name != name {
			continue
		}
		if e.ValueFrom != nil && e.ValueFrom.SecretKeyRef != nil {
			return c.secretValue(e.ValueFrom.SecretKeyRef.Name, e.ValueFrom.SecretKeyRef.Key)
		}
		return e.Value, e.ValueFrom == nil
	}
	return "", false
}

func kubeContainerPort(ctr corev1.Container, port intstr.IntOrString) (corev1.ContainerPort, bool) {
	for _, p := range ctr.Ports {
		if port.Type == intstr.String && p.Name == port.StrVal || port.Type == intstr.Int && p.ContainerPort == port.IntVal {
			return p, true
		}
	}
	return corev1.ContainerPort{}, false
}

// TestKubernetesManifestsDecodeStrictly decodes every YAML document under
// deploy/kubernetes on its own, patches included, and finds none that no
// kustomization uses.
func TestKubernetesManifestsDecodeStrictly(t *testing.T) {
	used := make(map[string]bool)
	patches := make(map[string]bool)
	var walk func(dir string)
	walk = func(dir string) {
		kind := kindKustomization
		if slices.ContainsFunc(kubeComponents, func(c string) bool { return filepath.Join(kubeDir, c) == dir }) {
			kind = kindComponent
		}
		k, err := readKustomization(dir, kind)
		if err != nil {
			t.Error(err)
			return
		}
		used[filepath.Join(dir, "kustomization.yaml")] = true
		for _, r := range k.Resources {
			p := filepath.Join(dir, r)
			if fi, err := os.Stat(p); err == nil && fi.IsDir() {
				walk(p)
			} else {
				used[p] = true
			}
		}
		for _, p := range k.Patches {
			if p.Path != "" {
				used[filepath.Join(dir, p.Path)] = true
				patches[filepath.Join(dir, p.Path)] = true
			}
		}
	}
	for _, b := range kubeBuilds {
		walk(filepath.Join(kubeDir, b.dir))
	}
	for _, c := range kubeComponents {
		walk(filepath.Join(kubeDir, c))
	}

	var files []string
	err := filepath.WalkDir(kubeDir, func(path string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() && (strings.HasSuffix(path, ".yaml") || strings.HasSuffix(path, ".yml")) {
			files = append(files, path)
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(files) < 10 {
		t.Fatalf("found %d manifests under %s; the layout moved?", len(files), kubeDir)
	}
	for _, f := range files {
		if !used[f] {
			t.Errorf("%s: no kustomization in %v or component in %v uses it", f, kubeBuilds, kubeComponents)
		}
		if filepath.Base(f) == "kustomization.yaml" {
			continue // decoded strictly by readKustomization
		}
		objs, err := readKubeObjects(f)
		if err != nil {
			t.Error(err)
			continue
		}
		for _, o := range objs {
			if o.Body["$patch"] == "delete" {
				continue // names an kubeObject only
			}
			o.Body = withoutPatchDirectives(o.Body).(map[string]any)
			if _, err := decodeKubeStrict(o, !patches[f]); err != nil {
				t.Error(err)
			}
		}
	}
}

// TestKubernetesDecodeIsStrict: the checks above would pass anything if the
// decoding were lenient.
func TestKubernetesDecodeIsStrict(t *testing.T) {
	for _, doc := range []string{
		"apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: x}\nspec: {replica: 3}\n",
		"apiVersion: v1\nkind: Service\nmetadata: {name: x}\nspec: {ports: [{port: \"eighty\"}]}\n",
		"apiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata: {name: x}\nspec: {parentRefs: [{name: g}], rules: [{sessionPersistance: {}}]}\n",
		"apiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata: {name: x}\nspec: {parentRefs: [{name: g}], rules: [{sessionPersistence: {cookieConfig: {lifetimeType: Permanent}}}]}\n",
		"apiVersion: v1\nkind: Pod\nmetadata: {name: x}\n",
	} {
		objs, err := parseKubeObjects("doc", []byte(doc))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := decodeKubeStrict(objs[0], true); err == nil {
			t.Errorf("decoded without error:\n%s", doc)
		}
	}
	if _, err := parseKubeObjects("doc", []byte("a: 1\na: 2\n")); err == nil {
		t.Error("a duplicate key parsed without error")
	}
}

// TestKubernetesBuilds builds the base and each overlay and checks that the
// objects agree with each other and with the shop.
func TestKubernetesBuilds(t *testing.T) {
	src := readShopSource(t)
	routes := readShopRoutes(t)
	if f, ok := src.flagByEnv("SHOP_DB"); !ok || f.Name != "db" {
		t.Fatalf("reading cmd/shop's flags found %+v; the parse no longer sees -db / SHOP_DB", src.Flags)
	}
	if !servesGet(routes, "/healthz") {
		t.Fatalf("reading web's routes found %v; the parse no longer sees GET /healthz", routes)
	}
	for _, b := range kubeBuilds {
		t.Run(strings.ReplaceAll(b.dir, "/", "-"), func(t *testing.T) {
			c := buildKubeCluster(t, b.dir)
			checkKubeWiring(t, c)
			checkKubeShop(t, c, src, routes, b.store)
			checkKubeSecrets(t, c)
		})
	}
}

// checkKubeWiring: selectors select, ports and names refer to what exists.
func checkKubeWiring(t *testing.T, c kubeCluster) {
	t.Helper()
	for _, w := range c.workloads() {
		id := w.kind + "/" + w.name
		sel, err := metav1.LabelSelectorAsSelector(w.selector)
		if err != nil || w.selector == nil || sel.Empty() {
			t.Errorf("%s: selector %v: %v", id, w.selector, err)
		} else if !sel.Matches(labels.Set(w.template.Labels)) {
			t.Errorf("%s: selector %v does not select its own pods %v", id, w.selector, w.template.Labels)
		}
		volumes := make(map[string]bool)
		for _, v := range w.template.Spec.Volumes {
			volumes[v.Name] = true
			if v.ConfigMap != nil {
				if _, ok := c.configMaps[v.ConfigMap.Name]; !ok {
					t.Errorf("%s: volume %s: no ConfigMap %s", id, v.Name, v.ConfigMap.Name)
				}
			}
		}
		for _, pvc := range w.claims {
			volumes[pvc.Name] = true
		}
		for _, ctr := range w.template.Spec.Containers {
			for _, m := range ctr.VolumeMounts {
				if !volumes[m.Name] {
					t.Errorf("%s: container %s mounts %s, which is no volume", id, ctr.Name, m.Name)
				}
			}
			names := make(map[string]bool)
			for _, e := range ctr.Env {
				if names[e.Name] {
					t.Errorf("%s: container %s sets %s twice", id, ctr.Name, e.Name)
				}
				names[e.Name] = true
				if e.ValueFrom != nil && e.ValueFrom.SecretKeyRef != nil {
					ref := e.ValueFrom.SecretKeyRef
					if _, ok := c.secretValue(ref.Name, ref.Key); !ok {
						t.Errorf("%s: %s refers to Secret %s key %s, which is not there", id, e.Name, ref.Name, ref.Key)
					}
				}
			}
			for what, p := range map[string]*corev1.Probe{"readiness": ctr.ReadinessProbe, "liveness": ctr.LivenessProbe} {
				if p != nil && p.HTTPGet != nil {
					if _, ok := kubeContainerPort(ctr, p.HTTPGet.Port); !ok {
						t.Errorf("%s: container %s: %s probe port %s is none of its ports", id, ctr.Name, what, p.HTTPGet.Port.String())
					}
				}
			}
		}
	}
	for _, s := range c.statefulSets {
		svc, ok := c.services[s.Spec.ServiceName]
		if !ok || svc.Spec.ClusterIP != corev1.ClusterIPNone {
			t.Errorf("StatefulSet/%s: serviceName %q must name a headless Service (clusterIP: None) for its pods' DNS names", s.Name, s.Spec.ServiceName)
		}
	}
	for _, svc := range c.services {
		if len(svc.Spec.Selector) == 0 {
			t.Errorf("Service/%s: no selector", svc.Name)
			continue
		}
		ws := c.selecting(labels.SelectorFromSet(svc.Spec.Selector))
		if len(ws) == 0 {
			t.Errorf("Service/%s: selector %v selects no workload's pods", svc.Name, svc.Spec.Selector)
		}
		for _, p := range svc.Spec.Ports {
			target := p.TargetPort
			if target.Type == intstr.Int && target.IntVal == 0 {
				target = intstr.FromInt32(p.Port)
			}
			for _, w := range ws {
				if !slices.ContainsFunc(w.template.Spec.Containers, func(ctr corev1.Container) bool { _, ok := kubeContainerPort(ctr, target); return ok }) {
					t.Errorf("Service/%s: port %d targets %s, which no container of %s/%s has", svc.Name, p.Port, target.String(), w.kind, w.name)
				}
			}
		}
	}
	for _, h := range c.hpas {
		ref := h.Spec.ScaleTargetRef
		d, ok := c.deployments[ref.Name]
		if ref.Kind != "Deployment" || ref.APIVersion != "apps/v1" || !ok {
			t.Errorf("HorizontalPodAutoscaler/%s: scales %s %s/%s, which is not in the build", h.Name, ref.APIVersion, ref.Kind, ref.Name)
			continue
		}
		if h.Spec.MinReplicas == nil || *h.Spec.MinReplicas < 2 || *h.Spec.MinReplicas > h.Spec.MaxReplicas {
			t.Errorf("HorizontalPodAutoscaler/%s: minReplicas %v: want 2 or more (one replica is no cluster), and at most maxReplicas %d", h.Name, h.Spec.MinReplicas, h.Spec.MaxReplicas)
		}
		// The autoscaler owns the count: one in the Deployment would be
		// applied again by every `kubectl apply`, undoing its choice.
		if d.Spec.Replicas != nil {
			t.Errorf("Deployment/%s: spec.replicas %d, but HorizontalPodAutoscaler/%s owns the count; leave it out", d.Name, *d.Spec.Replicas, h.Name)
		}
		for _, m := range h.Spec.Metrics {
			if m.Resource == nil || m.Resource.Target.Type != autoscalingv2.UtilizationMetricType {
				continue
			}
			for _, ctr := range d.Spec.Template.Spec.Containers {
				if _, ok := ctr.Resources.Requests[m.Resource.Name]; !ok {
					t.Errorf("HorizontalPodAutoscaler/%s: scales on %s utilization, but container %s requests no %s", h.Name, m.Resource.Name, ctr.Name, m.Resource.Name)
				}
			}
		}
	}
	for _, pdb := range c.pdbs {
		sel, err := metav1.LabelSelectorAsSelector(pdb.Spec.Selector)
		if err != nil || pdb.Spec.Selector == nil {
			t.Errorf("PodDisruptionBudget/%s: selector: %v", pdb.Name, err)
			continue
		}
		ws := c.selecting(sel)
		if len(ws) != 1 {
			t.Errorf("PodDisruptionBudget/%s: selects the pods of %d workloads, want 1", pdb.Name, len(ws))
			continue
		}
		// One pod at a time, however many run: minAvailable would let a
		// drain take all but that many of an autoscaled set at once, and
		// a budget that allows no disruption blocks every node drain.
		if m := pdb.Spec.MaxUnavailable; pdb.Spec.MinAvailable != nil || m == nil || m.Type != intstr.Int || m.IntVal != 1 || ws[0].replicas < 2 {
			t.Errorf("PodDisruptionBudget/%s: minAvailable %v, maxUnavailable %v over %s/%s's %d or more replicas; want maxUnavailable: 1 alone, over at least 2",
				pdb.Name, pdb.Spec.MinAvailable, m, ws[0].kind, ws[0].name, ws[0].replicas)
		}
	}
	for _, r := range c.routes {
		for _, p := range r.Spec.ParentRefs {
			g, ok := c.gateways[p.Name]
			if !ok {
				t.Errorf("HTTPRoute/%s: parent Gateway %s is not in the build", r.Name, p.Name)
				continue
			}
			if p.SectionName != nil && !slices.ContainsFunc(g.Spec.Listeners, func(l gwListener) bool { return l.Name == *p.SectionName }) {
				t.Errorf("HTTPRoute/%s: Gateway %s has no listener %s", r.Name, p.Name, *p.SectionName)
			}
		}
		for _, rule := range r.Spec.Rules {
			for _, b := range rule.BackendRefs {
				svc, ok := c.services[b.Name]
				if !ok || !slices.ContainsFunc(svc.Spec.Ports, func(sp corev1.ServicePort) bool { return sp.Port == *b.Port }) {
					t.Errorf("HTTPRoute/%s: backend %s:%d is no Service port in the build", r.Name, b.Name, *b.Port)
				}
			}
		}
	}
}

// checkKubeShop: the shop's container as cmd/shop and web see it, for store.
func checkKubeShop(t *testing.T, c kubeCluster, src shopSource, routes []shopRoute, store string) {
	t.Helper()
	d, ok := c.deployments["shop"]
	if !ok {
		t.Fatal("no Deployment shop")
	}
	i := slices.IndexFunc(d.Spec.Template.Spec.Containers, func(ctr corev1.Container) bool { return ctr.Name == "shop" })
	if i < 0 {
		t.Fatal("Deployment shop has no container shop")
	}
	ctr := d.Spec.Template.Spec.Containers[i]

	for _, e := range ctr.Env {
		switch {
		case src.Env[e.Name]:
		case slices.Contains(otherShopEnv, e.Name):
		case strings.HasPrefix(e.Name, "SHOP_"):
			t.Errorf("shop: %s is no variable cmd/shop reads (it reads %v)", e.Name, slices.Sorted(func(yield func(string) bool) {
				for n := range src.Env {
					if !yield(n) {
						return
					}
				}
			}))
		default:
			t.Errorf("shop: %s is neither a SHOP_* variable nor one of %v", e.Name, otherShopEnv)
		}
	}

	got, _ := c.envValue(ctr, "SHOP_SESSION_STORE")
	if got == "" {
		f, _ := src.flagByEnv("SHOP_SESSION_STORE")
		got = f.Default
	}
	if got != store || !slices.Contains(sessionStores, got) {
		t.Errorf("shop: session store %q, want %q (one of %v)", got, store, sessionStores)
	}

	addr, ok := c.envValue(ctr, "SHOP_ADDR")
	if !ok {
		f, _ := src.flagByEnv("SHOP_ADDR")
		addr = f.Default
	}
	_, port, err := net.SplitHostPort(addr)
	n, _ := strconv.Atoi(port)
	if err != nil {
		t.Errorf("shop: SHOP_ADDR %q: %v", addr, err)
	} else if p, ok := kubeContainerPort(ctr, intstr.FromInt(n)); !ok || p.Name != "http" {
		t.Errorf("shop: listens on %s (SHOP_ADDR %q), but its port named http is %v", port, addr, ctr.Ports)
	}

	for what, want := range map[string]struct {
		probe *corev1.Probe
		path  string
	}{"readiness": {ctr.ReadinessProbe, "/readyz"}, "liveness": {ctr.LivenessProbe, "/healthz"}} {
		switch {
		case want.probe == nil || want.probe.HTTPGet == nil:
			t.Errorf("shop: no HTTP %s probe", what)
		case want.probe.HTTPGet.Path != want.path:
			t.Errorf("shop: %s probe path %q, want %q", what, want.probe.HTTPGet.Path, want.path)
		case !servesGet(routes, want.path):
			t.Errorf("shop: %s probe path %q is no GET route in web/routes.go", what, want.path)
		}
	}

	var affinity *gwSessionPersistence
	for _, r := range c.routes {
		for _, rule := range r.Spec.Rules {
			if rule.SessionPersistence != nil {
				affinity = rule.SessionPersistence
			}
		}
	}
	_, hasRedis := c.statefulSets["redis"]
	redisEnv := slices.ContainsFunc(ctr.Env, func(e corev1.EnvVar) bool { return strings.HasPrefix(e.Name, "SHOP_REDIS_") })
	switch store {
	case "memory":
		// Each pod holds its own sessions: the gateway must pin a shopper,
		// with a cookie of its own, not the shop's `session`.
		if affinity == nil || affinity.SessionName == nil || *affinity.SessionName == "session" ||
			affinity.Type != nil && *affinity.Type != "Cookie" {
			t.Errorf("memory: the route needs cookie session persistence under a cookie name of its own, got %+v", affinity)
		}
		// Envoy Gateway gives a Session cookie no lifetime whatever
		// absoluteTimeout says (it sets one for Permanent cookies only):
		// the field would promise an expiry that nothing enforces.
		if affinity != nil && affinity.AbsoluteTimeout != nil && (affinity.CookieConfig == nil || affinity.CookieConfig.LifetimeType == nil || *affinity.CookieConfig.LifetimeType == "Session") {
			t.Errorf("memory: absoluteTimeout %s on a Session cookie: Envoy Gateway ignores it; drop it, or make the cookie Permanent", *affinity.AbsoluteTimeout)
		}
	case "redis", "cookie":
		if affinity != nil {
			t.Errorf("%s: stateless replicas need no session persistence on the route", store)
		}
	}
	if store == "redis" {
		checkKubeSentinels(t, c, ctr)
	} else if hasRedis || redisEnv {
		t.Errorf("%s: Redis is still deployed (%v) or configured (%v) for a shop that does not use it", store, hasRedis, redisEnv)
	}
	if store == "cookie" {
		keys, ok := c.envValue(ctr, "SHOP_SESSION_KEYS")
		if !ok {
			t.Error("cookie: SHOP_SESSION_KEYS is not set from a Secret")
		}
		for _, k := range strings.Split(keys, ",") {
			if len(k) < 32 {
				t.Errorf("cookie: session key %q: at least 32 characters", k)
			}
		}
	}
	checkKubeDatabase(t, c, ctr)
}

// checkKubeSentinels: the shop finds the Sentinels the build runs, by the master
// name they monitor, and they announce host names.
func checkKubeSentinels(t *testing.T, c kubeCluster, shop corev1.Container) {
	t.Helper()
	addrs, _ := c.envValue(shop, "SHOP_REDIS_SENTINELS")
	master, _ := c.envValue(shop, "SHOP_REDIS_MASTER")
	if addrs == "" || master == "" {
		t.Fatalf("redis: SHOP_REDIS_SENTINELS %q and SHOP_REDIS_MASTER %q must both be set", addrs, master)
	}
	for _, a := range strings.Split(addrs, ",") {
		if err := kubePodAddr(c, a); err != nil {
			t.Errorf("redis: SHOP_REDIS_SENTINELS: %v", err)
		}
	}
	cm, ok := c.configMaps["redis-sentinel"]
	if !ok {
		t.Fatal("redis: no ConfigMap redis-sentinel")
	}
	conf := strings.Split(cm.Data["sentinel.conf"], "\n")
	for _, want := range []string{"sentinel resolve-hostnames yes", "sentinel announce-hostnames yes"} {
		if !slices.Contains(conf, want) {
			t.Errorf("redis: sentinel.conf lacks %q", want)
		}
	}
	if !strings.Contains(cm.Data["sentinel.sh"], "sentinel monitor "+master+" ") {
		t.Errorf("redis: the Sentinels do not monitor a master named %q (SHOP_REDIS_MASTER)", master)
	}
	if pw, _ := c.envValue(shop, "SHOP_REDIS_PASSWORD"); pw == "" {
		t.Error("redis: SHOP_REDIS_PASSWORD is not set, but Redis requires one")
	}
}

// kubePodAddr checks that host:port names a pod of a StatefulSet in the build
// (pod-N.service) and one of its container ports.
func kubePodAddr(c kubeCluster, addr string) error {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("%q: %v", addr, err)
	}
	pod, svc, _ := strings.Cut(host, ".")
	svc, _, _ = strings.Cut(svc, ".") // service.namespace.svc... is fine too
	dash := strings.LastIndexByte(pod, '-')
	n, err := strconv.Atoi(pod[dash+1:])
	if dash < 0 || err != nil {
		return fmt.Errorf("%q: want a StatefulSet pod's name, like redis-sentinel-0.redis-sentinel", host)
	}
	s, ok := c.statefulSets[pod[:dash]]
	if !ok || s.Spec.ServiceName != svc || int32(n) >= replicaCount(s.Spec.Replicas) {
		return fmt.Errorf("%q: no pod %s of a StatefulSet behind Service %s in the build", host, pod, svc)
	}
	p, _ := strconv.Atoi(port)
	for _, ctr := range s.Spec.Template.Spec.Containers {
		if _, ok := kubeContainerPort(ctr, intstr.FromInt(p)); ok {
			return nil
		}
	}
	return fmt.Errorf("%q: StatefulSet %s listens on no port %s", addr, s.Name, port)
}

// checkKubeDatabase: SHOP_DB is the PostgreSQL the build runs, with its user,
// database and password.
func checkKubeDatabase(t *testing.T, c kubeCluster, shop corev1.Container) {
	t.Helper()
	raw, ok := c.envValue(shop, "SHOP_DB")
	if !ok {
		t.Fatal("shop: SHOP_DB is not set: replicas on several hosts cannot share the default SQLite file")
	}
	u, err := url.Parse(raw)
	if err != nil || u.Scheme != "postgres" || u.User == nil {
		t.Fatalf("shop: SHOP_DB %q: want postgres://user:password@host:port/db", raw)
	}
	if err := kubePodAddr(c, u.Host); err != nil {
		t.Errorf("shop: SHOP_DB: %v", err)
	}
	pg, ok := c.statefulSets["postgres"]
	if !ok {
		t.Fatal("no StatefulSet postgres")
	}
	ctr := pg.Spec.Template.Spec.Containers[0]
	user, _ := c.envValue(ctr, "POSTGRES_USER")
	db, _ := c.envValue(ctr, "POSTGRES_DB")
	pw, _ := c.envValue(ctr, "POSTGRES_PASSWORD")
	gotPW, _ := u.User.Password()
	if u.User.Username() != user || strings.TrimPrefix(u.Path, "/") != db || gotPW != pw || pw == "" {
		t.Errorf("shop: SHOP_DB names user %q, database %q and a password that %s; PostgreSQL has user %q, database %q",
			u.User.Username(), strings.TrimPrefix(u.Path, "/"), map[bool]string{true: "matches", false: "differs"}[gotPW == pw && pw != ""], user, db)
	}
}

// checkKubeSecrets: no real secret is committed.
func checkKubeSecrets(t *testing.T, c kubeCluster) {
	t.Helper()
	for _, s := range c.secrets {
		for k := range s.Data {
			t.Errorf("Secret/%s: %s is in data; keep placeholders readable in stringData", s.Name, k)
		}
		for k, v := range s.StringData {
			if !strings.Contains(v, "PLACEHOLDER") {
				t.Errorf("Secret/%s: %s does not say PLACEHOLDER: never commit a real secret", s.Name, k)
			}
		}
	}
}

// TestKubernetesShopStopTiming: the grace period covers the preStop sleep
// and the shop's whole bounded stop (cmd/shop: drain, quiet, Shutdown), so
// the kubelet never kills a replica finishing a request, and is not much
// longer, so a stuck pod is not waited on for nothing.
func TestKubernetesShopStopTiming(t *testing.T) {
	src := readShopSource(t)
	for _, b := range kubeBuilds {
		c := buildKubeCluster(t, b.dir)
		d := c.deployments["shop"]
		ctr := d.Spec.Template.Spec.Containers[0]
		var errs []error
		if d.Spec.Template.Spec.TerminationGracePeriodSeconds == nil {
			errs = append(errs, errors.New("no terminationGracePeriodSeconds"))
		}
		var preStop time.Duration
		if l := ctr.Lifecycle; l == nil || l.PreStop == nil || l.PreStop.Sleep == nil || l.PreStop.Sleep.Seconds <= 0 {
			errs = append(errs, errors.New("no preStop sleep: the gateway and kube-proxy need a moment to stop sending to a terminating pod"))
		} else {
			preStop = time.Duration(l.PreStop.Sleep.Seconds) * time.Second
		}
		drainValue, ok := c.envValue(ctr, "SHOP_DRAIN")
		if !ok {
			f, _ := src.flagByEnv("SHOP_DRAIN")
			drainValue = f.Default
		}
		drain, err := time.ParseDuration(drainValue)
		if err != nil {
			errs = append(errs, fmt.Errorf("SHOP_DRAIN %q: %v", drainValue, err))
		}
		if err := errors.Join(errs...); err != nil {
			t.Errorf("%s: %v", b.dir, err)
			continue
		}
		need := preStop + drain + src.QuietMax + src.ShutdownTimeout
		grace := time.Duration(*d.Spec.Template.Spec.TerminationGracePeriodSeconds) * time.Second
		if grace < need || grace > need+5*time.Second {
			t.Errorf("%s: terminationGracePeriodSeconds %v; want from %v to %v: preStop %v + drain %v + quiet at most %v + Shutdown at most %v (cmd/shop)",
				b.dir, grace, need, need+5*time.Second, preStop, drain, src.QuietMax, src.ShutdownTimeout)
		}
	}
}
