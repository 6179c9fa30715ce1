package kernel

import (
	"slices"
	"sync"
)

// sessionIndex keeps the ids of the kernel's sessions sorted, so that a page
// of ListSessions costs a binary search and the page itself, not a sort of
// every id on every call.
type sessionIndex struct {
	mu  sync.RWMutex
	ids []string
}

func (x *sessionIndex) add(id string) {
	x.mu.Lock()
	defer x.mu.Unlock()
	if i, found := slices.BinarySearch(x.ids, id); !found {
		x.ids = slices.Insert(x.ids, i, id)
	}
}

func (x *sessionIndex) remove(id string) {
	x.mu.Lock()
	defer x.mu.Unlock()
	if i, found := slices.BinarySearch(x.ids, id); found {
		x.ids = slices.Delete(x.ids, i, i+1)
	}
}

// has reports whether id is in the index.
func (x *sessionIndex) has(id string) bool {
	x.mu.RLock()
	defer x.mu.RUnlock()
	_, found := slices.BinarySearch(x.ids, id)
	return found
}

// after returns up to n ids greater than id, in order.
func (x *sessionIndex) after(id string, n int) []string {
	x.mu.RLock()
	defer x.mu.RUnlock()
	i, found := slices.BinarySearch(x.ids, id)
	if found {
		i++
	}
	end := min(i+n, len(x.ids))
	return slices.Clone(x.ids[i:end])
}

// all returns every id, in order.
func (x *sessionIndex) all() []string {
	x.mu.RLock()
	defer x.mu.RUnlock()
	return slices.Clone(x.ids)
}
