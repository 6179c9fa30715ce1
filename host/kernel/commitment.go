package kernel

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"strings"

	"google.golang.org/protobuf/proto"

	"github.com/concord-macp/concord/host/cmthash"
	"github.com/concord-macp/concord/host/storage"
	"github.com/concord-macp/concord/macperr"
	"github.com/concord-macp/concord/policy"
	abiv1 "github.com/concord-macp/concord/proto/concord/abi/v1"
	storev1 "github.com/concord-macp/concord/proto/concord/store/v1"
	macpv1 "github.com/concord-macp/concord/proto/macp/v1"
)

// A Commitment's checks are split between the kernel and the mode (see
// RATIONALE "Who checks what on a Commitment"): the kernel asks the bound
// policy for commitment authority, runs the payload checks every mode
// shares, lets the mode decide eligibility, and then asks the policy to
// govern.

// checkCommitment runs the checks common to every mode's Commitment:
// authority first (FORBIDDEN), then the payload (INVALID_ENVELOPE).
func (k *Kernel) checkCommitment(ctx context.Context, s *session, env *macpv1.Envelope) (*macpv1.CommitmentPayload, error) {
	var c macpv1.CommitmentPayload
	decodeErr := proto.Unmarshal(env.Payload, &c)
	in := &policy.Input{
		Policy: s.rec.GetPolicy(), Session: s.rec.GetMetadata(), Sender: env.Sender,
		Commitment: &c, NowUnixMs: k.now().UnixMilli(),
	}
	if err := k.governor.Authorize(ctx, in); err != nil {
		return nil, err
	}
	if decodeErr != nil {
		return nil, macperr.New(macperr.InvalidEnvelope, "Commitment payload does not decode: %v", decodeErr)
	}
	md := s.rec.GetMetadata()
	for _, f := range []struct{ name, value string }{
		{"commitment_id", c.CommitmentId}, {"action", c.Action},
		{"authority_scope", c.AuthorityScope}, {"reason", c.Reason},
	} {
		if strings.TrimSpace(f.value) == "" {
			return nil, macperr.New(macperr.InvalidEnvelope, "Commitment %s must not be empty", f.name)
		}
	}
	if c.ModeVersion != md.GetModeVersion() {
		return nil, macperr.New(macperr.InvalidEnvelope, "Commitment mode_version %q does not match the session's %q", c.ModeVersion, md.GetModeVersion())
	}
	if c.ConfigurationVersion != md.GetConfigurationVersion() {
		return nil, macperr.New(macperr.InvalidEnvelope, "Commitment configuration_version %q does not match the session's %q", c.ConfigurationVersion, md.GetConfigurationVersion())
	}
	if c.PolicyVersion != "" && c.PolicyVersion != md.GetPolicyVersion() {
		return nil, macperr.New(macperr.InvalidEnvelope, "Commitment policy_version %q does not match the session's %q", c.PolicyVersion, md.GetPolicyVersion())
	}
	if sup := c.Supersedes; sup != nil {
		if sup.SessionId == "" || !cmthash.WellFormed(sup.CommitmentHash) {
			return nil, macperr.New(macperr.InvalidEnvelope, "Commitment supersedes needs a session_id and a commitment_hash of the form sha256:<64 lowercase hex>")
		}
	}
	if want, ok := outcomeOfAction(c.Action); ok && want != c.OutcomePositive {
		return nil, macperr.New(macperr.InvalidEnvelope, "Commitment action %q requires outcome_positive=%t", c.Action, want)
	}
	return &c, nil
}

// outcomeOfAction returns the polarity an action's last segment implies, if
// it implies one.
func outcomeOfAction(action string) (positive, ok bool) {
	last := action[strings.LastIndexByte(action, '.')+1:]
	switch last {
	case "rejected", "failed", "declined":
		return false, true
	case "selected", "accepted", "completed", "approved":
		return true, true
	}
	return false, false
}

// govern asks the bound policy about a commitment the mode found eligible
// and returns the decision to record with it.
func (k *Kernel) govern(ctx context.Context, s *session, env *macpv1.Envelope, c *macpv1.CommitmentPayload, now int64) (*storev1.Governance, error) {
	in := &policy.Input{
		Policy: s.rec.GetPolicy(), Session: s.rec.GetMetadata(), Sender: env.Sender,
		Commitment: c, NowUnixMs: now,
		ModeState: func(ctx context.Context) ([]byte, error) {
			v, err := s.mode.View(ctx, &abiv1.ViewRequest{State: s.rec.GetModeState(), Session: abiSession(s.rec)})
			if err != nil {
				return nil, err
			}
			return []byte(v.GetJson()), nil
		},
	}
	d, err := k.governor.Govern(ctx, in)
	if err != nil {
		return nil, macperr.Wrap(macperr.InternalError, err, "the policy could not be evaluated")
	}
	g := &storev1.Governance{
		PolicyId: s.rec.GetPolicy().GetPolicyId(), PolicyDigest: policyDigest(s.rec.GetPolicy()),
		Allow: d.Allow, Reasons: d.Reasons, MessageId: env.MessageId, Sender: env.Sender, DecidedAtUnixMs: now,
	}
	if !d.Allow {
		k.log.Info("policy denied a commitment", "session_id", s.id(), "message_id", env.MessageId, "policy", g.PolicyId, "reasons", d.Reasons)
		// A denied Commitment never enters the log; its decision goes to the
		// session's audit trail.
		if b, err := proto.Marshal(g); err == nil {
			key := fmt.Sprintf("%s\x00%016x%s", s.id(), now, env.MessageId)
			if err := k.store.Put(ctx, storage.Audit, key, b); err != nil {
				k.log.Error("could not record a policy denial in the audit trail", "session_id", s.id(), "message_id", env.MessageId, "err", err)
			}
		}
		return nil, policyDenied(d.Reasons)
	}
	return g, nil
}

// policyDigest identifies a bound policy by content: id, schema version and
// rules (RFC-MACP-0012's policy identity).
func policyDigest(d *macpv1.PolicyDescriptor) string {
	h := sha256.New()
	fmt.Fprintf(h, "%s\x00%d\x00%s", d.GetPolicyId(), d.GetSchemaVersion(), d.GetRules())
	return hex.EncodeToString(h.Sum(nil))
}

// policyDenied builds the POLICY_DENIED rejection with its reasons in the
// details as {"reasons":[…]}.
func policyDenied(reasons []string) error {
	if reasons == nil {
		reasons = []string{}
	}
	details, _ := json.Marshal(struct {
		Reasons []string `json:"reasons"`
	}{reasons})
	msg := "the bound policy denied the commitment"
	if len(reasons) > 0 {
		msg += ": " + strings.Join(reasons, "; ")
	}
	return &macperr.Error{Code: macperr.PolicyDenied, Message: msg, Details: details}
}
