package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"text/tabwriter"
	"time"

	"connectrpc.com/connect"

	adminv1 "github.com/concord-macp/concord/proto/concord/admin/v1"
)

const modeUsage = `Usage:
  concord mode init [flags] NAME         write a new mode module (Go, on abi/guest)
  concord mode test FILE.wasm [FIXTURE...] run a module sandboxed against fixtures
  concord mode push [flags] FILE.wasm   upload a mode module; its mode is usable at once
  concord mode ls [flags]               list the modes serving new sessions and the declared ones
  concord mode rm [flags] MODE          stop a mode from serving new sessions

Flags of push, ls, rm: --server URL (default http://127.0.0.1:50051), --as IDENTITY
`

// mode runs the `concord mode` subcommands.
func mode(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, modeUsage)
		return 2
	}
	switch args[0] {
	case "init":
		return modeInit(args[1:], stdout, stderr)
	case "test":
		return modeTest(ctx, args[1:], stdout, stderr)
	}
	var c clientFlags
	fs := flag.NewFlagSet("concord mode "+args[0], flag.ContinueOnError)
	fs.SetOutput(stderr)
	c.register(fs)
	if err := fs.Parse(args[1:]); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	var err error
	switch {
	case args[0] == "push" && fs.NArg() == 1:
		err = modePush(ctx, &c, fs.Arg(0), stdout)
	case args[0] == "ls" && fs.NArg() == 0:
		err = modeList(ctx, &c, stdout)
	case args[0] == "rm" && fs.NArg() == 1:
		_, err = c.admin().RemoveMode(ctx, connect.NewRequest(&adminv1.RemoveModeRequest{Mode: fs.Arg(0)}))
		if err == nil {
			fmt.Fprintf(stdout, "%s no longer serves new sessions; open sessions keep their module\n", fs.Arg(0))
		}
	default:
		fmt.Fprint(stderr, modeUsage)
		return 2
	}
	if err != nil {
		fmt.Fprintln(stderr, "concord mode "+args[0]+":", err)
		return 1
	}
	return 0
}

func modePush(ctx context.Context, c *clientFlags, file string, stdout io.Writer) error {
	wasm, err := os.ReadFile(file)
	if err != nil {
		return err
	}
	began := time.Now()
	res, err := c.admin().UploadMode(ctx, connect.NewRequest(&adminv1.UploadModeRequest{Wasm: wasm}))
	if err != nil {
		return err
	}
	// The server validates, compiles and registers the module before it
	// answers: from then on new sessions can name the mode.
	usable := time.Since(began)
	m := res.Msg.GetModule()
	fmt.Fprintf(stdout, "uploaded %s %s (module %s, %d bytes), usable after %s\n",
		m.GetMode(), m.GetModeDescriptor().GetModeVersion(), m.GetDigest(), len(wasm), usable.Round(time.Millisecond))
	return nil
}

func modeList(ctx context.Context, c *clientFlags, stdout io.Writer) error {
	res, err := c.admin().ListModules(ctx, connect.NewRequest(&adminv1.ListModulesRequest{}))
	if err != nil {
		return err
	}
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "MODE\tVERSION\tKIND\tMODULE")
	for _, m := range res.Msg.GetModules() {
		kind, module := "uploaded", m.GetDigest()
		switch {
		case m.GetDeclared():
			kind, module = "declared, no module", "-"
		case m.GetBuiltin():
			kind = "built-in"
		case m.GetStandardsTrack():
			kind = "promoted"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", m.GetMode(), m.GetModeDescriptor().GetModeVersion(), kind, module[:min(12, len(module))])
	}
	return tw.Flush()
}
