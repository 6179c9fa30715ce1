// Package views renders the admin UI's pages with templ. It holds the view
// models — plain values the page handlers fill — and the components; it
// reads nothing itself.
package views

import "github.com/concord-macp/concord/ui/decode"

// Page is what every page shares: its title, the active navigation entry
// and who is looking.
type Page struct {
	Title string
	// Nav is the navigation entry to mark current: "overview",
	// "sessions", "modes", "policies" or "audit".
	Nav string
	// User is the caller's identity; Role "admin" or "viewer".
	User, Role string
	// CanChange shows the forms that change something.
	CanChange bool
	// LoggedIn shows the logout button (OIDC login; not in dev mode).
	LoggedIn bool
	Notice   Notice
}

// Notice is a message at the top of a page; Kind is "ok" or "bad".
type Notice struct{ Kind, Text string }

// Count is a labelled number.
type Count struct {
	Label string
	N     int
	Class string
}

// KV is a labelled text.
type KV struct{ Key, Value string }

// Overview is the overview page.
type Overview struct {
	Page
	States     []Count
	Charts     []Chart
	Rejections []Count
	Facts      []KV
	LiveURL    string
}

// Chart is a line chart of per-minute series rendered as inline SVG.
type Chart struct {
	ID, Title string
	// Summary describes the chart in words for screen readers.
	Summary string
	Series  []Series
	// Start and End label the time axis.
	Start, End string
}

// Series is one line of a chart, oldest value first.
type Series struct {
	Name, Class string
	Values      []float64
	Total       string
}

// SessionFilter holds the session list's filter form as typed.
type SessionFilter struct {
	States                                  []string
	Mode, Participant, Initiator, ContextID string
	From, Until                             string
}

// HasState reports whether state is selected.
func (f SessionFilter) HasState(state string) bool {
	for _, s := range f.States {
		if s == state {
			return true
		}
	}
	return false
}

// SessionRow is one session in the list.
type SessionRow struct {
	ID, Mode, State, Initiator, Participants, Started, Expires, ContextID, Policy string
}

// Sessions is the session list page.
type Sessions struct {
	Page
	Filter        SessionFilter
	Modes, States []string
	Rows          []SessionRow
	// Prev and Next are page links ("" when there is none).
	Prev, Next string
	From, To   int
	Total      int
	Truncated  bool
	LiveURL    string
	Error      string
}

// SessionSummary is a session's metadata.
type SessionSummary struct {
	ID, Mode, ModeVersion, State, Initiator, Started, Expires, ContextID string
	Configuration, PolicyVersion, PolicyDigest, ModuleDigest, Entries    string
	Participants                                                         []string
	Deadline, Suspended                                                  string
}

// ParticipantRow is what one participant sent.
type ParticipantRow struct {
	ID, Role, Last, Types string
	Sent                  int
}

// Entry is one entry of a session's log.
type Entry struct {
	Seq                                 int
	At, Origin, Sender, Type, MessageID string
	StateAfter, Kind, Hash, Class       string
	Fields                              []decode.Field
	Governance                          *Decision
}

// Decision is a governance decision.
type Decision struct {
	Allow                             bool
	Policy, Digest, Sender, MessageID string
	At                                string
	Reasons                           []string
}

// Timer is a pending mode timer.
type Timer struct{ ID, Due, Type string }

// Verdict is a policy's answer shown in the UI.
type Verdict struct {
	Allowed, Authorized bool
	Reasons             []string
}

// StateAt is the time travel panel: the session after entry Seq.
type StateAt struct {
	SessionID string
	Seq, Max  int
	After     string
	State     string
	ModeState string
	// Verdict is the bound policy's verdict on Commitment at this point.
	Verdict *Verdict
	// Commitment says which commitment was judged.
	Commitment string
	Error      string
}

// Replay is the outcome of an exact replay.
type Replay struct {
	Exact       bool
	Entries     int
	State       string
	Divergences []string
	Error       string
}

// SessionPage is a session's page.
type SessionPage struct {
	Page
	Summary      SessionSummary
	Participants []ParticipantRow
	Timeline     []Entry
	Timers       []Timer
	ModeState    string
	Commitment   *Entry
	Governance   []Decision
	At           StateAt
	Replay       *Replay
	LiveURL      string
	Open         bool
}

// ModeRow is one mode module.
type ModeRow struct {
	Name, Version, Title, Description, Digest, Kind string
	Standard, Serving                               bool
	MessageTypes, Terminal                          string
	UploadedAt, UploadedBy                          string
	Descriptor                                      string
	PinnedOpen                                      []string
	CanRetire                                       bool
}

// Modes is the modes page.
type Modes struct {
	Page
	Modes       []ModeRow
	Unserved    []ModeRow
	UploadError string
	Uploaded    *ModeRow
	MaxBytes    string
}

// RetireConfirm asks before retiring a mode.
type RetireConfirm struct {
	Page
	Mode, Digest string
	PinnedOpen   []string
}

// PolicyRow is one policy version.
type PolicyRow struct {
	ID, Mode, Kind, Registered, Description string
	Builtin                                 bool
}

// Family is a policy and its versions, oldest first.
type Family struct {
	Name     string
	Versions []PolicyRow
}

// TestRow is one shipped test's outcome.
type TestRow struct {
	Name, Error     string
	Passed, Skipped bool
}

// Candidate is the push form's content as typed.
type Candidate struct {
	ID, Mode, Description, Schema, Rules, Rego string
}

// ImpactRow is one recorded commitment whose decision would change.
type ImpactRow struct {
	SessionID, At, Recorded, Candidate string
	Reasons                            []string
}

// Impact is a candidate run against recorded commitments.
type Impact struct {
	Policy, Mode   string
	Limit, Checked int
	Changes        []ImpactRow
	Unchanged      int
	Errors         []string
}

// Push is the result of the push form.
type Push struct {
	Form   Candidate
	Tests  []TestRow
	Error  string
	Saved  string
	Impact *Impact
	Action string
}

// Policies is the policies page.
type Policies struct {
	Page
	Families []Family
	Modes    []string
	Push     Push
}

// TryResult is what a version decides about a recorded commitment.
type TryResult struct {
	SessionID, Commitment string
	Recorded              *Decision
	Now                   Verdict
	Changed               bool
	Fields                []decode.Field
	Error                 string
}

// PolicyPage is one policy version's page.
type PolicyPage struct {
	Page
	Policy     PolicyRow
	Descriptor string
	Source     string
	SourceKind string
	Family     []PolicyRow
	All        []string
	Sessions   []string
	Try        *TryResult
	TrySession string
	Impact     *Impact
	Limit      string
	CanRemove  bool
}

// DiffLine is one line of a diff; Kind is "add", "del", "ctx" or "hunk".
type DiffLine struct{ Kind, Text string }

// Diff compares two policy versions.
type Diff struct {
	Page
	A, B  string
	All   []string
	Lines []DiffLine
	Same  bool
	Error string
}

// AuditRow is one audit record.
type AuditRow struct{ At, Actor, Action, Subject, Detail string }

// Audit is the audit page.
type Audit struct {
	Page
	Rows   []AuditRow
	Source string
}

// ErrorPage explains a refusal or a failure.
type ErrorPage struct {
	Page
	Status        int
	Code, Message string
}
