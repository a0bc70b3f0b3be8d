package main

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"k8s.io/utils/clock"

	"github.com/keyward-dev/keyward/internal/binding"
	"github.com/keyward-dev/keyward/internal/bundle"
	"github.com/keyward-dev/keyward/internal/jwks"
	"github.com/keyward-dev/keyward/internal/policy"
	"github.com/keyward-dev/keyward/internal/sidecar"
	"github.com/keyward-dev/keyward/internal/verify"
)

// Exit codes of verifier check.
const (
	exitAccepted = 0
	exitRejected = 1
	exitUsage    = 2
)

// maxStdinToken bounds what check reads from stdin.
const maxStdinToken = 64 << 10

type listFlag []string

func (l *listFlag) String() string     { return strings.Join(*l, ",") }
func (l *listFlag) Set(v string) error { *l = append(*l, v); return nil }

const checkUsage = `Usage:
  verifier check --jwks FILE [--issuer ISS --audience AUD ...] [--typ TYP] [--leeway DUR] [--signature-only] < token
  verifier check --bundle DIR|FILE [--dpop PROOF --method M --url U] < token

Reads one token from stdin (one trailing newline is ignored). Exit status: 0 accepted
(the verified claims are printed as JSON), 1 rejected (the reason is printed on stderr),
2 usage or input error.

`

// runCheck is `verifier check`.
func runCheck(args []string, stdin io.Reader, stdout, stderr io.Writer, clk clock.PassiveClock) int {
	fs := flag.NewFlagSet("verifier check", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprint(stderr, checkUsage); fs.PrintDefaults() }
	var (
		jwksFile, bundlePath, issuer, typ, proof, method, rawURL string
		audiences                                                listFlag
		leeway                                                   time.Duration
		sigOnly                                                  bool
	)
	fs.StringVar(&jwksFile, "jwks", "", "JWK Set file (public keys) to verify with.")
	fs.StringVar(&bundlePath, "bundle", "", "Bundle directory (holding bundle.json) or file: verify as the sidecar would.")
	fs.StringVar(&issuer, "issuer", "", "With --jwks: required iss.")
	fs.Var(&audiences, "audience", "With --jwks: accepted aud (repeatable).")
	fs.StringVar(&typ, "typ", "at+jwt", `With --jwks: required typ ("at+jwt" or "JWT").`)
	fs.DurationVar(&leeway, "leeway", 0, "With --jwks: clock-skew leeway on exp, nbf and iat.")
	fs.BoolVar(&sigOnly, "signature-only", false, "With --jwks: check the JWS layer only (header rules and signature), no claims.")
	fs.StringVar(&proof, "dpop", "", "With --bundle: DPoP proof; the token is presented with the DPoP scheme.")
	fs.StringVar(&method, "method", "GET", "With --bundle: request method (DPoP htm, route rules).")
	fs.StringVar(&rawURL, "url", "", "With --bundle: absolute request URL (DPoP htu, route rules). Without it no route rule applies.")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return exitAccepted
		}
		return exitUsage
	}
	usage := func(format string, a ...any) int {
		fmt.Fprintf(stderr, "verifier check: "+format+"\n", a...)
		return exitUsage
	}
	if fs.NArg() > 0 {
		return usage("unexpected arguments %v", fs.Args())
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	if (jwksFile == "") == (bundlePath == "") {
		return usage("exactly one of --jwks and --bundle is required")
	}
	if jwksFile != "" {
		for _, n := range []string{"dpop", "method", "url"} {
			if set[n] {
				return usage("--%s goes with --bundle", n)
			}
		}
		if !sigOnly && (issuer == "" || len(audiences) == 0) {
			return usage("--issuer and --audience are required unless --signature-only")
		}
	} else {
		for _, n := range []string{"issuer", "audience", "typ", "leeway", "signature-only"} {
			if set[n] {
				return usage("--%s goes with --jwks (the bundle's policy decides)", n)
			}
		}
		if proof != "" && rawURL == "" {
			return usage("--dpop needs --url (and --method, default GET)")
		}
	}
	token, err := readToken(stdin)
	if err != nil {
		return usage("%v", err)
	}
	if jwksFile != "" {
		return checkJWKS(token, jwksFile, verify.Options{
			Issuer: issuer, Audiences: audiences, Type: typ, Leeway: leeway,
		}, sigOnly, stdout, stderr, clk)
	}
	return checkBundle(token, bundlePath, proof, method, rawURL, stdout, stderr, clk)
}

func readToken(r io.Reader) (string, error) {
	b, err := io.ReadAll(io.LimitReader(r, maxStdinToken+1))
	if err != nil {
		return "", fmt.Errorf("reading the token from stdin: %w", err)
	}
	if len(b) > maxStdinToken {
		return "", errors.New("stdin holds more than 64 KiB")
	}
	b = bytes.TrimSuffix(b, []byte("\n"))
	b = bytes.TrimSuffix(b, []byte("\r"))
	if len(b) == 0 {
		return "", errors.New("no token on stdin")
	}
	return string(b), nil
}

func checkJWKS(token, file string, opts verify.Options, sigOnly bool, stdout, stderr io.Writer, clk clock.PassiveClock) int {
	data, err := os.ReadFile(file)
	if err != nil {
		fmt.Fprintln(stderr, "verifier check:", err)
		return exitUsage
	}
	keys, err := jwks.ParseSet(data, false)
	if err != nil {
		fmt.Fprintln(stderr, "verifier check: --jwks:", err)
		return exitUsage
	}
	ks, err := verify.NewKeySet(keys)
	if err != nil {
		fmt.Fprintln(stderr, "verifier check: --jwks:", err)
		return exitUsage
	}
	if sigOnly {
		_, payload, err := verify.VerifyJWS(token, ks, nil)
		if err != nil {
			return rejected(stderr, err)
		}
		return printJSON(stdout, stderr, payload)
	}
	if _, err := verify.New(ks, opts, nil, clk).Verify(token); err != nil {
		return rejected(stderr, err)
	}
	return printPayload(token, stdout, stderr)
}

func checkBundle(token, path, proof, method, rawURL string, stdout, stderr io.Writer, clk clock.PassiveClock) int {
	if fi, err := os.Stat(path); err == nil && fi.IsDir() {
		path = filepath.Join(path, bundle.DataKey)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		fmt.Fprintln(stderr, "verifier check:", err)
		return exitUsage
	}
	b, err := bundle.Decode(data)
	if err != nil {
		fmt.Fprintln(stderr, "verifier check: --bundle:", err)
		return exitUsage
	}
	st, err := sidecar.Compile(b, 0, clk)
	if err != nil {
		fmt.Fprintln(stderr, "verifier check: --bundle:", err)
		return exitUsage
	}
	auth := &sidecar.Authenticator{
		DPoP:       binding.NewDPoPChecker(binding.DPoPOptions{Algorithms: sidecar.DefaultDPoPAlgorithms}, clk),
		SkipRoutes: rawURL == "",
	}
	target := "http://check.invalid/"
	if rawURL != "" {
		u, err := url.Parse(rawURL)
		if err != nil || u.Scheme == "" || u.Host == "" {
			fmt.Fprintf(stderr, "verifier check: --url %q is not an absolute URL\n", rawURL)
			return exitUsage
		}
		auth.PublicURL = &url.URL{Scheme: u.Scheme, Host: u.Host}
		target = rawURL
	}
	req, err := http.NewRequest(method, target, nil)
	if err != nil {
		fmt.Fprintln(stderr, "verifier check:", err)
		return exitUsage
	}
	switch {
	case proof != "":
		req.Header.Set("Authorization", "DPoP "+token)
		req.Header.Set("DPoP", proof)
	case st.Policy.AuthorizationHeader:
		req.Header.Set("Authorization", "Bearer "+token)
	default:
		req.AddCookie(&http.Cookie{Name: st.Policy.Cookies[0], Value: token})
	}
	d := auth.Authenticate(st, req)
	switch {
	case d.Anonymous:
		fmt.Fprintf(stderr, "note: %s %s is an anonymous route; the sidecar would not check the token there\n", method, req.URL.Path)
		if _, err := st.Verifier.Verify(token); err != nil {
			return rejected(stderr, err)
		}
	case d.Status != 0:
		msg := fmt.Sprintf("rejected: %s (HTTP %d)", d.Reason, d.Status)
		if d.Detail != "" {
			msg += ": " + d.Detail
		}
		if st.Policy.BindingMode == policy.BindingMTLS && d.Reason == "mtls" {
			msg += " (the token is bound to a client certificate, which check cannot present)"
		}
		fmt.Fprintln(stderr, msg)
		return exitRejected
	}
	fmt.Fprintf(stderr, "accepted by bundle generation %d (%s/%s)\n", st.Generation, st.Policy.Source.Namespace, st.Policy.Source.Name)
	return printPayload(token, stdout, stderr)
}

func rejected(stderr io.Writer, err error) int {
	var ve *verify.Error
	if errors.As(err, &ve) {
		msg := "rejected: " + ve.Reason
		if ve.Detail != "" {
			msg += ": " + ve.Detail
		}
		fmt.Fprintln(stderr, msg)
	} else {
		fmt.Fprintln(stderr, "rejected:", err)
	}
	return exitRejected
}

// printPayload prints the claims of a verified token: its payload, indented.
func printPayload(token string, stdout, stderr io.Writer) int {
	parts := strings.Split(token, ".")
	if len(parts) != 3 {
		fmt.Fprintln(stderr, "verifier check: verified token is not a compact JWS")
		return exitRejected
	}
	payload, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		fmt.Fprintln(stderr, "verifier check: decoding the payload:", err)
		return exitRejected
	}
	return printJSON(stdout, stderr, payload)
}

func printJSON(stdout, stderr io.Writer, payload []byte) int {
	var out bytes.Buffer
	if err := json.Indent(&out, payload, "", "  "); err != nil {
		fmt.Fprintln(stderr, "verifier check: payload is not JSON:", err)
		return exitRejected
	}
	out.WriteByte('\n')
	_, _ = stdout.Write(out.Bytes())
	return exitAccepted
}
