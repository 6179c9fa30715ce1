package jetstream

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"
	"time"

	natsjs "github.com/nats-io/nats.go/jetstream"

	"github.com/concord-macp/concord/host/storage"
)

// maxRecordKeyLen bounds record keys, as the Badger store does.
const maxRecordKeyLen = 512

func (s *Store) bucket(kind storage.Kind) (natsjs.KeyValue, error) {
	if !recordKinds[kind] {
		return nil, fmt.Errorf("jetstream: unknown record kind %q", kind)
	}
	return s.records, nil
}

func checkKey(key string) error {
	if key == "" || len(key) > maxRecordKeyLen {
		return fmt.Errorf("jetstream: record key of %d bytes: %w", len(key), storage.ErrInvalid)
	}
	return nil
}

// Put implements storage.Records.
func (s *Store) Put(ctx context.Context, kind storage.Kind, key string, value []byte) error {
	if err := s.usable(); err != nil {
		return err
	}
	kv, err := s.bucket(kind)
	if err != nil {
		return err
	}
	if err := checkKey(key); err != nil {
		return err
	}
	ctx, cancel := s.withTimeout(ctx)
	defer cancel()
	if _, err := kv.Put(ctx, string(kind)+"."+recordKey(key), value); err != nil {
		return fmt.Errorf("jetstream: put %s record: %w", kind, err)
	}
	return nil
}

// Delete implements storage.Records.
func (s *Store) Delete(ctx context.Context, kind storage.Kind, key string) error {
	if err := s.usable(); err != nil {
		return err
	}
	kv, err := s.bucket(kind)
	if err != nil {
		return err
	}
	if err := checkKey(key); err != nil {
		return err
	}
	ctx, cancel := s.withTimeout(ctx)
	defer cancel()
	if err := kv.Delete(ctx, string(kind)+"."+recordKey(key)); err != nil {
		return fmt.Errorf("jetstream: delete %s record: %w", kind, err)
	}
	return nil
}

type kvRecord struct {
	key   string
	value []byte
}

// current returns the records of kind whose KV keys match filter, as they
// are now (deleted keys left out). It reads the bucket's stream with a
// consumer of each key's last message, up to the stream's end as its
// leader reports it, so that every write acknowledged before is seen.
func (s *Store) current(ctx context.Context, kind storage.Kind, filter string) ([]kvRecord, error) {
	if _, err := s.bucket(kind); err != nil {
		return nil, err
	}
	ctx, cancel := s.withTimeout(ctx)
	defer cancel()
	prefix := s.recordSubject + string(kind) + "."
	// A key may come twice (a write the consumer's replica applied during
	// the scan, see missed): the later message is the record.
	latest := map[string][]byte{}
	err := s.scanStream(ctx, s.recordStream, natsjs.OrderedConsumerConfig{
		FilterSubjects: []string{prefix + filter},
		DeliverPolicy:  natsjs.DeliverLastPerSubjectPolicy,
	}, func(m natsjs.Msg) error {
		key, err := recordKeyOf(strings.TrimPrefix(m.Subject(), prefix))
		if err != nil {
			return err
		}
		if op := m.Headers().Get("KV-Operation"); op == "DEL" || op == "PURGE" {
			delete(latest, key)
			return nil
		}
		latest[key] = m.Data()
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("jetstream: read %s records: %w", kind, err)
	}
	out := make([]kvRecord, 0, len(latest))
	for key, value := range latest {
		out = append(out, kvRecord{key, value})
	}
	return out, nil
}

// EachPrefix implements storage.Records.
func (s *Store) EachPrefix(ctx context.Context, kind storage.Kind, prefix string, fn func(key string, value []byte) error) error {
	if err := s.usable(); err != nil {
		return err
	}
	recs, err := s.current(ctx, kind, recordFilter(prefix))
	if err != nil {
		return err
	}
	recs = slices.DeleteFunc(recs, func(r kvRecord) bool { return !strings.HasPrefix(r.key, prefix) })
	sort.Slice(recs, func(i, j int) bool { return recs[i].key < recs[j].key })
	return each(ctx, recs, fn)
}

// EachBefore implements storage.Records.
func (s *Store) EachBefore(ctx context.Context, kind storage.Kind, before string, fn func(key string, value []byte) error) error {
	if err := s.usable(); err != nil {
		return err
	}
	recs, err := s.current(ctx, kind, ">")
	if err != nil {
		return err
	}
	recs = slices.DeleteFunc(recs, func(r kvRecord) bool { return before != "" && r.key >= before })
	sort.Slice(recs, func(i, j int) bool { return recs[i].key > recs[j].key })
	return each(ctx, recs, fn)
}

func each(ctx context.Context, recs []kvRecord, fn func(string, []byte) error) error {
	for _, r := range recs {
		if err := ctx.Err(); err != nil {
			return err
		}
		if err := fn(r.key, r.value); err != nil {
			return stopped(err)
		}
	}
	return nil
}

// Change is one change to a record, as WatchRecords reports it.
type Change struct {
	Key     string
	Value   []byte
	Deleted bool
}

// WatchRecords calls fn with every change to the records of kind made
// after the call, by any handle, until ctx ends; it returns ctx's error
// then, or why the watch broke.
func (s *Store) WatchRecords(ctx context.Context, kind storage.Kind, fn func(Change)) error {
	kv, err := s.bucket(kind)
	if err != nil {
		return err
	}
	w, err := kv.Watch(ctx, string(kind)+".>", natsjs.UpdatesOnly())
	if err != nil {
		return fmt.Errorf("jetstream: watch %s records: %w", kind, err)
	}
	defer func() { _ = w.Stop() }()
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case e, ok := <-w.Updates():
			if !ok {
				return fmt.Errorf("jetstream: watch of %s records ended", kind)
			}
			if e == nil {
				continue
			}
			key, err := recordKeyOf(strings.TrimPrefix(e.Key(), string(kind)+"."))
			if err != nil {
				s.logger.Warn("a record with a malformed key", "kind", kind, "err", err)
				continue
			}
			fn(Change{Key: key, Value: e.Value(), Deleted: e.Operation() != natsjs.KeyValuePut})
		}
	}
}

func (s *Store) objects(kind storage.BlobKind) (natsjs.ObjectStore, error) {
	if !blobKinds[kind] {
		return nil, fmt.Errorf("jetstream: unknown blob kind %q", kind)
	}
	return s.blobs, nil
}

// objectName is blob name's object name: its kind, "/", the name.
func objectName(kind storage.BlobKind, name string) string { return string(kind) + "/" + name }

// PutBlob implements storage.Blobs.
func (s *Store) PutBlob(ctx context.Context, kind storage.BlobKind, name string, data []byte) error {
	if err := s.usable(); err != nil {
		return err
	}
	obs, err := s.objects(kind)
	if err != nil {
		return err
	}
	if name == "" || len(name) > maxRecordKeyLen {
		return fmt.Errorf("jetstream: blob name of %d bytes: %w", len(name), storage.ErrInvalid)
	}
	ctx, cancel := s.withTimeout(ctx)
	defer cancel()
	if _, err := obs.GetInfo(ctx, objectName(kind, name)); err == nil {
		return nil // content-addressed: already there
	} else if !errors.Is(err, natsjs.ErrObjectNotFound) {
		return fmt.Errorf("jetstream: blob %s: %w", name, err)
	}
	if _, err := obs.PutBytes(ctx, objectName(kind, name), data); err != nil {
		return fmt.Errorf("jetstream: store blob %s: %w", name, err)
	}
	return nil
}

// Blob implements storage.Blobs.
func (s *Store) Blob(ctx context.Context, kind storage.BlobKind, name string) ([]byte, error) {
	if err := s.usable(); err != nil {
		return nil, err
	}
	obs, err := s.objects(kind)
	if err != nil {
		return nil, err
	}
	ctx, cancel := s.withTimeout(ctx)
	defer cancel()
	b, err := obs.GetBytes(ctx, objectName(kind, name))
	// On R3 a read right after the write was seen to return chunks that
	// do not match the object's digest (a replica not caught up yet): the
	// digest guards the content, so read again, a few times.
	for try := 1; errors.Is(err, natsjs.ErrDigestMismatch) && try < 5; try++ {
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("jetstream: blob %.64s: %w (last error: %w)", name, ctx.Err(), err)
		case <-time.After(time.Duration(try) * 100 * time.Millisecond):
		}
		b, err = obs.GetBytes(ctx, objectName(kind, name))
	}
	if errors.Is(err, natsjs.ErrObjectNotFound) || errors.Is(err, natsjs.ErrInvalidStoreName) {
		return nil, fmt.Errorf("jetstream: blob %.64s: %w", name, storage.ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("jetstream: blob %.64s: %w", name, err)
	}
	return b, nil
}

// BlobNames implements storage.Blobs.
func (s *Store) BlobNames(ctx context.Context, kind storage.BlobKind) ([]string, error) {
	if err := s.usable(); err != nil {
		return nil, err
	}
	obs, err := s.objects(kind)
	if err != nil {
		return nil, err
	}
	ctx, cancel := s.withTimeout(ctx)
	defer cancel()
	infos, err := obs.List(ctx)
	if errors.Is(err, natsjs.ErrNoObjectsFound) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("jetstream: list %s blobs: %w", kind, err)
	}
	names := make([]string, 0, len(infos))
	for _, in := range infos {
		if name, ok := strings.CutPrefix(in.Name, string(kind)+"/"); ok && !in.Deleted {
			names = append(names, name)
		}
	}
	sort.Strings(names)
	return names, nil
}
