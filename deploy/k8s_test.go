package deploy

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/intstr"
	"sigs.k8s.io/yaml"
)

// manifests are the decoded objects of deploy/k8s, by kind.
type manifests struct {
	Namespaces    []*corev1.Namespace
	ConfigMaps    []*corev1.ConfigMap
	Deployments   []*appsv1.Deployment
	Services      []*corev1.Service
	HPAs          []*autoscalingv2.HorizontalPodAutoscaler
	PDBs          []*policyv1.PodDisruptionBudget
	Sources       map[string]string // "Kind/name" → file
	DocumentsRead int
}

// decodeManifest strictly decodes one YAML document into its typed API
// object: an unknown or duplicate field, a wrong type or an unsupported
// apiVersion/kind is an error.
func decodeManifest(doc []byte) (any, error) {
	var tm metav1.TypeMeta
	if err := yaml.Unmarshal(doc, &tm); err != nil {
		return nil, fmt.Errorf("type meta: %w", err)
	}
	var obj any
	switch tm.APIVersion + " " + tm.Kind {
	case "v1 Namespace":
		obj = &corev1.Namespace{}
	case "v1 ConfigMap":
		obj = &corev1.ConfigMap{}
	case "v1 Service":
		obj = &corev1.Service{}
	case "apps/v1 Deployment":
		obj = &appsv1.Deployment{}
	case "autoscaling/v2 HorizontalPodAutoscaler":
		obj = &autoscalingv2.HorizontalPodAutoscaler{}
	case "policy/v1 PodDisruptionBudget":
		obj = &policyv1.PodDisruptionBudget{}
	default:
		return nil, fmt.Errorf("unsupported apiVersion %q kind %q", tm.APIVersion, tm.Kind)
	}
	if err := yaml.UnmarshalStrict(doc, obj); err != nil {
		return nil, fmt.Errorf("%s %s: %w", tm.APIVersion, tm.Kind, err)
	}
	return obj, nil
}

// splitYAML splits a multi-document YAML stream; documents holding only
// comments are dropped.
func splitYAML(data []byte) [][]byte {
	var docs [][]byte
	var cur bytes.Buffer
	flush := func() {
		if hasContent(cur.Bytes()) {
			docs = append(docs, bytes.Clone(cur.Bytes()))
		}
		cur.Reset()
	}
	for _, line := range bytes.SplitAfter(data, []byte("\n")) {
		if t := bytes.TrimRight(line, " \t\r\n"); bytes.Equal(t, []byte("---")) {
			flush()
			continue
		}
		cur.Write(line)
	}
	flush()
	return docs
}

func hasContent(doc []byte) bool {
	for _, line := range strings.Split(string(doc), "\n") {
		t := strings.TrimSpace(line)
		if t != "" && !strings.HasPrefix(t, "#") {
			return true
		}
	}
	return false
}

func loadManifests(t *testing.T) *manifests {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(repoRoot, "deploy", "k8s", "*.y*ml"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no manifests in deploy/k8s (%v)", err)
	}
	m := &manifests{Sources: map[string]string{}}
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for i, doc := range splitYAML(data) {
			m.DocumentsRead++
			obj, err := decodeManifest(doc)
			if err != nil {
				t.Errorf("%s document %d: %v", filepath.Base(f), i+1, err)
				continue
			}
			var key string
			switch o := obj.(type) {
			case *corev1.Namespace:
				m.Namespaces, key = append(m.Namespaces, o), "Namespace/"+o.Name
			case *corev1.ConfigMap:
				m.ConfigMaps, key = append(m.ConfigMaps, o), "ConfigMap/"+o.Name
			case *corev1.Service:
				m.Services, key = append(m.Services, o), "Service/"+o.Name
			case *appsv1.Deployment:
				m.Deployments, key = append(m.Deployments, o), "Deployment/"+o.Name
			case *autoscalingv2.HorizontalPodAutoscaler:
				m.HPAs, key = append(m.HPAs, o), "HorizontalPodAutoscaler/"+o.Name
			case *policyv1.PodDisruptionBudget:
				m.PDBs, key = append(m.PDBs, o), "PodDisruptionBudget/"+o.Name
			}
			if prev, dup := m.Sources[key]; dup {
				t.Errorf("%s defined twice (%s and %s)", key, prev, filepath.Base(f))
			}
			m.Sources[key] = filepath.Base(f)
		}
	}
	return m
}

func TestDecodeManifestRejects(t *testing.T) {
	const dep = `apiVersion: apps/v1
kind: Deployment
metadata:
  name: x
spec:
  selector:
    matchLabels: {a: b}
  template:
    metadata:
      labels: {a: b}
    spec:
      containers:
        - name: c
          image: i
`
	tests := []struct {
		name, doc, want string
	}{
		{"valid", dep, ""},
		{"unknown field", strings.Replace(dep, "          image: i\n", "          image: i\n          imagePullPolicyy: Always\n", 1), "unknown field"},
		{"misplaced field", strings.Replace(dep, "  selector:", "  replica: 2\n  selector:", 1), "unknown field"},
		{"duplicate field", strings.Replace(dep, "  name: x\n", "  name: x\n  name: y\n", 1), "already set"},
		{"wrong type", strings.Replace(dep, "spec:\n  selector", "spec:\n  replicas: two\n  selector", 1), "replicas"},
		{"bad quantity", dep + "          resources:\n            limits:\n              cpu: lots\n", "quantities"},
		{"unsupported kind", "apiVersion: batch/v1\nkind: CronJob\nmetadata: {name: x}\n", "unsupported"},
		{"old api version", "apiVersion: autoscaling/v1\nkind: HorizontalPodAutoscaler\nmetadata: {name: x}\n", "unsupported"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := decodeManifest([]byte(tc.doc))
			switch {
			case tc.want == "" && err != nil:
				t.Fatalf("unexpected error: %v", err)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
				t.Fatalf("error %v, want one containing %q", err, tc.want)
			}
		})
	}
}

func TestSplitYAML(t *testing.T) {
	in := "# header only\n---\na: 1\n---   \n\n# c\n---\nb: 2\n"
	docs := splitYAML([]byte(in))
	if len(docs) != 2 || !strings.Contains(string(docs[0]), "a: 1") || !strings.Contains(string(docs[1]), "b: 2") {
		t.Fatalf("split into %q", docs)
	}
}

func TestKubernetesManifests(t *testing.T) {
	m := loadManifests(t)
	if t.Failed() {
		t.FailNow()
	}

	// The expected objects are all there.
	for _, key := range []string{
		"Namespace/streamrec", "ConfigMap/streamrec-config",
		"Deployment/streamrec-ingest", "Deployment/streamrec-learn", "Deployment/streamrec-serve",
		"Service/streamrec-serve", "HorizontalPodAutoscaler/streamrec-serve", "PodDisruptionBudget/streamrec-serve",
	} {
		if _, ok := m.Sources[key]; !ok {
			t.Errorf("missing %s in deploy/k8s", key)
		}
	}
	if len(m.Namespaces) != 1 {
		t.Fatalf("want exactly one Namespace, have %d", len(m.Namespaces))
	}
	ns := m.Namespaces[0].Name

	namespaced := func(kind, name, got string) {
		if got != ns {
			t.Errorf("%s/%s is in namespace %q, want %q", kind, name, got, ns)
		}
	}
	configMaps := map[string]*corev1.ConfigMap{}
	for _, cm := range m.ConfigMaps {
		namespaced("ConfigMap", cm.Name, cm.Namespace)
		configMaps[cm.Name] = cm
	}

	deployments := map[string]*appsv1.Deployment{}
	images := map[string][]string{}
	for _, d := range m.Deployments {
		deployments[d.Name] = d
		namespaced("Deployment", d.Name, d.Namespace)
		checkDeployment(t, d, configMaps)
		for _, c := range d.Spec.Template.Spec.Containers {
			images[c.Image] = append(images[c.Image], d.Name+"/"+c.Name)
		}
	}
	if len(images) != 1 {
		t.Errorf("Deployments use different images: %v", images)
	}

	if d := deployments["streamrec-learn"]; d != nil {
		if d.Spec.Replicas == nil || *d.Spec.Replicas != 1 {
			t.Errorf("streamrec-learn must run exactly one replica")
		}
		if d.Spec.Strategy.Type != appsv1.RecreateDeploymentStrategyType {
			t.Errorf("streamrec-learn strategy %q, want Recreate (never two learners at once)", d.Spec.Strategy.Type)
		}
	}

	podsMatching := func(sel labels.Selector) []*appsv1.Deployment {
		var out []*appsv1.Deployment
		for _, d := range m.Deployments {
			if sel.Matches(labels.Set(d.Spec.Template.Labels)) {
				out = append(out, d)
			}
		}
		return out
	}

	for _, s := range m.Services {
		namespaced("Service", s.Name, s.Namespace)
		if len(s.Spec.Selector) == 0 {
			t.Errorf("Service/%s has no selector", s.Name)
			continue
		}
		targets := podsMatching(labels.SelectorFromSet(s.Spec.Selector))
		if len(targets) != 1 {
			t.Errorf("Service/%s selects %d Deployments, want 1", s.Name, len(targets))
			continue
		}
		for _, p := range s.Spec.Ports {
			tp := p.TargetPort
			if tp.Type == intstr.Int && tp.IntVal == 0 {
				tp = intstr.FromInt32(p.Port)
			}
			if !podHasPort(&targets[0].Spec.Template.Spec, tp) {
				t.Errorf("Service/%s port %q targets %s, which Deployment/%s does not expose", s.Name, p.Name, tp.String(), targets[0].Name)
			}
		}
	}

	for _, h := range m.HPAs {
		namespaced("HorizontalPodAutoscaler", h.Name, h.Namespace)
		ref := h.Spec.ScaleTargetRef
		d := deployments[ref.Name]
		if ref.APIVersion != "apps/v1" || ref.Kind != "Deployment" || d == nil {
			t.Errorf("HPA/%s targets %s %s/%s, which is not a Deployment here", h.Name, ref.APIVersion, ref.Kind, ref.Name)
			continue
		}
		if d.Spec.Template.Labels["app.kubernetes.io/component"] != "serve" {
			t.Errorf("HPA/%s scales %s; only serve is stateless and scalable by CPU", h.Name, d.Name)
		}
		if h.Spec.MinReplicas == nil || *h.Spec.MinReplicas < 2 || *h.Spec.MinReplicas > h.Spec.MaxReplicas {
			t.Errorf("HPA/%s replicas min %v max %d: want 2 ≤ min ≤ max", h.Name, h.Spec.MinReplicas, h.Spec.MaxReplicas)
		}
		for _, mt := range h.Spec.Metrics {
			if mt.Type != autoscalingv2.ResourceMetricSourceType || mt.Resource == nil {
				continue
			}
			for _, c := range d.Spec.Template.Spec.Containers {
				if _, ok := c.Resources.Requests[mt.Resource.Name]; !ok {
					t.Errorf("HPA/%s scales on %s utilisation but container %s requests no %s", h.Name, mt.Resource.Name, c.Name, mt.Resource.Name)
				}
			}
		}
	}

	for _, p := range m.PDBs {
		namespaced("PodDisruptionBudget", p.Name, p.Namespace)
		sel, err := metav1.LabelSelectorAsSelector(p.Spec.Selector)
		if err != nil || p.Spec.Selector == nil {
			t.Errorf("PDB/%s selector: %v", p.Name, err)
			continue
		}
		targets := podsMatching(sel)
		if len(targets) != 1 {
			t.Errorf("PDB/%s selects %d Deployments, want 1", p.Name, len(targets))
			continue
		}
		if p.Spec.MinAvailable != nil && p.Spec.MinAvailable.Type == intstr.Int {
			min := p.Spec.MinAvailable.IntVal
			for _, h := range m.HPAs {
				if h.Spec.ScaleTargetRef.Name == targets[0].Name && h.Spec.MinReplicas != nil && *h.Spec.MinReplicas <= min {
					t.Errorf("PDB/%s minAvailable %d blocks every drain at the HPA's %d replicas", p.Name, min, *h.Spec.MinReplicas)
				}
			}
		}
	}
}

// checkDeployment checks one Deployment on its own: selector, probes,
// resources, security, ConfigMap references.
func checkDeployment(t *testing.T, d *appsv1.Deployment, configMaps map[string]*corev1.ConfigMap) {
	t.Helper()
	name := "Deployment/" + d.Name
	sel, err := metav1.LabelSelectorAsSelector(d.Spec.Selector)
	if err != nil || d.Spec.Selector == nil || sel.Empty() {
		t.Errorf("%s: bad or empty selector (%v)", name, err)
	} else if !sel.Matches(labels.Set(d.Spec.Template.Labels)) {
		t.Errorf("%s: selector %s does not match its pod labels %v", name, sel, d.Spec.Template.Labels)
	}
	pod := &d.Spec.Template.Spec
	psc := pod.SecurityContext
	podNonRoot := psc != nil && psc.RunAsNonRoot != nil && *psc.RunAsNonRoot
	volumes := map[string]bool{}
	for _, v := range pod.Volumes {
		volumes[v.Name] = true
	}
	if len(pod.Containers) == 0 {
		t.Errorf("%s: no containers", name)
	}
	for _, c := range pod.Containers {
		cn := name + " container " + c.Name
		if c.Image == "" || strings.HasSuffix(c.Image, ":latest") || !strings.Contains(c.Image, ":") {
			t.Errorf("%s: image %q must carry a pinned tag", cn, c.Image)
		}
		for _, probe := range []struct {
			kind string
			p    *corev1.Probe
		}{{"liveness", c.LivenessProbe}, {"readiness", c.ReadinessProbe}} {
			switch {
			case probe.p == nil:
				t.Errorf("%s: no %s probe", cn, probe.kind)
			case probe.p.HTTPGet == nil:
				t.Errorf("%s: %s probe is not an HTTP GET", cn, probe.kind)
			case !containerHasPort(&c, probe.p.HTTPGet.Port):
				t.Errorf("%s: %s probe port %s is not a container port", cn, probe.kind, probe.p.HTTPGet.Port.String())
			}
		}
		if c.LivenessProbe != nil && c.LivenessProbe.HTTPGet != nil && c.LivenessProbe.HTTPGet.Path != "/healthz" {
			t.Errorf("%s: liveness path %q, want /healthz", cn, c.LivenessProbe.HTTPGet.Path)
		}
		if c.ReadinessProbe != nil && c.ReadinessProbe.HTTPGet != nil && c.ReadinessProbe.HTTPGet.Path != "/readyz" {
			t.Errorf("%s: readiness path %q, want /readyz", cn, c.ReadinessProbe.HTTPGet.Path)
		}
		for _, res := range []corev1.ResourceName{corev1.ResourceCPU, corev1.ResourceMemory} {
			req, okReq := c.Resources.Requests[res]
			lim, okLim := c.Resources.Limits[res]
			if !okReq || !okLim {
				t.Errorf("%s: %s request and limit must both be set", cn, res)
			} else if req.Cmp(lim) > 0 {
				t.Errorf("%s: %s request %s above limit %s", cn, res, req.String(), lim.String())
			}
		}
		sc := c.SecurityContext
		nonRoot := podNonRoot || (sc != nil && sc.RunAsNonRoot != nil && *sc.RunAsNonRoot)
		if !nonRoot {
			t.Errorf("%s: runAsNonRoot not set", cn)
		}
		if sc == nil || sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem {
			t.Errorf("%s: readOnlyRootFilesystem not set", cn)
		}
		if sc == nil || sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation {
			t.Errorf("%s: allowPrivilegeEscalation must be false", cn)
		}
		for _, vm := range c.VolumeMounts {
			if !volumes[vm.Name] {
				t.Errorf("%s: mounts undefined volume %q", cn, vm.Name)
			}
		}
		for _, e := range c.Env {
			if e.ValueFrom == nil || e.ValueFrom.ConfigMapKeyRef == nil {
				continue
			}
			ref := e.ValueFrom.ConfigMapKeyRef
			cm := configMaps[ref.Name]
			if cm == nil {
				t.Errorf("%s: env %s refers to missing ConfigMap %q", cn, e.Name, ref.Name)
			} else if _, ok := cm.Data[ref.Key]; !ok {
				t.Errorf("%s: env %s refers to missing key %q of ConfigMap %q", cn, e.Name, ref.Key, ref.Name)
			}
		}
		for _, ef := range c.EnvFrom {
			if ef.ConfigMapRef != nil && configMaps[ef.ConfigMapRef.Name] == nil {
				t.Errorf("%s: envFrom refers to missing ConfigMap %q", cn, ef.ConfigMapRef.Name)
			}
		}
	}
}

func containerHasPort(c *corev1.Container, p intstr.IntOrString) bool {
	for _, cp := range c.Ports {
		if (p.Type == intstr.String && cp.Name == p.StrVal) || (p.Type == intstr.Int && cp.ContainerPort == p.IntVal) {
			return true
		}
	}
	return false
}

func podHasPort(pod *corev1.PodSpec, p intstr.IntOrString) bool {
	for i := range pod.Containers {
		if containerHasPort(&pod.Containers[i], p) {
			return true
		}
	}
	return false
}

// TestKubernetesCommandLines checks each container's arguments and
// STREAMREC_* variables against the real CLI: the subcommand exists and
// every flag and variable is one it reads.
func TestKubernetesCommandLines(t *testing.T) {
	m := loadManifests(t)
	for _, d := range m.Deployments {
		for _, c := range d.Spec.Template.Spec.Containers {
			t.Run(d.Name+"/"+c.Name, func(t *testing.T) {
				args := append(append([]string{}, c.Command...), c.Args...)
				var env []string
				for _, e := range c.Env {
					env = append(env, e.Name)
				}
				for _, ef := range c.EnvFrom {
					for _, cm := range m.ConfigMaps {
						if ef.ConfigMapRef != nil && cm.Name == ef.ConfigMapRef.Name {
							for k := range cm.Data {
								env = append(env, ef.Prefix+k)
							}
						}
					}
				}
				sort.Strings(env)
				for _, p := range checkInvocation(t, "Deployment/"+d.Name, args, env) {
					t.Error(p)
				}
				// The listener the probes use is the one the command binds.
				if port := listenPort(args, env, m.ConfigMaps); port != "" {
					found := false
					for _, cp := range c.Ports {
						if fmt.Sprint(cp.ContainerPort) == port {
							found = true
						}
					}
					if !found {
						t.Errorf("command listens on port %s, which is no container port", port)
					}
				}
			})
		}
	}
}

// listenPort is the port of --metrics-addr (ingest, learn) or --addr (serve)
// as given on the command line.
func listenPort(args, _ []string, _ []*corev1.ConfigMap) string {
	for i := 0; i < len(args); i++ {
		n, v, hasV := strings.Cut(strings.TrimLeft(args[i], "-"), "=")
		if !strings.HasPrefix(args[i], "-") || (n != "addr" && n != "metrics-addr") {
			continue
		}
		if !hasV && i+1 < len(args) {
			v = args[i+1]
		}
		if j := strings.LastIndexByte(v, ':'); j >= 0 {
			return v[j+1:]
		}
	}
	return ""
}

// TestComposeAndKubernetesAgree checks that both deployments run each
// component on the same port, in the same consumer group.
func TestComposeAndKubernetesAgree(t *testing.T) {
	m := loadManifests(t)
	c := loadCompose(t)
	flagValue := func(args []string, name string) string {
		for i, a := range args {
			n, v, hasV := strings.Cut(strings.TrimLeft(a, "-"), "=")
			if strings.HasPrefix(a, "-") && n == name {
				if hasV {
					return v
				}
				if i+1 < len(args) {
					return args[i+1]
				}
			}
		}
		return ""
	}
	checked := 0
	for _, d := range m.Deployments {
		for _, ct := range d.Spec.Template.Spec.Containers {
			args := append(append([]string{}, ct.Command...), ct.Args...)
			if len(args) == 0 {
				continue
			}
			for _, name := range sortedKeys(c.Services) {
				s := c.Services[name]
				if !s.streamrec() || len(s.Command) == 0 || s.Command[0] != args[0] || s.oneShot() {
					continue
				}
				checked++
				if kp, cp := listenPort(args, nil, nil), listenPort(s.Command, nil, nil); kp != cp {
					t.Errorf("%s listens on %q in Kubernetes but %q in compose (%s)", args[0], kp, cp, name)
				}
				if kg, cg := flagValue(args, "group"), flagValue(s.Command, "group"); kg != cg {
					t.Errorf("%s consumer group %q in Kubernetes but %q in compose (%s)", args[0], kg, cg, name)
				}
			}
		}
	}
	if checked < 3 {
		t.Errorf("compared only %d component pairs", checked)
	}
}
