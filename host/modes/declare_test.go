package modes

import (
	"context"
	"io"
	"log/slog"
	"strings"
	"testing"

	"github.com/concord-macp/concord/host/mode"
	"github.com/concord-macp/concord/host/store"
	"github.com/concord-macp/concord/macperr"
	macpv1 "github.com/concord-macp/concord/proto/macp/v1"
)

func counterDescriptor() *macpv1.ModeDescriptor {
	return &macpv1.ModeDescriptor{
		Mode: "ext.test.counter.v1", ModeVersion: "1.0.0", Title: "test counter",
		MessageTypes:         []string{"Tick", "Commitment"},
		TerminalMessageTypes: []string{"Commitment"},
	}
}

func TestDisagreements(t *testing.T) {
	module := counterDescriptor()
	module.Description = "counts ticks"
	module.SchemaUris = map[string]string{"proto": "https://example.com/counter.proto"}
	for _, tc := range []struct {
		name     string
		declared func(d *macpv1.ModeDescriptor)
		want     []string // substrings, one per disagreement; none = agrees
	}{
		{name: "identical", declared: func(d *macpv1.ModeDescriptor) { d.Description, d.SchemaUris = module.Description, module.SchemaUris }},
		{name: "fields left empty claim nothing", declared: func(d *macpv1.ModeDescriptor) { d.Title, d.TerminalMessageTypes = "", nil }},
		{name: "message types in another order, SessionStart listed", declared: func(d *macpv1.ModeDescriptor) {
			d.MessageTypes = []string{"SessionStart", "Commitment", "Tick"}
		}},
		{name: "version", declared: func(d *macpv1.ModeDescriptor) { d.ModeVersion = "2.0.0" },
			want: []string{`mode_version is "2.0.0" in the declaration, "1.0.0" in the module`}},
		{name: "a message type the module lacks", declared: func(d *macpv1.ModeDescriptor) { d.MessageTypes = append(d.MessageTypes, "Tock") },
			want: []string{"message_types are [Commitment Tick Tock] in the declaration, [Commitment Tick] in the module"}},
		{name: "fewer message types", declared: func(d *macpv1.ModeDescriptor) { d.MessageTypes = []string{"Commitment"} },
			want: []string{"message_types"}},
		{name: "terminal types", declared: func(d *macpv1.ModeDescriptor) { d.TerminalMessageTypes = []string{"Tick"} },
			want: []string{"terminal_message_types"}},
		{name: "title and participant model", declared: func(d *macpv1.ModeDescriptor) { d.Title, d.ParticipantModel = "other", "peer" },
			want: []string{`title is "other"`, `participant_model is "peer" in the declaration, "" in the module`}},
		{name: "schema uris", declared: func(d *macpv1.ModeDescriptor) { d.SchemaUris = map[string]string{"proto": "https://example.com/x"} },
			want: []string{"schema_uris"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := counterDescriptor()
			tc.declared(d)
			got := disagreements(d, module)
			if len(got) != len(tc.want) {
				t.Fatalf("disagreements = %q, want %d matching %q", got, len(tc.want), tc.want)
			}
			for i, w := range tc.want {
				if !strings.Contains(got[i], w) {
					t.Errorf("disagreement %d = %q, want it to say %q", i, got[i], w)
				}
			}
		})
	}
}

// refuseLoads is the loader of a registry whose store holds no module: the
// declarations under test never load code.
func refuseLoads(t *testing.T) Loader {
	return LoaderFunc(func(context.Context, []byte) (mode.Module, error) {
		t.Fatal("a declaration loaded a module")
		return nil, nil
	})
}

// TestDeclarationLifecycle declares a mode on a real store, reads it back
// through every view of the registry, restarts on the same directory, and
// withdraws it.
func TestDeclarationLifecycle(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	open := func() (*Registry, *store.Store) {
		st, err := store.Open(ctx, store.Options{Dir: dir, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
		if err != nil {
			t.Fatal(err)
		}
		r := New()
		if err := r.EnableUploads(ctx, Uploads{Store: st, Loader: refuseLoads(t)}); err != nil {
			t.Fatal(err)
		}
		return r, st
	}
	r, st := open()
	changes := r.Changes()
	d := counterDescriptor()
	if err := r.Register(ctx, d); err != nil {
		t.Fatalf("declare: %v", err)
	}
	select {
	case <-changes.C:
	default:
		t.Fatal("the declaration was not announced")
	}
	if err := r.Register(ctx, counterDescriptor()); err != nil {
		t.Fatalf("declaring the same descriptor again: %v", err)
	}
	other := counterDescriptor()
	other.ModeVersion = "1.1.0"
	if err := r.Register(ctx, other); err == nil || !strings.Contains(err.Error(), "already declared") || !strings.Contains(err.Error(), "mode_version") {
		t.Fatalf("declaring another descriptor under the same name: %v", err)
	}
	check := func(when string) {
		t.Helper()
		_, _, err := r.Lookup(d.GetMode())
		if macperr.CodeOf(err) != macperr.ModeNotSupported || !strings.Contains(err.Error(), "no module implements it") ||
			!strings.Contains(err.Error(), "ext.test.counter.v1 1.0.0") {
			t.Fatalf("%s: Lookup = %v, want MODE_NOT_SUPPORTED naming the missing module", when, err)
		}
		if ext := r.Extensions(); len(ext) != 1 || ext[0].GetMode() != d.GetMode() || ext[0].GetTitle() != "test counter" {
			t.Fatalf("%s: Extensions = %v", when, ext)
		}
		if list := r.List(); len(list) != 1 || !list[0].Declared || list[0].Mode != nil || list[0].Descriptor.GetModeVersion() != "1.0.0" {
			t.Fatalf("%s: List = %+v", when, list)
		}
		if names := r.Names(); len(names) != 0 {
			t.Fatalf("%s: Names = %v; a declared mode cannot start sessions", when, names)
		}
		if _, err := r.Promote(ctx, d.GetMode(), ""); err == nil || !strings.Contains(err.Error(), "no module implements it") {
			t.Fatalf("%s: promoting a declaration: %v", when, err)
		}
	}
	check("declared")
	changes.Close()
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}

	r, st = open()
	defer st.Close()
	check("after a restart")
	if err := r.Unregister(ctx, d.GetMode()); err != nil {
		t.Fatalf("withdraw: %v", err)
	}
	if _, _, err := r.Lookup(d.GetMode()); err == nil || strings.Contains(err.Error(), "declared") {
		t.Fatalf("Lookup after withdrawal = %v", err)
	}
	if len(r.Extensions()) != 0 || len(r.List()) != 0 {
		t.Fatalf("withdrawn declaration still listed: %v", r.List())
	}
	n := 0
	if err := st.Each(ctx, store.ModeDeclarations, func(string, []byte) error { n++; return nil }); err != nil || n != 0 {
		t.Fatalf("declaration records after withdrawal: %d (%v)", n, err)
	}
}

func TestDeclarationRefusals(t *testing.T) {
	ctx := context.Background()
	if err := New().Register(ctx, counterDescriptor()); err == nil {
		t.Fatal("a registry without uploads accepted a declaration")
	}
	st, err := store.Open(ctx, store.Options{InMemory: true, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	r := New()
	if err := r.EnableUploads(ctx, Uploads{Store: st, Loader: refuseLoads(t)}); err != nil {
		t.Fatal(err)
	}
	for name, d := range map[string]*macpv1.ModeDescriptor{
		"nil":                     nil,
		"reserved namespace":      {Mode: "macp.mode.counter.v1", ModeVersion: "1.0.0", MessageTypes: []string{"Tick"}},
		"no version":              {Mode: "ext.a.v1", MessageTypes: []string{"Tick"}},
		"no message types":        {Mode: "ext.a.v1", ModeVersion: "1.0.0"},
		"terminal not a type":     {Mode: "ext.a.v1", ModeVersion: "1.0.0", MessageTypes: []string{"Tick"}, TerminalMessageTypes: []string{"Commitment"}},
		"runtime-only type":       {Mode: "ext.a.v1", ModeVersion: "1.0.0", MessageTypes: []string{"SessionCancel"}},
		"name without a version":  {Mode: "ext.a", ModeVersion: "1.0.0", MessageTypes: []string{"Tick"}},
		"message type not Pascal": {Mode: "ext.a.v1", ModeVersion: "1.0.0", MessageTypes: []string{"tick"}},
	} {
		if err := r.Register(ctx, d); err == nil {
			t.Errorf("%s: declared", name)
		}
	}
	if len(r.List()) != 0 {
		t.Fatalf("a refused declaration is listed: %v", r.List())
	}
}
