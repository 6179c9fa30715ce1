// Package audit keeps the durable trail of governance actions — module
// uploads and removals, mode registry changes, policy registrations and
// pushes, and every AdminService call — with who acted, when, on what, and
// how it ended. A connect interceptor records them, so the handlers stay
// unaware of it; AdminService lists them.
package audit

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"sync"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/concord-macp/concord/host/storage"
	adminv1 "github.com/concord-macp/concord/proto/concord/admin/v1"
	storev1 "github.com/concord-macp/concord/proto/concord/store/v1"
)

// Options configure a Log.
type Options struct {
	// MaxRecords caps the trail: past it the oldest records are dropped
	// (default DefaultMaxRecords).
	MaxRecords int
	// Now overrides the clock (tests).
	Now    func() time.Time
	Logger *slog.Logger
	// Node, when set, ends every key this Log writes ("<sequence>-<node>"),
	// so that the nodes of a cluster sharing one store never write the
	// same key.
	Node string
}

// DefaultMaxRecords is the trail's default cap.
const DefaultMaxRecords = 100_000

// Page sizes of List.
const (
	DefaultPageSize = 100
	MaxPageSize     = 1000
)

// ErrBadPage reports an undecodable page token or a negative page size.
var ErrBadPage = errors.New("audit: invalid page_size or page_token")

// Log is the audit trail, kept in the store's GovernanceAudit registry.
// Keys are a 16-hex-digit sequence number, so byte order is write order
// whatever the clock does.
type Log struct {
	store storage.Records
	opts  Options
	mu    sync.Mutex
	next  uint64 // sequence of the next record
	count int
}

// Open loads the trail's position from st.
func Open(ctx context.Context, st storage.Records, opts Options) (*Log, error) {
	if opts.MaxRecords <= 0 {
		opts.MaxRecords = DefaultMaxRecords
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	l := &Log{store: st, opts: opts}
	err := st.EachPrefix(ctx, storage.GovernanceAudit, "", func(key string, _ []byte) error {
		seq, err := keySeq(key)
		if err != nil {
			return fmt.Errorf("audit: record key %q: %w", key, err)
		}
		l.next = max(l.next, seq+1)
		l.count++
		return nil
	})
	if err != nil {
		return nil, err
	}
	return l, nil
}

func (l *Log) seqKey(seq uint64) string {
	if l.opts.Node != "" {
		return fmt.Sprintf("%016x-%s", seq, l.opts.Node)
	}
	return fmt.Sprintf("%016x", seq)
}

// keySeq reads the sequence a record key starts with.
func keySeq(key string) (uint64, error) {
	if len(key) < 16 || len(key) > 16 && key[16] != '-' {
		return 0, errors.New("not a record key")
	}
	return strconv.ParseUint(key[:16], 16, 64)
}

// Record appends one action, durably, and drops the oldest records past
// the cap.
func (l *Log) Record(ctx context.Context, a *storev1.AuditAction) error {
	if a.GetAtUnixMs() == 0 {
		a.AtUnixMs = l.opts.Now().UnixMilli()
	}
	b, err := proto.Marshal(a)
	if err != nil {
		return fmt.Errorf("audit: %w", err)
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if err := l.store.Put(ctx, storage.GovernanceAudit, l.seqKey(l.next), b); err != nil {
		return fmt.Errorf("audit: %w", err)
	}
	l.next++
	l.count++
	for l.count > l.opts.MaxRecords {
		var oldest string
		_ = l.store.EachPrefix(ctx, storage.GovernanceAudit, "", func(key string, _ []byte) error {
			oldest = key
			return storage.ErrStop
		})
		if oldest == "" {
			break
		}
		if err := l.store.Delete(ctx, storage.GovernanceAudit, oldest); err != nil {
			return fmt.Errorf("audit: drop the oldest record: %w", err)
		}
		l.count--
	}
	return nil
}

// List returns a page of records, newest first, and the token of the
// next page ("" on the last).
func (l *Log) List(ctx context.Context, pageSize int, pageToken string) ([]*adminv1.AuditRecord, string, error) {
	switch {
	case pageSize < 0:
		return nil, "", ErrBadPage
	case pageSize == 0:
		pageSize = DefaultPageSize
	case pageSize > MaxPageSize:
		pageSize = MaxPageSize
	}
	if pageToken != "" {
		if _, err := keySeq(pageToken); err != nil || len(pageToken) > 16+65 {
			return nil, "", ErrBadPage
		}
	}
	var out []*adminv1.AuditRecord
	more := false
	err := l.store.EachBefore(ctx, storage.GovernanceAudit, pageToken, func(key string, v []byte) error {
		if len(out) == pageSize {
			more = true
			return storage.ErrStop
		}
		var a storev1.AuditAction
		if err := proto.Unmarshal(v, &a); err != nil {
			return fmt.Errorf("audit: record %s: %w", key, err)
		}
		out = append(out, &adminv1.AuditRecord{
			Id: key, AtUnixMs: a.GetAtUnixMs(), Actor: a.GetActor(), Procedure: a.GetProcedure(), Target: a.GetTarget(),
			Ok: a.GetOk(), ErrorCode: a.GetErrorCode(), ErrorMessage: a.GetErrorMessage(),
		})
		return nil
	})
	if err != nil {
		return nil, "", err
	}
	next := ""
	if more {
		next = out[len(out)-1].GetId()
	}
	return out, next, nil
}
