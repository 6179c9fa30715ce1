// Package poll holds the types of abi/guest's examples and Machine tests: a
// poll whose initiator asks one question that each participant answers
// once. Its codecs (guest_gen.go) are written by guestgen.
package poll

//go:generate go tool guestgen

// State is a poll's state; Answered is only in the view.
type State struct {
	Question string   `wire:"2" json:"question"`
	Votes    []Vote   `wire:"3" json:"votes"`
	Answered int      `json:"answered"`
	Tags     []string `wire:"4" json:"tags"`
}

// Vote is one participant's answer.
type Vote struct {
	Voter  string `wire:"1" json:"voter"`
	Choice string `wire:"2" json:"choice"`
}

// Ask is the payload of the initiator's question.
type Ask struct {
	Question string   `json:"question" guest:"nonblank"`
	Tags     []string `json:"tags"`
}

// Answer is the payload of a participant's answer.
type Answer struct {
	Choice string  `json:"choice" guest:"nonblank"`
	Weight *uint64 `json:"weight" guest:"min=1,max=10"`
}

// Ballot is a protobuf payload: {1: choice}.
type Ballot struct {
	Choice string `wire:"1"`
}
