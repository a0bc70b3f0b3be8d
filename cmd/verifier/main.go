// Command verifier is Keyward's sidecar: a reverse proxy that authenticates and
// authorizes every request against the verifier bundle of one TokenPolicy before it
// reaches the application (`verifier serve`), and an offline token checker
// (`verifier check`).
package main

import (
	"fmt"
	"io"
	"os"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
}

const usage = `Usage:
  verifier serve [flags]   run the verifying reverse proxy (see verifier serve -h)
  verifier check [flags]   verify one token read from stdin (see verifier check -h)
`

// run dispatches to a subcommand and returns the exit code.
func run(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	switch args[0] {
	case "serve":
		return runServe(args[1:], stdout, stderr)
	case "check":
		return runCheck(args[1:], stdin, stdout, stderr, wallClock)
	case "-h", "-help", "--help", "help":
		fmt.Fprint(stdout, usage)
		return 0
	default:
		fmt.Fprintf(stderr, "unknown command %q\n%s", args[0], usage)
		return 2
	}
}
