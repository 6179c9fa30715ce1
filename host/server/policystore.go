package server

import (
	"context"
	"errors"
	"fmt"

	"google.golang.org/protobuf/proto"

	"github.com/concord-macp/concord/host/storage"
	"github.com/concord-macp/concord/policy"
	macpv1 "github.com/concord-macp/concord/proto/macp/v1"
)

// policyStore keeps the policy registry and uploaded Rego sources in the
// store, so that policies and the sessions bound to them survive a
// restart.
type policyStore struct{ st storage.Store }

var (
	_ policy.Persister   = policyStore{}
	_ policy.SourceStore = policyStore{}
)

func (p policyStore) Put(ctx context.Context, d *macpv1.PolicyDescriptor) error {
	b, err := proto.Marshal(d)
	if err != nil {
		return fmt.Errorf("encode policy %s: %w", d.GetPolicyId(), err)
	}
	return p.st.Put(ctx, storage.Policies, d.GetPolicyId(), b)
}

func (p policyStore) Delete(ctx context.Context, id string) error {
	return p.st.Delete(ctx, storage.Policies, id)
}

func (p policyStore) All(ctx context.Context) ([]*macpv1.PolicyDescriptor, error) {
	var out []*macpv1.PolicyDescriptor
	err := p.st.EachPrefix(ctx, storage.Policies, "", func(id string, v []byte) error {
		d := &macpv1.PolicyDescriptor{}
		if err := proto.Unmarshal(v, d); err != nil {
			return fmt.Errorf("decode policy %s: %w", id, err)
		}
		out = append(out, d)
		return nil
	})
	return out, err
}

// Rego sources are blobs of their own kind, never deleted: replay of a
// session bound to an unregistered policy still needs them.
func (p policyStore) PutSource(ctx context.Context, digest string, source []byte) error {
	return p.st.PutBlob(ctx, storage.RegoSources, digest, source)
}

func (p policyStore) Source(ctx context.Context, digest string) ([]byte, error) {
	b, err := p.st.Blob(ctx, storage.RegoSources, digest)
	if errors.Is(err, storage.ErrNotFound) {
		return nil, fmt.Errorf("%w: %s", policy.ErrSourceNotFound, digest)
	}
	return b, err
}
