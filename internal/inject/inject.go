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

// Package inject decides how a pod that opted in with annotations gets the verifier sidecar.
// It is pure: given a pod and the injector's configuration it returns the mutated pod or a
// clear error. The admission webhook (internal/webhook) is the shell around it.
package inject

import (
	"errors"
	"fmt"
	"strconv"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/util/validation"
)

// Annotations and labels of the injection contract (docs/injection.md).
const (
	// AnnotationPolicy opts a pod in: the name of a TokenPolicy in the pod's namespace.
	AnnotationPolicy = "auth.keyward.dev/policy"
	// AnnotationPort is the application's port (number or container port name) to protect.
	AnnotationPort = "auth.keyward.dev/port"
	// AnnotationBundleMode is "watch" (default: the sidecar watches the bundle ConfigMap
	// through the API) or "file" (the bundle ConfigMap is mounted as a volume).
	AnnotationBundleMode = "auth.keyward.dev/bundle-mode"
	// AnnotationListenPort is the port the sidecar listens on (default 15080).
	AnnotationListenPort = "auth.keyward.dev/listen-port"
	// AnnotationInjected marks an injected pod with the injector's version.
	AnnotationInjected = "auth.keyward.dev/injected"
	// LabelPolicy carries the policy name on injected pods, so they can be selected.
	LabelPolicy = "auth.keyward.dev/policy"
	// annotationDefaultContainer makes kubectl logs/exec pick the application.
	annotationDefaultContainer = "kubectl.kubernetes.io/default-container"

	// ContainerName is the injected sidecar.
	ContainerName = "keyward-verifier"
	// DefaultListenPort is the sidecar's proxy port unless the pod says otherwise.
	DefaultListenPort = 15080
	// AdminPort serves /healthz, /readyz and /metrics of the sidecar.
	AdminPort = 15090
	// ListenPortName names the proxy port when the application's port had no name to move.
	ListenPortName = "keyward-http"
	// AdminPortName names the admin port.
	AdminPortName = "keyward-admin"

	// BundleVolume is the bundle ConfigMap volume of file mode.
	BundleVolume = "keyward-bundle"
	// BundleMountPath is where file mode mounts it (a directory: no subPath, so the
	// kubelet's atomic updates reach the sidecar).
	BundleMountPath = "/var/run/keyward/bundle"
	// TokenVolume is the projected API credentials of watch mode. Containers added by a
	// webhook do not get the ServiceAccount admission plugin's token mount.
	TokenVolume = "keyward-api-access"
	// TokenMountPath is where in-cluster clients look for credentials.
	TokenMountPath = "/var/run/secrets/kubernetes.io/serviceaccount"

	// ModeWatch and ModeFile are the bundle modes.
	ModeWatch = "watch"
	ModeFile  = "file"

	sidecarUID = 65532
)

// Config is the injector's part: what every sidecar gets.
type Config struct {
	Image      string
	PullPolicy corev1.PullPolicy
	Resources  corev1.ResourceRequirements
	// Version is written to AnnotationInjected.
	Version string
}

// Options is what a pod asked for, read from its annotations by Parse.
type Options struct {
	Policy     string
	Mode       string
	PortSpec   string // as written: a number or a port name
	ListenPort int32
}

// BundleConfigMap is the ConfigMap the TokenPolicy controller renders for policy.
func BundleConfigMap(policy string) string { return policy + "-bundle" }

// Parse reads the injection annotations. It returns ok=false when the pod did not opt in
// (no policy annotation), and an error, meant for the user, when the annotations are wrong.
func Parse(pod *corev1.Pod) (Options, bool, error) {
	a := pod.Annotations
	policy, ok := a[AnnotationPolicy]
	if !ok {
		return Options{}, false, nil
	}
	o := Options{Policy: policy, Mode: ModeWatch, PortSpec: a[AnnotationPort], ListenPort: DefaultListenPort}
	var errs []error
	if msgs := validation.IsDNS1123Subdomain(policy); len(msgs) > 0 {
		errs = append(errs, fmt.Errorf("annotation %s=%q is not a TokenPolicy name: %s", AnnotationPolicy, policy, msgs[0]))
	}
	if o.PortSpec == "" {
		errs = append(errs, fmt.Errorf("annotation %s is required with %s: the application port to protect (number or port name)", AnnotationPort, AnnotationPolicy))
	}
	if m, set := a[AnnotationBundleMode]; set {
		if m != ModeWatch && m != ModeFile {
			errs = append(errs, fmt.Errorf("annotation %s=%q: want %q or %q", AnnotationBundleMode, m, ModeWatch, ModeFile))
		}
		o.Mode = m
	}
	if lp, set := a[AnnotationListenPort]; set {
		n, err := strconv.ParseInt(lp, 10, 32)
		if err != nil || n < 1 || n > 65535 {
			errs = append(errs, fmt.Errorf("annotation %s=%q: want a port number 1-65535", AnnotationListenPort, lp))
		} else {
			o.ListenPort = int32(n)
		}
	}
	return o, true, errors.Join(errs...)
}

// Injected reports whether the pod already carries the sidecar.
func Injected(pod *corev1.Pod) bool {
	for i := range pod.Spec.InitContainers {
		if pod.Spec.InitContainers[i].Name == ContainerName {
			return true
		}
	}
	return false
}

// appPort is the protected port resolved against the pod's containers.
type appPort struct {
	number    int32
	name      string // the container port's name, moved to the sidecar
	container int    // index in Spec.Containers, -1 when no container declares it
	port      int    // index in that container's Ports
}

func resolvePort(pod *corev1.Pod, spec string) (appPort, error) {
	n, numErr := strconv.ParseInt(spec, 10, 32)
	for ci := range pod.Spec.Containers {
		for pi, p := range pod.Spec.Containers[ci].Ports {
			if p.Protocol != "" && p.Protocol != corev1.ProtocolTCP {
				continue
			}
			if (numErr == nil && int64(p.ContainerPort) == n) || (numErr != nil && p.Name == spec) {
				return appPort{number: p.ContainerPort, name: p.Name, container: ci, port: pi}, nil
			}
		}
	}
	if numErr != nil {
		return appPort{}, fmt.Errorf("annotation %s=%q names no TCP container port of the pod", AnnotationPort, spec)
	}
	if n < 1 || n > 65535 {
		return appPort{}, fmt.Errorf("annotation %s=%q: want a port number 1-65535 or a port name", AnnotationPort, spec)
	}
	return appPort{number: int32(n), container: -1}, nil
}

// Apply adds the sidecar to pod. It is idempotent: a pod that already has it is left as
// it is. Errors are meant for the user (they become the admission message).
func Apply(pod *corev1.Pod, cfg Config, o Options) error {
	if Injected(pod) {
		return nil
	}
	if len(pod.Spec.Containers) == 0 {
		return errors.New("the pod has no containers")
	}
	app, err := resolvePort(pod, o.PortSpec)
	if err != nil {
		return err
	}
	if app.number == o.ListenPort || app.number == AdminPort {
		return fmt.Errorf("the application port %d collides with the sidecar's ports %d/%d: set %s", app.number, o.ListenPort, AdminPort, AnnotationListenPort)
	}
	if err := checkFree(pod, o.ListenPort, AdminPort); err != nil {
		return err
	}
	listenName := ListenPortName
	if app.container >= 0 && app.name != "" {
		// The Service-facing name moves to the sidecar: a Service whose targetPort is the
		// name now reaches the verifier, and the application keeps its port unnamed.
		listenName = app.name
		pod.Spec.Containers[app.container].Ports[app.port].Name = ""
	}
	if err := checkNames(pod, listenName); err != nil {
		return err
	}
	c := sidecar(cfg, o, app.number, listenName)
	switch o.Mode {
	case ModeFile:
		pod.Spec.Volumes = append(pod.Spec.Volumes, corev1.Volume{
			Name: BundleVolume,
			VolumeSource: corev1.VolumeSource{ConfigMap: &corev1.ConfigMapVolumeSource{
				LocalObjectReference: corev1.LocalObjectReference{Name: BundleConfigMap(o.Policy)},
			}},
		})
		c.VolumeMounts = []corev1.VolumeMount{{Name: BundleVolume, MountPath: BundleMountPath, ReadOnly: true}}
	default:
		pod.Spec.Volumes = append(pod.Spec.Volumes, apiAccessVolume())
		c.VolumeMounts = []corev1.VolumeMount{{Name: TokenVolume, MountPath: TokenMountPath, ReadOnly: true}}
	}
	// First among the init containers: it runs for the pod's lifetime (restartPolicy
	// Always, a native sidecar) and starts before anything else.
	pod.Spec.InitContainers = append([]corev1.Container{c}, pod.Spec.InitContainers...)
	if pod.Annotations == nil {
		pod.Annotations = map[string]string{}
	}
	pod.Annotations[AnnotationInjected] = cfg.Version
	if _, ok := pod.Annotations[annotationDefaultContainer]; !ok {
		pod.Annotations[annotationDefaultContainer] = pod.Spec.Containers[0].Name
	}
	if pod.Labels == nil {
		pod.Labels = map[string]string{}
	}
	pod.Labels[LabelPolicy] = o.Policy
	return nil
}

func checkFree(pod *corev1.Pod, ports ...int32) error {
	all := append(append([]corev1.Container{}, pod.Spec.InitContainers...), pod.Spec.Containers...)
	for _, c := range all {
		for _, p := range c.Ports {
			for _, want := range ports {
				if p.ContainerPort == want {
					return fmt.Errorf("container %q already uses port %d, which the sidecar needs: set %s", c.Name, want, AnnotationListenPort)
				}
			}
		}
	}
	for _, v := range pod.Spec.Volumes {
		if v.Name == BundleVolume || v.Name == TokenVolume {
			return fmt.Errorf("the pod already has a volume named %q", v.Name)
		}
	}
	return nil
}

func checkNames(pod *corev1.Pod, names ...string) error {
	all := append(append([]corev1.Container{}, pod.Spec.InitContainers...), pod.Spec.Containers...)
	for _, c := range all {
		if c.Name == ContainerName {
			return fmt.Errorf("the pod already has a container named %q", ContainerName)
		}
		for _, p := range c.Ports {
			for _, n := range append(names, AdminPortName) {
				if p.Name != "" && p.Name == n {
					return fmt.Errorf("container %q already has a port named %q", c.Name, n)
				}
			}
		}
	}
	return nil
}

func sidecar(cfg Config, o Options, upstream int32, listenName string) corev1.Container {
	args := []string{
		"serve",
		fmt.Sprintf("--listen=:%d", o.ListenPort),
		fmt.Sprintf("--admin-listen=:%d", AdminPort),
		fmt.Sprintf("--upstream=http://127.0.0.1:%d", upstream),
	}
	if o.Mode == ModeFile {
		args = append(args, "--bundle-dir="+BundleMountPath)
	} else {
		args = append(args, "--bundle-configmap="+BundleConfigMap(o.Policy))
	}
	always := corev1.ContainerRestartPolicyAlways
	c := corev1.Container{
		Name:            ContainerName,
		Image:           cfg.Image,
		ImagePullPolicy: cfg.PullPolicy,
		Command:         []string{"/verifier"},
		Args:            args,
		RestartPolicy:   &always,
		Ports: []corev1.ContainerPort{
			{Name: listenName, ContainerPort: o.ListenPort, Protocol: corev1.ProtocolTCP},
			{Name: AdminPortName, ContainerPort: AdminPort, Protocol: corev1.ProtocolTCP},
		},
		Resources: *cfg.Resources.DeepCopy(),
		ReadinessProbe: &corev1.Probe{
			ProbeHandler:     corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: "/readyz", Port: intstr.FromInt32(AdminPort)}},
			PeriodSeconds:    2,
			FailureThreshold: 2,
		},
		LivenessProbe: &corev1.Probe{
			ProbeHandler:     corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: "/healthz", Port: intstr.FromInt32(AdminPort)}},
			PeriodSeconds:    10,
			FailureThreshold: 3,
		},
		SecurityContext: &corev1.SecurityContext{
			RunAsNonRoot:             ptr(true),
			RunAsUser:                ptr(int64(sidecarUID)),
			RunAsGroup:               ptr(int64(sidecarUID)),
			ReadOnlyRootFilesystem:   ptr(true),
			AllowPrivilegeEscalation: ptr(false),
			Privileged:               ptr(false),
			Capabilities:             &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}},
			SeccompProfile:           &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault},
		},
		TerminationMessagePolicy: corev1.TerminationMessageFallbackToLogsOnError,
	}
	if lim, ok := cfg.Resources.Limits[corev1.ResourceMemory]; ok && !lim.IsZero() {
		// The Go runtime collects before the kernel would kill the container.
		c.Env = append(c.Env, corev1.EnvVar{Name: "GOMEMLIMIT", Value: strconv.FormatInt(lim.Value()*9/10, 10)})
	}
	if cpu, ok := cfg.Resources.Limits[corev1.ResourceCPU]; ok && !cpu.IsZero() {
		procs := max(cpu.MilliValue()/1000, 1)
		c.Env = append(c.Env, corev1.EnvVar{Name: "GOMAXPROCS", Value: strconv.FormatInt(procs, 10)})
	}
	return c
}

// apiAccessVolume is what the ServiceAccount admission plugin would have mounted: a
// short-lived, audience-bound token of the pod's ServiceAccount, the cluster CA and the
// namespace.
func apiAccessVolume() corev1.Volume {
	return corev1.Volume{
		Name: TokenVolume,
		VolumeSource: corev1.VolumeSource{Projected: &corev1.ProjectedVolumeSource{
			DefaultMode: ptr(int32(0o444)),
			Sources: []corev1.VolumeProjection{
				{ServiceAccountToken: &corev1.ServiceAccountTokenProjection{Path: "token", ExpirationSeconds: ptr(int64(3607))}},
				{ConfigMap: &corev1.ConfigMapProjection{
					LocalObjectReference: corev1.LocalObjectReference{Name: "kube-root-ca.crt"},
					Items:                []corev1.KeyToPath{{Key: "ca.crt", Path: "ca.crt"}},
				}},
				{DownwardAPI: &corev1.DownwardAPIProjection{Items: []corev1.DownwardAPIVolumeFile{{
					Path:     "namespace",
					FieldRef: &corev1.ObjectFieldSelector{APIVersion: "v1", FieldPath: "metadata.namespace"},
				}}}},
			},
		}},
	}
}

// DefaultResources are the sidecar's requests and limits unless the manager is told others.
func DefaultResources(cpuRequest, memRequest, memLimit string) (corev1.ResourceRequirements, error) {
	r := corev1.ResourceRequirements{Requests: corev1.ResourceList{}, Limits: corev1.ResourceList{}}
	for _, s := range []struct {
		v    string
		list corev1.ResourceList
		name corev1.ResourceName
	}{{cpuRequest, r.Requests, corev1.ResourceCPU}, {memRequest, r.Requests, corev1.ResourceMemory}, {memLimit, r.Limits, corev1.ResourceMemory}} {
		if s.v == "" {
			continue
		}
		q, err := resource.ParseQuantity(s.v)
		if err != nil {
			return r, fmt.Errorf("sidecar %s %q: %w", s.name, s.v, err)
		}
		s.list[s.name] = q
	}
	return r, nil
}

func ptr[T any](v T) *T { return &v }
