package policy

import (
	"cmp"
	"slices"
	"unicode/utf8"

	"github.com/open-policy-agent/opa/v1/ast"
)

// Go tallies (stage 2, stages.go): values of Rego rules computed in Go from
// the commitment's input and state view instead of by OPA, where OPA is
// slow at it (walking 50 ballots costs it more than the rest of a
// decision). Each value is what the rule of the same name computes from the
// same input, view and policy constants; TestGoTalliesAgree and
// FuzzDecisionTallies check this on random sessions, and
// TestStagedDecisionsMatchTheModule the decisions made with these values
// against those of the modules evaluated whole.
//
// Only the view's canonical shape is tallied here (the shape the Decision
// mode renders: votes an object of objects of {vote: string}, objections
// and evaluations arrays of objects with string fields and a numeric
// confidence, no duplicate keys). Anything else, and any input for which a
// rule would fail or raise an error, makes decisionTallies decline, and the
// engine evaluates the module on the converted view instead.

// authorityTallyRules are the rules of rego/authority.rego that
// authorityTallies computes: the sender, and whether it is one of the
// declared participants (so that the participants need not be converted
// for every Authorize).
var authorityTallyRules = []string{"sender", "sender_participates"}

func authorityTallies(in *Input, _ []byte, _ ast.Object) (ast.Object, bool) {
	return ast.NewObject(
		[2]*ast.Term{ast.StringTerm("sender"), ast.StringTerm(in.Sender)},
		[2]*ast.Term{ast.StringTerm("sender_participates"), ast.BooleanTerm(slices.Contains(in.Session.GetParticipants(), in.Sender))},
	), true
}

// decisionTallyRules are the rules decisionTallies computes.
var decisionTallyRules = []string{
	"critical_count",
	"participant_count",
	"positive",
	"qualifying_evaluations",
	"review_free_evaluations",
	"tally",
	"unapproved_participants",
	"voters",
}

// decisionTallyConstants are the policy constants decisionTallies reads.
var decisionTallyConstants = []string{"algorithm", "confidence_floor", "weights"}

// ballot is one accepted Vote in the view.
type ballot struct {
	proposal, voter string
	vote            voteKind
}

type voteKind uint8

const (
	voteOther voteKind = iota // ABSTAIN, or any other string
	voteApprove
	voteReject
)

// decisionView is the part of the Decision state view the tallies read.
type decisionView struct {
	ballots     []ballot
	criticals   int
	evaluations []viewEvaluation
}

type viewEvaluation struct {
	review     bool // recommendation is REVIEW
	confidence ast.Number
}

// decisionTallies returns the tally rules' values for the commitment's
// state view (JSON), its session's participants and the policy constants,
// or false when it declines.
func decisionTallies(in *Input, view []byte, constants ast.Object) (ast.Object, bool) {
	v, ok := parseDecisionView(view)
	if !ok {
		return nil, false
	}
	algorithm, ok := stringConstant(constants, "algorithm")
	if !ok {
		return nil, false
	}
	participants := in.Session.GetParticipants()

	// v.ballots are in the order Rego iterates votes[_][v]: proposal id,
	// then voter, both by bytes.
	approve, reject := 0, 0
	voters := make([]string, 0, len(v.ballots))
	var approvers []string
	for _, b := range v.ballots {
		voters = append(voters, b.voter)
		switch b.vote {
		case voteApprove:
			approve++
			approvers = append(approvers, b.voter)
		case voteReject:
			reject++
		}
	}
	slices.Sort(voters)
	slices.Sort(approvers)
	unapproved := 0
	for _, p := range participants {
		if _, found := slices.BinarySearch(approvers, p); !found {
			unapproved++
		}
	}

	tally := ast.NewObject(
		[2]*ast.Term{ast.StringTerm("approve"), ast.IntNumberTerm(approve)},
		[2]*ast.Term{ast.StringTerm("reject"), ast.IntNumberTerm(reject)},
	)
	if algorithm == "weighted" {
		if tally, ok = weightedTally(v.ballots, constants); !ok {
			return nil, false
		}
	}

	reviewFree, qualifying, ok := evaluationCounts(v.evaluations, constants)
	if !ok {
		return nil, false
	}
	return ast.NewObject(
		[2]*ast.Term{ast.StringTerm("critical_count"), ast.IntNumberTerm(v.criticals)},
		[2]*ast.Term{ast.StringTerm("participant_count"), ast.IntNumberTerm(len(participants))},
		[2]*ast.Term{ast.StringTerm("positive"), ast.BooleanTerm(in.Commitment.GetOutcomePositive())},
		[2]*ast.Term{ast.StringTerm("qualifying_evaluations"), ast.IntNumberTerm(qualifying)},
		[2]*ast.Term{ast.StringTerm("review_free_evaluations"), ast.IntNumberTerm(reviewFree)},
		[2]*ast.Term{ast.StringTerm("tally"), ast.NewTerm(tally)},
		[2]*ast.Term{ast.StringTerm("unapproved_participants"), ast.IntNumberTerm(unapproved)},
		[2]*ast.Term{ast.StringTerm("voters"), ast.IntNumberTerm(len(slices.Compact(voters)))},
	), true
}

// weightedTally is the "weighted" definition of tally: the weights of
// approving and rejecting voters with a weight above 0 (a decimal
// comparison, as Rego's >), summed in binary64 in ballot order, the
// approving ones first.
func weightedTally(ballots []ballot, constants ast.Object) (ast.Object, bool) {
	wt := constants.Get(ast.StringTerm("weights"))
	if wt == nil {
		return nil, false
	}
	weights, ok := wt.Value.(ast.Object)
	if !ok {
		return nil, false
	}
	zero := ast.IntNumberTerm(0).Value
	var aw, rw []float64
	for _, b := range ballots {
		if b.vote == voteOther {
			continue
		}
		x := weights.Get(ast.StringTerm(b.voter))
		if x == nil || ast.Compare(x.Value, zero) <= 0 {
			continue
		}
		f, err := toFloat64(x)
		if err != nil {
			return nil, false // float64_sum would raise this error
		}
		if b.vote == voteApprove {
			aw = append(aw, f)
		} else {
			rw = append(rw, f)
		}
	}
	var approveWeight float64
	for _, f := range aw {
		approveWeight += f
	}
	decisive := approveWeight
	for _, f := range rw {
		decisive += f
	}
	aSum, err := float64Term(approveWeight)
	if err != nil {
		return nil, false
	}
	dSum, err := float64Term(decisive)
	if err != nil {
		return nil, false
	}
	return ast.NewObject(
		[2]*ast.Term{ast.StringTerm("approve"), ast.IntNumberTerm(len(aw))},
		[2]*ast.Term{ast.StringTerm("reject"), ast.IntNumberTerm(len(rw))},
		[2]*ast.Term{ast.StringTerm("approve_weight"), aSum},
		[2]*ast.Term{ast.StringTerm("decisive_weight"), dSum},
	), true
}

// evaluationCounts counts the evaluations other than REVIEW, and those of
// them with a confidence of at least confidence_floor in binary64.
func evaluationCounts(evals []viewEvaluation, constants ast.Object) (reviewFree, qualifying int, ok bool) {
	if len(evals) == 0 {
		return 0, 0, true
	}
	floorTerm := constants.Get(ast.StringTerm("confidence_floor"))
	if floorTerm == nil {
		return 0, 0, false
	}
	floor, err := toFloat64(floorTerm)
	if err != nil {
		return 0, 0, false
	}
	for _, e := range evals {
		if e.review {
			continue
		}
		reviewFree++
		c, err := toFloat64(ast.NewTerm(e.confidence))
		if err != nil {
			return 0, 0, false
		}
		if c >= floor {
			qualifying++
		}
	}
	return reviewFree, qualifying, true
}

func stringConstant(constants ast.Object, name string) (string, bool) {
	t := constants.Get(ast.StringTerm(name))
	if t == nil {
		return "", false
	}
	s, ok := t.Value.(ast.String)
	return string(s), ok
}

// viewParser reads a Decision state view in canonical shape: votes,
// objections and evaluations are read, every other member is checked for
// syntax as jsonToValueKeys does and skipped. It refuses (false) at the
// first deviation from the canonical shape, and allocates only the strings
// it keeps (proposal ids and voters).
type viewParser struct {
	jsonParser
	v *decisionView
}

// maxViewKeys bounds the top-level keys of a canonical view.
const maxViewKeys = 16

// parseDecisionView parses a view in canonical shape.
func parseDecisionView(data []byte) (*decisionView, bool) {
	p := &viewParser{jsonParser: jsonParser{b: data}, v: &decisionView{}}
	var seen [maxViewKeys]string
	n := 0
	ok := p.object(func(key []byte) bool {
		for _, k := range seen[:n] {
			if k == string(key) {
				return false // a duplicate key
			}
		}
		if n == len(seen) {
			return false
		}
		seen[n] = string(key)
		n++
		switch string(key) {
		case "votes":
			return p.votes()
		case "objections":
			return p.array(p.objection)
		case "evaluations":
			return p.array(p.evaluation)
		default:
			return p.skip(1) == nil
		}
	})
	p.space()
	if !ok || p.i != len(p.b) {
		return nil, false
	}
	// A voter twice under one proposal is a duplicate key too.
	b := p.v.ballots
	slices.SortFunc(b, func(x, y ballot) int {
		return cmp.Or(cmp.Compare(x.proposal, y.proposal), cmp.Compare(x.voter, y.voter))
	})
	for i := 1; i < len(b); i++ {
		if b[i].proposal == b[i-1].proposal && b[i].voter == b[i-1].voter {
			return nil, false
		}
	}
	return p.v, true
}

// votes reads {proposal_id: {voter: {"vote": string, ...}}}.
func (p *viewParser) votes() bool {
	var proposals []string
	return p.object(func(key []byte) bool {
		if slices.Contains(proposals, string(key)) {
			return false
		}
		proposal := string(key)
		proposals = append(proposals, proposal)
		return p.object(func(key []byte) bool {
			voter := string(key)
			kind, found := voteOther, false
			ok := p.object(func(field []byte) bool {
				if string(field) != "vote" {
					return p.skip(4) == nil
				}
				vote, ok := p.text()
				switch {
				case !ok || found:
					return false
				case string(vote) == "APPROVE":
					kind = voteApprove
				case string(vote) == "REJECT":
					kind = voteReject
				}
				found = true
				return true
			})
			if ok && found {
				p.v.ballots = append(p.v.ballots, ballot{proposal: proposal, voter: voter, vote: kind})
			}
			return ok && found
		})
	})
}

// objection reads {"severity": string, ...}.
func (p *viewParser) objection() bool {
	found := false
	ok := p.object(func(field []byte) bool {
		if string(field) != "severity" {
			return p.skip(3) == nil
		}
		severity, ok := p.text()
		if !ok || found {
			return false
		}
		found = true
		if string(severity) == "critical" {
			p.v.criticals++
		}
		return true
	})
	return ok && found
}

// evaluation reads {"recommendation": string, "confidence": number, ...}.
func (p *viewParser) evaluation() bool {
	var e viewEvaluation
	haveRec, haveConf := false, false
	ok := p.object(func(field []byte) bool {
		switch string(field) {
		case "recommendation":
			rec, ok := p.text()
			if !ok || haveRec {
				return false
			}
			haveRec, e.review = true, string(rec) == "REVIEW"
			return true
		case "confidence":
			if haveConf || p.i >= len(p.b) || p.b[p.i] != '-' && (p.b[p.i] < '0' || p.b[p.i] > '9') {
				return false
			}
			n, err := p.number()
			if err != nil {
				return false
			}
			haveConf, e.confidence = true, n.(ast.Number)
			return true
		default:
			return p.skip(3) == nil
		}
	})
	if ok && haveRec && haveConf {
		p.v.evaluations = append(p.v.evaluations, e)
	}
	return ok && haveRec && haveConf
}

// object reads an object, calling member with each key (decoded) and the
// parser at the member's value, which member consumes.
func (p *viewParser) object(member func(key []byte) bool) bool {
	p.space()
	if p.i >= len(p.b) || p.b[p.i] != '{' {
		return false
	}
	p.i++
	p.space()
	if p.i < len(p.b) && p.b[p.i] == '}' {
		p.i++
		return true
	}
	for {
		p.space()
		key, ok := p.text()
		if !ok {
			return false
		}
		p.space()
		if p.i >= len(p.b) || p.b[p.i] != ':' {
			return false
		}
		p.i++
		p.space()
		if !member(key) {
			return false
		}
		p.space()
		if p.i >= len(p.b) {
			return false
		}
		switch p.b[p.i] {
		case ',':
			p.i++
		case '}':
			p.i++
			return true
		default:
			return false
		}
	}
}

// array reads an array, calling elem with the parser at each element.
func (p *viewParser) array(elem func() bool) bool {
	p.space()
	if p.i >= len(p.b) || p.b[p.i] != '[' {
		return false
	}
	p.i++
	p.space()
	if p.i < len(p.b) && p.b[p.i] == ']' {
		p.i++
		return true
	}
	for {
		if !elem() {
			return false
		}
		p.space()
		if p.i >= len(p.b) {
			return false
		}
		switch p.b[p.i] {
		case ',':
			p.i++
		case ']':
			p.i++
			return true
		default:
			return false
		}
	}
}

// text reads a string and returns its decoded bytes, as str decodes them:
// a slice of the input when it has no escapes and is valid UTF-8.
func (p *viewParser) text() ([]byte, bool) {
	if p.i >= len(p.b) || p.b[p.i] != '"' {
		return nil, false
	}
	start := p.i + 1
	for j := start; j < len(p.b); j++ {
		c := p.b[j]
		if c == '"' {
			if raw := p.b[start:j]; utf8.Valid(raw) {
				p.i = j + 1
				return raw, true
			}
			break
		}
		if c == '\\' || c < 0x20 {
			break
		}
	}
	s, err := p.str()
	if err != nil {
		return nil, false
	}
	return []byte(s), true
}
