package policy

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"
	"unicode"

	"google.golang.org/protobuf/proto"

	"github.com/concord-macp/concord/macperr"
	macpv1 "github.com/concord-macp/concord/proto/macp/v1"
)

// stdPrefix is the reserved namespace of the standard profiles.
const stdPrefix = "policy.std."

// maxPolicyIDLen bounds policy ids; they travel in every Commitment echo.
const maxPolicyIDLen = 256

// Persister stores registered descriptors across restarts. The registry
// calls it with its own lock held, one call at a time, before it changes
// what it serves; the built-in descriptors (policy.default, policy.std.*)
// are never persisted.
type Persister interface {
	// Put stores d under d.PolicyId.
	Put(ctx context.Context, d *macpv1.PolicyDescriptor) error
	// Delete removes the descriptor with id; a missing id is not an error.
	Delete(ctx context.Context, id string) error
	// All returns every stored descriptor, in any order.
	All(ctx context.Context) ([]*macpv1.PolicyDescriptor, error)
}

// MemoryPersister is a Persister that keeps descriptors in memory.
type MemoryPersister struct {
	mu sync.Mutex
	m  map[string]*macpv1.PolicyDescriptor
}

var _ Persister = (*MemoryPersister)(nil)

// NewMemoryPersister returns an empty MemoryPersister.
func NewMemoryPersister() *MemoryPersister {
	return &MemoryPersister{m: map[string]*macpv1.PolicyDescriptor{}}
}

// Put stores a copy of d.
func (p *MemoryPersister) Put(_ context.Context, d *macpv1.PolicyDescriptor) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.m[d.GetPolicyId()] = proto.CloneOf(d)
	return nil
}

// Delete removes id.
func (p *MemoryPersister) Delete(_ context.Context, id string) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	delete(p.m, id)
	return nil
}

// All returns copies of the stored descriptors.
func (p *MemoryPersister) All(context.Context) ([]*macpv1.PolicyDescriptor, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := make([]*macpv1.PolicyDescriptor, 0, len(p.m))
	for _, d := range p.m {
		out = append(out, proto.CloneOf(d))
	}
	return out, nil
}

// EventType says what changed in the registry.
type EventType string

// Registry change kinds.
const (
	EventRegistered   EventType = "registered"
	EventUnregistered EventType = "unregistered"
)

// Event is one change of the registry, delivered to subscribers in the
// order the changes happened.
type Event struct {
	Type     EventType
	PolicyID string
	// Descriptor is the registered or the removed descriptor.
	Descriptor *macpv1.PolicyDescriptor
	// Descriptors is every descriptor served after the change, sorted by
	// id: what WatchPolicies sends.
	Descriptors      []*macpv1.PolicyDescriptor
	ObservedAtUnixMs int64
}

// RegistryOptions configure a Registry. The zero value is usable: memory
// persistence, the system clock, slog.Default and the standard profiles.
type RegistryOptions struct {
	Persister Persister
	// Now is the clock that stamps registered_at_unix_ms.
	Now    func() time.Time
	Logger *slog.Logger
	// WithoutStdProfiles leaves policy.std.* unregistered; registering a
	// canonical definition then adds it.
	WithoutStdProfiles bool
}

// Registry holds the policy descriptors a runtime serves: policy.default,
// the standard profiles and everything registered since. Descriptors are
// immutable: new rules need a new id. All methods are safe for concurrent
// use.
type Registry struct {
	persist Persister
	now     func() time.Time
	log     *slog.Logger

	// changeMu serializes mutations with their notifications, so that
	// subscribers see changes in order without the read lock being held
	// while they run.
	changeMu sync.Mutex
	mu       sync.RWMutex
	byID     map[string]*macpv1.PolicyDescriptor
	builtin  map[string]bool // ids that cannot be unregistered
	subs     map[int]func(Event)
	nextSub  int
}

// NewRegistry returns a Registry loaded from opts.Persister. Stored
// descriptors are served as stored: admission rules apply only when a
// descriptor is registered, never again (RFC-MACP-0012: a later schema must
// not change a policy sessions were bound to).
func NewRegistry(ctx context.Context, opts RegistryOptions) (*Registry, error) {
	r := &Registry{
		persist: opts.Persister,
		now:     opts.Now,
		log:     opts.Logger,
		byID:    map[string]*macpv1.PolicyDescriptor{},
		builtin: map[string]bool{},
		subs:    map[int]func(Event){},
	}
	if r.persist == nil {
		r.persist = NewMemoryPersister()
	}
	if r.now == nil {
		r.now = time.Now
	}
	if r.log == nil {
		r.log = slog.Default()
	}
	at := r.now().UnixMilli()
	def := DefaultDescriptor()
	def.RegisteredAtUnixMs = at
	r.byID[DefaultID] = def
	r.builtin[DefaultID] = true
	if !opts.WithoutStdProfiles {
		for _, d := range StdProfiles() {
			d.RegisteredAtUnixMs = at
			r.byID[d.PolicyId] = d
			r.builtin[d.PolicyId] = true
		}
	}
	stored, err := r.persist.All(ctx)
	if err != nil {
		return nil, fmt.Errorf("policy registry: load: %w", err)
	}
	for _, d := range stored {
		id := d.GetPolicyId()
		if id == "" || r.builtin[id] {
			r.log.Warn("policy registry: ignoring stored descriptor with a built-in or empty id", "policy_id", id)
			continue
		}
		r.byID[id] = proto.CloneOf(d)
	}
	return r, nil
}

// StdProfiles returns the canonical standard profiles (RFC-MACP-0012 §3):
// Decision, schema_version 1, require_vote_quorum on.
func StdProfiles() []*macpv1.PolicyDescriptor {
	return []*macpv1.PolicyDescriptor{
		{
			PolicyId:      stdPrefix + "majority",
			Mode:          ModeDecision,
			Description:   "Standard profile: simple majority of decisive ballots (threshold 0.5) with at least one voter.",
			Rules:         `{"voting":{"algorithm":"majority","threshold":0.5,"quorum":{"type":"count","value":1}},"commitment":{"require_vote_quorum":true}}`,
			SchemaVersion: 1,
		},
		{
			PolicyId:      stdPrefix + "supermajority",
			Mode:          ModeDecision,
			Description:   "Standard profile: two-thirds of decisive ballots with at least two voters.",
			Rules:         `{"voting":{"algorithm":"supermajority","threshold":0.6666666666666666,"quorum":{"type":"count","value":2}},"commitment":{"require_vote_quorum":true}}`,
			SchemaVersion: 1,
		},
		{
			PolicyId:      stdPrefix + "unanimous",
			Mode:          ModeDecision,
			Description:   "Standard profile: every declared participant approves and nobody rejects, with at least one voter.",
			Rules:         `{"voting":{"algorithm":"unanimous","quorum":{"type":"count","value":1}},"commitment":{"require_vote_quorum":true}}`,
			SchemaVersion: 1,
		},
	}
}

// stdProfile returns the canonical profile with id, if id is assigned.
func stdProfile(id string) (*macpv1.PolicyDescriptor, bool) {
	for _, d := range StdProfiles() {
		if d.PolicyId == id {
			return d, true
		}
	}
	return nil, false
}

func invalidDefinition(format string, args ...any) *macperr.Error {
	return macperr.New(macperr.InvalidPolicyDefinition, format, args...)
}

// ValidateDescriptor applies RegisterPolicy's admission rules to d, except
// the checks against what is already registered. It returns advisory
// warnings for an accepted descriptor.
func ValidateDescriptor(d *macpv1.PolicyDescriptor) (warnings []string, err error) {
	if d == nil {
		return nil, invalidDefinition("policy descriptor is missing")
	}
	if err := checkPolicyID(d.GetPolicyId()); err != nil {
		return nil, err
	}
	if strings.TrimSpace(d.GetMode()) == "" {
		return nil, invalidDefinition("policy %q: mode is missing (use \"*\" for any mode)", d.GetPolicyId())
	}
	if strings.TrimSpace(d.GetDescription()) == "" {
		return nil, invalidDefinition("policy %q: description is missing", d.GetPolicyId())
	}
	warnings, verr := ValidateRules(d.GetMode(), d.GetSchemaVersion(), d.GetRules())
	if verr != nil {
		return nil, invalidDefinition("policy %q (mode %s, schema_version %d): %v", d.GetPolicyId(), d.GetMode(), d.GetSchemaVersion(), verr)
	}
	return warnings, nil
}

func checkPolicyID(id string) error {
	switch {
	case id == "":
		return invalidDefinition("policy_id is missing")
	case id == DefaultID:
		return invalidDefinition("%s is built in and cannot be registered", DefaultID)
	case strings.TrimSpace(id) != id:
		return invalidDefinition("policy_id %q has leading or trailing white space", id)
	case len(id) > maxPolicyIDLen:
		return invalidDefinition("policy_id is longer than %d bytes", maxPolicyIDLen)
	case strings.ContainsFunc(id, func(r rune) bool { return unicode.IsControl(r) || unicode.IsSpace(r) }):
		return invalidDefinition("policy_id %q contains white space or control characters", id)
	}
	return nil
}

// Register validates d (RFC-MACP-0012 §6: descriptor, schema_version, the
// mode's rule schema) and adds it. registered_at_unix_ms is set here; the
// input's value is ignored. The returned descriptor is a copy of what is
// now served. Every refusal is INVALID_POLICY_DEFINITION. Registering the
// canonical definition of a standard profile that is already served
// succeeds without a change.
func (r *Registry) Register(ctx context.Context, d *macpv1.PolicyDescriptor) (*macpv1.PolicyDescriptor, error) {
	warnings, err := ValidateDescriptor(d)
	if err != nil {
		return nil, err
	}
	return r.add(ctx, d, warnings)
}

// add stores a validated descriptor.
func (r *Registry) add(ctx context.Context, d *macpv1.PolicyDescriptor, warnings []string) (*macpv1.PolicyDescriptor, error) {
	id := d.GetPolicyId()
	isStd := strings.HasPrefix(id, stdPrefix)
	if isStd {
		canon, assigned := stdProfile(id)
		if !assigned {
			return nil, invalidDefinition("%s is in the reserved policy.std.* namespace and is not a standard profile", id)
		}
		if !sameIdentity(canon, d) {
			return nil, invalidDefinition("%s is reserved for its canonical definition; these rules or schema_version differ from it", id)
		}
	}

	r.changeMu.Lock()
	defer r.changeMu.Unlock()
	r.mu.Lock()
	if existing, ok := r.byID[id]; ok {
		r.mu.Unlock()
		if isStd {
			return proto.CloneOf(existing), nil
		}
		return nil, invalidDefinition("policy %q is already registered; policy ids are immutable, register new rules under a new id", id)
	}
	stored := proto.CloneOf(d)
	stored.RegisteredAtUnixMs = r.now().UnixMilli()
	if !isStd {
		if err := r.persist.Put(ctx, stored); err != nil {
			r.mu.Unlock()
			return nil, macperr.Wrap(macperr.InternalError, fmt.Errorf("policy registry: persist %q: %w", id, err), "the policy could not be stored")
		}
	}
	r.byID[id] = stored
	ev := r.eventLocked(EventRegistered, stored)
	r.mu.Unlock()

	for _, w := range warnings {
		r.log.Warn("policy registered with a warning", "policy_id", id, "warning", w)
	}
	r.log.Info("policy registered", "policy_id", id, "mode", stored.Mode, "schema_version", stored.SchemaVersion)
	r.notify(ev)
	return proto.CloneOf(stored), nil
}

// Unregister removes a registered policy. policy.default and the
// pre-registered standard profiles refuse (INVALID_POLICY_DEFINITION); an
// unknown id is UNKNOWN_POLICY_VERSION. Sessions already bound keep their
// copy of the descriptor.
func (r *Registry) Unregister(ctx context.Context, id string) error {
	r.changeMu.Lock()
	defer r.changeMu.Unlock()
	r.mu.Lock()
	d, ok := r.byID[id]
	switch {
	case r.builtin[id]:
		r.mu.Unlock()
		return invalidDefinition("%s is built in and cannot be unregistered", id)
	case !ok:
		r.mu.Unlock()
		return macperr.New(macperr.UnknownPolicyVersion, "policy %q is not registered", id)
	}
	if err := r.persist.Delete(ctx, id); err != nil {
		r.mu.Unlock()
		return macperr.Wrap(macperr.InternalError, fmt.Errorf("policy registry: delete %q: %w", id, err), "the policy could not be removed")
	}
	delete(r.byID, id)
	ev := r.eventLocked(EventUnregistered, d)
	r.mu.Unlock()

	r.log.Info("policy unregistered", "policy_id", id)
	r.notify(ev)
	return nil
}

// Get returns a copy of the descriptor with id, or UNKNOWN_POLICY_VERSION.
func (r *Registry) Get(id string) (*macpv1.PolicyDescriptor, error) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	d, ok := r.byID[id]
	if !ok {
		return nil, macperr.New(macperr.UnknownPolicyVersion, "policy %q is not registered", id)
	}
	return proto.CloneOf(d), nil
}

// List returns copies of the descriptors that apply to mode (descriptor
// mode equal to mode, or "*"), sorted by id; "" lists every descriptor.
func (r *Registry) List(mode string) []*macpv1.PolicyDescriptor {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return r.listLocked(mode)
}

func (r *Registry) listLocked(mode string) []*macpv1.PolicyDescriptor {
	out := make([]*macpv1.PolicyDescriptor, 0, len(r.byID))
	for _, d := range r.byID {
		if mode == "" || d.Mode == mode || d.Mode == AnyMode {
			out = append(out, proto.CloneOf(d))
		}
	}
	slices.SortFunc(out, func(a, b *macpv1.PolicyDescriptor) int { return strings.Compare(a.PolicyId, b.PolicyId) })
	return out
}

// Bind resolves the policy_version a SessionStart names for mode
// (RFC-MACP-0012 §5): "" binds policy.default; an unknown id (including an
// unassigned policy.std.* id) is UNKNOWN_POLICY_VERSION; a descriptor for
// another mode is INVALID_POLICY_DEFINITION. The result is a copy the
// session keeps for its whole life.
func (r *Registry) Bind(_ context.Context, mode, policyVersion string) (*macpv1.PolicyDescriptor, error) {
	id := strings.TrimSpace(policyVersion)
	if id == "" {
		id = DefaultID
	}
	r.mu.RLock()
	d, ok := r.byID[id]
	r.mu.RUnlock()
	if !ok {
		return nil, macperr.New(macperr.UnknownPolicyVersion, "policy %q is not registered", policyVersion)
	}
	if d.Mode != AnyMode && d.Mode != mode {
		return nil, invalidDefinition("policy %q governs %s, not %s", id, d.Mode, mode)
	}
	return proto.CloneOf(d), nil
}

// Subscribe calls fn after every change, in order, until the returned
// function is called. fn runs synchronously on the goroutine that made the
// change, so it must be quick and must not change the registry; hand the
// event to a channel for anything slow.
func (r *Registry) Subscribe(fn func(Event)) (unsubscribe func()) {
	r.mu.Lock()
	id := r.nextSub
	r.nextSub++
	r.subs[id] = fn
	r.mu.Unlock()
	return func() {
		r.mu.Lock()
		delete(r.subs, id)
		r.mu.Unlock()
	}
}

func (r *Registry) eventLocked(t EventType, d *macpv1.PolicyDescriptor) Event {
	return Event{
		Type:             t,
		PolicyID:         d.GetPolicyId(),
		Descriptor:       proto.CloneOf(d),
		Descriptors:      r.listLocked(""),
		ObservedAtUnixMs: r.now().UnixMilli(),
	}
}

// notify runs the subscribers; the caller holds changeMu.
func (r *Registry) notify(ev Event) {
	r.mu.RLock()
	fns := make([]func(Event), 0, len(r.subs))
	for _, k := range sortedIntKeys(r.subs) {
		fns = append(fns, r.subs[k])
	}
	r.mu.RUnlock()
	for _, fn := range fns {
		fn(ev)
	}
}

func sortedIntKeys[V any](m map[int]V) []int {
	keys := make([]int, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// sameIdentity reports whether a and b are the same policy: equal mode,
// schema_version and semantically equal rules (RFC-MACP-0012: identity is
// policy_id + schema_version + rules).
func sameIdentity(a, b *macpv1.PolicyDescriptor) bool {
	if a.GetMode() != b.GetMode() || a.GetSchemaVersion() != b.GetSchemaVersion() {
		return false
	}
	x, err1 := parseJSONStrict([]byte(a.GetRules()))
	y, err2 := parseJSONStrict([]byte(b.GetRules()))
	return err1 == nil && err2 == nil && jsonEqual(x, y)
}

// jsonEqual compares decoded JSON values; numbers compare as float64.
func jsonEqual(x, y any) bool {
	switch x := x.(type) {
	case map[string]any:
		m, ok := y.(map[string]any)
		if !ok || len(m) != len(x) {
			return false
		}
		for k, v := range x {
			w, ok := m[k]
			if !ok || !jsonEqual(v, w) {
				return false
			}
		}
		return true
	case []any:
		a, ok := y.([]any)
		if !ok || len(a) != len(x) {
			return false
		}
		for i := range x {
			if !jsonEqual(x[i], a[i]) {
				return false
			}
		}
		return true
	default:
		if fx, ok := finiteNumber(x); ok {
			fy, ok := finiteNumber(y)
			return ok && fx == fy
		}
		return x == y
	}
}
