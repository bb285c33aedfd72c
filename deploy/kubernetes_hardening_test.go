package deploy

// deploy/kubernetes, checked for what a platform review found (issue 22,
// items 11-13): what `kubectl apply -k` would overwrite, what grows with
// the node instead of with the config, what runs with more privilege or
// memory than it needs, and who may connect to whom. Each check reads the
// built manifests (kubernetes_test.go's buildKubeCluster), so a later
// overlay or component is checked the same way.

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// TestKubernetesAppliesNoSecret: no kustomization a user applies carries a
// Secret, so applying one after creating the real shop-secrets never
// overwrites it with placeholders; the placeholder lives in a component,
// and the documented `kubectl create secret` makes every key it lists.
func TestKubernetesAppliesNoSecret(t *testing.T) {
	for _, b := range kubeBuilds {
		objs, err := kustomizeBuild(filepath.Join(kubeDir, b.dir))
		if err != nil {
			t.Fatal(err)
		}
		for _, o := range objs {
			if o.kind() == "Secret" {
				t.Errorf("%s: applies %s (%s): `kubectl apply -k` would overwrite the real one; keep it in an opt-in component", b.dir, o.id(), o.Source)
			}
		}
	}

	objs, err := kustomizeBuildWith(filepath.Join(kubeDir, "base"), []string{filepath.Join(kubeDir, "components/placeholder-secret")})
	if err != nil {
		t.Fatal(err)
	}
	var keys []string
	for _, o := range objs {
		if o.kind() == "Secret" {
			data, _ := o.Body["stringData"].(map[string]any)
			for k := range data {
				keys = append(keys, k)
			}
		}
	}
	if len(keys) == 0 {
		t.Fatal("components/placeholder-secret brings no Secret keys")
	}
	doc, err := os.ReadFile(filepath.Join("..", "docs", "kubernetes.md"))
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?s)kubectl create secret generic shop-secrets(.*?)\n\S`).FindSubmatch(doc)
	if m == nil {
		t.Fatal("docs/kubernetes.md: no `kubectl create secret generic shop-secrets` command")
	}
	var documented []string
	for _, f := range regexp.MustCompile(`--from-literal=([a-z0-9-]+)=`).FindAllSubmatch(m[1], -1) {
		documented = append(documented, string(f[1]))
	}
	slices.Sort(keys)
	slices.Sort(documented)
	if !slices.Equal(keys, documented) {
		t.Errorf("docs/kubernetes.md creates shop-secrets with keys %v; the manifests use %v", documented, keys)
	}
}

// TestKubernetesRestrictedPods: every pod meets the restricted Pod Security
// Standard (kubernetes.io/docs/concepts/security/pod-security-standards),
// as a namespace labelled pod-security.kubernetes.io/enforce=restricted
// would demand.
func TestKubernetesRestrictedPods(t *testing.T) {
	allowedVolumes := func(v corev1.Volume) bool {
		s := v.VolumeSource
		return s.ConfigMap != nil || s.CSI != nil || s.DownwardAPI != nil || s.EmptyDir != nil ||
			s.Ephemeral != nil || s.PersistentVolumeClaim != nil || s.Projected != nil || s.Secret != nil
	}
	for _, b := range kubeBuilds {
		c := buildKubeCluster(t, b.dir)
		for _, w := range c.workloads() {
			id := b.dir + ": " + w.kind + "/" + w.name
			spec := w.template.Spec
			if spec.HostNetwork || spec.HostPID || spec.HostIPC {
				t.Errorf("%s: shares the host's network, PID or IPC namespace", id)
			}
			for _, v := range spec.Volumes {
				if !allowedVolumes(v) {
					t.Errorf("%s: volume %s is of a kind the restricted profile refuses", id, v.Name)
				}
			}
			pod := spec.SecurityContext
			if pod == nil {
				pod = &corev1.PodSecurityContext{}
			}
			for _, ctr := range append(slices.Clone(spec.InitContainers), spec.Containers...) {
				sc := ctr.SecurityContext
				if sc == nil {
					sc = &corev1.SecurityContext{}
				}
				var problems []string
				nonRoot := sc.RunAsNonRoot
				if nonRoot == nil {
					nonRoot = pod.RunAsNonRoot
				}
				if nonRoot == nil || !*nonRoot {
					problems = append(problems, "runAsNonRoot is not true")
				}
				if u := sc.RunAsUser; u != nil && *u == 0 || sc.RunAsUser == nil && pod.RunAsUser != nil && *pod.RunAsUser == 0 {
					problems = append(problems, "runs as user 0")
				}
				seccomp := sc.SeccompProfile
				if seccomp == nil {
					seccomp = pod.SeccompProfile
				}
				if seccomp == nil || seccomp.Type != corev1.SeccompProfileTypeRuntimeDefault && seccomp.Type != corev1.SeccompProfileTypeLocalhost {
					problems = append(problems, "no seccompProfile RuntimeDefault or Localhost")
				}
				if sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation {
					problems = append(problems, "allowPrivilegeEscalation is not false")
				}
				if sc.Privileged != nil && *sc.Privileged {
					problems = append(problems, "privileged")
				}
				if sc.Capabilities == nil || !slices.Contains(sc.Capabilities.Drop, "ALL") {
					problems = append(problems, "capabilities do not drop ALL")
				} else if slices.ContainsFunc(sc.Capabilities.Add, func(c corev1.Capability) bool { return c != "NET_BIND_SERVICE" }) {
					problems = append(problems, fmt.Sprintf("adds capabilities %v", sc.Capabilities.Add))
				}
				for _, p := range ctr.Ports {
					if p.HostPort != 0 {
						problems = append(problems, fmt.Sprintf("host port %d", p.HostPort))
					}
				}
				if len(problems) > 0 {
					t.Errorf("%s: container %s is not restricted: %s", id, ctr.Name, strings.Join(problems, "; "))
				}
			}
		}
	}
}

// Sizing the shop's PostgreSQL connections.
const (
	// pgDefaultReserved is superuser_reserved_connections' default: slots
	// only a superuser may take.
	pgDefaultReserved = 3
	// pgHeadroom is what is left for people and jobs besides the replicas:
	// psql, a migration or a backup, monitoring.
	pgHeadroom = 10
)

// TestKubernetesDatabaseConnections: the replicas' pools fit PostgreSQL's
// max_connections even at the autoscaler's maximum during a rolling update,
// with room to spare. Without -db-max-conns each pool grows with the node's
// cores, which no manifest bounds.
func TestKubernetesDatabaseConnections(t *testing.T) {
	src := readShopSource(t)
	if f, ok := src.flagByEnv("SHOP_DB_MAX_CONNS"); !ok || f.Name != "db-max-conns" {
		t.Fatalf("cmd/shop has no -db-max-conns (SHOP_DB_MAX_CONNS): %+v", f)
	}
	for _, b := range kubeBuilds {
		c := buildKubeCluster(t, b.dir)
		d := c.deployments["shop"]
		perPod, why := kubeShopDBConns(c, d.Spec.Template.Spec.Containers)
		if perPod == 0 {
			t.Errorf("%s: %s", b.dir, why)
			continue
		}
		pods := replicaCount(d.Spec.Replicas)
		if h, ok := c.autoscaler(d.Name); ok {
			pods = h.Spec.MaxReplicas
		}
		// A rolling update runs maxSurge pods more, at the maximum too.
		surge := int32(0)
		if ru := d.Spec.Strategy.RollingUpdate; ru != nil && ru.MaxSurge != nil {
			n, err := intstr.GetScaledValueFromIntOrPercent(ru.MaxSurge, int(pods), true)
			if err != nil {
				t.Fatalf("%s: maxSurge: %v", b.dir, err)
			}
			surge = int32(n)
		}
		maxConns, reserved, err := kubePostgresLimits(c)
		if err != nil {
			t.Errorf("%s: %v", b.dir, err)
			continue
		}
		need := int(pods+surge)*perPod + reserved + pgHeadroom
		t.Logf("%s: (%d replicas + %d surging) x %d (%s) + %d reserved + %d spare = %d of max_connections %d",
			b.dir, pods, surge, perPod, why, reserved, pgHeadroom, need, maxConns)
		if need > maxConns {
			t.Errorf("%s: (%d replicas + %d surging) x %d connections (%s) + %d reserved + %d spare = %d, over PostgreSQL's max_connections %d",
				b.dir, pods, surge, perPod, why, reserved, pgHeadroom, need, maxConns)
		}
	}
}

// kubeShopDBConns is how many database connections one shop pod may open,
// and where that comes from; 0 and why when nothing bounds it. A pool of
// the jobs' own (River) would add its bound here.
func kubeShopDBConns(c kubeCluster, ctrs []corev1.Container) (int, string) {
	i := slices.IndexFunc(ctrs, func(ctr corev1.Container) bool { return ctr.Name == "shop" })
	if i < 0 {
		return 0, "no container shop"
	}
	ctr := ctrs[i]
	if v, ok := c.envValue(ctr, "SHOP_DB_MAX_CONNS"); ok && v != "0" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			return 0, fmt.Sprintf("SHOP_DB_MAX_CONNS %q is no number of connections", v)
		}
		return n, "SHOP_DB_MAX_CONNS"
	}
	// Without it the store's default is max(4, 2 x GOMAXPROCS)
	// (store/postgres.go): bounded only when GOMAXPROCS is.
	if v, ok := c.envValue(ctr, "GOMAXPROCS"); ok {
		if n, err := strconv.Atoi(v); err == nil && n > 0 {
			return max(4, 2*n), "2 x GOMAXPROCS"
		}
	}
	return 0, "shop: neither SHOP_DB_MAX_CONNS nor GOMAXPROCS is set: each pool grows with the node's cores (2 x GOMAXPROCS), which nothing bounds"
}

var pgSetting = regexp.MustCompile(`^([a-z_]+)=(\d+)$`)

// kubePostgresLimits reads max_connections (required: the sizing must be
// visible) and superuser_reserved_connections from the PostgreSQL
// container's `-c name=value` arguments.
func kubePostgresLimits(c kubeCluster) (maxConns, reserved int, err error) {
	pg, ok := c.statefulSets["postgres"]
	if !ok {
		return 0, 0, fmt.Errorf("no StatefulSet postgres")
	}
	reserved = pgDefaultReserved
	args := pg.Spec.Template.Spec.Containers[0].Args
	for i := 0; i+1 < len(args); i++ {
		if args[i] != "-c" {
			continue
		}
		m := pgSetting.FindStringSubmatch(args[i+1])
		if m == nil {
			continue
		}
		n, _ := strconv.Atoi(m[2])
		switch m[1] {
		case "max_connections":
			maxConns = n
		case "superuser_reserved_connections":
			reserved = n
		}
	}
	if maxConns == 0 {
		return 0, 0, fmt.Errorf("postgres: no `-c max_connections=N` among its args %q: the replicas' pools are sized against it, so say it", args)
	}
	return maxConns, reserved, nil
}

// memorySessionBudget is what one memory session may take in the shop's
// heap: measured 0.7 KiB with a one-line cart (docs/kubernetes.md,
// "Resources"), and a cart holds up to web.MaxCartLines (50) lines.
const memorySessionBudget = 2 << 10

// TestKubernetesMemorySessions: every shop's GOMEMLIMIT is under its memory
// limit with room, and the memory overlay's is sized for the sessions
// -memory-sessions keeps: the base's process plus that many sessions, not
// much more (a limit the store never fills only wastes the node).
func TestKubernetesMemorySessions(t *testing.T) {
	limits := make(map[string]int64) // build → GOMEMLIMIT
	for _, b := range kubeBuilds {
		c := buildKubeCluster(t, b.dir)
		ctr := c.deployments["shop"].Spec.Template.Spec.Containers[0]
		goLimit, err := kubeGoMemLimit(c, ctr)
		if err != nil {
			t.Errorf("%s: %v", b.dir, err)
			continue
		}
		limit := ctr.Resources.Limits.Memory()
		if limit.IsZero() || goLimit*5/4 > limit.Value() {
			t.Errorf("%s: GOMEMLIMIT %d MiB over 80%% of the memory limit %s: the collector needs the room to work before the kill", b.dir, goLimit>>20, limit)
		}
		limits[b.dir] = goLimit

		if b.store != "memory" {
			continue
		}
		v, ok := c.envValue(ctr, "SHOP_MEMORY_SESSIONS")
		sessions, err := strconv.Atoi(v)
		if !ok || err != nil || sessions < 1 {
			t.Errorf("%s: SHOP_MEMORY_SESSIONS %q: set it, the memory is sized for it", b.dir, v)
			continue
		}
		base, ok := limits["base"]
		if !ok {
			t.Fatal("base must come first in kubeBuilds")
		}
		need := base + int64(sessions)*memorySessionBudget
		if goLimit < need || goLimit > 2*need {
			t.Errorf("%s: GOMEMLIMIT %d MiB; want from %d to %d MiB: the base's %d MiB + %d sessions x %d KiB",
				b.dir, goLimit>>20, need>>20, 2*need>>20, base>>20, sessions, memorySessionBudget>>10)
		}
	}
}

// kubeGoMemLimit parses the container's GOMEMLIMIT (Go's syntax: a number
// with B, KiB, MiB, GiB or TiB).
func kubeGoMemLimit(c kubeCluster, ctr corev1.Container) (int64, error) {
	v, ok := c.envValue(ctr, "GOMEMLIMIT")
	if !ok {
		return 0, fmt.Errorf("shop: no GOMEMLIMIT: the Go runtime would not know the container's limit")
	}
	m := regexp.MustCompile(`^(\d+)(B|KiB|MiB|GiB|TiB)$`).FindStringSubmatch(v)
	if m == nil {
		return 0, fmt.Errorf("shop: GOMEMLIMIT %q: want a number and B, KiB, MiB, GiB or TiB", v)
	}
	n, _ := strconv.ParseInt(m[1], 10, 64)
	shift := map[string]int{"B": 0, "KiB": 10, "MiB": 20, "GiB": 30, "TiB": 40}[m[2]]
	return n << shift, nil
}

// TestKubernetesRedis: Redis bounds its memory under the container's limit
// and refuses writes at the bound rather than evicting carts (the shop names
// an OOM, docs/CONTRACT.md); a Redis never makes itself the primary; the
// Sentinels' config outlives their pods and is written only when absent.
func TestKubernetesRedis(t *testing.T) {
	c := buildKubeCluster(t, "overlays/redis")
	script := c.configMaps["redis-scripts"].Data["redis.sh"]
	redis := c.statefulSets["redis"]
	ctr := redis.Spec.Template.Spec.Containers[0]

	m := regexp.MustCompile(`(?m)^\s*echo "maxmemory (\d+)mb"$`).FindStringSubmatch(script)
	if m == nil {
		t.Error(`redis.sh: no "maxmemory <N>mb": Redis grows until the kubelet kills it, losing every session since the last fsync`)
	} else {
		n, _ := strconv.ParseInt(m[1], 10, 64)
		limit := ctr.Resources.Limits.Memory()
		// A quarter of the limit stays for what maxmemory does not
		// count: an AOF rewrite's copy-on-write, replication and client
		// buffers.
		if limit.IsZero() || n<<20 > limit.Value()*3/4 {
			t.Errorf("redis: maxmemory %d MiB over 75%% of the container's memory limit %s", n, limit)
		}
	}
	if !regexp.MustCompile(`(?m)^\s*echo "maxmemory-policy noeviction"$`).MatchString(script) {
		t.Error("redis.sh: want maxmemory-policy noeviction: an eviction loses a cart silently, an OOM is a 503 the shop names")
	}

	// Only the Sentinels name the primary: a literal pod name in the
	// script is a primary chosen without them.
	if p := regexp.MustCompile(`redis-\d+\.redis\b`).FindString(script); p != "" {
		t.Errorf("redis.sh names %s itself: a Redis must take the primary from the Sentinels, or not start", p)
	}
	if !strings.Contains(script, "sentinel get-master-addr-by-name") || !regexp.MustCompile(`(?m)^\s*exit 1$`).MatchString(script) {
		t.Error("redis.sh: want it to ask the Sentinels for the primary and exit 1 when none answers")
	}

	sentinels := c.statefulSets["redis-sentinel"]
	sh := c.configMaps["redis-sentinel"].Data["sentinel.sh"]
	m = regexp.MustCompile(`exec redis-server (\S+) --sentinel`).FindStringSubmatch(sh)
	if m == nil {
		t.Fatal("sentinel.sh: no `exec redis-server <config> --sentinel`")
	}
	conf := m[1]
	dir := filepath.Dir(conf)
	mounted := ""
	for _, vm := range sentinels.Spec.Template.Spec.Containers[0].VolumeMounts {
		if vm.MountPath == dir {
			mounted = vm.Name
		}
	}
	if !slices.ContainsFunc(sentinels.Spec.VolumeClaimTemplates, func(pvc corev1.PersistentVolumeClaim) bool { return pvc.Name == mounted }) {
		t.Errorf("redis-sentinel: %s is on volume %q, not on a volumeClaimTemplate: a Sentinel restarted with its pod forgets the failovers it saw", dir, mounted)
	}
	if !strings.Contains(sh, "if [ ! -f "+conf+" ]; then") {
		t.Errorf("sentinel.sh: want %s written only `if [ ! -f %s ]`: a rewrite at every start forgets what Sentinel learned", conf, conf)
	}
}

// kubeFlows are the connections the shop needs, by the app.kubernetes.io/name
// of both ends and the target's port name; "gateway" is the gateway's proxy,
// outside the namespace. A new service adds its lines here.
var kubeFlows = []struct{ from, to, port string }{
	{"gateway", "shop", "http"},
	{"shop", "postgres", "postgres"},
	{"shop", "redis", "redis"},
	{"shop", "redis-sentinel", "sentinel"},
	{"redis", "redis", "redis"},                      // replication
	{"redis", "redis-sentinel", "sentinel"},          // redis.sh asks for the primary
	{"redis-sentinel", "redis", "redis"},             // monitoring, failover
	{"redis-sentinel", "redis-sentinel", "sentinel"}, // agreeing on a failover
}

// kubePeer is a pod that opens a connection, with its namespace's labels.
type kubePeer struct {
	namespace, pod labels.Set
}

// The namespace the manifests are applied to, and the gateway's (Envoy
// Gateway's, docs/kubernetes.md "On kind").
var (
	kubeAppNamespace     = labels.Set{"kubernetes.io/metadata.name": "statelab"}
	kubeGatewayNamespace = labels.Set{"kubernetes.io/metadata.name": "envoy-gateway-system"}
)

// TestKubernetesNetworkPolicies: with components/network-policies, every
// connection in kubeFlows is admitted and every other one into these pods
// is refused, the gateway's into anything but the shop included.
func TestKubernetesNetworkPolicies(t *testing.T) {
	for _, b := range kubeBuilds {
		c := buildKubeCluster(t, b.dir)
		if len(c.netpols) == 0 {
			t.Fatalf("%s: no NetworkPolicy in the build", b.dir)
		}
		byName := make(map[string]kubeWorkload)
		for _, w := range c.workloads() {
			byName[w.template.Labels["app.kubernetes.io/name"]] = w
		}
		sources := map[string]kubePeer{"gateway": {kubeGatewayNamespace, labels.Set{"app.kubernetes.io/name": "envoy"}}}
		for name, w := range byName {
			sources[name] = kubePeer{kubeAppNamespace, w.template.Labels}
		}
		for from, peer := range sources {
			for to, w := range byName {
				for _, ctr := range w.template.Spec.Containers {
					for _, p := range ctr.Ports {
						want := slices.ContainsFunc(kubeFlows, func(f struct{ from, to, port string }) bool {
							return f.from == from && f.to == to && f.port == p.Name
						})
						if got := kubeAdmits(c, peer, w, ctr, p); got != want {
							t.Errorf("%s: %s -> %s:%s admitted %v, want %v", b.dir, from, to, p.Name, got, want)
						}
					}
				}
			}
		}
	}
}

// kubeAdmits evaluates the build's NetworkPolicies for a TCP connection from
// peer to port p of ctr in w's pods: admitted when no policy isolates the
// pods for ingress, or when a rule of one that does admits the connection.
func kubeAdmits(c kubeCluster, peer kubePeer, w kubeWorkload, ctr corev1.Container, p corev1.ContainerPort) bool {
	isolated := false
	for _, np := range c.netpols {
		sel, err := metav1.LabelSelectorAsSelector(&np.Spec.PodSelector)
		if err != nil || !sel.Matches(labels.Set(w.template.Labels)) {
			continue
		}
		if !slices.Contains(np.Spec.PolicyTypes, networkingv1.PolicyTypeIngress) && len(np.Spec.PolicyTypes) > 0 {
			continue
		}
		isolated = true
		for _, rule := range np.Spec.Ingress {
			fromOK := len(rule.From) == 0 || slices.ContainsFunc(rule.From, func(f networkingv1.NetworkPolicyPeer) bool { return kubePeerMatches(f, peer) })
			portOK := len(rule.Ports) == 0 || slices.ContainsFunc(rule.Ports, func(np networkingv1.NetworkPolicyPort) bool {
				if np.Protocol != nil && *np.Protocol != corev1.ProtocolTCP {
					return false
				}
				if np.Port == nil {
					return true
				}
				if np.Port.Type == intstr.String {
					return np.Port.StrVal == p.Name
				}
				end := np.Port.IntVal
				if np.EndPort != nil {
					end = *np.EndPort
				}
				return p.ContainerPort >= np.Port.IntVal && p.ContainerPort <= end
			})
			if fromOK && portOK {
				return true
			}
		}
	}
	return !isolated
}

// kubePeerMatches: a podSelector alone means pods of the policy's own
// namespace; a namespaceSelector, pods of the namespaces it selects.
func kubePeerMatches(f networkingv1.NetworkPolicyPeer, peer kubePeer) bool {
	if f.IPBlock != nil {
		return false // pods are not addressed by IP here
	}
	nsOK := labels.Equals(peer.namespace, kubeAppNamespace)
	if f.NamespaceSelector != nil {
		sel, err := metav1.LabelSelectorAsSelector(f.NamespaceSelector)
		nsOK = err == nil && sel.Matches(peer.namespace)
	}
	podOK := true
	if f.PodSelector != nil {
		sel, err := metav1.LabelSelectorAsSelector(f.PodSelector)
		podOK = err == nil && sel.Matches(peer.pod)
	}
	return nsOK && podOK
}
