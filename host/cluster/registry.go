package cluster

import (
	"context"
	"time"

	"github.com/concord-macp/concord/host/storage"
	"github.com/concord-macp/concord/host/storage/jetstream"
)

// watcher is a callback to run when records of some kinds change.
type watcher struct {
	kinds []storage.Kind
	fn    func(context.Context) error
}

// OnChange asks the node to call fn whenever records of one of kinds
// change in the shared store, by any node: this is how every node learns
// of new modes and policies. Changes that arrive together are reported
// once. Call it before Attach.
func (n *Node) OnChange(kinds []storage.Kind, fn func(context.Context) error) {
	n.watchers = append(n.watchers, watcher{kinds: kinds, fn: fn})
}

// watch runs one watcher until the node closes.
func (n *Node) watch(ctx context.Context, w watcher) {
	changed := make(chan struct{}, 1)
	for _, kind := range w.kinds {
		n.run(func(ctx context.Context) {
			for ctx.Err() == nil {
				err := n.store.WatchRecords(ctx, kind, func(jetstream.Change) {
					select {
					case changed <- struct{}{}:
					default:
					}
				})
				if ctx.Err() == nil {
					n.log.Warn("a registry watch ended; watching again", "kind", kind, "err", err)
					select {
					case <-ctx.Done():
					case <-time.After(time.Second):
					}
					// The new watch reports changes made after it starts:
					// read the registry again for those made meanwhile.
					select {
					case changed <- struct{}{}:
					default:
					}
				}
			}
		})
	}
	for {
		select {
		case <-ctx.Done():
			return
		case <-changed:
		}
		// Let a burst of changes (a binding and the declaration it fills)
		// settle.
		select {
		case <-ctx.Done():
			return
		case <-time.After(50 * time.Millisecond):
		}
		select {
		case <-changed:
		default:
		}
		if err := w.fn(ctx); err != nil {
			n.log.Warn("could not apply a registry change made elsewhere", "err", err)
		}
	}
}
