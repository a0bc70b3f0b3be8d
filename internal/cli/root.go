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

// Package cli is kubectl-keyward, the kubectl plugin of Keyward: status, rotate, revoke,
// inspect and mint. Commands write through the IOStreams of Options and read the time
// from its Clock, so tests run them in process against a real API server.
package cli

import (
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/spf13/cobra"
	"golang.org/x/term"
	"k8s.io/apimachinery/pkg/runtime"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	"k8s.io/cli-runtime/pkg/genericclioptions"
	"k8s.io/cli-runtime/pkg/genericiooptions"
	"k8s.io/client-go/kubernetes"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/utils/clock"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/keyward-dev/keyward/api/v1alpha1"
)

// Options is what the commands use besides the cluster.
type Options struct {
	genericiooptions.IOStreams
	// Clock is the time of minted tokens, inspect verdicts, revocation cut-offs and the
	// relative times of status. Default: the real clock.
	Clock clock.PassiveClock
	// IsTerminal reports whether r is an interactive terminal. Emergency actions prompt
	// for confirmation only on a terminal, and refuse without one unless --yes is given.
	// Default: a terminal check of an *os.File.
	IsTerminal func(r io.Reader) bool
	// Version is what `kubectl keyward version` prints.
	Version string
}

// ExitError ends the program with Code; the command has already said why.
type ExitError struct{ Code int }

func (e *ExitError) Error() string { return fmt.Sprintf("exit status %d", e.Code) }

// ExitCode maps the result of Execute to a process exit status, printing the error
// (kubectl style) unless it is an *ExitError.
func ExitCode(err error, stderr io.Writer) int {
	if err == nil {
		return 0
	}
	var ee *ExitError
	if errors.As(err, &ee) {
		return ee.Code
	}
	fmt.Fprintln(stderr, "error:", err)
	return 1
}

var scheme = runtime.NewScheme()

func init() {
	utilruntime.Must(clientgoscheme.AddToScheme(scheme))
	utilruntime.Must(v1alpha1.AddToScheme(scheme))
}

// app is the state shared by the commands of one invocation.
type app struct {
	Options
	flags *genericclioptions.ConfigFlags

	c  client.Client
	cs kubernetes.Interface
}

// NewCommand returns the root command, `kubectl keyward`.
func NewCommand(o Options) *cobra.Command {
	if o.Clock == nil {
		o.Clock = clock.RealClock{}
	}
	if o.IsTerminal == nil {
		o.IsTerminal = isTerminal
	}
	if o.In == nil {
		o.In = os.Stdin
	}
	if o.Out == nil {
		o.Out = os.Stdout
	}
	if o.ErrOut == nil {
		o.ErrOut = os.Stderr
	}
	a := &app{Options: o, flags: genericclioptions.NewConfigFlags(true)}
	root := &cobra.Command{
		Use:   "kubectl-keyward",
		Short: "Operate Keyward: signing keys, token policies, revocations and tokens",
		Long: `kubectl keyward is the command line of Keyward, the JWT signing-key operator.

It shows what is in force (status), rotates signing keys (rotate), revokes tokens,
subjects, sessions, keys and clients and waits until every verifier bundle holds the
revocation (revoke), explains why a token is accepted or rejected exactly as the verifier
sidecar decides (inspect), and mints tokens for development and tests (mint).

Install it as a kubectl plugin: put the kubectl-keyward binary on your PATH, then run
"kubectl keyward". Incident runbooks: docs/runbooks/ in the Keyward repository.`,
		Example: `  kubectl keyward status -n shop
  kubectl keyward revoke token 0b6f8f7e-3c1a --policy web --reason "INC-42" --wait
  kubectl keyward inspect --policy web - < token.txt
  kubectl keyward rotate web-keys --emergency`,
		Annotations:       map[string]string{cobra.CommandDisplayNameAnnotation: "kubectl keyward"},
		SilenceUsage:      true,
		SilenceErrors:     true,
		CompletionOptions: cobra.CompletionOptions{HiddenDefaultCmd: false},
	}
	root.SetIn(o.In)
	root.SetOut(o.Out)
	root.SetErr(o.ErrOut)
	a.flags.AddFlags(root.PersistentFlags())
	a.registerFlagCompletions(root)
	root.AddCommand(
		newStatusCommand(a),
		newRotateCommand(a),
		newRevokeCommand(a),
		newInspectCommand(a),
		newMintCommand(a),
		newVersionCommand(a),
	)
	return root
}

// client is the controller-runtime client of the invocation, built on first use.
func (a *app) client() (client.Client, error) {
	if a.c != nil {
		return a.c, nil
	}
	cfg, err := a.flags.ToRESTConfig()
	if err != nil {
		return nil, err
	}
	c, err := client.New(cfg, client.Options{Scheme: scheme})
	if err != nil {
		return nil, fmt.Errorf("connecting to the API server: %w", err)
	}
	a.c = c
	return c, nil
}

// clientset is the client-go clientset, for watches with client-go's retrying helpers.
func (a *app) clientset() (kubernetes.Interface, error) {
	if a.cs != nil {
		return a.cs, nil
	}
	cfg, err := a.flags.ToRESTConfig()
	if err != nil {
		return nil, err
	}
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, err
	}
	a.cs = cs
	return cs, nil
}

// namespace is the namespace of -n, or of the kubeconfig context.
func (a *app) namespace() (string, error) {
	ns, _, err := a.flags.ToRawKubeConfigLoader().Namespace()
	if err != nil {
		return "", fmt.Errorf("finding the namespace: %w", err)
	}
	return ns, nil
}

func isTerminal(r io.Reader) bool {
	f, ok := r.(*os.File)
	return ok && term.IsTerminal(int(f.Fd()))
}

func newVersionCommand(a *app) *cobra.Command {
	return &cobra.Command{
		Use:     "version",
		Short:   "Print the version of kubectl-keyward",
		Example: `  kubectl keyward version`,
		Args:    cobra.NoArgs,
		RunE: func(*cobra.Command, []string) error {
			fmt.Fprintln(a.Out, "kubectl-keyward", a.Version)
			return nil
		},
	}
}
