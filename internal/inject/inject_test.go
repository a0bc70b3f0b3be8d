/*
Copyright 2026 The Keyward Authors.

Licensed under the Apache License, Version 2.0 (the "License");
you may not use this file except in compliance with the License.
You may obtain a copy of the License at

    http://www.apache.org/licenses/LICENSE-2.0

Unless required by applicable law or agreed to in writing, software
distributed under the License is distributed on an "AS IS" BASIS,
WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied.
See the License for the specific language governing permissions and
limitations under the License.
*/

package inject

import (
	"encoding/json"
	"reflect"
	"slices"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func testConfig() Config {
	res, err := DefaultResources("10m", "32Mi", "128Mi")
	if err != nil {
		panic(err)
	}
	return Config{Image: "ghcr.io/keyward-dev/keyward:0.1.0", PullPolicy: corev1.PullIfNotPresent, Resources: res, Version: "0.1.0"}
}

func appPod(annotations map[string]string, ports ...corev1.ContainerPort) *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "app", Namespace: "shop", Annotations: annotations},
		Spec: corev1.PodSpec{
			InitContainers: []corev1.Container{{Name: "migrate", Image: "migrate"}},
			Containers:     []corev1.Container{{Name: "app", Image: "app", Ports: ports}},
		},
	}
}

func TestParse(t *testing.T) {
	tests := []struct {
		name    string
		ann     map[string]string
		optedIn bool
		want    Options
		wantErr string
	}{
		{name: "no annotations"},
		{name: "other annotations", ann: map[string]string{"x": "y"}},
		{name: "defaults", ann: map[string]string{AnnotationPolicy: "api", AnnotationPort: "8080"}, optedIn: true,
			want: Options{Policy: "api", Mode: ModeWatch, PortSpec: "8080", ListenPort: DefaultListenPort}},
		{name: "file mode and listen port", ann: map[string]string{AnnotationPolicy: "api", AnnotationPort: "http", AnnotationBundleMode: "file", AnnotationListenPort: "9000"}, optedIn: true,
			want: Options{Policy: "api", Mode: ModeFile, PortSpec: "http", ListenPort: 9000}},
		{name: "port missing", ann: map[string]string{AnnotationPolicy: "api"}, optedIn: true, wantErr: "annotation auth.keyward.dev/port is required"},
		{name: "bad policy name", ann: map[string]string{AnnotationPolicy: "Not_A_Name", AnnotationPort: "80"}, optedIn: true, wantErr: "is not a TokenPolicy name"},
		{name: "empty policy name", ann: map[string]string{AnnotationPolicy: "", AnnotationPort: "80"}, optedIn: true, wantErr: "is not a TokenPolicy name"},
		{name: "bad mode", ann: map[string]string{AnnotationPolicy: "api", AnnotationPort: "80", AnnotationBundleMode: "poll"}, optedIn: true, wantErr: `want "watch" or "file"`},
		{name: "bad listen port", ann: map[string]string{AnnotationPolicy: "api", AnnotationPort: "80", AnnotationListenPort: "70000"}, optedIn: true, wantErr: "want a port number"},
		{name: "listen port not a number", ann: map[string]string{AnnotationPolicy: "api", AnnotationPort: "80", AnnotationListenPort: "http"}, optedIn: true, wantErr: "want a port number"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, optedIn, err := Parse(appPod(tt.ann))
			if optedIn != tt.optedIn {
				t.Fatalf("optedIn = %v, want %v", optedIn, tt.optedIn)
			}
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("error = %v, want it to contain %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if optedIn && got != tt.want {
				t.Fatalf("options = %+v, want %+v", got, tt.want)
			}
		})
	}
}

func TestApplyWatchMode(t *testing.T) {
	pod := appPod(map[string]string{AnnotationPolicy: "api", AnnotationPort: "8080"},
		corev1.ContainerPort{Name: "http", ContainerPort: 8080})
	o, _, err := Parse(pod)
	if err != nil {
		t.Fatal(err)
	}
	if err := Apply(pod, testConfig(), o); err != nil {
		t.Fatal(err)
	}
	if len(pod.Spec.InitContainers) != 2 || pod.Spec.InitContainers[0].Name != ContainerName || pod.Spec.InitContainers[1].Name != "migrate" {
		t.Fatalf("init containers: %v", names(pod.Spec.InitContainers))
	}
	c := pod.Spec.InitContainers[0]
	if c.RestartPolicy == nil || *c.RestartPolicy != corev1.ContainerRestartPolicyAlways {
		t.Fatal("the sidecar is not a native sidecar (restartPolicy Always)")
	}
	wantArgs := []string{"serve", "--listen=:15080", "--admin-listen=:15090", "--upstream=http://127.0.0.1:8080", "--bundle-configmap=api-bundle"}
	if !reflect.DeepEqual(c.Args, wantArgs) {
		t.Fatalf("args = %v, want %v", c.Args, wantArgs)
	}
	// The Service-facing name moved from the application to the sidecar.
	if c.Ports[0].Name != "http" || c.Ports[0].ContainerPort != 15080 || pod.Spec.Containers[0].Ports[0].Name != "" {
		t.Fatalf("port wiring: sidecar %v, app %v", c.Ports, pod.Spec.Containers[0].Ports)
	}
	sc := c.SecurityContext
	if !*sc.RunAsNonRoot || !*sc.ReadOnlyRootFilesystem || *sc.AllowPrivilegeEscalation || !slices.Equal(sc.Capabilities.Drop, []corev1.Capability{"ALL"}) {
		t.Fatalf("security context not hardened: %+v", sc)
	}
	if c.ReadinessProbe == nil || c.ReadinessProbe.HTTPGet.Path != "/readyz" || c.LivenessProbe == nil || c.LivenessProbe.HTTPGet.Path != "/healthz" {
		t.Fatal("probes missing")
	}
	if len(c.VolumeMounts) != 1 || c.VolumeMounts[0].MountPath != TokenMountPath || c.VolumeMounts[0].SubPath != "" {
		t.Fatalf("mounts: %+v", c.VolumeMounts)
	}
	v := pod.Spec.Volumes[len(pod.Spec.Volumes)-1]
	if v.Name != TokenVolume || v.Projected == nil || v.Projected.Sources[0].ServiceAccountToken == nil {
		t.Fatalf("volume: %+v", v)
	}
	if got := envValue(c, "GOMEMLIMIT"); got != "120795955" {
		t.Fatalf("GOMEMLIMIT = %q, want 90%% of 128Mi", got)
	}
	if pod.Annotations[AnnotationInjected] != "0.1.0" || pod.Labels[LabelPolicy] != "api" || pod.Annotations[annotationDefaultContainer] != "app" {
		t.Fatalf("marks: %v %v", pod.Annotations, pod.Labels)
	}
}

func TestApplyFileMode(t *testing.T) {
	pod := appPod(map[string]string{AnnotationPolicy: "api", AnnotationPort: "8080", AnnotationBundleMode: ModeFile})
	o, _, _ := Parse(pod)
	if err := Apply(pod, testConfig(), o); err != nil {
		t.Fatal(err)
	}
	c := pod.Spec.InitContainers[0]
	if !slices.Contains(c.Args, "--bundle-dir="+BundleMountPath) {
		t.Fatalf("args: %v", c.Args)
	}
	// An undeclared application port: the sidecar's port gets Keyward's own name.
	if c.Ports[0].Name != ListenPortName {
		t.Fatalf("ports: %v", c.Ports)
	}
	v := pod.Spec.Volumes[0]
	if v.Name != BundleVolume || v.ConfigMap == nil || v.ConfigMap.Name != "api-bundle" || len(v.ConfigMap.Items) != 0 {
		t.Fatalf("bundle volume: %+v", v)
	}
	if c.VolumeMounts[0].SubPath != "" || c.VolumeMounts[0].MountPath != BundleMountPath {
		t.Fatalf("a subPath mount never sees the kubelet's updates: %+v", c.VolumeMounts[0])
	}
}

func TestApplyIdempotent(t *testing.T) {
	pod := appPod(map[string]string{AnnotationPolicy: "api", AnnotationPort: "http"}, corev1.ContainerPort{Name: "http", ContainerPort: 8080})
	o, _, _ := Parse(pod)
	if err := Apply(pod, testConfig(), o); err != nil {
		t.Fatal(err)
	}
	once, _ := json.Marshal(pod)
	// Re-admission: the port name has moved, the sidecar is there; nothing changes.
	if err := Apply(pod, testConfig(), o); err != nil {
		t.Fatal(err)
	}
	twice, _ := json.Marshal(pod)
	if string(once) != string(twice) {
		t.Fatalf("second Apply changed the pod:\n%s\n%s", once, twice)
	}
}

func TestApplyErrors(t *testing.T) {
	tests := []struct {
		name    string
		ann     map[string]string
		ports   []corev1.ContainerPort
		extra   func(*corev1.Pod)
		wantErr string
	}{
		{name: "unknown port name", ann: map[string]string{AnnotationPort: "grpc"}, wantErr: "names no TCP container port"},
		{name: "port out of range", ann: map[string]string{AnnotationPort: "0"}, wantErr: "want a port number"},
		{name: "app on the listen port", ann: map[string]string{AnnotationPort: "15080"}, wantErr: "collides"},
		{name: "admin port taken", ann: map[string]string{AnnotationPort: "8080"}, ports: []corev1.ContainerPort{{ContainerPort: 15090}}, wantErr: "already uses port 15090"},
		{name: "volume name taken", ann: map[string]string{AnnotationPort: "8080"}, extra: func(p *corev1.Pod) {
			p.Spec.Volumes = append(p.Spec.Volumes, corev1.Volume{Name: TokenVolume})
		}, wantErr: "already has a volume"},
		{name: "admin port name taken", ann: map[string]string{AnnotationPort: "8080"}, ports: []corev1.ContainerPort{{Name: AdminPortName, ContainerPort: 9999}}, wantErr: "already has a port named"},
		{name: "udp port by name", ann: map[string]string{AnnotationPort: "dns"}, ports: []corev1.ContainerPort{{Name: "dns", ContainerPort: 53, Protocol: corev1.ProtocolUDP}}, wantErr: "names no TCP container port"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.ann[AnnotationPolicy] = "api"
			pod := appPod(tt.ann, tt.ports...)
			if tt.extra != nil {
				tt.extra(pod)
			}
			o, _, err := Parse(pod)
			if err != nil {
				t.Fatal(err)
			}
			err = Apply(pod, testConfig(), o)
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("error = %v, want it to contain %q", err, tt.wantErr)
			}
		})
	}
}

func TestResources(t *testing.T) {
	if _, err := DefaultResources("10m", "lots", ""); err == nil {
		t.Fatal("a bad quantity was accepted")
	}
	cfg := testConfig()
	cfg.Resources.Limits[corev1.ResourceCPU] = resource.MustParse("1500m")
	pod := appPod(map[string]string{AnnotationPolicy: "api", AnnotationPort: "8080"})
	o, _, _ := Parse(pod)
	if err := Apply(pod, cfg, o); err != nil {
		t.Fatal(err)
	}
	if got := envValue(pod.Spec.InitContainers[0], "GOMAXPROCS"); got != "1" {
		t.Fatalf("GOMAXPROCS = %q", got)
	}
	// The configuration's resources are copied, not shared.
	pod.Spec.InitContainers[0].Resources.Limits[corev1.ResourceMemory] = resource.MustParse("1Gi")
	if cfg.Resources.Limits.Memory().String() != "128Mi" {
		t.Fatal("Apply shared the configuration's resource map with the pod")
	}
}

func names(cs []corev1.Container) []string {
	var out []string
	for _, c := range cs {
		out = append(out, c.Name)
	}
	return out
}

func envValue(c corev1.Container, name string) string {
	for _, e := range c.Env {
		if e.Name == name {
			return e.Value
		}
	}
	return ""
}
