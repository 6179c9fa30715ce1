package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	"github.com/concord-macp/concord/host/kernel"
	adminv1 "github.com/concord-macp/concord/proto/concord/admin/v1"
	macpv1 "github.com/concord-macp/concord/proto/macp/v1"
)

const sessionUsage = `Usage:
  concord session ls [flags]            list sessions (--state, --mode, --participant filter)
  concord session show [flags] ID       metadata, participants, timeline, commitment, governance
  concord session watch [flags] [ID]    follow one session's log, or every session's lifecycle
  concord session cancel [flags] ID     cancel an open or suspended session (--reason)
  concord session export [flags] ID     print the session's log as JSON for concord replay --file (-o FILE)

Flags: --server URL (default http://127.0.0.1:50051), --as IDENTITY, --json (for scripts)
`

// sessionFlags are the flags of every `concord session` subcommand.
type sessionFlags struct {
	client                                    clientFlags
	json                                      bool
	states, mode, participant, reason, output string
}

// sessionCmd runs the `concord session` subcommands.
func sessionCmd(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, sessionUsage)
		return 2
	}
	var f sessionFlags
	fs := flag.NewFlagSet("concord session "+args[0], flag.ContinueOnError)
	fs.SetOutput(stderr)
	f.client.register(fs)
	fs.BoolVar(&f.json, "json", false, "print JSON instead of text")
	fs.StringVar(&f.states, "state", "", "ls, watch: comma-separated states (open, suspended, resolved, expired, cancelled)")
	fs.StringVar(&f.mode, "mode", "", "ls, watch: only sessions of this mode")
	fs.StringVar(&f.participant, "participant", "", "ls, watch: only sessions this identity started or takes part in")
	fs.StringVar(&f.reason, "reason", "cancelled by an operator", "cancel: the reason recorded")
	fs.StringVar(&f.output, "o", "", "export: write to this file instead of standard output")
	fs.Usage = func() {
		fmt.Fprint(stderr, sessionUsage)
		fs.PrintDefaults()
	}
	pos, err := parseInterspersed(fs, args[1:])
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	states, err := parseStates(f.states)
	if err != nil {
		fmt.Fprintln(stderr, "concord session:", err)
		return 2
	}
	filter := kernel.SessionFilter{States: states, Mode: f.mode, Participant: f.participant}
	switch {
	case args[0] == "ls" && len(pos) == 0:
		err = sessionList(ctx, &f, filter, stdout)
	case args[0] == "show" && len(pos) == 1:
		err = sessionShow(ctx, &f, pos[0], stdout)
	case args[0] == "watch" && len(pos) == 1:
		err = sessionWatchOne(ctx, &f, pos[0], stdout)
	case args[0] == "watch" && len(pos) == 0:
		err = sessionWatchAll(ctx, &f, filter, stdout)
	case args[0] == "cancel" && len(pos) == 1:
		err = sessionCancel(ctx, &f, pos[0], stdout)
	case args[0] == "export" && len(pos) == 1:
		err = sessionExport(ctx, &f, pos[0], stdout)
	default:
		fmt.Fprint(stderr, sessionUsage)
		return 2
	}
	if err != nil {
		fmt.Fprintln(stderr, "concord session "+args[0]+":", err)
		return 1
	}
	return 0
}

// parseInterspersed parses flags that may come before or after the
// positional arguments, which it returns.
func parseInterspersed(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		if fs.NArg() == 0 {
			return pos, nil
		}
		pos = append(pos, fs.Arg(0))
		args = fs.Args()[1:]
	}
}

// parseStates reads "open,resolved" (or SESSION_STATE_OPEN, any case).
func parseStates(list string) ([]macpv1.SessionState, error) {
	var out []macpv1.SessionState
	for _, s := range strings.Split(list, ",") {
		s = strings.TrimSpace(s)
		if s == "" {
			continue
		}
		name := "SESSION_STATE_" + strings.TrimPrefix(strings.ToUpper(s), "SESSION_STATE_")
		v, ok := macpv1.SessionState_value[name]
		if !ok || v == 0 {
			return nil, fmt.Errorf("unknown state %q (open, suspended, resolved, expired, cancelled)", s)
		}
		out = append(out, macpv1.SessionState(v))
	}
	return out, nil
}

// stateWord is "open" for SESSION_STATE_OPEN.
func stateWord(st macpv1.SessionState) string {
	return strings.ToLower(strings.TrimPrefix(st.String(), "SESSION_STATE_"))
}

var jsonOut = protojson.MarshalOptions{UseProtoNames: true}

// printJSON prints v, a proto message or any JSON value, indented.
func printJSON(w io.Writer, v any) error {
	var b []byte
	var err error
	if m, ok := v.(proto.Message); ok {
		b, err = jsonOut.Marshal(m)
	} else {
		b, err = json.Marshal(v)
	}
	if err != nil {
		return err
	}
	var indented bytes.Buffer
	if err := json.Indent(&indented, b, "", "  "); err != nil {
		return err
	}
	_, err = fmt.Fprintln(w, indented.String())
	return err
}

// messages turns proto messages into raw JSON values for printJSON.
func messages[M proto.Message](ms []M) ([]json.RawMessage, error) {
	out := make([]json.RawMessage, 0, len(ms))
	for _, m := range ms {
		b, err := jsonOut.Marshal(m)
		if err != nil {
			return nil, err
		}
		out = append(out, b)
	}
	return out, nil
}

func sessionList(ctx context.Context, f *sessionFlags, filter kernel.SessionFilter, stdout io.Writer) error {
	var all []*macpv1.SessionMetadata
	token := ""
	for {
		res, err := f.client.admin().ListSessions(ctx, connect.NewRequest(&adminv1.ListSessionsRequest{
			States: filter.States, Mode: filter.Mode, Participant: filter.Participant, PageSize: kernel.MaxPageSize, PageToken: token,
		}))
		if err != nil {
			return err
		}
		all = append(all, res.Msg.GetSessions()...)
		if token = res.Msg.GetNextPageToken(); token == "" {
			break
		}
	}
	if f.json {
		raw, err := messages(all)
		if err != nil {
			return err
		}
		return printJSON(stdout, raw)
	}
	tw := tabwriter.NewWriter(stdout, 2, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "SESSION\tSTATE\tMODE\tINITIATOR\tPARTICIPANTS\tSTARTED")
	for _, md := range all {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", md.GetSessionId(), stateWord(md.GetState()), md.GetMode(),
			md.GetInitiator(), strings.Join(md.GetParticipants(), ","), when(md.GetStartedAtUnixMs()))
	}
	return tw.Flush()
}

// when formats a Unix millisecond time in UTC.
func when(ms int64) string {
	if ms == 0 {
		return "-"
	}
	return time.UnixMilli(ms).UTC().Format("2006-01-02T15:04:05.000Z")
}

func sessionShow(ctx context.Context, f *sessionFlags, sid string, stdout io.Writer) error {
	in, err := f.client.admin().InspectSession(ctx, connect.NewRequest(&adminv1.InspectSessionRequest{SessionId: sid}))
	if err != nil {
		return err
	}
	entries, err := timelineOf(ctx, f, sid)
	if err != nil {
		return err
	}
	if f.json {
		inspection, err := jsonOut.Marshal(in.Msg)
		if err != nil {
			return err
		}
		raw, err := messages(entries)
		if err != nil {
			return err
		}
		return printJSON(stdout, map[string]any{"session": json.RawMessage(inspection), "timeline": raw})
	}
	printShow(stdout, in.Msg, entries)
	return nil
}

// timelineOf reads a session's whole decoded log.
func timelineOf(ctx context.Context, f *sessionFlags, sid string) ([]*adminv1.TimelineEntry, error) {
	stream, err := f.client.admin().SessionTimeline(ctx, connect.NewRequest(&adminv1.SessionTimelineRequest{SessionId: sid}))
	if err != nil {
		return nil, err
	}
	defer func() { _ = stream.Close() }()
	var out []*adminv1.TimelineEntry
	for stream.Receive() {
		out = append(out, stream.Msg().GetEntry())
	}
	return out, stream.Err()
}

func printShow(w io.Writer, in *adminv1.InspectSessionResponse, entries []*adminv1.TimelineEntry) {
	md := in.GetMetadata()
	tw := tabwriter.NewWriter(w, 2, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "session\t%s\n", md.GetSessionId())
	fmt.Fprintf(tw, "state\t%s\n", stateWord(md.GetState()))
	fmt.Fprintf(tw, "mode\t%s %s (module %s)\n", md.GetMode(), md.GetModeVersion(), in.GetModuleDigest())
	fmt.Fprintf(tw, "policy\t%s\n", md.GetPolicyVersion())
	fmt.Fprintf(tw, "configuration\t%s\n", md.GetConfigurationVersion())
	if md.GetContextId() != "" {
		fmt.Fprintf(tw, "context\t%s\n", md.GetContextId())
	}
	fmt.Fprintf(tw, "initiator\t%s\n", md.GetInitiator())
	fmt.Fprintf(tw, "started\t%s\n", when(md.GetStartedAtUnixMs()))
	fmt.Fprintf(tw, "log\t%d entries\n", in.GetLogLength())
	_ = tw.Flush()

	fmt.Fprintln(w, "\nparticipants:")
	activity := map[string]*macpv1.ParticipantActivity{}
	for _, a := range md.GetParticipantActivity() {
		activity[a.GetParticipantId()] = a
	}
	for _, p := range append([]string{md.GetInitiator()}, md.GetParticipants()...) {
		if a, ok := activity[p]; ok {
			fmt.Fprintf(w, "  %s: %d messages, last %s\n", p, a.GetMessageCount(), when(a.GetLastMessageAtUnixMs()))
		} else {
			fmt.Fprintf(w, "  %s: no messages\n", p)
		}
	}

	fmt.Fprintln(w, "\ntimeline:")
	for _, e := range entries {
		fmt.Fprintln(w, "  "+timelineLine(e))
	}

	if c := in.GetResolution(); c != nil {
		fmt.Fprintf(w, "\ncommitment: %s (%s), outcome_positive=%t\n", c.GetAction(), c.GetCommitmentId(), c.GetOutcomePositive())
		if c.GetReason() != "" {
			fmt.Fprintf(w, "  reason: %s\n", c.GetReason())
		}
		hash := in.GetResolutionHash()
		if hash == "" {
			hash = "(none: the payload has fields the hash does not cover)"
		}
		fmt.Fprintf(w, "  hash: %s\n", hash)
	}
	if gov := in.GetGovernance(); len(gov) > 0 {
		fmt.Fprintln(w, "\ngovernance:")
		for _, g := range gov {
			verdict := "deny"
			if g.GetAllow() {
				verdict = "allow"
			}
			fmt.Fprintf(w, "  %s %s by %s under %s at %s", verdict, g.GetMessageId(), g.GetSender(), g.GetPolicyId(), when(g.GetDecidedAtUnixMs()))
			if len(g.GetReasons()) > 0 {
				fmt.Fprintf(w, ": %s", strings.Join(g.GetReasons(), "; "))
			}
			fmt.Fprintln(w)
		}
	}
	if s := in.GetModeStateJson(); s != "" {
		fmt.Fprintf(w, "\nmode state: %s\n", s)
	}
}

// timelineLine is one entry on one line.
func timelineLine(e *adminv1.TimelineEntry) string {
	what := e.GetMessageType()
	if what == "" {
		what = "(expiry)"
	}
	payload := e.GetPayloadJson()
	if payload == "" && e.GetPayloadHex() != "" {
		payload = "hex:" + e.GetPayloadHex()
	}
	line := fmt.Sprintf("#%-3d %s  %-14s %-16s %-12s → %s", e.GetSequence(), when(e.GetAcceptedAtUnixMs()),
		orDash(e.GetSender()), what, orDash(e.GetMessageId()), stateWord(e.GetStateAfter()))
	if payload != "" {
		line += "  " + payload
	}
	if e.GetCommitmentHash() != "" {
		line += "  hash " + e.GetCommitmentHash()
	}
	return line
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func sessionWatchOne(ctx context.Context, f *sessionFlags, sid string, stdout io.Writer) error {
	stream, err := f.client.adminStream().SessionTimeline(ctx, connect.NewRequest(&adminv1.SessionTimelineRequest{SessionId: sid, Follow: true}))
	if err != nil {
		return err
	}
	defer func() { _ = stream.Close() }()
	for stream.Receive() {
		e := stream.Msg().GetEntry()
		if f.json {
			b, err := jsonOut.Marshal(e)
			if err != nil {
				return err
			}
			fmt.Fprintln(stdout, string(b))
		} else {
			fmt.Fprintln(stdout, timelineLine(e))
		}
	}
	if err := stream.Err(); err != nil && ctx.Err() == nil {
		return err
	}
	return nil
}

func sessionWatchAll(ctx context.Context, f *sessionFlags, filter kernel.SessionFilter, stdout io.Writer) error {
	stream, err := f.client.macp().WatchSessions(ctx, connect.NewRequest(&macpv1.WatchSessionsRequest{}))
	if err != nil {
		return err
	}
	defer func() { _ = stream.Close() }()
	for stream.Receive() {
		ev := stream.Msg().GetEvent()
		if !filter.Match(ev.GetSession()) {
			continue
		}
		if f.json {
			b, err := jsonOut.Marshal(ev)
			if err != nil {
				return err
			}
			fmt.Fprintln(stdout, string(b))
			continue
		}
		md := ev.GetSession()
		kind := strings.ToLower(strings.TrimPrefix(ev.GetEventType().String(), "EVENT_TYPE_"))
		fmt.Fprintf(stdout, "%s  %-9s %s  %s  %s\n", when(ev.GetObservedAtUnixMs()), kind, md.GetSessionId(), md.GetMode(), stateWord(md.GetState()))
	}
	if err := stream.Err(); err != nil && ctx.Err() == nil {
		return err
	}
	return nil
}

func sessionCancel(ctx context.Context, f *sessionFlags, sid string, stdout io.Writer) error {
	res, err := f.client.macp().CancelSession(ctx, connect.NewRequest(&macpv1.CancelSessionRequest{SessionId: sid, Reason: f.reason}))
	if err != nil {
		return err
	}
	ack := res.Msg.GetAck()
	if !ack.GetOk() {
		return fmt.Errorf("%s: %s", ack.GetError().GetCode(), ack.GetError().GetMessage())
	}
	if f.json {
		return printJSON(stdout, ack)
	}
	fmt.Fprintf(stdout, "session %s is %s\n", sid, stateWord(ack.GetSessionState()))
	return nil
}

func sessionExport(ctx context.Context, f *sessionFlags, sid string, stdout io.Writer) error {
	res, err := f.client.admin().ExportSession(ctx, connect.NewRequest(&adminv1.ExportSessionRequest{SessionId: sid}))
	if err != nil {
		return err
	}
	b, err := protojson.MarshalOptions{UseProtoNames: true, Multiline: true}.Marshal(res.Msg.GetExport())
	if err != nil {
		return err
	}
	b = append(b, '\n')
	if f.output == "" {
		_, err = stdout.Write(b)
		return err
	}
	return os.WriteFile(f.output, b, 0o600)
}
