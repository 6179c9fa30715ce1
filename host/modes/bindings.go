package modes

import (
	"context"
	"fmt"
	"sort"

	"google.golang.org/protobuf/proto"

	"github.com/concord-macp/concord/host/storage"
	storev1 "github.com/concord-macp/concord/proto/concord/store/v1"
)

// Bindings returns the latest stored binding of every uploaded mode name,
// active or retired, sorted by name: which module it names and when it was
// bound or retired. Built-in modes have none. Without uploads it is empty.
func (r *Registry) Bindings(ctx context.Context) ([]*storev1.ModeBinding, error) {
	r.mu.RLock()
	u := r.uploads
	r.mu.RUnlock()
	if u == nil {
		return nil, nil
	}
	var out []*storev1.ModeBinding
	err := u.Store.EachPrefix(ctx, storage.ModeBindings, "", func(_ string, v []byte) error {
		b := &storev1.ModeBinding{}
		if err := proto.Unmarshal(v, b); err != nil {
			return fmt.Errorf("modes: decode binding: %w", err)
		}
		out = append(out, b)
		return nil
	})
	if err != nil {
		return nil, err
	}
	sort.Slice(out, func(i, j int) bool { return out[i].GetMode() < out[j].GetMode() })
	return out, nil
}
