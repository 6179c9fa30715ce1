package proposal

import (
	"fmt"
	"unicode/utf8"

	"google.golang.org/protobuf/encoding/protowire"

	"github.com/concord-macp/concord/abi/guest"
)

// fields holds the decoded fields of one mode payload. All Proposal-mode
// payloads are strings, one bool (RejectPayload.terminal), bytes and a
// repeated string (ProposalPayload.tags); the caller picks the numbers it
// knows.
type fields struct {
	str      [maxField + 1]string
	flag     [maxField + 1]bool
	repeated []string
}

// maxField is the highest field number of any Proposal-mode payload.
const maxField = 5

// decodePayload decodes a payload whose string fields are strNums (tags, when
// tagsNum is non-zero, collects a repeated string), whose bool fields are
// boolNums and whose bytes fields are bytesNums. Like protobuf, it keeps the
// last value of a repeated scalar, ignores unknown fields and fields of an
// unexpected wire type, and refuses strings that are not valid UTF-8.
func decodePayload(b []byte, strNums, boolNums, bytesNums []protowire.Number, tagsNum protowire.Number) (*fields, error) {
	f := &fields{}
	err := guest.EachField(b, func(num protowire.Number, typ protowire.Type, v []byte, n uint64) error {
		switch {
		case typ == protowire.BytesType && (contains(strNums, num) || num == tagsNum && tagsNum != 0):
			if !utf8.Valid(v) {
				return fmt.Errorf("field %d is not valid UTF-8", num)
			}
			if num == tagsNum {
				f.repeated = append(f.repeated, string(v))
			} else {
				f.str[num] = string(v)
			}
		case typ == protowire.VarintType && contains(boolNums, num):
			f.flag[num] = n != 0
		case typ == protowire.BytesType && contains(bytesNums, num):
			// Bytes fields carry data the mode does not interpret.
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return f, nil
}

func contains(nums []protowire.Number, n protowire.Number) bool {
	for _, x := range nums {
		if x == n {
			return true
		}
	}
	return false
}

// Decoded payloads of macp.modes.proposal.v1.

type proposalPayload struct {
	ProposalID, Title, Summary string
	Tags                       []string
}

type counterProposalPayload struct {
	ProposalID, Supersedes, Title, Summary string
}

type acceptPayload struct {
	ProposalID, Reason string
}

type rejectPayload struct {
	ProposalID string
	Terminal   bool
	Reason     string
}

type withdrawPayload struct {
	ProposalID, Reason string
}

func decodeProposal(b []byte) (proposalPayload, error) {
	f, err := decodePayload(b, []protowire.Number{1, 2, 3}, nil, []protowire.Number{4}, 5)
	if err != nil {
		return proposalPayload{}, err
	}
	return proposalPayload{ProposalID: f.str[1], Title: f.str[2], Summary: f.str[3], Tags: f.repeated}, nil
}

func decodeCounterProposal(b []byte) (counterProposalPayload, error) {
	f, err := decodePayload(b, []protowire.Number{1, 2, 3, 4}, nil, []protowire.Number{5}, 0)
	if err != nil {
		return counterProposalPayload{}, err
	}
	return counterProposalPayload{ProposalID: f.str[1], Supersedes: f.str[2], Title: f.str[3], Summary: f.str[4]}, nil
}

func decodeAccept(b []byte) (acceptPayload, error) {
	f, err := decodePayload(b, []protowire.Number{1, 2}, nil, nil, 0)
	if err != nil {
		return acceptPayload{}, err
	}
	return acceptPayload{ProposalID: f.str[1], Reason: f.str[2]}, nil
}

func decodeReject(b []byte) (rejectPayload, error) {
	f, err := decodePayload(b, []protowire.Number{1, 3}, []protowire.Number{2}, nil, 0)
	if err != nil {
		return rejectPayload{}, err
	}
	return rejectPayload{ProposalID: f.str[1], Terminal: f.flag[2], Reason: f.str[3]}, nil
}

func decodeWithdraw(b []byte) (withdrawPayload, error) {
	f, err := decodePayload(b, []protowire.Number{1, 2}, nil, nil, 0)
	if err != nil {
		return withdrawPayload{}, err
	}
	return withdrawPayload{ProposalID: f.str[1], Reason: f.str[2]}, nil
}
