package deploy

// A small kustomize for the tests: it builds deploy/kubernetes's base and
// overlays the way `kubectl apply -k` would, for the features they use, so
// the checks in kubernetes_test.go see what a cluster would get. What it
// supports, and nothing more: resources (files and directories), components
// (kind Component: their resources and patches, after the resources, as
// kustomize orders them), labels (pairs, on metadata only), and patches (a file or inline, strategic merge
// for the built-in kinds, JSON merge for the Gateway API's, `$patch: delete`
// of whole objects and of list items, a target by kind, name or label
// selector). Anything else in a kustomization.yaml fails its strict decoding,
// so a feature the builder does not know cannot be ignored silently.

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"

	"k8s.io/apimachinery/pkg/labels"
	"sigs.k8s.io/yaml"
)

// kustomization is the part of kustomize's Kustomization these manifests use.
type kustomization struct {
	APIVersion string           `json:"apiVersion"`
	Kind       string           `json:"kind"`
	Labels     []kustomizeLabel `json:"labels,omitempty"`
	Resources  []string         `json:"resources,omitempty"`
	Components []string         `json:"components,omitempty"`
	Patches    []kustomizePatch `json:"patches,omitempty"`
}

// The two kinds of kustomization file: one applied on its own, and a
// component that only a kustomization's components list brings in.
const (
	kindKustomization = "Kustomization"
	kindComponent     = "Component"
)

type kustomizeLabel struct {
	Pairs map[string]string `json:"pairs"`
}

type kustomizePatch struct {
	Path   string       `json:"path,omitempty"`
	Patch  string       `json:"patch,omitempty"`
	Target *patchTarget `json:"target,omitempty"`
}

type patchTarget struct {
	Kind          string `json:"kind,omitempty"`
	Name          string `json:"name,omitempty"`
	LabelSelector string `json:"labelSelector,omitempty"`
}

// kubeObject is one manifest as generic JSON, with where it came from.
type kubeObject struct {
	Source string // file, and document number when the file has several
	Body   map[string]any
}

func (o kubeObject) apiVersion() string { s, _ := o.Body["apiVersion"].(string); return s }
func (o kubeObject) kind() string       { s, _ := o.Body["kind"].(string); return s }
func (o kubeObject) name() string {
	meta, _ := o.Body["metadata"].(map[string]any)
	s, _ := meta["name"].(string)
	return s
}
func (o kubeObject) labels() map[string]string {
	meta, _ := o.Body["metadata"].(map[string]any)
	m, _ := meta["labels"].(map[string]any)
	out := make(map[string]string, len(m))
	for k, v := range m {
		out[k], _ = v.(string)
	}
	return out
}
func (o kubeObject) id() string { return o.kind() + "/" + o.name() }

// readKustomization decodes dir/kustomization.yaml strictly; it is of kind
// want (kindKustomization or kindComponent).
func readKustomization(dir, want string) (kustomization, error) {
	var k kustomization
	b, err := os.ReadFile(filepath.Join(dir, "kustomization.yaml"))
	if err != nil {
		return k, err
	}
	if err := yaml.UnmarshalStrict(b, &k); err != nil {
		return k, fmt.Errorf("%s/kustomization.yaml: %w", dir, err)
	}
	apiVersion := map[string]string{kindKustomization: "kustomize.config.k8s.io/v1beta1", kindComponent: "kustomize.config.k8s.io/v1alpha1"}[want]
	if k.APIVersion != apiVersion || k.Kind != want {
		return k, fmt.Errorf("%s/kustomization.yaml: apiVersion/kind %s/%s, want %s %s", dir, k.APIVersion, k.Kind, apiVersion, want)
	}
	return k, nil
}

// kustomizeBuild returns the objects `kubectl kustomize dir` would print.
func kustomizeBuild(dir string) ([]kubeObject, error) {
	k, err := readKustomization(dir, kindKustomization)
	if err != nil {
		return nil, err
	}
	return buildKustomization(dir, k, nil)
}

// kustomizeBuildWith builds dir with components added, as a kustomization
// of one's own would (resources: [dir], components: [...]).
func kustomizeBuildWith(dir string, components []string) ([]kubeObject, error) {
	k := kustomization{Resources: []string{dir}, Components: components}
	return buildKustomization(".", k, nil)
}

// buildKustomization builds k, read from dir, onto objs (the objects
// accumulated so far, for a component; nil for a kustomization).
func buildKustomization(dir string, k kustomization, objs []kubeObject) ([]kubeObject, error) {
	for _, r := range k.Resources {
		path := filepath.Join(dir, r)
		fi, err := os.Stat(path)
		if err != nil {
			return nil, fmt.Errorf("%s/kustomization.yaml: resource %s: %w", dir, r, err)
		}
		var more []kubeObject
		if fi.IsDir() {
			more, err = kustomizeBuild(path)
		} else {
			more, err = readKubeObjects(path)
		}
		if err != nil {
			return nil, err
		}
		objs = append(objs, more...)
	}
	for _, c := range k.Components {
		path := filepath.Join(dir, c)
		ck, err := readKustomization(path, kindComponent)
		if err != nil {
			return nil, err
		}
		if objs, err = buildKustomization(path, ck, objs); err != nil {
			return nil, err
		}
	}
	seen := make(map[string]string)
	for _, o := range objs {
		if o.kind() == "" || o.name() == "" {
			return nil, fmt.Errorf("%s: an kubeObject without kind or metadata.name", o.Source)
		}
		if prev, dup := seen[o.id()]; dup {
			return nil, fmt.Errorf("%s: %s is also in %s", o.Source, o.id(), prev)
		}
		seen[o.id()] = o.Source
	}
	for _, l := range k.Labels {
		for _, o := range objs {
			meta := o.Body["metadata"].(map[string]any)
			ls, _ := meta["labels"].(map[string]any)
			if ls == nil {
				ls = make(map[string]any)
				meta["labels"] = ls
			}
			for key, v := range l.Pairs {
				ls[key] = v
			}
		}
	}
	for i, p := range k.Patches {
		where := fmt.Sprintf("%s/kustomization.yaml: patches[%d]", dir, i)
		patches, err := p.objects(dir)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", where, err)
		}
		for _, patch := range patches {
			var err error
			if objs, err = applyKubePatch(objs, patch, p.Target); err != nil {
				return nil, fmt.Errorf("%s (%s): %w", where, patch.Source, err)
			}
		}
	}
	return objs, nil
}

// objects reads the patch's documents, from its file or inline.
func (p kustomizePatch) objects(dir string) ([]kubeObject, error) {
	switch {
	case p.Path != "" && p.Patch != "":
		return nil, fmt.Errorf("both path and patch")
	case p.Path != "":
		return readKubeObjects(filepath.Join(dir, p.Path))
	case p.Patch != "":
		return parseKubeObjects(filepath.Join(dir, "kustomization.yaml")+" (inline patch)", []byte(p.Patch))
	}
	return nil, fmt.Errorf("neither path nor patch")
}

var yamlDocSeparator = regexp.MustCompile(`(?m)^---[ \t]*$`)

func readKubeObjects(path string) ([]kubeObject, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	return parseKubeObjects(path, b)
}

// parseKubeObjects splits a YAML stream into documents and converts each,
// refusing duplicate keys; comment-only documents are skipped.
func parseKubeObjects(source string, b []byte) ([]kubeObject, error) {
	docs := yamlDocSeparator.Split(string(b), -1)
	var objs []kubeObject
	for i, doc := range docs {
		j, err := yaml.YAMLToJSONStrict([]byte(doc))
		if err != nil {
			return nil, fmt.Errorf("%s: document %d: %w", source, i+1, err)
		}
		if bytes.Equal(bytes.TrimSpace(j), []byte("null")) {
			continue
		}
		var body map[string]any
		if err := json.Unmarshal(j, &body); err != nil {
			return nil, fmt.Errorf("%s: document %d: %w", source, i+1, err)
		}
		src := source
		if len(docs) > 1 {
			src = fmt.Sprintf("%s#%d", source, i+1)
		}
		objs = append(objs, kubeObject{Source: src, Body: body})
	}
	return objs, nil
}

// applyKubePatch applies one patch document to the objects it targets: those
// the target selects, or else the one with the patch's own kind and name.
// A patch that matches nothing is an error, as it is for kustomize.
func applyKubePatch(objs []kubeObject, patch kubeObject, target *patchTarget) ([]kubeObject, error) {
	match := func(o kubeObject) (bool, error) {
		if target == nil {
			return o.kind() == patch.kind() && o.name() == patch.name(), nil
		}
		if target.Kind != "" && o.kind() != target.Kind || target.Name != "" && o.name() != target.Name {
			return false, nil
		}
		if target.LabelSelector == "" {
			return true, nil
		}
		sel, err := labels.Parse(target.LabelSelector)
		if err != nil {
			return false, fmt.Errorf("target.labelSelector %q: %w", target.LabelSelector, err)
		}
		return sel.Matches(labels.Set(o.labels())), nil
	}
	del := patch.Body["$patch"] == "delete"
	out := objs[:0:0]
	matched := 0
	for _, o := range objs {
		ok, err := match(o)
		if err != nil {
			return nil, err
		}
		if !ok {
			out = append(out, o)
			continue
		}
		matched++
		if del {
			continue
		}
		if target == nil && o.apiVersion() != patch.apiVersion() {
			return nil, fmt.Errorf("patch for %s has apiVersion %s, the kubeObject %s", o.id(), patch.apiVersion(), o.apiVersion())
		}
		body, err := mergeKubePatch(o.Body, patch.Body, builtinKind(o.apiVersion()), "")
		if err != nil {
			return nil, fmt.Errorf("%s: %w", o.id(), err)
		}
		out = append(out, kubeObject{Source: o.Source + " patched by " + patch.Source, Body: body.(map[string]any)})
	}
	if matched == 0 {
		if target != nil {
			return nil, fmt.Errorf("target %+v matches no object", *target)
		}
		return nil, fmt.Errorf("no %s to patch", patch.id())
	}
	return out, nil
}

// builtinKind: strategic merge applies to Kubernetes' own kinds; custom
// resources (the Gateway API's) get a JSON merge patch, lists replaced whole.
func builtinKind(apiVersion string) bool { return !strings.Contains(apiVersion, ".") }

// smpMergeKeys are the strategic merge keys of the lists the overlays patch
// (the patchMergeKey tags in k8s.io/api/core/v1). Any other list in a patch
// of a built-in kind is refused rather than merged the wrong way.
var smpMergeKeys = map[string]string{
	"containers":     "name",
	"initContainers": "name",
	"env":            "name",
	"volumes":        "name",
	"volumeMounts":   "mountPath",
}

// mergeKubePatch merges patch into orig (neither is modified): maps key by key,
// null deletes, lists by merge key for built-in kinds, other values replace.
func mergeKubePatch(orig, patch any, strategic bool, field string) (any, error) {
	switch p := patch.(type) {
	case map[string]any:
		o, _ := orig.(map[string]any)
		out := make(map[string]any, len(o)+len(p))
		for k, v := range o {
			out[k] = v
		}
		for k, v := range p {
			if k == "$patch" {
				if v != "delete" {
					return nil, fmt.Errorf("$patch: %v: the test's builder knows only delete", v)
				}
				continue
			}
			if v == nil {
				delete(out, k)
				continue
			}
			merged, err := mergeKubePatch(out[k], v, strategic, k)
			if err != nil {
				return nil, err
			}
			out[k] = merged
		}
		return out, nil
	case []any:
		if !strategic || orig == nil {
			return p, nil
		}
		key, ok := smpMergeKeys[field]
		if !ok {
			return nil, fmt.Errorf("list %q: the test's builder knows no merge key for it; add it to smpMergeKeys from k8s.io/api's patchMergeKey", field)
		}
		// As kubectl's strategic merge orders them: the patch's items first,
		// in its order, then the original's that the patch does not name.
		o, _ := orig.([]any)
		rest := slices.Clone(o)
		var out []any
		for _, item := range p {
			pm, ok := item.(map[string]any)
			if !ok || pm[key] == nil {
				return nil, fmt.Errorf("list %q: an item without its merge key %q", field, key)
			}
			var base any
			if i := slices.IndexFunc(rest, func(e any) bool { m, _ := e.(map[string]any); return m[key] == pm[key] }); i >= 0 {
				base = rest[i]
				rest = slices.Delete(rest, i, i+1)
			}
			if pm["$patch"] == "delete" {
				if base == nil {
					return nil, fmt.Errorf("list %q: deletes %s=%v, which is not there", field, key, pm[key])
				}
				continue
			}
			merged, err := mergeKubePatch(base, pm, strategic, field)
			if err != nil {
				return nil, err
			}
			out = append(out, merged)
		}
		out = append(out, rest...)
		return out, nil
	default:
		return p, nil
	}
}
