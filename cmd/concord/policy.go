package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"

	"connectrpc.com/connect"

	"github.com/concord-macp/concord/policy"
	adminv1 "github.com/concord-macp/concord/proto/concord/admin/v1"
	macpv1 "github.com/concord-macp/concord/proto/macp/v1"
	"github.com/concord-macp/concord/proto/macp/v1/macpv1connect"
)

const policyUsage = `Usage:
  concord policy push [flags] FILE.rego   upload a Rego policy; its descriptor is FILE.json beside it
  concord policy test DIR                 compile every DIR/*.rego and run its tests, as an upload would
  concord policy ls [flags]               list the registered policies

A descriptor file holds {"policy_id", "mode", "description", "schema_version",
"rules"}, rules being a JSON object of parameters the Rego reads.
Flags: --server URL (default http://127.0.0.1:50051), --as IDENTITY
`

// policyCmd runs the `concord policy` subcommands.
func policyCmd(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, policyUsage)
		return 2
	}
	var c clientFlags
	fs := flag.NewFlagSet("concord policy "+args[0], flag.ContinueOnError)
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
		err = policyPush(ctx, &c, fs.Arg(0), stdout)
	case args[0] == "test" && fs.NArg() == 1:
		err = policyTest(ctx, fs.Arg(0), stdout)
	case args[0] == "ls" && fs.NArg() == 0:
		err = policyList(ctx, &c, stdout)
	default:
		fmt.Fprint(stderr, policyUsage)
		return 2
	}
	if err != nil {
		fmt.Fprintln(stderr, "concord policy "+args[0]+":", err)
		return 1
	}
	return 0
}

// readPolicy reads FILE.rego and the descriptor FILE.json beside it.
func readPolicy(file string) (*macpv1.PolicyDescriptor, []byte, error) {
	src, err := os.ReadFile(file)
	if err != nil {
		return nil, nil, err
	}
	descFile := strings.TrimSuffix(file, filepath.Ext(file)) + ".json"
	raw, err := os.ReadFile(descFile)
	if err != nil {
		return nil, nil, fmt.Errorf("descriptor: %w", err)
	}
	var d struct {
		PolicyID      string          `json:"policy_id"`
		Mode          string          `json:"mode"`
		Description   string          `json:"description"`
		SchemaVersion uint32          `json:"schema_version"`
		Rules         json.RawMessage `json:"rules"`
	}
	dec := json.NewDecoder(strings.NewReader(string(raw)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&d); err != nil {
		return nil, nil, fmt.Errorf("descriptor %s: %w", descFile, err)
	}
	rules := string(d.Rules)
	var asString string
	if json.Unmarshal(d.Rules, &asString) == nil {
		rules = asString
	}
	if rules == "" {
		rules = "{}"
	}
	return &macpv1.PolicyDescriptor{PolicyId: d.PolicyID, Mode: d.Mode, Description: d.Description,
		SchemaVersion: d.SchemaVersion, Rules: rules}, src, nil
}

func policyPush(ctx context.Context, c *clientFlags, file string, stdout io.Writer) error {
	d, src, err := readPolicy(file)
	if err != nil {
		return err
	}
	res, err := c.admin().PushPolicy(ctx, connect.NewRequest(&adminv1.PushPolicyRequest{PolicyDescriptor: d, Rego: string(src)}))
	if err != nil {
		return err
	}
	got := res.Msg.GetPolicyDescriptor()
	fmt.Fprintf(stdout, "registered %s for %s (source %s)\n", got.GetPolicyId(), got.GetMode(), policy.SourceDigest(src))
	return nil
}

// policyTest runs the admission of every policy in dir against a private
// engine: parse, compile against the input contract, shipped tests.
func policyTest(ctx context.Context, dir string, stdout io.Writer) error {
	files, err := filepath.Glob(filepath.Join(dir, "*.rego"))
	if err != nil {
		return err
	}
	if len(files) == 0 {
		return fmt.Errorf("no .rego files in %s", dir)
	}
	failed := 0
	for _, f := range files {
		if strings.HasSuffix(f, "_test.rego") {
			continue
		}
		d, src, err := readPolicy(f)
		if err == nil {
			var reg *policy.Registry
			reg, err = policy.NewRegistry(ctx, policy.RegistryOptions{})
			if err == nil {
				var eng *policy.Engine
				if eng, err = policy.NewEngine(ctx, policy.EngineOptions{Registry: reg, Sources: policy.NewMemorySourceStore()}); err == nil {
					_, err = eng.RegisterCustom(ctx, d, src)
				}
			}
		}
		if err != nil {
			failed++
			fmt.Fprintf(stdout, "FAIL %s: %v\n", f, err)
			continue
		}
		fmt.Fprintf(stdout, "ok   %s (%s)\n", f, d.GetPolicyId())
	}
	if failed > 0 {
		return fmt.Errorf("%d of %d policies failed", failed, len(files))
	}
	return nil
}

func policyList(ctx context.Context, c *clientFlags, stdout io.Writer) error {
	client := macpv1connect.NewMACPRuntimeServiceClient(c.httpClient(), c.server, c.options()...)
	res, err := client.ListPolicies(ctx, connect.NewRequest(&macpv1.ListPoliciesRequest{}))
	if err != nil {
		return err
	}
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "POLICY\tMODE\tSCHEMA\tDESCRIPTION")
	for _, d := range res.Msg.GetDescriptors() {
		fmt.Fprintf(tw, "%s\t%s\tv%d\t%s\n", d.GetPolicyId(), d.GetMode(), d.GetSchemaVersion(), d.GetDescription())
	}
	return tw.Flush()
}
