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

package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net/http"
	"os"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/utils/clock"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/healthz"
	"sigs.k8s.io/controller-runtime/pkg/webhook"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	"github.com/keyward-dev/keyward/controllers"
	"github.com/keyward-dev/keyward/internal/inject"
	kwwebhook "github.com/keyward-dev/keyward/internal/webhook"
)

// webhookFlags configure the pod-injection webhook and the sidecar it injects.
type webhookFlags struct {
	enabled                     bool
	port                        int
	certDir, certMode           string
	secret, service, configName string
	namespace                   string
	image, pullPolicy           string
	cpuRequest, memRequest      string
	memLimit                    string
}

func (w *webhookFlags) bind(fs *flag.FlagSet) {
	fs.BoolVar(&w.enabled, "enable-webhook", true, "Serve the pod-injection webhook.")
	fs.IntVar(&w.port, "webhook-port", 9443, "Port of the webhook server.")
	fs.StringVar(&w.certDir, "webhook-cert-dir", "/tmp/k8s-webhook-server/serving-certs", "Directory of the webhook's tls.crt and tls.key.")
	fs.StringVar(&w.certMode, "webhook-cert-mode", "self", `"self": the manager issues and rotates the webhook certificate and its CA bundle; "external": cert-manager (or you) provide them.`)
	fs.StringVar(&w.secret, "webhook-secret", "keyward-webhook-cert", "Secret that holds the self-managed webhook CA and certificate.")
	fs.StringVar(&w.service, "webhook-service", "keyward-webhook", "Service in front of the webhook (the certificate's DNS names).")
	fs.StringVar(&w.configName, "webhook-configuration", "keyward-injector", "MutatingWebhookConfiguration whose caBundle the manager keeps current.")
	fs.StringVar(&w.namespace, "namespace", os.Getenv("POD_NAMESPACE"), "The operator's namespace (default $POD_NAMESPACE): never injected; home of the webhook Secret.")
	fs.StringVar(&w.image, "verifier-image", "", "Image of the injected verifier sidecar (required with the webhook).")
	fs.StringVar(&w.pullPolicy, "verifier-image-pull-policy", string(corev1.PullIfNotPresent), "Pull policy of the sidecar image.")
	fs.StringVar(&w.cpuRequest, "sidecar-cpu-request", "10m", "CPU request of the sidecar.")
	fs.StringVar(&w.memRequest, "sidecar-memory-request", "32Mi", "Memory request of the sidecar.")
	fs.StringVar(&w.memLimit, "sidecar-memory-limit", "128Mi", "Memory limit of the sidecar (its GOMEMLIMIT is 90% of it).")
}

func (w *webhookFlags) injectConfig(version string) (inject.Config, error) {
	if !w.enabled {
		return inject.Config{}, nil
	}
	var errs []error
	if w.image == "" {
		errs = append(errs, errors.New("--verifier-image is required when the webhook is enabled"))
	}
	if w.namespace == "" {
		errs = append(errs, errors.New("--namespace (or $POD_NAMESPACE) is required when the webhook is enabled"))
	}
	if w.certMode != "self" && w.certMode != "external" {
		errs = append(errs, fmt.Errorf(`--webhook-cert-mode=%q: want "self" or "external"`, w.certMode))
	}
	pp := corev1.PullPolicy(w.pullPolicy)
	if pp != corev1.PullAlways && pp != corev1.PullIfNotPresent && pp != corev1.PullNever {
		errs = append(errs, fmt.Errorf("--verifier-image-pull-policy=%q: want Always, IfNotPresent or Never", w.pullPolicy))
	}
	res, err := inject.DefaultResources(w.cpuRequest, w.memRequest, w.memLimit)
	if err != nil {
		errs = append(errs, err)
	}
	return inject.Config{Image: w.image, PullPolicy: pp, Resources: res, Version: version}, errors.Join(errs...)
}

// setupWebhook registers the injector and, in self mode, the certificate manager. The
// returned checker is the manager's readiness: ready once the webhook serves.
func setupWebhook(ctx context.Context, mgr ctrl.Manager, w webhookFlags, cfg inject.Config, clk clock.Clock) (healthz.Checker, error) {
	mgr.GetWebhookServer().Register(kwwebhook.Path, &webhook.Admission{Handler: &kwwebhook.PodInjector{
		Client: mgr.GetClient(), APIReader: mgr.GetAPIReader(),
		Decoder: admission.NewDecoder(mgr.GetScheme()), Config: cfg, Namespace: w.namespace,
	}})
	serving := mgr.GetWebhookServer().StartedChecker()
	if w.certMode != "self" {
		return serving, nil
	}
	certs, err := controllers.NewWebhookCertManager(controllers.WebhookCertConfig{
		Namespace: w.namespace, SecretName: w.secret, ServiceName: w.service,
		ConfigName: w.configName, CertDir: w.certDir, Clock: clk, RESTConfig: mgr.GetConfig(),
		Recorder: mgr.GetEventRecorder("keyward-webhook-cert"),
	})
	if err != nil {
		return nil, err
	}
	// The webhook server reads the files when it starts, before any runnable runs.
	if err := certs.Bootstrap(ctx); err != nil && certs.Ready() != nil {
		return nil, fmt.Errorf("writing the webhook certificate: %w", err)
	}
	if err := mgr.Add(certs); err != nil {
		return nil, err
	}
	check := certs.Checker()
	return func(req *http.Request) error {
		if err := check(req); err != nil {
			return err
		}
		return serving(req)
	}, nil
}
