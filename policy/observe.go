package policy

import (
	"context"

	"github.com/concord-macp/concord/macperr"
)

// EvalHook is told about every policy evaluation of an observed Governor,
// so that a caller can time and trace decisions without this package
// depending on a metrics or tracing library. It is called as the
// evaluation begins; the function it returns, when not nil, is called when
// it ends with its outcome. It must be fast.
type EvalHook func(ctx context.Context, eval Evaluation) (done func(Outcome))

// Evaluation names one policy evaluation.
type Evaluation struct {
	// Kind is "authorize" (commitment authority) or "govern".
	Kind string
	// PolicyID is the bound policy's id (its policy_version).
	PolicyID string
	// Mode is the session's mode.
	Mode string
}

// Outcome is how an evaluation ended.
type Outcome string

// The outcomes of an evaluation.
const (
	Allowed Outcome = "allow"
	Denied  Outcome = "deny"
	Failed  Outcome = "error"
)

// Observed returns g with every Authorize and Govern reported to hook.
func Observed(g Governor, hook EvalHook) Governor {
	if hook == nil {
		return g
	}
	return observed{Governor: g, hook: hook}
}

type observed struct {
	Governor
	hook EvalHook
}

func (o observed) Authorize(ctx context.Context, in *Input) error {
	done := o.hook(ctx, evaluation("authorize", in))
	err := o.Governor.Authorize(ctx, in)
	if done != nil {
		switch {
		case err == nil:
			done(Allowed)
		case macperr.CodeOf(err) == macperr.Forbidden:
			done(Denied)
		default:
			done(Failed)
		}
	}
	return err
}

func (o observed) Govern(ctx context.Context, in *Input) (Decision, error) {
	done := o.hook(ctx, evaluation("govern", in))
	d, err := o.Governor.Govern(ctx, in)
	if done != nil {
		switch {
		case err != nil:
			done(Failed)
		case d.Allow:
			done(Allowed)
		default:
			done(Denied)
		}
	}
	return d, err
}

func evaluation(kind string, in *Input) Evaluation {
	id := DefaultID
	if in.Policy != nil {
		id = in.Policy.GetPolicyId()
	}
	return Evaluation{Kind: kind, PolicyID: id, Mode: in.Session.GetMode()}
}

var _ Governor = observed{}
