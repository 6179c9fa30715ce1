// Command concord is the Concord MACP runtime and its operator client in one
// binary. `concord serve` runs the server; other subcommands talk to one.
package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
)

// version is set at build time with -ldflags "-X main.version=…".
var version = "dev"

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	os.Exit(run(ctx, os.Args[1:], os.Stdout, os.Stderr))
}

const usage = `concord — a MACP runtime whose modes are WebAssembly modules.

Usage:
  concord serve [flags]   run the server (concord serve -h lists the flags)
  concord mode ...        push, list and remove mode modules (concord mode for help)
  concord policy ...      push, test and list Rego policies (concord policy for help)
  concord session ...     list, show, watch, cancel and export sessions (concord session for help)
  concord replay ...      replay a session's log and report divergences
  concord token ...       make a bearer token and its tokens-file entry
  concord bench ...       load-test a server against the transport ceiling (concord bench -h)
  concord version         print the version

`

// run dispatches a subcommand and returns the process exit code.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	switch args[0] {
	case "serve":
		return serve(ctx, args[1:], stderr)
	case "mode":
		return mode(ctx, args[1:], stdout, stderr)
	case "policy":
		return policyCmd(ctx, args[1:], stdout, stderr)
	case "session":
		return sessionCmd(ctx, args[1:], stdout, stderr)
	case "replay":
		return replay(ctx, args[1:], stdout, stderr)
	case "token":
		return token(args[1:], stdout, stderr)
	case "bench":
		return bench(ctx, args[1:], stdout, stderr)
	case "version":
		fmt.Fprintln(stdout, "concord", version)
		return 0
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
		return 0
	default:
		fmt.Fprintf(stderr, "concord: unknown command %q\n\n%s", args[0], usage)
		return 2
	}
}
